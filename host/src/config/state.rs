//! `[state]`: where policies that import the WIT `state` interface keep what
//! outlives a session.

use super::file::{StateBackendName, StateSection};
use std::time::Duration;

/// Which store holds policy state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBackendKind {
    /// In this process's memory (the default): nothing to set up, lost on
    /// restart, not shared with other proxies.
    Memory,
    /// A Redis server shared by every proxy pointed at it.
    Redis {
        /// `redis://[user:password@]host:port[/db]` or `unix:///path`.
        url: String,
    },
}

/// `[state]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// The store.
    pub backend: StateBackendKind,
    /// Longest wait for one state operation (connecting included).
    pub timeout: Duration,
    /// Prepended to every key, before the policy's name.
    pub prefix: String,
    /// Longest key a policy may use, in bytes.
    pub max_key_size: usize,
    /// Longest value a policy may store, in bytes.
    pub max_value_size: usize,
    /// Most keys the memory backend holds; the ones closest to expiry are
    /// dropped first when it is full.
    pub max_entries: usize,
}

impl Default for StateConfig {
    /// The defaults of `[state]` (the typed definition's).
    fn default() -> Self {
        from_section(StateSection::default(), &mut Vec::new())
    }
}

/// Largest value size allowed in the config.
const MAX_VALUE_SIZE_LIMIT: usize = 1 << 20;

/// Build [`StateConfig`] from the file's `[state]`, adding any problems.
pub(super) fn from_section(section: StateSection, problems: &mut Vec<String>) -> StateConfig {
    let backend = match (section.backend, section.url) {
        (StateBackendName::Memory, None) => StateBackendKind::Memory,
        (StateBackendName::Memory, Some(_)) => {
            problems.push("state.url: only used with backend = \"redis\"".to_string());
            StateBackendKind::Memory
        }
        (StateBackendName::Redis, None) => {
            problems.push(
                "state.url: required with backend = \"redis\" (e.g. \"redis://127.0.0.1:6379\")"
                    .to_string(),
            );
            StateBackendKind::Memory
        }
        (StateBackendName::Redis, Some(url)) => {
            if !["redis://", "unix://", "redis+unix://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                problems.push(format!(
                    "state.url: {:?} is not a redis:// or unix:// URL",
                    url.split('@').next_back().unwrap_or_default()
                ));
            }
            StateBackendKind::Redis { url }
        }
    };
    if section.timeout < Duration::from_millis(1) {
        problems.push("state.timeout: must be at least 1ms".to_string());
    }
    for (key, value) in [
        ("max_key_size", section.max_key_size),
        ("max_value_size", section.max_value_size),
        ("max_entries", section.max_entries),
    ] {
        if value == 0 {
            problems.push(format!("state.{key}: must be greater than 0"));
        }
    }
    if section.max_value_size > MAX_VALUE_SIZE_LIMIT {
        problems.push(format!(
            "state.max_value_size: at most {MAX_VALUE_SIZE_LIMIT} bytes"
        ));
    }
    StateConfig {
        backend,
        timeout: section.timeout,
        prefix: section.prefix,
        max_key_size: section.max_key_size,
        max_value_size: section.max_value_size,
        max_entries: section.max_entries,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::problems;
    use super::*;

    #[test]
    fn memory_is_the_default() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.state, StateConfig::default());
        assert_eq!(config.state.backend, StateBackendKind::Memory);
    }

    #[test]
    fn redis_needs_a_url() {
        let config = Config::parse(
            "[state]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379/1\"\ntimeout = \"250ms\"\nprefix = \"site1:\"\n",
        )
        .unwrap();
        assert_eq!(
            config.state.backend,
            StateBackendKind::Redis {
                url: "redis://127.0.0.1:6379/1".to_string()
            }
        );
        assert_eq!(config.state.timeout, Duration::from_millis(250));
        assert_eq!(config.state.prefix, "site1:");
        let p = problems("[state]\nbackend = \"redis\"\n");
        assert!(p[0].starts_with("state.url: required"), "{p:?}");
        let p = problems("[state]\nbackend = \"redis\"\nurl = \"http://x\"\n");
        assert!(p[0].starts_with("state.url:"), "{p:?}");
        let p = problems("[state]\nurl = \"redis://x:1\"\n");
        assert!(p[0].starts_with("state.url: only used"), "{p:?}");
    }

    #[test]
    fn bad_values_are_named() {
        let p = problems("[state]\nbackend = \"etcd\"\n");
        assert!(p[0].starts_with("state.backend:"), "{p:?}");
        let p = problems("[state]\nmax_key_size = 0\nmax_value_size = 2000000\ntimeout = \"0s\"\n");
        assert_eq!(p.len(), 3, "{p:?}");
        let p = problems("[state]\nmax_entrys = 5\n");
        assert!(p[0].contains("unknown field `max_entrys`"), "{p:?}");
    }
}
