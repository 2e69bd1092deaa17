//! Recipients: is a forward path local, or does it ask for relay?
//!
//! A recipient is local when its domain is one of `local_domains` and the
//! address asks for no onward routing. Sender-specified routing (a source
//! route, or `%`, `!` or `@` hidden in the local part) is the classic way to
//! make a "local" address relay elsewhere, so it always counts as relay.
//! Anything that cannot be read with certainty is not local either: the
//! decision fails closed.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::domain::{self, NameError};

/// One `local_domains` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalDomain {
    /// A domain name in normal form (lower case, no trailing dot).
    Name(String),
    /// An address literal such as `[192.0.2.1]` or `[ipv6:2001:db8::1]`,
    /// in ASCII lower case; recipients match it textually.
    Literal(String),
}

/// Why a `local_domains` entry was refused. Its `Display` completes a
/// sentence that starts with the entry itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalDomainError {
    /// The entry is empty or only white space.
    Empty,
    /// A bare IP address, which recipients can only use as a literal.
    BareAddress,
    /// `[...]` that does not hold an IPv4 address or `IPv6:` and an IPv6 address.
    BadLiteral,
    /// A wildcard or leading dot; local domains are listed one by one.
    Wildcard,
    /// Neither a domain name nor an address literal.
    Invalid,
}

impl fmt::Display for LocalDomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "is empty",
            Self::BareAddress => {
                "is an IP address; list it as an address literal such as \"[192.0.2.1]\""
            }
            Self::BadLiteral => {
                "is not an address literal such as \"[192.0.2.1]\" or \"[IPv6:2001:db8::1]\""
            }
            Self::Wildcard => "is a wildcard; list every local domain by its own name",
            Self::Invalid => "is not a domain name or an address literal",
        })
    }
}

impl LocalDomain {
    /// Parses a `local_domains` entry: a domain name, or an address literal
    /// (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
    pub fn parse(text: &str) -> Result<Self, LocalDomainError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(LocalDomainError::Empty);
        }
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or(LocalDomainError::BadLiteral)?;
            let valid = inner.parse::<Ipv4Addr>().is_ok()
                || inner
                    .get(..5)
                    .filter(|tag| tag.eq_ignore_ascii_case("ipv6:"))
                    .and_then(|_| inner.get(5..))
                    .is_some_and(|v6| v6.parse::<Ipv6Addr>().is_ok());
            return if valid {
                Ok(Self::Literal(text.to_ascii_lowercase()))
            } else {
                Err(LocalDomainError::BadLiteral)
            };
        }
        if text.parse::<std::net::IpAddr>().is_ok() {
            return Err(LocalDomainError::BareAddress);
        }
        if text.starts_with('*') || text.starts_with('.') {
            return Err(LocalDomainError::Wildcard);
        }
        match domain::normalize(text) {
            Ok(name) => Ok(Self::Name(name)),
            Err(NameError::Invalid) => Err(LocalDomainError::Invalid),
        }
    }
}

impl fmt::Display for LocalDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(text) | Self::Literal(text) => f.write_str(text),
        }
    }
}

/// The domains the upstream delivers locally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalDomains(Vec<LocalDomain>);

impl LocalDomains {
    /// The given domains.
    pub fn new(domains: Vec<LocalDomain>) -> Self {
        Self(domains)
    }

    /// The domains, in configuration order.
    pub fn as_slice(&self) -> &[LocalDomain] {
        &self.0
    }

    /// Classifies a recipient as the client wrote it (no angle brackets).
    pub fn classify(&self, recipient: &str) -> Locality {
        let address = match parse(recipient) {
            Ok(address) => address,
            Err(locality) => return locality,
        };
        let local = match address.domain {
            None => address.local_part.eq_ignore_ascii_case("postmaster"),
            Some(Domain::Literal(literal)) => self
                .0
                .iter()
                .any(|d| matches!(d, LocalDomain::Literal(l) if l.eq_ignore_ascii_case(literal))),
            Some(Domain::Name(name)) => self
                .0
                .iter()
                .any(|d| matches!(d, LocalDomain::Name(n) if *n == name)),
        };
        if local {
            Locality::Local
        } else {
            Locality::Remote
        }
    }
}

