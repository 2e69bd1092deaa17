//! The `[policy.config]` table: reading it into [`Settings`], reporting every
//! problem with the key it belongs to.
//!
//! The table is read through the kit's [`ConfigSource`] and the server's
//! own networks through [`OwnNetworks`]; the component implements both with
//! the host's `config` and `server` imports, tests with a map.

use std::fmt::Write as _;

use crate::address::{LocalDomain, LocalDomains};
use crate::relay_list::{Entry, RelayList};

/// `open_relay_addr_flag`: restricted relay on.
pub const RESTRICTED_RELAY_KEY: &str = "open_relay_addr_flag";
/// `open_relay_addr_list`: who may relay.
pub const RELAY_LIST_KEY: &str = "open_relay_addr_list";
/// `smtp_plain_login_flag`: SMTP AUTH PLAIN and LOGIN on.
pub const AUTH_KEY: &str = "smtp_plain_login_flag";
/// `local_domains`: the domains the upstream delivers locally.
pub const LOCAL_DOMAINS_KEY: &str = "local_domains";

/// Every key this policy reads; any other key in the table is a problem.
pub const KNOWN_KEYS: [&str; 4] = [
    RESTRICTED_RELAY_KEY,
    RELAY_LIST_KEY,
    AUTH_KEY,
    LOCAL_DOMAINS_KEY,
];

pub use kit::config::{ConfigSource, Value};

/// Where the server's own networks come from.
pub trait OwnNetworks {
    /// The server's own networks in CIDR form, which a blank relay list holds.
    fn own_networks(&self) -> Vec<String>;
}

/// The policy's effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Restricted SMTP relay (`open_relay_addr_flag`): only listed clients
    /// may relay.
    pub restricted_relay: bool,
    /// Who may relay (`open_relay_addr_list`, or the server's own networks).
    pub relay_list: RelayList,
    /// SMTP authentication (`smtp_plain_login_flag`): AUTH is offered and
    /// unlisted clients must authenticate for every recipient.
    pub smtp_auth: bool,
    /// The domains delivered locally (`local_domains`).
    pub local_domains: LocalDomains,
}

impl Settings {
    /// Reads and checks the configuration. The error lists every problem,
    /// one line each, starting with the key it concerns.
    pub fn parse(source: &(impl ConfigSource + OwnNetworks)) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        for key in source.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                problems.push(unknown_key(&key));
            }
        }
        let restricted_relay = read_flag(source, RESTRICTED_RELAY_KEY, &mut problems);
        let smtp_auth = read_flag(source, AUTH_KEY, &mut problems);

        let listed = read_list(source, RELAY_LIST_KEY, &mut problems);
        let relay_list = if listed.is_empty() {
            let own = parse_entries(
                source.own_networks(),
                Entry::parse_own_network,
                |i, text, err| {
                    format!(
                        "{RELAY_LIST_KEY}: left blank, so it holds the server's own networks, \
                         but the server's network {i} ({text:?}) {err}"
                    )
                },
                &mut problems,
            );
            RelayList::own_networks(own)
        } else {
            RelayList::configured(parse_entries(
                listed,
                Entry::parse,
                |i, text, err| format!("{RELAY_LIST_KEY}[{i}]: {text:?} {err}"),
                &mut problems,
            ))
        };

        let local_domains = LocalDomains::new(parse_entries(
            read_list(source, LOCAL_DOMAINS_KEY, &mut problems),
            LocalDomain::parse,
            |i, text, err| format!("{LOCAL_DOMAINS_KEY}[{i}]: {text:?} {err}"),
            &mut problems,
        ));

        if problems.is_empty() {
            Ok(Self {
                restricted_relay,
                relay_list,
                smtp_auth,
                local_domains,
            })
        } else {
            Err(problems)
        }
    }

    /// True when any client may relay to any domain: restricted relay and
    /// authentication both off.
    pub fn is_open_relay(&self) -> bool {
        !self.restricted_relay && !self.smtp_auth
    }

    /// True when decisions depend on the client's confirmed reverse-DNS
    /// name: restricted relay is on and the list has name entries.
    pub fn needs_client_name(&self) -> bool {
        self.restricted_relay && self.relay_list.name_count() > 0
    }

    /// One line for admins describing the effective behaviour.
    pub fn summary(&self) -> String {
        let mut line = String::new();
        if self.restricted_relay {
            line.push_str("restricted relay ON for ");
            let networks = plural(self.relay_list.network_count(), "network", "networks");
            if self.relay_list.is_own_networks() {
                // Writing to a String cannot fail.
                let _ = write!(line, "the server's own addresses ({networks}, list blank)");
            } else {
                let names = self.relay_list.name_count();
                let counts = match (self.relay_list.network_count(), names) {
                    (_, 0) => networks,
                    (0, _) => plural(names, "name", "names"),
                    _ => format!("{networks} and {}", plural(names, "name", "names")),
                };
                line.push_str(&counts);
            }
        } else {
            line.push_str("restricted relay OFF");
        }
        line.push_str(match (self.restricted_relay, self.smtp_auth) {
            (false, false) => ", AUTH OFF: OPEN RELAY, any client may send to any domain",
            (false, true) => ", AUTH ON: only authenticated clients may send",
            (true, false) => ", AUTH OFF: other clients may send to local domains only",
            (true, true) => ", AUTH ON: other clients must authenticate",
        });
        line.push_str(", local domains: ");
        let domains = self.local_domains.as_slice();
        if domains.is_empty() {
            line.push_str("none (postmaster only)");
        }
        const SHOWN: usize = 5;
        for (i, domain) in domains.iter().take(SHOWN).enumerate() {
            if i > 0 {
                line.push_str(", ");
            }
            let _ = write!(line, "{domain}");
        }
        if domains.len() > SHOWN {
            let _ = write!(line, " and {} more", domains.len() - SHOWN);
        }
        line
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn unknown_key(key: &str) -> String {
    let closest = KNOWN_KEYS
        .iter()
        .map(|known| (edit_distance(key, known), known))
        .min();
    match closest {
        Some((distance, known)) if distance <= 3 => {
            format!("{key}: unknown key (did you mean {known}?)")
        }
        _ => format!("{key}: unknown key (known keys: {})", KNOWN_KEYS.join(", ")),
    }
}

/// Levenshtein distance, to suggest the key an admin probably meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn describe(value: &Value) -> String {
    match value {
        Value::Text(text) => format!("the string {text:?}"),
        Value::Integer(n) => format!("the integer {n}"),
        // Not shown: formatting a float would pull ~25 KB of code into the component.
        Value::Float(_) => "a floating-point number".to_owned(),
        Value::Boolean(b) => format!("the boolean {b}"),
        Value::TextList(_) => "a list".to_owned(),
    }
}

