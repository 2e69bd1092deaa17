//! The `open_relay_addr_list`: the entries that say which clients may relay,
//! and how a client is matched against them.
//!
//! Addresses, CIDR networks and address ranges all become one inclusive range
//! of addresses, so matching is two comparisons per entry. Names match the
//! client's confirmed reverse-DNS name, as a host name or as a domain.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

use crate::domain::{self, NameError};

/// One entry of the relay list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// IPv4 addresses from an address, a CIDR network or an `a-b` range.
    V4(RangeInclusive<Ipv4Addr>),
    /// IPv6 addresses from an address, a CIDR network or an `a-b` range.
    V6(RangeInclusive<Ipv6Addr>),
    /// A host or domain name in normal form (lower case, no leading `.` or
    /// `*.`, no trailing dot). It matches a client whose confirmed name is the
    /// name itself or lies under it.
    Name(String),
}

/// Why a relay-list entry was refused. Its `Display` completes a sentence
/// that starts with the entry itself, e.g. `"10.0.0.300" is not ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    /// The entry is empty or only white space.
    Empty,
    /// Not any of the forms an entry may take.
    Unrecognised,
    /// Has a `/` but the part before it is not an IP address.
    CidrAddress(String),
    /// Has a `/` but the prefix length is not a number in range.
    CidrPrefix {
        /// The prefix length as written.
        prefix: String,
        /// The longest prefix for the address family (32 or 128).
        max: u8,
    },
    /// One side of an `a-b` range is an address, the other is not.
    RangeBound(String),
    /// An `a-b` range with one IPv4 and one IPv6 address.
    RangeMixed,
    /// An `a-b` range whose first address comes after its last.
    RangeReversed,
    /// Where only an address or CIDR network is allowed (the server's own
    /// networks), something else.
    NotNetwork,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("is empty"),
            Self::Unrecognised => f.write_str(
                "is not an IP address, CIDR range, address range or host/domain name",
            ),
            Self::CidrAddress(addr) => {
                write!(f, "is not a CIDR range: {addr:?} is not an IP address")
            }
            Self::CidrPrefix { prefix, max } => write!(
                f,
                "is not a CIDR range: prefix length {prefix:?} is not a number from 0 to {max}"
            ),
            Self::RangeBound(bound) => {
                write!(f, "is not an address range: {bound:?} is not an IP address")
            }
            Self::RangeMixed => {
                f.write_str("is not an address range: it mixes an IPv4 and an IPv6 address")
            }
            Self::RangeReversed => f.write_str(
                "is not an address range: its first address comes after its last (write the lower one first)",
            ),
            Self::NotNetwork => f.write_str("is not an IP address or CIDR network"),
        }
    }
}

impl Entry {
    /// Parses one entry: an IPv4/IPv6 address, a CIDR network (host bits may
    /// be set; they are ignored), an `a-b` range of one family (spaces around
    /// `-` allowed), or a host/domain name (optionally written `.example.com`
    /// or `*.example.com`, which mean the same as `example.com`).
    pub fn parse(text: &str) -> Result<Self, EntryError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(EntryError::Empty);
        }
        if let Some(network) = parse_network(text) {
            return network;
        }
        if let Some(range) = parse_range(text) {
            return range;
        }
        let name = text
            .strip_prefix("*.")
            .or_else(|| text.strip_prefix('.'))
            .unwrap_or(text);
        match domain::normalize(name) {
            Ok(name) => Ok(Self::Name(name)),
            Err(NameError::Invalid) => Err(EntryError::Unrecognised),
        }
    }

    /// Parses an address or CIDR network as the host reports the server's
    /// own networks; names and ranges are refused.
    pub fn parse_own_network(text: &str) -> Result<Self, EntryError> {
        parse_network(text.trim()).unwrap_or(Err(EntryError::NotNetwork))
    }

    /// True when the entry names hosts rather than addresses.
    pub fn is_name(&self) -> bool {
        matches!(self, Self::Name(_))
    }
}