/// Where a recipient would go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locality {
    /// A local domain (or `postmaster`), no onward routing: delivered here.
    Local,
    /// Another domain, or an address literal not listed as local.
    Remote,
    /// A source route or `%`, `!`, `@` in the local part: the sender asks the
    /// server to route the message onward, which is relaying.
    SenderRouted,
    /// Not a forward path this policy can read with certainty.
    Malformed,
}

impl Locality {
    /// True only for [`Locality::Local`]: every other kind counts as relay.
    pub fn is_local(self) -> bool {
        self == Self::Local
    }
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Local => "local recipient",
            Self::Remote => "remote recipient",
            Self::SenderRouted => "recipient with sender-specified routing",
            Self::Malformed => "unreadable recipient",
        })
    }
}

/// A recipient split into its parts.
struct Address<'a> {
    /// The local part as the client wrote it (quotes and escapes included).
    local_part: &'a str,
    domain: Option<Domain<'a>>,
}

enum Domain<'a> {
    /// Normal form of a domain name.
    Name(String),
    /// `[...]` as written.
    Literal(&'a str),
}

/// Splits a forward path; the error is the verdict for a path that is
/// sender-routed or unreadable.
fn parse(recipient: &str) -> Result<Address<'_>, Locality> {
    if recipient.starts_with('@') {
        return Err(Locality::SenderRouted);
    }
    let (local_part, rest) = if recipient.starts_with('"') {
        let (content, end) = quoted_string(recipient).ok_or(Locality::Malformed)?;
        if content.contains(['%', '!', '@']) {
            return Err(Locality::SenderRouted);
        }
        recipient.split_at(end)
    } else {
        let end = recipient.rfind('@').unwrap_or(recipient.len());
        let (local_part, rest) = recipient.split_at(end);
        if local_part.contains(['%', '!', '@']) {
            return Err(Locality::SenderRouted);
        }
        if !is_dot_atom(local_part) {
            return Err(Locality::Malformed);
        }
        (local_part, rest)
    };
    let domain = match rest.strip_prefix('@') {
        None if rest.is_empty() => None,
        None => return Err(Locality::Malformed),
        Some(domain) if domain.starts_with('[') && domain.ends_with(']') => {
            Some(Domain::Literal(domain))
        }
        Some(domain) => Some(Domain::Name(
            domain::normalize(domain).map_err(|_| Locality::Malformed)?,
        )),
    };
    Ok(Address { local_part, domain })
}

/// Reads the quoted string at the start of `text`: its content with escapes
/// resolved, and the byte offset just past the closing quote.
fn quoted_string(text: &str) -> Option<(String, usize)> {
    let mut content = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((content, i + 1)),
            '\\' => content.push(chars.next()?.1),
            c if c.is_control() => return None,
            c => content.push(c),
        }
    }
    None
}

