//! Settings the stateful policies share, each read the same way under the
//! same keys: the client network prefixes, the local domains that guard
//! relaying, and the answer to a state store failure.

use std::net::IpAddr;

use crate::config::Reader;
use crate::net;
use crate::reply::Outcome;

/// `client_prefix_v4` and `client_prefix_v6`: how much of a client's
/// address names its network, so that a site's pool of outgoing servers
/// counts as one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPrefixes {
    /// Prefix length of an IPv4 client's network (8 to 32, default 24).
    pub v4: u8,
    /// Prefix length of an IPv6 client's network (16 to 128, default 64).
    pub v6: u8,
}

impl ClientPrefixes {
    /// Reads `client_prefix_v4` and `client_prefix_v6`.
    pub fn read(reader: &mut Reader<'_>) -> Self {
        let v4 = reader.integer("client_prefix_v4", 24, 8, 32);
        let v6 = reader.integer("client_prefix_v6", 64, 16, 128);
        // The reader keeps both within their ranges, which fit a u8.
        Self {
            v4: v4 as u8,
            v6: v6 as u8,
        }
    }

    /// The network of a client in CIDR text, or "unknown" for a client whose
    /// address could not be read (all such clients count as one).
    pub fn network_of(&self, ip: Option<IpAddr>) -> String {
        ip.map_or_else(
            || "unknown".to_string(),
            |ip| net::client_network(ip, self.v4, self.v6),
        )
    }
}

/// `local_domains`: when set, recipients outside these domains are refused
/// (554 5.7.1) unless the policy exempts the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalDomains(Vec<String>);

impl LocalDomains {
    /// Reads `local_domains` (lower case, without a trailing dot).
    pub fn read(reader: &mut Reader<'_>) -> Self {
        Self(
            reader
                .text_list("local_domains")
                .iter()
                .map(|d| d.trim().trim_end_matches('.').to_lowercase())
                .collect(),
        )
    }

    /// Whether none is set, leaving relaying to the upstream.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether relaying to `recipient` is refused: domains are set and the
    /// recipient's is not one of them.
    pub fn refuses_relay_to(&self, recipient: &str) -> bool {
        !self.0.is_empty() && !net::domain_of(recipient).is_some_and(|d| self.0.contains(&d))
    }

    /// The answer to a refused relay.
    pub fn relay_denied() -> Outcome {
        Outcome::refuse(554, "5.7.1", "Relay access denied")
    }

    /// The end of a policy's summary line.
    pub fn summary(&self) -> String {
        if self.0.is_empty() {
            ", relaying left to the upstream".to_string()
        } else {
            format!(", relay only to {} local domains", self.0.len())
        }
    }
}

/// `on_state_error`: what to do when the state store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStateError {
    /// 451 4.3.0: the client retries later (fail closed, the default).
    Tempfail,
    /// Let the recipient through as if the policy were not there (fail open).
    Accept,
}

impl OnStateError {
    /// Reads `on_state_error` ("tempfail" or "accept").
    pub fn read(reader: &mut Reader<'_>) -> Self {
        match reader.choice("on_state_error", &["tempfail", "accept"]) {
            "accept" => OnStateError::Accept,
            _ => OnStateError::Tempfail,
        }
    }

    /// The answer to a recipient when the store failed.
    pub fn outcome(self) -> Outcome {
        match self {
            OnStateError::Tempfail => Outcome::state_failure(),
            OnStateError::Accept => Outcome::Accept,
        }
    }

    /// Its config value.
    pub fn name(self) -> &'static str {
        match self {
            OnStateError::Tempfail => "tempfail",
            OnStateError::Accept => "accept",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Value;

    #[test]
    fn shared_settings_have_defaults() {
        let table: Vec<(&str, Value)> = Vec::new();
        let mut reader = Reader::new(&table);
        let prefixes = ClientPrefixes::read(&mut reader);
        assert_eq!(prefixes, ClientPrefixes { v4: 24, v6: 64 });
        assert!(LocalDomains::read(&mut reader).is_empty());
        assert_eq!(OnStateError::read(&mut reader), OnStateError::Tempfail);
        reader.finish().unwrap();
        assert_eq!(prefixes.network_of(None), "unknown");
        assert_eq!(
            prefixes.network_of(Some("192.0.2.77".parse().unwrap())),
            "192.0.2.0/24"
        );
    }

    #[test]
    fn shared_settings_are_read_and_checked() {
        let table = vec![
            ("client_prefix_v4", Value::Integer(32)),
            ("client_prefix_v6", Value::Integer(8)),
            (
                "local_domains",
                Value::TextList(vec![" Example.COM. ".into()]),
            ),
            ("on_state_error", Value::Text("accept".into())),
        ];
        let mut reader = Reader::new(&table);
        let prefixes = ClientPrefixes::read(&mut reader);
        assert_eq!(prefixes, ClientPrefixes { v4: 32, v6: 64 });
        let local = LocalDomains::read(&mut reader);
        assert!(!local.refuses_relay_to("<joe@example.com>"));
        assert!(local.refuses_relay_to("joe@example.net"));
        assert!(local.refuses_relay_to("postmaster"));
        assert_eq!(local.summary(), ", relay only to 1 local domains");
        let on_error = OnStateError::read(&mut reader);
        assert_eq!(on_error.outcome(), Outcome::Accept);
        let problems = reader.finish().unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("client_prefix_v6:"));
        assert!(!LocalDomains::default().refuses_relay_to("joe@example.net"));
    }
}
