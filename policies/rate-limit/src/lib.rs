//! Rate limits for relaygate: recipients per authenticated user, per sender
//! address and per client network over a fixed window, the classic defence
//! against a compromised account or a runaway script sending through the
//! proxy. Every RCPT TO counts once against each counter that applies; when
//! any counter is over its limit the recipient is refused with the
//! configured reply (451 4.7.1 by default).
//!
//! It only counts: which recipients a client may relay to is the relay
//! rules' job, so a site stacks it after them in a policy chain (README.md,
//! "Policy chains"), e.g. `builtin:apple-relay` then `rate-limit`, and the
//! relay refusal comes before anything is counted.
//!
//! Counters live in relaygate's store (the WIT `state` interface) and are
//! created by an atomic increment with a time to live of `window_secs`, so
//! several proxies sharing one Redis server count together, and no clock is
//! needed.
//!
//! [`RateLimit`] is the policy as the kit's component glue sees it;
//! `component` (wasm32 only) expands that glue.

use kit::config::{ConfigSource, Reader};
use kit::net::{self, IpNetwork};
use kit::reply::{Outcome, check_reply};
use kit::settings::{ClientPrefixes, OnStateError};
use kit::stateful::{Level, LogLine, PolicySettings, StatefulPolicy, Transaction};
use kit::store::{Store, StoreError};

#[cfg(target_arch = "wasm32")]
mod component;

/// The `[policy.config]` of the rate-limit policy, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Length of a counting window in seconds.
    pub window_secs: u64,
    /// Recipients per authenticated user per window; 0: no limit.
    pub max_per_user: i64,
    /// Recipients per sender address per window; 0: no limit.
    pub max_per_sender: i64,
    /// Recipients per client network per window; 0: no limit.
    pub max_per_network: i64,
    /// How much of the client's address names its network.
    pub client_prefixes: ClientPrefixes,
    /// Clients that are never counted.
    pub exempt_networks: Vec<IpNetwork>,
    /// The reply's code (4xx: tempfail, 5xx: reject).
    pub reply_code: u16,
    /// The reply's enhanced status.
    pub reply_status: String,
    /// The reply's text.
    pub reply_text: String,
    /// Answer to a state store failure.
    pub on_state_error: OnStateError,
}

/// What `local_domains`, read by earlier versions, now is.
const LOCAL_DOMAINS_MOVED: &str = "relaying is decided by the relay rules: ask builtin:apple-relay (with its local_domains) before rate-limit in a [[chain]] (README.md, \"Policy chains\")";

impl PolicySettings for Settings {
    /// Read and check the configuration; every problem names its key.
    fn parse(source: &dyn ConfigSource) -> Result<Self, Vec<String>> {
        let mut reader = Reader::new(source);
        let window_secs = reader.integer("window_secs", 3600, 1, 7 * 24 * 3600);
        let max_per_user = reader.integer("max_per_user", 500, 0, i64::from(u32::MAX));
        let max_per_sender = reader.integer("max_per_sender", 200, 0, i64::from(u32::MAX));
        let max_per_network = reader.integer("max_per_network", 1000, 0, i64::from(u32::MAX));
        if max_per_user == 0 && max_per_sender == 0 && max_per_network == 0 {
            reader.problem(
                "max_per_user",
                "every limit is 0 (off): set at least one of max_per_user, max_per_sender, max_per_network",
            );
        }
        let client_prefixes = ClientPrefixes::read(&mut reader);
        let exempt_networks = reader.networks("exempt_networks");
        let reply_code = reader.integer("reply_code", 451, 400, 599);
        let reply_status = reader.text(
            "reply_status",
            if reply_code >= 500 { "5.7.1" } else { "4.7.1" },
        );
        let reply_text = reader.text("reply_text", "Too many recipients, please try again later");
        if let Err(why) = check_reply(reply_code, &reply_status, &reply_text) {
            reader.problem("reply_code", why);
        }
        let on_state_error = OnStateError::read(&mut reader);
        reader.removed("local_domains", LOCAL_DOMAINS_MOVED);
        reader.finish()?;
        Ok(Self {
            window_secs: window_secs as u64,
            max_per_user,
            max_per_sender,
            max_per_network,
            client_prefixes,
            exempt_networks,
            reply_code: reply_code as u16,
            reply_status,
            reply_text,
            on_state_error,
        })
    }

