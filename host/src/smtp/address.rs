//! RFC 5321 path syntax for MAIL FROM and RCPT TO.
//!
//! relaygate checks the syntax strictly (so that the upstream never sees an
//! address the proxy did not understand) but keeps the client's exact text:
//! the policy and the upstream get what the client wrote.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest local part (RFC 5321 4.5.3.1.1).
const MAX_LOCAL_PART: usize = 64;
/// Longest domain (RFC 5321 4.5.3.1.2).
const MAX_DOMAIN: usize = 255;
/// Longest path including the angle brackets (RFC 5321 4.5.3.1.3).
const MAX_PATH: usize = 256;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not enclosed in angle brackets, or stray text around them.
    #[error("malformed path")]
    Malformed,
    /// The local part is not a dot-string or quoted string.
    #[error("bad local part")]
    LocalPart,
    /// The domain is not a host name or address literal.
    #[error("bad domain")]
    Domain,
    /// A source route is malformed.
    #[error("bad source route")]
    SourceRoute,
    /// Over an RFC 5321 length limit.
    #[error("address too long")]
    TooLong,
    /// Non-ASCII characters without the SMTPUTF8 parameter.
    #[error("non-ASCII address without SMTPUTF8")]
    NeedsSmtpUtf8,
    /// A null path `<>` where one is not allowed.
    #[error("null path not allowed here")]
    Null,
}

/// Which path is being parsed: MAIL FROM allows `<>`, RCPT TO allows `<postmaster>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A reverse path (MAIL FROM).
    Reverse,
    /// A forward path (RCPT TO).
    Forward,
}

/// Check `text` (the argument of MAIL FROM:/RCPT TO: up to its first
/// parameter) and return the path without its angle brackets.
///
/// A bare mailbox without brackets is accepted, as most MTAs do. `utf8`
/// allows non-ASCII characters (the client gave SMTPUTF8).
pub fn parse_path(text: &str, kind: PathKind, utf8: bool) -> Result<String, AddressError> {
    let inner = match (text.strip_prefix('<'), text.ends_with('>')) {
        (Some(rest), true) => &rest[..rest.len() - 1],
        (None, false) if !text.is_empty() => text,
        _ => return Err(AddressError::Malformed),
    };
    if inner.len() + 2 > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    if !utf8 && !inner.is_ascii() {
        return Err(AddressError::NeedsSmtpUtf8);
    }
    if inner.is_empty() {
        return match kind {
            PathKind::Reverse => Ok(String::new()),
            PathKind::Forward => Err(AddressError::Null),
        };
    }
    if kind == PathKind::Forward && inner.eq_ignore_ascii_case("postmaster") {
        return Ok(inner.to_string());
    }
    let mailbox = match inner.strip_prefix('@') {
        Some(_) => strip_source_route(inner)?,
        None => inner,
    };
    check_mailbox(mailbox)?;
    Ok(inner.to_string())
}

/// `@a,@b:user@c` -> `user@c`, checking each route domain.
fn strip_source_route(path: &str) -> Result<&str, AddressError> {
    let (route, mailbox) = path.split_once(':').ok_or(AddressError::SourceRoute)?;
    for hop in route.split(',') {
        let domain = hop.strip_prefix('@').ok_or(AddressError::SourceRoute)?;
        check_domain(domain).map_err(|_| AddressError::SourceRoute)?;
    }
    Ok(mailbox)
}

/// `local-part "@" ( domain / address-literal )`.
fn check_mailbox(mailbox: &str) -> Result<(), AddressError> {
    let local_len = local_part_len(mailbox)?;
    let rest = &mailbox[local_len..];
    let domain = rest.strip_prefix('@').ok_or(AddressError::Domain)?;
    if local_len > MAX_LOCAL_PART {
        return Err(AddressError::TooLong);
    }
    check_domain(domain)
}

/// Length in bytes of the local part at the start of `mailbox`.
fn local_part_len(mailbox: &str) -> Result<usize, AddressError> {
    let bytes = mailbox.as_bytes();
    if bytes.first() == Some(&b'"') {
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => return Ok(i + 1),
                b'\\' if i + 1 < bytes.len() && (32..=126).contains(&bytes[i + 1]) => i += 2,
                b if is_qtext(b) => i += 1,
                _ => return Err(AddressError::LocalPart),
            }
        }
        return Err(AddressError::LocalPart);
    }
    let end = mailbox.find('@').ok_or(AddressError::Domain)?;
    let local = &mailbox[..end];
    if local.is_empty()
        || local
            .split('.')
            .any(|atom| atom.is_empty() || !atom.bytes().all(is_atext))
    {
        return Err(AddressError::LocalPart);
    }
    Ok(end)
}

/// RFC 5321 qtextSMTP (plus UTF-8 bytes, allowed only under SMTPUTF8, which
/// the caller has already checked).
fn is_qtext(b: u8) -> bool {
    matches!(b, 32..=33 | 35..=91 | 93..=126) || b >= 0x80
}