/// An address or `addr/prefix`; none when `text` is neither (so it may be
/// a range or a name).
fn parse_network(text: &str) -> Option<Result<Entry, EntryError>> {
    let Some((addr, prefix)) = text.split_once('/') else {
        return text.parse::<IpAddr>().ok().map(|ip| Ok(single(ip)));
    };
    let (addr, prefix) = (addr.trim(), prefix.trim());
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return Some(Err(EntryError::CidrAddress(addr.to_owned())));
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = Some(prefix)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse::<u8>().ok())
        .filter(|&bits| bits <= max);
    let Some(bits) = bits else {
        return Some(Err(EntryError::CidrPrefix {
            prefix: prefix.to_owned(),
            max,
        }));
    };
    Some(Ok(match ip {
        IpAddr::V4(ip) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            let first = u32::from(ip) & mask;
            Entry::V4(Ipv4Addr::from(first)..=Ipv4Addr::from(first | !mask))
        }
        IpAddr::V6(ip) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            let first = u128::from(ip) & mask;
            Entry::V6(Ipv6Addr::from(first)..=Ipv6Addr::from(first | !mask))
        }
    }))
}

/// An `a-b` range; none when neither side of the first `-` is an address
/// (host names contain `-` too).
fn parse_range(text: &str) -> Option<Result<Entry, EntryError>> {
    let (a, b) = text.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let (first, last) = match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(first), Ok(last)) => (first, last),
        (Ok(_), Err(_)) => return Some(Err(EntryError::RangeBound(b.to_owned()))),
        (Err(_), Ok(_)) => return Some(Err(EntryError::RangeBound(a.to_owned()))),
        (Err(_), Err(_)) => return None,
    };
    Some(match (first, last) {
        (IpAddr::V4(first), IpAddr::V4(last)) if first <= last => Ok(Entry::V4(first..=last)),
        (IpAddr::V6(first), IpAddr::V6(last)) if first <= last => Ok(Entry::V6(first..=last)),
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            Err(EntryError::RangeReversed)
        }
        _ => Err(EntryError::RangeMixed),
    })
}

fn single(ip: IpAddr) -> Entry {
    match ip {
        IpAddr::V4(ip) => Entry::V4(ip..=ip),
        IpAddr::V6(ip) => Entry::V6(ip..=ip),
    }
}

/// Who may relay: the parsed `open_relay_addr_list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayList {
    entries: Vec<Entry>,
    own_networks: bool,
}

impl RelayList {
    /// A list configured by the admin.
    pub fn configured(entries: Vec<Entry>) -> Self {
        Self {
            entries,
            own_networks: false,
        }
    }

    /// The list left blank, which holds the server's own networks.
    pub fn own_networks(entries: Vec<Entry>) -> Self {
        Self {
            entries,
            own_networks: true,
        }
    }

    /// True when the admin left the list blank and it holds the server's own
    /// networks.
    pub fn is_own_networks(&self) -> bool {
        self.own_networks
    }

    /// The entries, in configuration order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// How many entries are addresses, networks or ranges.
    pub fn network_count(&self) -> usize {
        self.entries.iter().filter(|e| !e.is_name()).count()
    }

    /// How many entries are host or domain names.
    pub fn name_count(&self) -> usize {
        self.entries.iter().filter(|e| e.is_name()).count()
    }