    /// One line for the admin.
    fn summary(&self) -> String {
        let limit = |n: i64| {
            if n == 0 {
                "off".to_string()
            } else {
                n.to_string()
            }
        };
        format!(
            "rate limit per {}s: user {}, sender {}, network (/{}, /{}) {}; {} exempt networks; over the limit: {} {}; state errors {}",
            self.window_secs,
            limit(self.max_per_user),
            limit(self.max_per_sender),
            self.client_prefixes.v4,
            self.client_prefixes.v6,
            limit(self.max_per_network),
            self.exempt_networks.len(),
            self.reply_code,
            self.reply_status,
            self.on_state_error.name(),
        )
    }

    /// Always: this policy never refuses relaying by itself. A chain that
    /// asks relay rules too is judged by them (an open relay only when every
    /// enforcing module of the chain is one).
    fn is_open_relay(&self) -> bool {
        true
    }
}

/// Which counter, for the policy's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Per authenticated user.
    User,
    /// Per sender address.
    Sender,
    /// Per client network.
    Network,
}

/// Why the recipient was answered as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// An exempt network: not counted.
    Exempt,
    /// Every counter within its limit.
    Within,
    /// This counter went over its limit, with the count reached.
    Over(Counter, i64),
    /// The store failed.
    StoreFailed(StoreError),
}

/// Count one recipient of `transaction` and decide.
pub fn count_recipient(
    settings: &Settings,
    store: &dyn Store,
    transaction: &Transaction<'_>,
) -> (Outcome, Reason) {
    let exempt = transaction
        .ip
        .is_some_and(|ip| net::contains(&settings.exempt_networks, ip));
    if exempt {
        return (Outcome::Accept, Reason::Exempt);
    }
    match count(settings, store, transaction) {
        Ok(None) => (Outcome::Accept, Reason::Within),
        Ok(Some((counter, reached))) => (
            Outcome::refuse(
                settings.reply_code,
                &settings.reply_status,
                &settings.reply_text,
            ),
            Reason::Over(counter, reached),
        ),
        Err(error) => (
            settings.on_state_error.outcome(),
            Reason::StoreFailed(error),
        ),
    }
}

/// The rate-limit policy, for the kit's component glue.
pub struct RateLimit;

impl StatefulPolicy for RateLimit {
    const NAME: &'static str = "rate-limit";
    type Settings = Settings;

    fn rcpt_to(
        settings: &Settings,
        store: &dyn Store,
        transaction: &Transaction<'_>,
        _recipient: &str,
    ) -> (Outcome, LogLine) {
        let (outcome, reason) = count_recipient(settings, store, transaction);
        let line = match &reason {
            Reason::StoreFailed(error) => LogLine::state_failed("rate-limit", error),
            Reason::Over(counter, reached) => LogLine::new(
                Level::Warn,
                format!(
                    "rate limit: {counter:?} counter at {reached} (client {}, user {:?}, sender <{}>)",
                    transaction.client_ip, transaction.auth_user, transaction.sender
                ),
            ),
            _ => LogLine::new(Level::Debug, format!("rate limit: {reason:?}")),
        };
        (outcome, line)
    }
}