/// RFC 5322 atext (plus UTF-8 bytes).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// A host name (one trailing dot tolerated) or an address literal.
fn check_domain(domain: &str) -> Result<(), AddressError> {
    if domain.len() > MAX_DOMAIN {
        return Err(AddressError::TooLong);
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let literal = literal.strip_suffix(']').ok_or(AddressError::Domain)?;
        return check_address_literal(literal);
    }
    let name = domain.strip_suffix('.').unwrap_or(domain);
    let labels_ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        });
    if labels_ok {
        Ok(())
    } else {
        Err(AddressError::Domain)
    }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
///
/// RFC 5321's general address literals (`[tag:content]`) are refused: no
/// tag is registered, and their content may hold `<`, `>` and `@`, which
/// an upstream could parse differently from relaygate.
fn check_address_literal(literal: &str) -> Result<(), AddressError> {
    if literal.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    match literal.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => literal[5..]
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| AddressError::Domain),
        _ => Err(AddressError::Domain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathKind::{Forward, Reverse};

    #[test]
    fn accepted_paths_keep_the_clients_text() {
        let cases = [
            ("<user@example.com>", Forward, "user@example.com"),
            ("user@example.com", Forward, "user@example.com"),
            (
                "<User.Name+tag@Example.COM.>",
                Forward,
                "User.Name+tag@Example.COM.",
            ),
            (
                "<\"john doe\"@example.com>",
                Forward,
                "\"john doe\"@example.com",
            ),
            ("<\"a@b\"@example.com>", Forward, "\"a@b\"@example.com"),
            (
                "<\"a\\\"b\"@example.com>",
                Forward,
                "\"a\\\"b\"@example.com",
            ),
            (
                "<user%remote@example.com>",
                Forward,
                "user%remote@example.com",
            ),
            (
                "<remote!user@example.com>",
                Forward,
                "remote!user@example.com",
            ),
            (
                "<@a.example,@b.example:user@c.example>",
                Forward,
                "@a.example,@b.example:user@c.example",
            ),
            ("<user@[192.0.2.1]>", Forward, "user@[192.0.2.1]"),
            (
                "<user@[IPv6:2001:db8::1]>",
                Forward,
                "user@[IPv6:2001:db8::1]",
            ),
            ("<Postmaster>", Forward, "Postmaster"),
            ("<>", Reverse, ""),
        ];
        for (text, kind, want) in cases {
            assert_eq!(parse_path(text, kind, false).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn refused_paths() {
        let cases = [
            ("<>", Forward, AddressError::Null),
            ("<user@example.com", Forward, AddressError::Malformed),
            ("", Forward, AddressError::Malformed),
            ("<user>", Forward, AddressError::Domain),
            ("<postmaster>", Reverse, AddressError::Domain),
            ("<user@remote@example.com>", Forward, AddressError::Domain),
            ("<a..b@example.com>", Forward, AddressError::LocalPart),
            ("<.a@example.com>", Forward, AddressError::LocalPart),
            ("<a b@example.com>", Forward, AddressError::LocalPart),
            (
                "<\"unterminated@example.com>",
                Forward,
                AddressError::LocalPart,
            ),
            ("<user@-bad.example>", Forward, AddressError::Domain),
            ("<user@exa mple.com>", Forward, AddressError::Domain),
            ("<user@example..com>", Forward, AddressError::Domain),
            ("<user@[300.0.0.1]>", Forward, AddressError::Domain),
            ("<user@[IPv6:zz::1]>", Forward, AddressError::Domain),
            ("<u@[x-tag:a>b]>", Forward, AddressError::Domain),
            ("<u@[tag:content]>", Forward, AddressError::Domain),
            ("<user@>", Forward, AddressError::Domain),
            ("<@a.example:>", Forward, AddressError::Domain),
            ("<@a.example user@c>", Forward, AddressError::SourceRoute),
            ("<a,@b:user@c>", Forward, AddressError::LocalPart),
            ("<jürgen@example.com>", Forward, AddressError::NeedsSmtpUtf8),
        ];
        for (text, kind, want) in cases {
            assert_eq!(parse_path(text, kind, false), Err(want), "{text}");
        }
    }

    #[test]
    fn utf8_only_with_smtputf8() {
        assert_eq!(
            parse_path("<jürgen@bücher.example>", Forward, true).as_deref(),
            Ok("jürgen@bücher.example")
        );
    }

    #[test]
    fn length_limits() {
        let local = "a".repeat(65);
        assert_eq!(
            parse_path(&format!("<{local}@example.com>"), Forward, false),
            Err(AddressError::TooLong)
        );
        let long = format!("<a@{}.com>", "b".repeat(260));
        assert_eq!(
            parse_path(&long, Forward, false),
            Err(AddressError::TooLong)
        );
    }
}