/// RFC 5321 `Dot-string` (with UTF-8 allowed for SMTPUTF8): atoms of atext
/// separated by single dots.
fn is_dot_atom(text: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";
    !text.is_empty()
        && text.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c) || !c.is_ascii())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(entries: &[&str]) -> LocalDomains {
        LocalDomains::new(
            entries
                .iter()
                .map(|e| LocalDomain::parse(e).unwrap())
                .collect(),
        )
    }

    #[test]
    fn classification() {
        use Locality::*;
        let local = domains(&[
            "example.com",
            "Mail.Example.NET.",
            "[192.0.2.1]",
            "[IPv6:2001:DB8::1]",
            "bücher.example",
            "xn--fsqu00a.xn--4rr70v",
        ]);
        let cases = [
            // Internationalised domains: Unicode and xn-- forms are one name.
            ("jürgen@bücher.example", Local),
            ("jürgen@Bücher.Example", Local),
            ("jürgen@xn--bcher-kva.example", Local),
            ("用户@例子.广告", Local),
            ("用户@例子。广告", Local),
            ("user@xn--fsqu00a.xn--4rr70v", Local),
            ("user@bucher.example", Remote),
            ("用户@例子.公司", Remote),
            // Plain addresses, case and trailing dots.
            ("user@example.com", Local),
            ("User@EXAMPLE.COM", Local),
            ("user@example.com.", Local),
            ("user@mail.example.net", Local),
            ("user@MAIL.example.net.", Local),
            ("user@sub.example.com", Remote),
            ("user@example.org", Remote),
            ("user@badexample.com", Remote),
            ("first.last+tag@example.com", Local),
            ("o'brien@example.com", Local),
            ("\"john doe\"@example.com", Local),
            ("\"\"@example.com", Local),
            ("\"a\\\"b\"@example.com", Local),
            ("j\u{f6}rg@example.com", Local),
            // Postmaster without a domain.
            ("postmaster", Local),
            ("Postmaster", Local),
            ("POSTMASTER", Local),
            ("postmaster@example.org", Remote),
            ("webmaster", Remote),
            // Address literals: only when listed literally.
            ("user@[192.0.2.1]", Local),
            ("user@[192.0.2.2]", Remote),
            ("user@[IPv6:2001:db8::1]", Local),
            ("user@[ipv6:2001:DB8::1]", Local),
            ("user@[IPv6:2001:db8:0::1]", Remote),
            // Sender-specified routing.
            ("@relay.example.org:user@example.com", SenderRouted),
            ("@a.example,@b.example:user@example.com", SenderRouted),
            ("user%example.org@example.com", SenderRouted),
            ("example.org!user@example.com", SenderRouted),
            ("user@example.org@example.com", SenderRouted),
            ("\"user@example.org\"@example.com", SenderRouted),
            ("\"a%b\"@example.com", SenderRouted),
            ("\"a!b\"@example.com", SenderRouted),
            ("\"user\\@example.org\"@example.com", SenderRouted),
            ("\"user\\%example.org\"@example.com", SenderRouted),
            ("user%remote", SenderRouted),
            // Unreadable: never local.
            ("", Malformed),
            ("user@", Malformed),
            ("user@example..com", Malformed),
            ("user@.example.com", Malformed),
            ("user@exa mple.com", Malformed),
            ("us er@example.com", Malformed),
            (".user@example.com", Malformed),
            ("user.@example.com", Malformed),
            ("a..b@example.com", Malformed),
            ("\"unterminated@example.com", Malformed),
            ("\"a\"b@example.com", Malformed),
            ("\"a\\", Malformed),
            ("\"a\u{7}\"@example.com", Malformed),
            ("<user@example.com>", Malformed),
            ("user@example.com ", Malformed),
            ("user@[192.0.2.1", Malformed),
        ];
        for (recipient, expected) in cases {
            assert_eq!(
                local.classify(recipient),
                expected,
                "recipient {recipient:?}"
            );
        }
    }

    #[test]
    fn no_local_domains_leaves_only_postmaster_local() {
        let none = LocalDomains::default();
        assert_eq!(none.classify("postmaster"), Locality::Local);
        assert_eq!(none.classify("user@example.com"), Locality::Remote);
        assert_eq!(none.classify("user@[192.0.2.1]"), Locality::Remote);
    }

    #[test]
    fn literal_domain_matches_only_literals() {
        // A name entry never matches a literal and the reverse.
        let local = domains(&["example.com", "[192.0.2.1]"]);
        assert_eq!(local.classify("user@192.0.2.1"), Locality::Malformed);
        assert_eq!(local.classify("user@[example.com]"), Locality::Remote);
    }

    #[test]
    fn local_domain_entries() {
        use LocalDomainError::*;
        let good = [
            ("example.com", LocalDomain::Name("example.com".into())),
            (" Example.COM. ", LocalDomain::Name("example.com".into())),
            ("localhost", LocalDomain::Name("localhost".into())),
            ("[192.0.2.1]", LocalDomain::Literal("[192.0.2.1]".into())),
            (
                "[IPv6:2001:DB8::1]",
                LocalDomain::Literal("[ipv6:2001:db8::1]".into()),
            ),
        ];
        for (input, expected) in good {
            assert_eq!(LocalDomain::parse(input), Ok(expected), "input {input:?}");
        }
        let bad = [
            ("", Empty),
            ("  ", Empty),
            ("192.0.2.1", BareAddress),
            ("2001:db8::1", BareAddress),
            ("[192.0.2.300]", BadLiteral),
            ("[2001:db8::1]", BadLiteral),
            ("[IPv6:192.0.2.1]", BadLiteral),
            ("[192.0.2.1", BadLiteral),
            ("[]", BadLiteral),
            ("*.example.com", Wildcard),
            (".example.com", Wildcard),
            ("example..com", Invalid),
            ("user@example.com", Invalid),
            ("10.0.0.300", Invalid),
            ("bü cher.example", Invalid),
        ];
        for (input, expected) in bad {
            assert_eq!(LocalDomain::parse(input), Err(expected), "input {input:?}");
        }
    }
}
