//! Greylisting for relaygate: the first attempt to deliver mail from a client
//! network, for a sender, to a recipient (the "triplet") is refused for now
//! (451 4.7.1); a retry after `delay_secs` and within `retry_window_secs` is
//! accepted, and the triplet is then let through without delay for
//! `expiry_secs` after each use. Real mail servers retry; much spam software
//! does not.
//!
//! The state lives in relaygate's store (the WIT `state` interface), so
//! several proxies sharing one Redis server enforce one greylist. No clock is
//! needed: three keys with times to live say everything.
//!
//! - `hold:T` (TTL `delay_secs`): too early to retry.
//! - `seen:T` (TTL `retry_window_secs`): first attempt made, retry expected.
//! - `pass:T` (TTL `expiry_secs`, renewed on use): retried in time, accepted.
//!
//! [`Greylist`] is the policy as the kit's component glue sees it;
//! `component` (wasm32 only) expands that glue.

use kit::config::{ConfigSource, Reader};
use kit::net;
use kit::reply::{Outcome, check_reply};
use kit::settings::{ClientPrefixes, LocalDomains, OnStateError};
use kit::stateful::{Level, LogLine, PolicySettings, StatefulPolicy, Transaction};
use kit::store::{Store, StoreError};
use std::net::IpAddr;

#[cfg(target_arch = "wasm32")]
mod component;

/// The `[policy.config]` of the greylisting policy, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seconds a new triplet must wait before a retry is accepted.
    pub delay_secs: u64,
    /// Seconds after the first attempt within which the retry must come.
    pub retry_window_secs: u64,
    /// Seconds a passed triplet stays known after its last use.
    pub expiry_secs: u64,
    /// How much of the client's address names its network in the triplet.
    pub client_prefixes: ClientPrefixes,
    /// Clients never greylisted.
    pub known_good_networks: Vec<kit::net::IpNetwork>,
    /// Authenticated clients are not greylisted.
    pub skip_authenticated: bool,
    /// Answer to a state store failure.
    pub on_state_error: OnStateError,
    /// Text of the greylisting reply.
    pub reply_text: String,
    /// When set, recipients outside these domains are refused (554 5.7.1)
    /// unless the client is known-good or authenticated.
    pub local_domains: LocalDomains,
}

impl PolicySettings for Settings {
    /// Read and check the configuration; every problem names its key.
    fn parse(source: &dyn ConfigSource) -> Result<Self, Vec<String>> {
        const DAY: i64 = 24 * 3600;
        let mut reader = Reader::new(source);
        let delay_secs = reader.integer("delay_secs", 300, 1, DAY);
        let retry_window_secs = reader.integer("retry_window_secs", 4 * 3600, 1, 30 * DAY);
        let expiry_secs = reader.integer("expiry_secs", 36 * DAY, 1, 366 * DAY);
        if retry_window_secs <= delay_secs {
            reader.problem(
                "retry_window_secs",
                format!("must be longer than delay_secs ({delay_secs})"),
            );
        }
        let client_prefixes = ClientPrefixes::read(&mut reader);
        let known_good_networks = reader.networks("known_good_networks");
        let skip_authenticated = reader.boolean("skip_authenticated", true);
        let on_state_error = OnStateError::read(&mut reader);
        let reply_text = reader.text(
            "reply_text",
            "Greylisted: this is normal for a first delivery, please try again later",
        );
        if let Err(why) = check_reply(451, "4.7.1", &reply_text) {
            reader.problem("reply_text", why);
        }
        let local_domains = LocalDomains::read(&mut reader);
        reader.finish()?;
        Ok(Self {
            delay_secs: delay_secs as u64,
            retry_window_secs: retry_window_secs as u64,
            expiry_secs: expiry_secs as u64,
            client_prefixes,
            known_good_networks,
            skip_authenticated,
            on_state_error,
            reply_text,
            local_domains,
        })
    }