/// Increment every counter that applies; the first one over its limit.
fn count(
    settings: &Settings,
    store: &dyn Store,
    transaction: &Transaction<'_>,
) -> Result<Option<(Counter, i64)>, StoreError> {
    let mut counters = Vec::with_capacity(3);
    if let Some(user) = transaction.auth_user
        && settings.max_per_user > 0
    {
        counters.push((
            Counter::User,
            kit::state_key("user", &kit::normalise_address(user)),
            settings.max_per_user,
        ));
    }
    let address = kit::normalise_address(transaction.sender);
    if !address.is_empty() && settings.max_per_sender > 0 {
        counters.push((
            Counter::Sender,
            kit::state_key("sender", &address),
            settings.max_per_sender,
        ));
    }
    if settings.max_per_network > 0 {
        let network = settings.client_prefixes.network_of(transaction.ip);
        counters.push((
            Counter::Network,
            kit::state_key("net", &network),
            settings.max_per_network,
        ));
    }
    let window_ms = settings.window_secs * 1000;
    let mut over = None;
    for (counter, key, limit) in counters {
        let reached = store.increment(&key, 1, window_ms)?;
        if reached > limit && over.is_none() {
            over = Some((counter, reached));
        }
    }
    Ok(over)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::config::Value;
    use kit::store::MemoryStore;

    fn settings(extra: Vec<(&str, Value)>) -> Settings {
        let mut table = vec![
            ("window_secs", Value::Integer(60)),
            ("max_per_user", Value::Integer(3)),
            ("max_per_sender", Value::Integer(5)),
            ("max_per_network", Value::Integer(10)),
        ];
        for (key, value) in extra {
            table.retain(|(k, _)| *k != key);
            table.push((key, value));
        }
        Settings::parse(&table).expect("valid settings")
    }

    fn user(name: &'static str, address: &'static str) -> Transaction<'static> {
        Transaction::new("192.0.2.7", Some(name), address)
    }

    #[test]
    fn a_user_over_the_limit_is_refused_until_the_window_ends() {
        let settings = settings(vec![]);
        let store = MemoryStore::new();
        // Changing the sender address does not escape the per-user limit.
        let senders = ["a@x.org", "b@x.org", "c@x.org", "d@x.org"];
        for (n, address) in senders.iter().enumerate() {
            let who = user("joe", address);
            let (outcome, reason) = count_recipient(&settings, &store, &who);
            if n < 3 {
                assert_eq!(outcome, Outcome::Accept, "{n}");
            } else {
                assert_eq!(reason, Reason::Over(Counter::User, 4));
                assert!(
                    matches!(&outcome, Outcome::Tempfail(r) if r.code == 451 && r.status == "4.7.1")
                );
            }
        }
        // Another user is not affected; JOE is joe.
        assert!(
            count_recipient(&settings, &store, &user("ann", "e@x.org"))
                .0
                .is_accept()
        );
        assert!(
            !count_recipient(&settings, &store, &user("JOE", "f@x.org"))
                .0
                .is_accept()
        );
        store.advance_ms(60_001);
        assert!(
            count_recipient(&settings, &store, &user("joe", "a@x.org"))
                .0
                .is_accept()
        );
    }

    #[test]
    fn senders_and_networks_are_counted_without_auth() {
        let settings = settings(vec![]);
        let store = MemoryStore::new();
        let anonymous =
            |ip: &'static str, address: &'static str| Transaction::new(ip, None, address);
        for _ in 0..5 {
            assert!(
                count_recipient(&settings, &store, &anonymous("192.0.2.1", "s@x.org"))
                    .0
                    .is_accept()
            );
        }
        let (_, reason) = count_recipient(&settings, &store, &anonymous("198.51.100.1", "S@X.org"));
        assert_eq!(reason, Reason::Over(Counter::Sender, 6));
        // The network counter: 5 + 5 more from the same /24 with other senders.
        for sender in ["1@x.org", "2@x.org", "3@x.org", "4@x.org", "5@x.org"] {
            assert!(
                count_recipient(&settings, &store, &anonymous("192.0.2.200", sender))
                    .0
                    .is_accept()
            );
        }
        let (_, reason) = count_recipient(&settings, &store, &anonymous("192.0.2.9", "6@x.org"));
        assert_eq!(reason, Reason::Over(Counter::Network, 11));
        // The null sender is not a sender counter.
        let (_, reason) = count_recipient(&settings, &store, &anonymous("203.0.113.1", ""));
        assert_eq!(reason, Reason::Within);
        assert!(!store.keys().iter().any(|k| k == "sender:"));
    }

    #[test]
    fn exempt_networks_are_not_counted_and_replies_are_configurable() {
        let settings = settings(vec![
            (
                "exempt_networks",
                Value::TextList(vec!["10.0.0.0/8".into()]),
            ),
            ("max_per_sender", Value::Integer(1)),
            ("reply_code", Value::Integer(550)),
            ("reply_text", Value::Text("Sending limit reached".into())),
        ]);
        let store = MemoryStore::new();
        let inside = Transaction::new("10.1.1.1", None, "s@x.org");
        for _ in 0..5 {
            assert_eq!(
                count_recipient(&settings, &store, &inside).1,
                Reason::Exempt
            );
        }
        assert!(store.keys().is_empty());
        let outside = Transaction::new("192.0.2.1", None, "s@x.org");
        assert!(count_recipient(&settings, &store, &outside).0.is_accept());
        let (outcome, _) = count_recipient(&settings, &store, &outside);
        assert!(
            matches!(outcome, Outcome::Reject(r) if r.code == 550 && r.status == "5.7.1" && r.text == "Sending limit reached")
        );
    }

    #[test]
    fn store_failures_tempfail_or_accept_as_configured() {
        let store = MemoryStore::new();
        store.set_down(true);
        let who = user("joe", "a@x.org");
        let (outcome, reason) = count_recipient(&settings(vec![]), &store, &who);
        assert!(matches!(&outcome, Outcome::Tempfail(r) if r.status == "4.3.0"));
        assert!(matches!(
            reason,
            Reason::StoreFailed(StoreError::Unavailable(_))
        ));
        let open = settings(vec![("on_state_error", Value::Text("accept".into()))]);
        assert!(count_recipient(&open, &store, &who).0.is_accept());
    }

    #[test]
    fn the_component_logs_each_answer() {
        let settings = settings(vec![]);
        let store = MemoryStore::new();
        let transaction = user("joe", "a@x.org");
        let ask = || RateLimit::rcpt_to(&settings, &store, &transaction, "r@y.com");
        for _ in 0..3 {
            assert_eq!(ask().1, LogLine::new(Level::Debug, "rate limit: Within"));
        }
        let (outcome, line) = ask();
        assert!(!outcome.is_accept());
        assert_eq!(
            line,
            LogLine::new(
                Level::Warn,
                "rate limit: User counter at 4 (client 192.0.2.7, user Some(\"joe\"), sender <a@x.org>)"
            )
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let table = vec![
            ("max_per_user", Value::Integer(0)),
            ("max_per_sender", Value::Integer(0)),
            ("max_per_network", Value::Integer(0)),
            ("reply_code", Value::Integer(451)),
            ("reply_status", Value::Text("5.7.1".into())),
            ("windw_secs", Value::Integer(5)),
        ];
        let problems = Settings::parse(&table).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("max_per_user: every limit is 0"));
        assert!(problems[1].starts_with("reply_code:"));
        assert!(problems[2].starts_with("windw_secs: unknown key"));
    }

    #[test]
    fn local_domains_is_refused_with_what_to_do_instead() {
        let problems = Settings::parse(&vec![(
            "local_domains",
            Value::TextList(vec!["example.com".into()]),
        )])
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("local_domains: no longer read by this policy")
                && problems[0].contains("builtin:apple-relay"),
            "{problems:?}"
        );
        assert!(settings(vec![]).is_open_relay());
    }
}
