//! The decision at RCPT TO: the README's decision table, as one function.

use std::net::IpAddr;

use crate::address::Locality;
use crate::config::Settings;

/// What the policy knows about the client when a recipient arrives.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client<'a> {
    /// The client's address; none when the host's text could not be read
    /// (the client then cannot match an address entry).
    pub ip: Option<IpAddr>,
    /// The client's reverse-DNS name confirmed by a forward lookup.
    pub confirmed_name: Option<&'a str>,
    /// True when the client has authenticated with SMTP AUTH.
    pub authenticated: bool,
}

/// An SMTP reply for a refused recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code.
    pub code: u16,
    /// RFC 3463 enhanced status code.
    pub enhanced_status: &'static str,
    /// Text after the codes.
    pub text: &'static str,
}

/// The outcome for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let RCPT TO through to the upstream.
    Accept,
    /// Restricted relay: an unlisted client asked for a non-local recipient.
    RelayDenied,
    /// SMTP AUTH is on and the client is neither authenticated nor listed.
    AuthRequired,
}

/// The reply for [`Decision::RelayDenied`], in the wording admins grep for.
pub const RELAY_DENIED: Reply = Reply {
    code: 554,
    enhanced_status: "5.7.1",
    text: "Relay access denied",
};

/// The reply for [`Decision::AuthRequired`], as RFC 4954 words it.
pub const AUTH_REQUIRED: Reply = Reply {
    code: 530,
    enhanced_status: "5.7.0",
    text: "Authentication required",
};

impl Decision {
    /// The reply to give, or none for [`Decision::Accept`].
    pub fn reply(self) -> Option<Reply> {
        match self {
            Self::Accept => None,
            Self::RelayDenied => Some(RELAY_DENIED),
            Self::AuthRequired => Some(AUTH_REQUIRED),
        }
    }
}

/// Decides RCPT TO for `recipient` (as the client wrote it, without angle
/// brackets) from `client` under `settings`.
pub fn rcpt_to(settings: &Settings, client: &Client<'_>, recipient: &str) -> Decision {
    decide(settings, client, || {
        settings.local_domains.classify(recipient)
    })
}