    /// One line for the admin.
    fn summary(&self) -> String {
        format!(
            "greylisting (client /{}, /{}): delay {}s, retry window {}s, expiry {}s, {} known-good networks{}, state errors {}{}",
            self.client_prefixes.v4,
            self.client_prefixes.v6,
            self.delay_secs,
            self.retry_window_secs,
            self.expiry_secs,
            self.known_good_networks.len(),
            if self.skip_authenticated {
                ", authenticated clients skip it"
            } else {
                ""
            },
            self.on_state_error.name(),
            self.local_domains.summary(),
        )
    }

    /// Whether, as configured, any client may relay to any domain.
    fn is_open_relay(&self) -> bool {
        self.local_domains.is_empty()
    }
}

/// The client as the rcpt-to hook sees it.
#[derive(Debug, Clone)]
pub struct Client<'a> {
    /// Its address (none when unreadable: greylisted by "unknown").
    pub ip: Option<IpAddr>,
    /// Its authenticated identity.
    pub auth_user: Option<&'a str>,
}

/// Why a recipient was or was not greylisted, for the policy's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Known-good network or authenticated client.
    Exempt,
    /// Relay refused: not a local domain.
    NotLocal,
    /// The triplet passed earlier.
    Known,
    /// First attempt: now on hold.
    New,
    /// Retried before the delay was over.
    TooEarly,
    /// Retried in time: passed now.
    Passed,
    /// The store failed.
    StoreFailed(StoreError),
}

/// Decide on one recipient.
pub fn rcpt_to(
    settings: &Settings,
    store: &dyn Store,
    client: &Client<'_>,
    sender: &str,
    recipient: &str,
) -> (Outcome, Reason) {
    let known_good = client
        .ip
        .is_some_and(|ip| net::contains(&settings.known_good_networks, ip));
    let authenticated = client.auth_user.is_some();
    if !known_good && !authenticated && settings.local_domains.refuses_relay_to(recipient) {
        return (LocalDomains::relay_denied(), Reason::NotLocal);
    }
    if known_good || (authenticated && settings.skip_authenticated) {
        return (Outcome::Accept, Reason::Exempt);
    }
    let network = settings.client_prefixes.network_of(client.ip);
    let triplet = format!(
        "{network}/{}/{}",
        kit::normalise_address(sender),
        kit::normalise_address(recipient)
    );
    match greylist(settings, store, &triplet) {
        Ok(reason @ (Reason::Known | Reason::Passed)) => (Outcome::Accept, reason),
        Ok(reason) => (Outcome::refuse(451, "4.7.1", &settings.reply_text), reason),
        Err(error) => (
            settings.on_state_error.outcome(),
            Reason::StoreFailed(error),
        ),
    }
}

/// The greylisting policy, for the kit's component glue.
pub struct Greylist;

impl StatefulPolicy for Greylist {
    const NAME: &'static str = "greylist";
    type Settings = Settings;

    fn rcpt_to(
        settings: &Settings,
        store: &dyn Store,
        transaction: &Transaction<'_>,
        recipient: &str,
    ) -> (Outcome, LogLine) {
        let client = Client {
            ip: transaction.ip,
            auth_user: transaction.auth_user,
        };
        let sender = transaction.sender;
        let (outcome, reason) = rcpt_to(settings, store, &client, sender, recipient);
        let line = match &reason {
            Reason::StoreFailed(error) => LogLine::state_failed("greylisting", error),
            Reason::New | Reason::TooEarly => LogLine::new(
                Level::Info,
                format!(
                    "greylisted {} from <{sender}> to <{recipient}> ({reason:?})",
                    transaction.client_ip
                ),
            ),
            _ => LogLine::new(Level::Debug, format!("greylisting: {reason:?}")),
        };
        (outcome, line)
    }
}

const SECOND_MS: u64 = 1000;