/// A 0/1 (or boolean) flag; absent means off.
fn read_flag(source: &impl ConfigSource, key: &str, problems: &mut Vec<String>) -> bool {
    match source.get(key) {
        None | Some(Value::Integer(0) | Value::Boolean(false)) => false,
        Some(Value::Integer(1) | Value::Boolean(true)) => true,
        Some(other) => {
            problems.push(format!(
                "{key}: must be 0 or 1 (or false/true), not {}",
                describe(&other)
            ));
            false
        }
    }
}

/// A list of strings, or one string of entries separated by commas or white
/// space; absent or empty means blank. Entries come back as written.
fn read_list(source: &impl ConfigSource, key: &str, problems: &mut Vec<String>) -> Vec<String> {
    match source.get(key) {
        None => Vec::new(),
        Some(Value::TextList(list)) => list,
        Some(Value::Text(text)) => split_entries(&text),
        Some(other) => {
            problems.push(format!(
                "{key}: must be a list of strings (or one string of comma-separated entries), not {}",
                describe(&other)
            ));
            Vec::new()
        }
    }
}

/// Splits `"10.0.0.5 - 10.0.0.40, 192.168.1.0/24 gw.example.com"` into its
/// entries. A `-` with white space around it still joins the two addresses
/// of a range: names never start or end with `-`, so this is unambiguous.
fn split_entries(text: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    let mut join_next = false;
    for token in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
    {
        match entries.last_mut() {
            Some(last) if join_next || token.starts_with('-') => last.push_str(token),
            _ => entries.push(token.to_owned()),
        }
        join_next = token.ends_with('-');
    }
    entries
}

