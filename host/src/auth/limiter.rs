//! Brute-force control: failed AUTH attempts are counted per client address
//! and per user with `governor` (GCRA) rate limiters.
//!
//! Each failure takes one cell from a bucket of `max_failures` cells that
//! refills completely over `failure_window`. The first
//! `failures_before_delay` failures are answered at once; each further one
//! waits `failure_delay`, doubling per failure (at most [`MAX_DELAY`]). When
//! a bucket is empty, attempts from that client or for that user are refused
//! ([`Gate::Closed`]) without asking the backend until a cell is back.
//! Successes are not counted and do not reset the count.
//! IPv6 clients are counted per /64, the block one subscriber usually has.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::Verification;
use crate::config::AuthConfig;

/// The longest a single failure is delayed.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// Keyed limiters are pruned of idle keys when they hold more than this.
const PRUNE_ABOVE_KEYS: usize = 10_000;

/// The brute-force knobs of `[auth]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Failures answered without delay.
    pub failures_before_delay: u32,
    /// Delay of the first slowed failure; doubles after that.
    pub failure_delay: Duration,
    /// Failures within `window` after which attempts are refused.
    pub max_failures: u32,
    /// The time over which `max_failures` failures are forgotten.
    pub window: Duration,
}

impl FailurePolicy {
    /// The knobs from `[auth]`.
    pub fn from_config(config: &AuthConfig) -> Self {
        Self {
            failures_before_delay: config.failures_before_delay,
            failure_delay: config.failure_delay,
            max_failures: config.max_failures,
            window: config.failure_window,
        }
    }

    /// How long to wait before answering failure number `failures`.
    pub fn delay_for(&self, failures: u32) -> Duration {
        let Some(beyond) = failures.checked_sub(self.failures_before_delay + 1) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(beyond.min(31)).unwrap_or(u32::MAX);
        self.failure_delay
            .checked_mul(factor)
            .unwrap_or(MAX_DELAY)
            .min(MAX_DELAY)
    }
}

/// Whether an attempt may be checked at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Ask the backend.
    Open,
    /// Refuse without asking.
    Closed {
        /// When the refusal ends.
        retry_after: Duration,
    },
}

type Limiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// Failure counts for one kind of key (client or user).
struct Counter<K: Hash + Eq + Clone> {
    limiter: Limiter<K>,
    /// Keys whose bucket is empty, and until when.
    closed: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    fn new(quota: Quota) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            closed: Mutex::new(HashMap::new()),
        }
    }

    fn closed_for(&self, key: &K, now: Instant) -> Option<Duration> {
        let closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        closed
            .get(key)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    /// Counts one failure; returns the failures within the window so far and
    /// how long the key is now closed (zero while it is open).
    fn fail(&self, key: &K, max: u32, refill: Duration, now: Instant) -> (u32, Duration) {
        let (failures, closed_for) = match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let failures = max.saturating_sub(remaining);
                // An empty bucket gets its next cell within one refill period.
                let closed_for = if remaining == 0 {
                    refill
                } else {
                    Duration::ZERO
                };
                (failures, closed_for)
            }
            Err(not_until) => (
                max.saturating_add(1),
                not_until
                    .wait_time_from(self.limiter.clock().now())
                    .max(Duration::from_millis(1)),
            ),
        };
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if !closed_for.is_zero() {
            closed.retain(|_, until| *until > now);
            closed.insert(key.clone(), now + closed_for);
        }
        drop(closed);
        if self.limiter.len() > PRUNE_ABOVE_KEYS {
            self.limiter.retain_recent();
        }
        (failures, closed_for)
    }
}

/// Per-client and per-user failure counting.
pub struct FailureLimiter {
    policy: FailurePolicy,
    refill: Duration,
    clients: Counter<IpAddr>,
    users: Counter<String>,
}

impl FailureLimiter {
    /// A limiter with nothing counted yet.
    pub fn new(policy: FailurePolicy) -> anyhow::Result<Self> {
        let burst = NonZeroU32::new(policy.max_failures)
            .context("auth.max_failures: must be at least 1")?;
        let refill = policy.window / policy.max_failures;
        let quota = Quota::with_period(refill)
            .context("auth.failure_window: too short for auth.max_failures")?
            .allow_burst(burst);
        Ok(Self {
            policy,
            refill,
            clients: Counter::new(quota),
            users: Counter::new(quota),
        })
    }

    /// Whether an attempt from `client` for `user` may go to the backend.
    pub fn gate(&self, client: IpAddr, user: &str) -> Gate {
        let now = Instant::now();
        let client_wait = self.clients.closed_for(&client_key(client), now);
        let user_wait = self.users.closed_for(&user_key(user), now);
        match client_wait.max(user_wait) {
            Some(retry_after) => Gate::Closed { retry_after },
            None => Gate::Open,
        }
    }

    /// Counts a rejected attempt, waits as the policy says, and gives the
    /// answer for the client: [`Verification::Rejected`].
    pub async fn failed(&self, client: IpAddr, user: &str) -> Verification {
        let now = Instant::now();
        let max = self.policy.max_failures;
        let (client_failures, client_closed) =
            self.clients
                .fail(&client_key(client), max, self.refill, now);
        let (user_failures, user_closed) = self.users.fail(&user_key(user), max, self.refill, now);
        let failures = client_failures.max(user_failures);
        let delay = self.policy.delay_for(failures);
        tracing::warn!(
            %client,
            user,
            client_failures,
            user_failures,
            max_failures = max,
            delay = ?delay,
            refusing_for = ?client_closed.max(user_closed),
            "AUTH failed: wrong credentials"
        );
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Verification::Rejected
    }
}

/// IPv4 addresses count alone, IPv6 per /64.
fn client_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(segments))
            }
        },
    }
}

/// User names count case-insensitively, so `Alice` and `alice` share a count.
fn user_key(user: &str) -> String {
    user.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(before: u32, max: u32) -> FailurePolicy {
        FailurePolicy {
            failures_before_delay: before,
            failure_delay: Duration::from_millis(100),
            max_failures: max,
            window: Duration::from_secs(3600),
        }
    }

    #[test]
    fn delay_starts_after_the_free_failures_and_doubles() {
        let policy = policy(2, 10);
        assert_eq!(policy.delay_for(1), Duration::ZERO);
        assert_eq!(policy.delay_for(2), Duration::ZERO);
        assert_eq!(policy.delay_for(3), Duration::from_millis(100));
        assert_eq!(policy.delay_for(4), Duration::from_millis(200));
        assert_eq!(policy.delay_for(5), Duration::from_millis(400));
        assert_eq!(policy.delay_for(40), MAX_DELAY);
    }

    #[tokio::test]
    async fn the_gate_closes_after_max_failures_per_client_and_per_user() {
        let limiter = FailureLimiter::new(policy(10, 3)).unwrap();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.gate(client, "alice"), Gate::Open);
            assert_eq!(
                limiter.failed(client, "alice").await,
                Verification::Rejected
            );
        }
        assert!(matches!(limiter.gate(client, "bob"), Gate::Closed { .. }));
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(matches!(limiter.gate(other, "ALICE"), Gate::Closed { .. }));
        assert_eq!(limiter.gate(other, "bob"), Gate::Open);
    }

    #[test]
    fn ipv6_clients_share_a_count_per_64() {
        let a = client_key("2001:db8:1:2::1".parse().unwrap());
        let b = client_key("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = client_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            client_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