/// The table itself; `locality` is only worked out when the table needs it.
fn decide(
    settings: &Settings,
    client: &Client<'_>,
    locality: impl FnOnce() -> Locality,
) -> Decision {
    if settings.is_open_relay() {
        return Decision::Accept;
    }
    let listed = settings.restricted_relay
        && settings
            .relay_list
            .matches(client.ip, client.confirmed_name);
    if settings.smtp_auth {
        if client.authenticated || listed {
            Decision::Accept
        } else {
            Decision::AuthRequired
        }
    } else if listed || locality().is_local() {
        Decision::Accept
    } else {
        Decision::RelayDenied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{Table, list};
    use crate::config::{AUTH_KEY, LOCAL_DOMAINS_KEY, RELAY_LIST_KEY, RESTRICTED_RELAY_KEY, Value};

    fn settings(restricted: bool, auth: bool) -> Settings {
        Settings::parse(&Table::new(&[
            (RESTRICTED_RELAY_KEY, Value::Boolean(restricted)),
            (AUTH_KEY, Value::Boolean(auth)),
            (
                RELAY_LIST_KEY,
                list(&["192.168.1.0/24", "2001:db8::/32", "gw.example.net"]),
            ),
            (LOCAL_DOMAINS_KEY, list(&["example.com"])),
        ]))
        .unwrap()
    }

    const LISTED_IP: &str = "192.168.1.20";
    const UNLISTED_IP: &str = "203.0.113.9";
    const LOCAL: &str = "user@example.com";
    const REMOTE: &str = "user@example.org";

    fn client(ip: &str, authenticated: bool) -> Client<'static> {
        Client {
            ip: Some(ip.parse().unwrap()),
            confirmed_name: None,
            authenticated,
        }
    }

    /// Every row of the README's decision table, for both recipient columns.
    #[test]
    fn decision_table() {
        use Decision::*;
        // restricted, auth, listed, authenticated, local rcpt, remote rcpt
        let rows = [
            (false, false, false, false, Accept, Accept),
            (false, false, true, false, Accept, Accept),
            (true, false, true, false, Accept, Accept),
            (true, false, false, false, Accept, RelayDenied),
            (true, true, true, false, Accept, Accept),
            (true, true, true, true, Accept, Accept),
            (true, true, false, true, Accept, Accept),
            (true, true, false, false, AuthRequired, AuthRequired),
            (false, true, false, true, Accept, Accept),
            (false, true, true, true, Accept, Accept),
            (false, true, false, false, AuthRequired, AuthRequired),
            // With restricted relay off the list means nothing, even for listed clients.
            (false, true, true, false, AuthRequired, AuthRequired),
        ];
        for (restricted, auth, listed, authenticated, local, remote) in rows {
            let settings = settings(restricted, auth);
            let ip = if listed { LISTED_IP } else { UNLISTED_IP };
            let client = client(ip, authenticated);
            let row = format!(
                "restricted {restricted}, auth {auth}, listed {listed}, authenticated {authenticated}"
            );
            assert_eq!(rcpt_to(&settings, &client, LOCAL), local, "{row}, local");
            assert_eq!(rcpt_to(&settings, &client, REMOTE), remote, "{row}, remote");
        }
    }

    #[test]
    fn replies() {
        assert_eq!(Decision::Accept.reply(), None);
        let relay = Decision::RelayDenied.reply().unwrap();
        assert_eq!((relay.code, relay.enhanced_status), (554, "5.7.1"));
        let auth = Decision::AuthRequired.reply().unwrap();
        assert_eq!((auth.code, auth.enhanced_status), (530, "5.7.0"));
        for reply in [relay, auth] {
            assert!(reply.text.bytes().all(|b| (b' '..=b'~').contains(&b)));
        }
    }

    #[test]
    fn routing_tricks_are_relay() {
        let settings = settings(true, false);
        let outsider = client(UNLISTED_IP, false);
        for recipient in [
            "@example.com:user@example.org",
            "user%example.org@example.com",
            "example.org!user@example.com",
            "user@example.org@example.com",
            "\"user@example.org\"@example.com",
            "\"user%example.org\"@example.com",
            "user@[192.0.2.1]",
            "user@example.com..",
            "",
        ] {
            assert_eq!(
                rcpt_to(&settings, &outsider, recipient),
                Decision::RelayDenied,
                "recipient {recipient:?}"
            );
        }
        // A listed client may route as it likes: it may relay anyway.
        let insider = client(LISTED_IP, false);
        assert_eq!(
            rcpt_to(&settings, &insider, "user%example.org@example.com"),
            Decision::Accept
        );
    }

    #[test]
    fn postmaster_and_case_are_local() {
        let settings = settings(true, false);
        let outsider = client(UNLISTED_IP, false);
        for recipient in [
            "postmaster",
            "PostMaster",
            "USER@EXAMPLE.COM",
            "user@example.com.",
        ] {
            assert_eq!(
                rcpt_to(&settings, &outsider, recipient),
                Decision::Accept,
                "{recipient}"
            );
        }
    }

    #[test]
    fn listed_by_name_ipv6_and_mapped_address() {
        let settings = settings(true, false);
        let by_name = Client {
            ip: Some(UNLISTED_IP.parse().unwrap()),
            confirmed_name: Some("relay.gw.example.net"),
            authenticated: false,
        };
        assert_eq!(rcpt_to(&settings, &by_name, REMOTE), Decision::Accept);
        let wrong_name = Client {
            confirmed_name: Some("gw.example.net.evil.test"),
            ..by_name
        };
        assert_eq!(
            rcpt_to(&settings, &wrong_name, REMOTE),
            Decision::RelayDenied
        );
        assert_eq!(
            rcpt_to(&settings, &client("2001:db8:5::1", false), REMOTE),
            Decision::Accept
        );
        assert_eq!(
            rcpt_to(&settings, &client("2001:db9::1", false), REMOTE),
            Decision::RelayDenied
        );
        assert_eq!(
            rcpt_to(&settings, &client("::ffff:192.168.1.20", false), REMOTE),
            Decision::Accept
        );
        let no_ip = Client::default();
        assert_eq!(rcpt_to(&settings, &no_ip, REMOTE), Decision::RelayDenied);
        assert_eq!(rcpt_to(&settings, &no_ip, LOCAL), Decision::Accept);
    }

    #[test]
    fn blank_list_relays_for_own_networks() {
        let settings = Settings::parse(&Table::new(&[
            (RESTRICTED_RELAY_KEY, Value::Integer(1)),
            (LOCAL_DOMAINS_KEY, list(&["example.com"])),
        ]))
        .unwrap();
        assert_eq!(
            rcpt_to(&settings, &client("127.0.0.1", false), REMOTE),
            Decision::Accept
        );
        assert_eq!(
            rcpt_to(&settings, &client("::1", false), REMOTE),
            Decision::Accept
        );
        assert_eq!(
            rcpt_to(&settings, &client("192.0.2.10", false), REMOTE),
            Decision::Accept
        );
        assert_eq!(
            rcpt_to(&settings, &client(UNLISTED_IP, false), REMOTE),
            Decision::RelayDenied
        );
        assert_eq!(
            rcpt_to(&settings, &client(UNLISTED_IP, false), LOCAL),
            Decision::Accept
        );
    }
}
