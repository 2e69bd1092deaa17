//! `[upstream_pool]`: how many warm upstream connections are kept, and for
//! how long and how many messages each may serve.

use super::file::UpstreamPoolSection;
use std::time::Duration;

/// `[upstream_pool]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPoolConfig {
    /// Reuse connections at all; off, every session opens its own.
    pub enabled: bool,
    /// Most idle connections kept.
    pub max_idle: usize,
    /// Longest an idle connection waits for its next session.
    pub max_idle_time: Duration,
    /// Messages one connection carries before it is closed.
    pub max_messages: u32,
    /// Age past which a connection is closed when its session ends.
    pub max_age: Duration,
}

impl Default for UpstreamPoolConfig {
    /// The defaults of `[upstream_pool]` (the typed definition's).
    fn default() -> Self {
        from_section(UpstreamPoolSection::default(), &mut Vec::new())
    }
}

/// The most idle connections `max_idle` may ask for: each holds a socket
/// here and a session process on the upstream.
const MAX_IDLE_LIMIT: usize = 10_000;

/// Build [`UpstreamPoolConfig`] from the file's `[upstream_pool]`, adding any
/// problems.
pub(super) fn from_section(
    section: UpstreamPoolSection,
    problems: &mut Vec<String>,
) -> UpstreamPoolConfig {
    if section.max_idle == 0 || section.max_idle > MAX_IDLE_LIMIT {
        problems.push(format!(
            "upstream_pool.max_idle: {} is not from 1 to {MAX_IDLE_LIMIT} (enabled = false turns the pool off)",
            section.max_idle
        ));
    }
    if section.max_messages == 0 {
        problems.push("upstream_pool.max_messages: must be greater than 0".to_string());
    }
    for (key, value) in [
        ("max_idle_time", section.max_idle_time),
        ("max_age", section.max_age),
    ] {
        if value.is_zero() {
            problems.push(format!(
                "upstream_pool.{key}: must be longer than 0s (enabled = false turns the pool off)"
            ));
        }
    }
    UpstreamPoolConfig {
        enabled: section.enabled,
        max_idle: section.max_idle,
        max_idle_time: section.max_idle_time,
        max_messages: section.max_messages,
        max_age: section.max_age,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_on() {
        let mut problems = Vec::new();
        let config = from_section(UpstreamPoolSection::default(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(config.enabled);
        assert_eq!(config.max_idle, 16);
    }

    #[test]
    fn zero_limits_are_refused_naming_their_keys() {
        let mut problems = Vec::new();
        from_section(
            UpstreamPoolSection {
                enabled: true,
                max_idle: 0,
                max_idle_time: Duration::ZERO,
                max_messages: 0,
                max_age: Duration::ZERO,
            },
            &mut problems,
        );
        let keys: Vec<_> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            keys,
            [
                "upstream_pool.max_idle",
                "upstream_pool.max_messages",
                "upstream_pool.max_idle_time",
                "upstream_pool.max_age"
            ]
        );
    }
}