    /// True when a client is listed: its address falls in an address entry,
    /// or its confirmed reverse-DNS name matches a name entry.
    ///
    /// `ip` is none when the host's address could not be read (the client is
    /// then matched by name only). An IPv4-mapped IPv6 address
    /// (`::ffff:192.0.2.1`) matches IPv4 entries as well as IPv6 ones.
    pub fn matches(&self, ip: Option<IpAddr>, confirmed_name: Option<&str>) -> bool {
        let (v4, v6) = match ip {
            Some(IpAddr::V4(v4)) => (Some(v4), Some(v4.to_ipv6_mapped())),
            Some(IpAddr::V6(v6)) => (v6.to_ipv4_mapped(), Some(v6)),
            None => (None, None),
        };
        let name = confirmed_name.and_then(|n| domain::normalize(n).ok());
        self.entries.iter().any(|entry| match entry {
            Entry::V4(range) => v4.is_some_and(|ip| range.contains(&ip)),
            Entry::V6(range) => v6.is_some_and(|ip| range.contains(&ip)),
            Entry::Name(listed) => name
                .as_deref()
                .is_some_and(|name| domain::is_within(name, listed)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: &str, b: &str) -> Entry {
        Entry::V4(a.parse().unwrap()..=b.parse().unwrap())
    }

    fn v6(a: &str, b: &str) -> Entry {
        Entry::V6(a.parse().unwrap()..=b.parse().unwrap())
    }

    #[test]
    fn entry_kinds() {
        let cases = [
            ("192.0.2.1", v4("192.0.2.1", "192.0.2.1")),
            ("  192.0.2.1 ", v4("192.0.2.1", "192.0.2.1")),
            ("192.168.1.0/24", v4("192.168.1.0", "192.168.1.255")),
            ("192.168.1.77/24", v4("192.168.1.0", "192.168.1.255")),
            ("10.1.2.3/8", v4("10.0.0.0", "10.255.255.255")),
            ("0.0.0.0/0", v4("0.0.0.0", "255.255.255.255")),
            ("192.0.2.9/32", v4("192.0.2.9", "192.0.2.9")),
            ("10.0.0.5-10.0.0.40", v4("10.0.0.5", "10.0.0.40")),
            ("10.0.0.5 - 10.0.0.40", v4("10.0.0.5", "10.0.0.40")),
            ("10.0.0.5-10.0.0.5", v4("10.0.0.5", "10.0.0.5")),
            ("2001:db8::1", v6("2001:db8::1", "2001:db8::1")),
            (
                "2001:DB8::/32",
                v6("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
            ),
            (
                "2001:db8::1/64",
                v6("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"),
            ),
            ("::/0", v6("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            (
                "2001:db8::1-2001:db8::ff",
                v6("2001:db8::1", "2001:db8::ff"),
            ),
            ("gw.example.com", Entry::Name("gw.example.com".into())),
            (
                "gw.bücher.example",
                Entry::Name("gw.xn--bcher-kva.example".into()),
            ),
            ("GW.Example.COM.", Entry::Name("gw.example.com".into())),
            ("example.org", Entry::Name("example.org".into())),
            (".example.org", Entry::Name("example.org".into())),
            ("*.example.org", Entry::Name("example.org".into())),
            (
                "mail-gw.example.org",
                Entry::Name("mail-gw.example.org".into()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Entry::parse(input), Ok(expected), "input {input:?}");
        }
    }

    #[test]
    fn bad_entries() {
        let cases = [
            ("", EntryError::Empty),
            ("   ", EntryError::Empty),
            ("10.0.0.300", EntryError::Unrecognised),
            ("10.0.0", EntryError::Unrecognised),
            ("example..com", EntryError::Unrecognised),
            ("*.", EntryError::Unrecognised),
            (".", EntryError::Unrecognised),
            ("*", EntryError::Unrecognised),
            ("a b", EntryError::Unrecognised),
            ("fe80::1%eth0", EntryError::Unrecognised),
            ("bü cher.example", EntryError::Unrecognised),
            (
                "10.0.0.0/33",
                EntryError::CidrPrefix {
                    prefix: "33".into(),
                    max: 32,
                },
            ),
            (
                "10.0.0.0/",
                EntryError::CidrPrefix {
                    prefix: "".into(),
                    max: 32,
                },
            ),
            (
                "10.0.0.0/+8",
                EntryError::CidrPrefix {
                    prefix: "+8".into(),
                    max: 32,
                },
            ),
            (
                "10.0.0.0/x",
                EntryError::CidrPrefix {
                    prefix: "x".into(),
                    max: 32,
                },
            ),
            (
                "2001:db8::/129",
                EntryError::CidrPrefix {
                    prefix: "129".into(),
                    max: 128,
                },
            ),
            (
                "10.0.0.300/24",
                EntryError::CidrAddress("10.0.0.300".into()),
            ),
            (
                "example.com/24",
                EntryError::CidrAddress("example.com".into()),
            ),
            ("10.0.0.40-10.0.0.5", EntryError::RangeReversed),
            ("2001:db8::ff-2001:db8::1", EntryError::RangeReversed),
            ("10.0.0.1-2001:db8::1", EntryError::RangeMixed),
            (
                "10.0.0.1-10.0.0.300",
                EntryError::RangeBound("10.0.0.300".into()),
            ),
            ("10.0.0.1-", EntryError::RangeBound("".into())),
            ("-10.0.0.1", EntryError::RangeBound("".into())),
            (
                "10.0.0.1-10.0.0.2-10.0.0.3",
                EntryError::RangeBound("10.0.0.2-10.0.0.3".into()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Entry::parse(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn error_messages_read_as_sentences() {
        let err = Entry::parse("10.0.0.300").unwrap_err();
        assert_eq!(
            err.to_string(),
            "is not an IP address, CIDR range, address range or host/domain name"
        );
        let err = Entry::parse("10.0.0.40-10.0.0.5").unwrap_err();
        assert!(err.to_string().starts_with("is not an address range"));
    }

    #[test]
    fn own_networks_are_addresses_or_cidr_only() {
        assert_eq!(
            Entry::parse_own_network("127.0.0.0/8"),
            Ok(v4("127.0.0.0", "127.255.255.255"))
        );
        assert_eq!(Entry::parse_own_network("::1/128"), Ok(v6("::1", "::1")));
        assert_eq!(
            Entry::parse_own_network("192.0.2.10"),
            Ok(v4("192.0.2.10", "192.0.2.10"))
        );
        assert_eq!(
            Entry::parse_own_network("localhost"),
            Err(EntryError::NotNetwork)
        );
        assert_eq!(
            Entry::parse_own_network("10.0.0.1-10.0.0.2"),
            Err(EntryError::NotNetwork)
        );
        assert!(Entry::parse_own_network("10.0.0.0/40").is_err());
    }

    fn list(entries: &[&str]) -> RelayList {
        RelayList::configured(entries.iter().map(|e| Entry::parse(e).unwrap()).collect())
    }

    #[test]
    fn matching_addresses() {
        let list = list(&[
            "192.168.1.0/24",
            "10.0.0.5-10.0.0.40",
            "203.0.113.7",
            "2001:db8:1::/48",
            "2001:db8:9::10 - 2001:db8:9::20",
        ]);
        let cases = [
            ("192.168.1.0", true),
            ("192.168.1.255", true),
            ("192.168.2.1", false),
            ("10.0.0.4", false),
            ("10.0.0.5", true),
            ("10.0.0.40", true),
            ("10.0.0.41", false),
            ("203.0.113.7", true),
            ("203.0.113.8", false),
            ("2001:db8:1::1", true),
            ("2001:db8:1:ffff::1", true),
            ("2001:db8:2::1", false),
            ("2001:db8:9::10", true),
            ("2001:db8:9::21", false),
            // IPv4-mapped IPv6 clients match IPv4 entries.
            ("::ffff:192.168.1.9", true),
            ("::ffff:10.0.0.41", false),
            ("::ffff:203.0.113.7", true),
            // The deprecated IPv4-compatible form is not mapped.
            ("::203.0.113.7", false),
        ];
        for (ip, expected) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(list.matches(Some(ip), None), expected, "client {ip}");
        }
    }

    #[test]
    fn mapped_entries_match_ipv4_clients() {
        let list = list(&["::ffff:192.0.2.0/120"]);
        assert!(list.matches(Some("192.0.2.77".parse().unwrap()), None));
        assert!(list.matches(Some("::ffff:192.0.2.77".parse().unwrap()), None));
        assert!(!list.matches(Some("192.0.3.1".parse().unwrap()), None));
    }

    #[test]
    fn matching_names() {
        let list = list(&[
            "gw.example.com",
            "example.org",
            "*.example.net",
            ".example.edu",
        ]);
        let cases = [
            (Some("gw.example.com"), true),
            (Some("GW.EXAMPLE.COM."), true),
            (Some("x.gw.example.com"), true),
            (Some("mx.example.com"), false),
            (Some("example.com"), false),
            (Some("example.org"), true),
            (Some("mx.example.org"), true),
            (Some("a.b.example.org"), true),
            (Some("badexample.org"), false),
            (Some("example.org.evil.test"), false),
            (Some("mx.example.net"), true),
            (Some("example.net"), true),
            (Some("host.example.edu"), true),
            (Some(""), false),
            (Some("bad..name.example.org"), false),
            (None, false),
        ];
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        for (name, expected) in cases {
            assert_eq!(
                list.matches(Some(ip), name),
                expected,
                "client name {name:?}"
            );
        }
        assert!(list.matches(None, Some("mx.example.org")));
    }

    #[test]
    fn names_do_not_match_addresses() {
        let list = list(&["192.0.2.1"]);
        assert!(!list.matches(None, Some("192.0.2.1")));
        assert!(!list.matches(None, None));
    }

    #[test]
    fn counts() {
        let list = list(&[
            "192.0.2.1",
            "10.0.0.0/8",
            "gw.example.com",
            "10.1.1.1-10.1.1.9",
        ]);
        assert_eq!(list.network_count(), 3);
        assert_eq!(list.name_count(), 1);
        assert!(!list.is_own_networks());
    }
}