fn greylist(settings: &Settings, store: &dyn Store, triplet: &str) -> Result<Reason, StoreError> {
    let pass = kit::state_key("pass", triplet);
    let expiry_ms = settings.expiry_secs * SECOND_MS;
    if store.get(&pass)?.is_some() {
        store.set(&pass, b"1", expiry_ms)?;
        return Ok(Reason::Known);
    }
    let seen = kit::state_key("seen", triplet);
    let hold = kit::state_key("hold", triplet);
    if store.get(&seen)?.is_some() {
        if store.get(&hold)?.is_some() {
            return Ok(Reason::TooEarly);
        }
        store.set(&pass, b"1", expiry_ms)?;
        store.delete(&seen)?;
        return Ok(Reason::Passed);
    }
    // The hold goes first: whoever sees `seen` also sees the hold until the
    // delay is over, even when another proxy is between the two writes.
    store.set(&hold, b"1", settings.delay_secs * SECOND_MS)?;
    store.set(&seen, b"1", settings.retry_window_secs * SECOND_MS)?;
    Ok(Reason::New)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::config::Value;
    use kit::store::MemoryStore;

    fn settings(extra: Vec<(&str, Value)>) -> Settings {
        let mut table = vec![
            ("delay_secs", Value::Integer(60)),
            ("retry_window_secs", Value::Integer(3600)),
            ("expiry_secs", Value::Integer(86400)),
        ];
        table.extend(extra);
        Settings::parse(&table).expect("valid settings")
    }

    fn from(ip: &str) -> Client<'static> {
        Client {
            ip: Some(ip.parse().unwrap()),
            auth_user: None,
        }
    }

    #[test]
    fn first_attempt_waits_then_passes_then_is_known() {
        let settings = settings(vec![]);
        let store = MemoryStore::new();
        let client = from("192.0.2.10");
        let ask = || rcpt_to(&settings, &store, &client, "a@example.org", "b@example.com");
        let (outcome, reason) = ask();
        assert_eq!(reason, Reason::New);
        assert!(matches!(&outcome, Outcome::Tempfail(r) if r.code == 451 && r.status == "4.7.1"));
        store.advance_ms(30_000);
        assert_eq!(ask().1, Reason::TooEarly);
        store.advance_ms(31_000);
        assert_eq!(ask(), (Outcome::Accept, Reason::Passed));
        assert_eq!(ask(), (Outcome::Accept, Reason::Known));
        // Another host of the same /24 shares the triplet.
        let neighbour = from("192.0.2.99");
        let (outcome, _) = rcpt_to(
            &settings,
            &store,
            &neighbour,
            "A@example.org",
            "b@example.com",
        );
        assert!(outcome.is_accept());
        // Another network does not.
        let other = from("198.51.100.1");
        let (_, reason) = rcpt_to(&settings, &store, &other, "a@example.org", "b@example.com");
        assert_eq!(reason, Reason::New);
    }

    #[test]
    fn a_retry_after_the_window_starts_over_and_passes_expire() {
        let settings = settings(vec![]);
        let store = MemoryStore::new();
        let client = from("192.0.2.10");
        let ask = || rcpt_to(&settings, &store, &client, "a@example.org", "b@example.com").1;
        assert_eq!(ask(), Reason::New);
        store.advance_ms(3_601_000);
        assert_eq!(ask(), Reason::New);
        store.advance_ms(61_000);
        assert_eq!(ask(), Reason::Passed);
        // Use renews the pass; a day of silence ends it.
        store.advance_ms(80_000_000);
        assert_eq!(ask(), Reason::Known);
        store.advance_ms(86_401_000);
        assert_eq!(ask(), Reason::New);
    }

    #[test]
    fn known_good_and_authenticated_clients_skip_it() {
        let settings = settings(vec![(
            "known_good_networks",
            Value::TextList(vec!["10.0.0.0/8".into()]),
        )]);
        let store = MemoryStore::new();
        let (outcome, reason) = rcpt_to(&settings, &store, &from("10.1.2.3"), "a@x.org", "b@y.com");
        assert_eq!((outcome, reason), (Outcome::Accept, Reason::Exempt));
        let user = Client {
            ip: Some("192.0.2.1".parse().unwrap()),
            auth_user: Some("joe"),
        };
        assert_eq!(
            rcpt_to(&settings, &store, &user, "a@x.org", "b@y.com").1,
            Reason::Exempt
        );
        assert!(store.keys().is_empty());
        let strict = super::tests::settings(vec![("skip_authenticated", Value::Boolean(false))]);
        assert_eq!(
            rcpt_to(&strict, &store, &user, "a@x.org", "b@y.com").1,
            Reason::New
        );
    }

    #[test]
    fn store_failures_tempfail_or_accept_as_configured() {
        let store = MemoryStore::new();
        store.set_down(true);
        let closed = settings(vec![]);
        let (outcome, reason) = rcpt_to(&closed, &store, &from("192.0.2.1"), "a@x.org", "b@y.com");
        assert!(matches!(&outcome, Outcome::Tempfail(r) if r.status == "4.3.0"));
        assert!(matches!(reason, Reason::StoreFailed(_)));
        let open = settings(vec![("on_state_error", Value::Text("accept".into()))]);
        let (outcome, _) = rcpt_to(&open, &store, &from("192.0.2.1"), "a@x.org", "b@y.com");
        assert!(outcome.is_accept());
    }

    #[test]
    fn local_domains_guard_relaying() {
        let settings = settings(vec![(
            "local_domains",
            Value::TextList(vec!["Example.com".into()]),
        )]);
        assert!(!settings.is_open_relay());
        let store = MemoryStore::new();
        let (outcome, reason) = rcpt_to(
            &settings,
            &store,
            &from("192.0.2.1"),
            "a@x.org",
            "b@elsewhere.net",
        );
        assert_eq!(reason, Reason::NotLocal);
        assert!(matches!(outcome, Outcome::Reject(r) if r.code == 554));
        let (_, reason) = rcpt_to(
            &settings,
            &store,
            &from("192.0.2.1"),
            "a@x.org",
            "b@EXAMPLE.com",
        );
        assert_eq!(reason, Reason::New);
    }

    #[test]
    fn long_addresses_keep_keys_short() {
        let settings = settings(vec![]);
        let store = MemoryStore::new();
        let long = format!("{}@example.org", "x".repeat(240));
        rcpt_to(&settings, &store, &from("192.0.2.1"), &long, &long);
        assert!(
            store.keys().iter().all(|k| k.len() <= kit::MAX_PLAIN_KEY),
            "{:?}",
            store.keys()
        );
    }

    #[test]
    fn the_component_logs_each_answer() {
        let settings = settings(vec![]);
        let store = MemoryStore::new();
        let transaction = Transaction::new("192.0.2.10", None, "a@x.org");
        let ask = || Greylist::rcpt_to(&settings, &store, &transaction, "b@y.com");
        let (outcome, line) = ask();
        assert!(!outcome.is_accept());
        assert_eq!(
            line,
            LogLine::new(
                Level::Info,
                "greylisted 192.0.2.10 from <a@x.org> to <b@y.com> (New)"
            )
        );
        store.advance_ms(61_000);
        assert_eq!(ask().1, LogLine::new(Level::Debug, "greylisting: Passed"));
        store.set_down(true);
        assert_eq!(ask().1.level, Level::Warn);
    }

    #[test]
    fn bad_settings_are_named() {
        let table = vec![
            ("delay_secs", Value::Integer(600)),
            ("retry_window_secs", Value::Integer(300)),
            ("on_state_error", Value::Text("maybe".into())),
            ("known_good_networks", Value::TextList(vec!["x".into()])),
            ("reply_text", Value::Text("a\nb".into())),
        ];
        let problems = Settings::parse(&table).unwrap_err();
        for key in [
            "retry_window_secs",
            "on_state_error",
            "known_good_networks",
            "reply_text",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key}: {problems:?}"
            );
        }
    }
}