/// Parses each entry, reporting the bad ones through `problem(index, text,
/// error)`.
fn parse_entries<T, E>(
    texts: Vec<String>,
    parse: impl Fn(&str) -> Result<T, E>,
    problem: impl Fn(usize, &str, E) -> String,
    problems: &mut Vec<String>,
) -> Vec<T> {
    let mut parsed = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        match parse(text) {
            Ok(entry) => parsed.push(entry),
            Err(err) => problems.push(problem(i, text, err)),
        }
    }
    parsed
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A configuration table for tests.
    #[derive(Default)]
    pub(crate) struct Table {
        pub values: BTreeMap<String, Value>,
        pub own_networks: Vec<String>,
    }

    impl Table {
        pub fn new(values: &[(&str, Value)]) -> Self {
            Self {
                values: values
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                own_networks: vec![
                    "127.0.0.0/8".into(),
                    "::1/128".into(),
                    "192.0.2.10/32".into(),
                ],
            }
        }
    }

    impl ConfigSource for Table {
        fn keys(&self) -> Vec<String> {
            self.values.keys().cloned().collect()
        }
        fn get(&self, key: &str) -> Option<Value> {
            self.values.get(key).cloned()
        }
    }

    impl OwnNetworks for Table {
        fn own_networks(&self) -> Vec<String> {
            self.own_networks.clone()
        }
    }

    pub(crate) fn list(items: &[&str]) -> Value {
        Value::TextList(items.iter().map(|s| (*s).to_owned()).collect())
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn problems(values: &[(&str, Value)]) -> Vec<String> {
        Settings::parse(&Table::new(values)).unwrap_err()
    }

    #[test]
    fn defaults() {
        let settings = Settings::parse(&Table::new(&[])).unwrap();
        assert!(!settings.restricted_relay);
        assert!(!settings.smtp_auth);
        assert!(settings.relay_list.is_own_networks());
        assert_eq!(settings.relay_list.network_count(), 3);
        assert!(settings.local_domains.as_slice().is_empty());
        assert!(settings.is_open_relay());
        assert!(!settings.needs_client_name());
    }

    #[test]
    fn flags() {
        let cases = [
            (Value::Integer(0), false),
            (Value::Integer(1), true),
            (Value::Boolean(false), false),
            (Value::Boolean(true), true),
        ];
        for (value, expected) in cases {
            let settings = Settings::parse(&Table::new(&[
                (RESTRICTED_RELAY_KEY, value.clone()),
                (AUTH_KEY, value.clone()),
            ]))
            .unwrap();
            assert_eq!(settings.restricted_relay, expected, "{value:?}");
            assert_eq!(settings.smtp_auth, expected, "{value:?}");
        }
    }

    #[test]
    fn bad_flags() {
        let cases = [
            (
                Value::Integer(2),
                "open_relay_addr_flag: must be 0 or 1 (or false/true), not the integer 2",
            ),
            (
                Value::Integer(-1),
                "open_relay_addr_flag: must be 0 or 1 (or false/true), not the integer -1",
            ),
            (
                Value::Float(1.0),
                "open_relay_addr_flag: must be 0 or 1 (or false/true), not a floating-point number",
            ),
            (
                text("1"),
                "open_relay_addr_flag: must be 0 or 1 (or false/true), not the string \"1\"",
            ),
            (
                list(&["1"]),
                "open_relay_addr_flag: must be 0 or 1 (or false/true), not a list",
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                problems(&[(RESTRICTED_RELAY_KEY, value)]),
                vec![expected.to_owned()]
            );
        }
        assert_eq!(
            problems(&[(AUTH_KEY, text("yes"))]),
            vec!["smtp_plain_login_flag: must be 0 or 1 (or false/true), not the string \"yes\""]
        );
    }

    #[test]
    fn unknown_keys_are_problems() {
        // A typo must not silently leave the list blank or the flag off.
        assert_eq!(
            problems(&[
                (RESTRICTED_RELAY_KEY, Value::Integer(1)),
                ("open_relay_adr_list", list(&["10.0.0.0/8"])),
            ]),
            vec!["open_relay_adr_list: unknown key (did you mean open_relay_addr_list?)"]
        );
        assert_eq!(
            problems(&[("smtp_plain_login", Value::Integer(1))]),
            vec![
                "smtp_plain_login: unknown key (known keys: open_relay_addr_flag, open_relay_addr_list, smtp_plain_login_flag, local_domains)"
            ]
        );
        assert_eq!(
            problems(&[("local_domain", list(&["example.com"]))]),
            vec!["local_domain: unknown key (did you mean local_domains?)"]
        );
    }

    #[test]
    fn relay_list_forms() {
        let from_list = Settings::parse(&Table::new(&[(
            RELAY_LIST_KEY,
            list(&[
                "192.168.1.0/24",
                "10.0.0.5 - 10.0.0.40",
                "gw.example.com",
                "example.org",
            ]),
        )]))
        .unwrap();
        assert!(!from_list.relay_list.is_own_networks());
        assert_eq!(from_list.relay_list.network_count(), 2);
        assert_eq!(from_list.relay_list.name_count(), 2);

        let from_text = Settings::parse(&Table::new(&[(
            RELAY_LIST_KEY,
            text("192.168.1.0/24, 10.0.0.5 - 10.0.0.40,gw.example.com\texample.org"),
        )]))
        .unwrap();
        assert_eq!(from_text.relay_list, from_list.relay_list);
    }

    #[test]
    fn splitting_a_text_list() {
        let cases: [(&str, &[&str]); 7] = [
            ("", &[]),
            (" , ,", &[]),
            ("a.example", &["a.example"]),
            ("10.0.0.1,10.0.0.2", &["10.0.0.1", "10.0.0.2"]),
            (
                "10.0.0.1 - 10.0.0.9 mx.example",
                &["10.0.0.1-10.0.0.9", "mx.example"],
            ),
            (
                "10.0.0.1- 10.0.0.9, 10.1.0.1 -10.1.0.9",
                &["10.0.0.1-10.0.0.9", "10.1.0.1-10.1.0.9"],
            ),
            (
                "mail-gw.example  2001:db8::/32",
                &["mail-gw.example", "2001:db8::/32"],
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(split_entries(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn blank_list_holds_own_networks() {
        for blank in [list(&[]), text(""), text("  ")] {
            let settings = Settings::parse(&Table::new(&[
                (RESTRICTED_RELAY_KEY, Value::Integer(1)),
                (RELAY_LIST_KEY, blank.clone()),
            ]))
            .unwrap();
            assert!(settings.relay_list.is_own_networks(), "{blank:?}");
            assert!(
                settings
                    .relay_list
                    .matches(Some("127.0.0.1".parse().unwrap()), None)
            );
            assert!(
                settings
                    .relay_list
                    .matches(Some("::1".parse().unwrap()), None)
            );
            assert!(
                settings
                    .relay_list
                    .matches(Some("192.0.2.10".parse().unwrap()), None)
            );
            assert!(
                !settings
                    .relay_list
                    .matches(Some("192.0.2.11".parse().unwrap()), None)
            );
        }
    }

    #[test]
    fn bad_own_network_is_a_problem() {
        let mut table = Table::new(&[(RESTRICTED_RELAY_KEY, Value::Integer(1))]);
        table.own_networks.push("eth0".into());
        assert_eq!(
            Settings::parse(&table).unwrap_err(),
            vec![
                "open_relay_addr_list: left blank, so it holds the server's own networks, but the server's network 3 (\"eth0\") is not an IP address or CIDR network"
            ]
        );
    }

    #[test]
    fn bad_relay_entries_are_all_reported() {
        assert_eq!(
            problems(&[(
                RELAY_LIST_KEY,
                list(&[
                    "10.0.0.1",
                    "",
                    "10.0.0.300",
                    "10.0.0.40-10.0.0.5",
                    "10.0.0.1-::1",
                    "10.0.0.0/33",
                    "a..b",
                    "ok.example"
                ]),
            )]),
            vec![
                "open_relay_addr_list[1]: \"\" is empty",
                "open_relay_addr_list[2]: \"10.0.0.300\" is not an IP address, CIDR range, address range or host/domain name",
                "open_relay_addr_list[3]: \"10.0.0.40-10.0.0.5\" is not an address range: its first address comes after its last (write the lower one first)",
                "open_relay_addr_list[4]: \"10.0.0.1-::1\" is not an address range: it mixes an IPv4 and an IPv6 address",
                "open_relay_addr_list[5]: \"10.0.0.0/33\" is not a CIDR range: prefix length \"33\" is not a number from 0 to 32",
                "open_relay_addr_list[6]: \"a..b\" is not an IP address, CIDR range, address range or host/domain name",
            ]
        );
    }

    #[test]
    fn bad_list_types() {
        assert_eq!(
            problems(&[
                (RELAY_LIST_KEY, Value::Integer(5)),
                (LOCAL_DOMAINS_KEY, Value::Boolean(true))
            ]),
            vec![
                "open_relay_addr_list: must be a list of strings (or one string of comma-separated entries), not the integer 5",
                "local_domains: must be a list of strings (or one string of comma-separated entries), not the boolean true",
            ]
        );
    }

    #[test]
    fn local_domains() {
        let settings = Settings::parse(&Table::new(&[(
            LOCAL_DOMAINS_KEY,
            list(&["Example.COM.", "[192.0.2.1]"]),
        )]))
        .unwrap();
        assert_eq!(
            settings.local_domains.as_slice(),
            [
                LocalDomain::Name("example.com".into()),
                LocalDomain::Literal("[192.0.2.1]".into())
            ]
        );
        let single = Settings::parse(&Table::new(&[(
            LOCAL_DOMAINS_KEY,
            text("example.com example.net"),
        )]))
        .unwrap();
        assert_eq!(single.local_domains.as_slice().len(), 2);
        assert_eq!(
            problems(&[(
                LOCAL_DOMAINS_KEY,
                list(&["example.com", "192.0.2.1", "*.example.net"])
            )]),
            vec![
                "local_domains[1]: \"192.0.2.1\" is an IP address; list it as an address literal such as \"[192.0.2.1]\"",
                "local_domains[2]: \"*.example.net\" is a wildcard; list every local domain by its own name",
            ]
        );
    }

    #[test]
    fn every_problem_at_once() {
        let found = problems(&[
            (RESTRICTED_RELAY_KEY, Value::Integer(3)),
            (AUTH_KEY, text("on")),
            (RELAY_LIST_KEY, list(&["nope..example"])),
            (LOCAL_DOMAINS_KEY, list(&[""])),
            ("extra", Value::Integer(1)),
        ]);
        assert_eq!(found.len(), 5, "{found:#?}");
    }

    #[test]
    fn open_relay_and_client_names() {
        let cases = [
            // flag, auth, list, open relay, needs client name
            (0, 0, list(&["gw.example.com"]), true, false),
            (0, 1, list(&["gw.example.com"]), false, false),
            (1, 0, list(&["gw.example.com"]), false, true),
            (1, 1, list(&["gw.example.com"]), false, true),
            (1, 0, list(&["10.0.0.0/8"]), false, false),
            (1, 1, list(&[]), false, false),
        ];
        for (flag, auth, entries, open, names) in cases {
            let settings = Settings::parse(&Table::new(&[
                (RESTRICTED_RELAY_KEY, Value::Integer(flag)),
                (AUTH_KEY, Value::Integer(auth)),
                (RELAY_LIST_KEY, entries.clone()),
            ]))
            .unwrap();
            assert_eq!(settings.is_open_relay(), open, "{flag} {auth} {entries:?}");
            assert_eq!(
                settings.needs_client_name(),
                names,
                "{flag} {auth} {entries:?}"
            );
        }
    }

    #[test]
    fn summaries() {
        let cases = [
            (
                vec![
                    (RESTRICTED_RELAY_KEY, Value::Integer(1)),
                    (
                        RELAY_LIST_KEY,
                        list(&[
                            "192.168.1.0/24",
                            "10.0.0.5-10.0.0.40",
                            "192.0.2.1",
                            "gw.example.com",
                            "example.org",
                        ]),
                    ),
                    (LOCAL_DOMAINS_KEY, list(&["example.com"])),
                ],
                "restricted relay ON for 3 networks and 2 names, AUTH OFF: other clients may send to local domains only, local domains: example.com",
            ),
            (
                vec![(RESTRICTED_RELAY_KEY, Value::Integer(1))],
                "restricted relay ON for the server's own addresses (3 networks, list blank), AUTH OFF: other clients may send to local domains only, local domains: none (postmaster only)",
            ),
            (
                vec![(LOCAL_DOMAINS_KEY, list(&["example.com", "[192.0.2.1]"]))],
                "restricted relay OFF, AUTH OFF: OPEN RELAY, any client may send to any domain, local domains: example.com, [192.0.2.1]",
            ),
            (
                vec![
                    (AUTH_KEY, Value::Integer(1)),
                    (
                        LOCAL_DOMAINS_KEY,
                        list(&[
                            "a.example",
                            "b.example",
                            "c.example",
                            "d.example",
                            "e.example",
                            "f.example",
                            "g.example",
                        ]),
                    ),
                ],
                "restricted relay OFF, AUTH ON: only authenticated clients may send, local domains: a.example, b.example, c.example, d.example, e.example and 2 more",
            ),
            (
                vec![
                    (RESTRICTED_RELAY_KEY, Value::Boolean(true)),
                    (AUTH_KEY, Value::Boolean(true)),
                    (RELAY_LIST_KEY, list(&["example.org"])),
                ],
                "restricted relay ON for 1 name, AUTH ON: other clients must authenticate, local domains: none (postmaster only)",
            ),
        ];
        for (values, expected) in cases {
            assert_eq!(
                Settings::parse(&Table::new(&values)).unwrap().summary(),
                expected
            );
        }
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(
            edit_distance("open_relay_adr_list", "open_relay_addr_list"),
            1
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
