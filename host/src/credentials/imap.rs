//! The `imap` backend: the credentials are right when the mail server's IMAP
//! service accepts them (RFC 9051/3501 LOGIN, or AUTHENTICATE PLAIN when the
//! server disables LOGIN).
//!
//! Only a tagged OK with the LOGIN/AUTHENTICATE command's own tag accepts;
//! tagged NO rejects (except NO with a response code saying the server
//! cannot answer, RFC 5530); BAD, garbage or a closed connection is
//! unavailable. So are a PREAUTH greeting (no password was checked), a
//! tagged reply with another tag, a continuation request where none was
//! asked for, `* BYE`, and a server that sent lines before the credentials
//! went out (they would be read as the answer to them). Untagged `* OK`
//! lines are never an answer.

use std::collections::HashSet;

use anyhow::bail;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

use super::transport::{Connector, Conversation, excerpt};
use super::{BackendAnswer, Credentials};

/// Checks credentials by logging in to an IMAP server.
pub struct ImapBackend {
    connector: Connector,
}

/// A tagged reply's status.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tagged {
    Ok,
    No(String),
    Bad(String),
}

/// What the server said to a command that may ask for continuations.
enum Progress {
    Continue,
    Done(Tagged),
}

impl ImapBackend {
    pub(crate) fn new(connector: Connector) -> Self {
        Self { connector }
    }

    pub(crate) async fn check(&self, attempt: &Credentials) -> BackendAnswer {
        let mut conversation = self.connector.connect().await?;
        let greeting = conversation.read_line().await?;
        if !starts_with_ignore_case(&greeting, "* OK") {
            bail!("unexpected IMAP greeting {}", excerpt(&greeting));
        }
        let mut capabilities = capability(&mut conversation, "rg1").await?;
        if self.connector.wants_starttls() {
            if !capabilities.contains("STARTTLS") {
                bail!("the IMAP server does not offer STARTTLS");
            }
            conversation.send_line("rg2 STARTTLS").await?;
            match read_tagged(&mut conversation, "rg2").await? {
                Tagged::Ok => {}
                other => bail!("STARTTLS refused: {other:?}"),
            }
            conversation = self.connector.upgrade(conversation).await?;
            capabilities = capability(&mut conversation, "rg3").await?;
        }
        let reply = if capabilities.contains("LOGINDISABLED") {
            if !capabilities.contains("AUTH=PLAIN") {
                bail!("the IMAP server disables LOGIN and offers no AUTHENTICATE PLAIN");
            }
            authenticate_plain(&mut conversation, "rg4", attempt, &capabilities).await?
        } else {
            login(&mut conversation, "rg4", attempt).await?
        };
        let verdict = verdict(reply);
        conversation.goodbye("rg5 LOGOUT").await;
        verdict
    }
}

/// Turns the tagged answer to LOGIN/AUTHENTICATE into a verdict.
fn verdict(reply: Tagged) -> BackendAnswer {
    match reply {
        Tagged::Ok => Ok(true),
        Tagged::No(text) => {
            let code = response_code(&text);
            if matches!(
                code.as_deref(),
                Some("UNAVAILABLE" | "SERVERBUG" | "PRIVACYREQUIRED" | "LIMIT" | "INUSE")
            ) {
                bail!(
                    "IMAP server cannot check credentials now: {}",
                    excerpt(&text)
                );
            }
            Ok(false)
        }
        Tagged::Bad(text) => bail!("IMAP server answered BAD: {}", excerpt(&text)),
    }
}

/// The `[CODE]` at the start of a response text, upper-cased.
fn response_code(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('[')?;
    let end = rest.find([']', ' '])?;
    Some(rest[..end].to_ascii_uppercase())
}

/// Sends CAPABILITY and collects the names the server lists.
async fn capability(conversation: &mut Conversation, tag: &str) -> anyhow::Result<HashSet<String>> {
    conversation.send_line(&format!("{tag} CAPABILITY")).await?;
    let mut capabilities = HashSet::new();
    loop {
        let line = conversation.read_line().await?;
        if let Some(rest) = strip_prefix_ignore_case(&line, "* CAPABILITY ") {
            capabilities.extend(rest.split_ascii_whitespace().map(str::to_ascii_uppercase));
        } else if line.starts_with("* ") {
            continue;
        } else if let Some(status) = parse_tagged(&line, tag) {
            return match status {
                Tagged::Ok => Ok(capabilities),
                other => bail!("CAPABILITY failed: {other:?}"),
            };
        } else {
            bail!("unexpected IMAP line {}", excerpt(&line));
        }
    }
}

/// Reads until the tagged reply, skipping untagged lines.
async fn read_tagged(conversation: &mut Conversation, tag: &str) -> anyhow::Result<Tagged> {
    match read_progress(conversation, tag, false).await? {
        Progress::Done(tagged) => Ok(tagged),
        Progress::Continue => unreachable!("continuations are not accepted here"),
    }
}

/// Reads until a continuation request (when `accept_continuation`) or the
/// tagged reply.
async fn read_progress(
    conversation: &mut Conversation,
    tag: &str,
    accept_continuation: bool,
) -> anyhow::Result<Progress> {
    loop {
        let line = conversation.read_line().await?;
        if line.starts_with("* ") {
            if starts_with_ignore_case(&line, "* BYE") {
                bail!("IMAP server said goodbye: {}", excerpt(&line));
            }
            continue;
        }
        if line == "+" || line.starts_with("+ ") {
            if accept_continuation {
                return Ok(Progress::Continue);
            }
            bail!("unexpected IMAP continuation request");
        }
        match parse_tagged(&line, tag) {
            Some(status) => return Ok(Progress::Done(status)),
            None => bail!("unexpected IMAP line {}", excerpt(&line)),
        }
    }
}

/// `tag OK|NO|BAD text` for our tag.
fn parse_tagged(line: &str, tag: &str) -> Option<Tagged> {
    let rest = line.strip_prefix(tag)?.strip_prefix(' ')?;
    let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
    match status.to_ascii_uppercase().as_str() {
        "OK" => Some(Tagged::Ok),
        "NO" => Some(Tagged::No(text.to_string())),
        "BAD" => Some(Tagged::Bad(text.to_string())),
        _ => None,
    }
}

/// Runs a command made of parts; after each part that ends in a literal
/// header, waits for the server's continuation request.
async fn send_parts(
    conversation: &mut Conversation,
    tag: &str,
    parts: Vec<(Zeroizing<Vec<u8>>, bool)>,
) -> anyhow::Result<Tagged> {
    for (bytes, wait) in parts {
        conversation.ensure_in_step("the last command")?;
        conversation.write(&bytes).await?;
        if wait && let Progress::Done(tagged) = read_progress(conversation, tag, true).await? {
            return Ok(tagged);
        }
    }
    read_tagged(conversation, tag).await
}

async fn login(
    conversation: &mut Conversation,
    tag: &str,
    attempt: &Credentials,
) -> anyhow::Result<Tagged> {
    let Some(parts) = login_command(tag, &attempt.user, attempt.password()) else {
        // NUL cannot be sent in IMAP LOGIN, so no such account can log in.
        return Ok(Tagged::No("credentials contain NUL".to_string()));
    };
    send_parts(conversation, tag, parts).await
}

async fn authenticate_plain(
    conversation: &mut Conversation,
    tag: &str,
    attempt: &Credentials,
    capabilities: &HashSet<String>,
) -> anyhow::Result<Tagged> {
    let mut message = Zeroizing::new(Vec::new());
    message.push(0);
    message.extend_from_slice(attempt.user.as_bytes());
    message.push(0);
    message.extend_from_slice(attempt.password().as_bytes());
    let encoded = Zeroizing::new(BASE64.encode(&*message));
    let parts = if capabilities.contains("SASL-IR") {
        vec![(
            Zeroizing::new(format!("{tag} AUTHENTICATE PLAIN {}\r\n", *encoded).into_bytes()),
            false,
        )]
    } else {
        vec![
            (
                Zeroizing::new(format!("{tag} AUTHENTICATE PLAIN\r\n").into_bytes()),
                true,
            ),
            (
                Zeroizing::new(format!("{}\r\n", *encoded).into_bytes()),
                false,
            ),
        ]
    };
    send_parts(conversation, tag, parts).await
}

/// `tag LOGIN user password` as parts to send: quoted strings where
/// possible, synchronizing literals for CR, LF or 8-bit text. `None` when a
/// string holds NUL, which IMAP cannot carry.
fn login_command(tag: &str, user: &str, password: &str) -> Option<Vec<(Zeroizing<Vec<u8>>, bool)>> {
    let mut parts = Vec::new();
    let mut current = Zeroizing::new(format!("{tag} LOGIN ").into_bytes());
    for (index, text) in [user, password].into_iter().enumerate() {
        if index > 0 {
            current.push(b' ');
        }
        match imap_string(text)? {
            ImapString::Quoted(quoted) => current.extend_from_slice(quoted.as_bytes()),
            ImapString::Literal(bytes) => {
                current.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
                parts.push((current, true));
                current = Zeroizing::new(bytes.to_vec());
            }
        }
    }
    current.extend_from_slice(b"\r\n");
    parts.push((current, false));
    Some(parts)
}

/// How a string goes on the wire.
#[derive(Debug, PartialEq, Eq)]
enum ImapString<'a> {
    /// `"..."` with `\` and `"` escaped.
    Quoted(Zeroizing<String>),
    /// `{n}` CRLF, then the bytes.
    Literal(&'a [u8]),
}

fn imap_string(text: &str) -> Option<ImapString<'_>> {
    if text.bytes().any(|b| b == 0) {
        return None;
    }
    if text.bytes().any(|b| b == b'\r' || b == b'\n' || b >= 0x80) {
        return Some(ImapString::Literal(text.as_bytes()));
    }
    let mut quoted = Zeroizing::new(String::with_capacity(text.len() + 2));
    quoted.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Some(ImapString::Quoted(quoted))
}

fn starts_with_ignore_case(line: &str, prefix: &str) -> bool {
    strip_prefix_ignore_case(line, prefix).is_some()
}

fn strip_prefix_ignore_case<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let head = line.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &line[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(parts: &[(Zeroizing<Vec<u8>>, bool)]) -> Vec<(String, bool)> {
        parts
            .iter()
            .map(|(bytes, wait)| (String::from_utf8_lossy(bytes).into_owned(), *wait))
            .collect()
    }

    #[test]
    fn plain_strings_are_quoted_with_escapes() {
        let parts = login_command("a1", "alice", r#"pa"ss\word"#).unwrap();
        assert_eq!(
            joined(&parts),
            vec![(
                r#"a1 LOGIN "alice" "pa\"ss\\word""#.to_string() + "\r\n",
                false
            )]
        );
    }

    #[test]
    fn eight_bit_or_line_breaks_go_as_literals() {
        let parts = login_command("a1", "alice", "pässwörd").unwrap();
        assert_eq!(
            joined(&parts),
            vec![
                ("a1 LOGIN \"alice\" {10}\r\n".to_string(), true),
                ("pässwörd\r\n".to_string(), false),
            ]
        );
        let parts = login_command("a1", "bob\r\n", "x").unwrap();
        assert_eq!(
            joined(&parts),
            vec![
                ("a1 LOGIN {5}\r\n".to_string(), true),
                ("bob\r\n \"x\"\r\n".to_string(), false),
            ]
        );
        assert!(login_command("a1", "alice", "nul\0byte").is_none());
    }

    #[test]
    fn tagged_replies_and_response_codes() {
        assert_eq!(parse_tagged("rg4 OK Logged in", "rg4"), Some(Tagged::Ok));
        assert_eq!(
            parse_tagged(
                "rg4 NO [AUTHENTICATIONFAILED] Authentication failed.",
                "rg4"
            ),
            Some(Tagged::No(
                "[AUTHENTICATIONFAILED] Authentication failed.".to_string()
            ))
        );
        assert_eq!(parse_tagged("rg40 OK", "rg4"), None);
        assert_eq!(parse_tagged("* OK", "rg4"), None);
        assert!(verdict(Tagged::Ok).unwrap());
        assert!(!verdict(Tagged::No("[AUTHENTICATIONFAILED] no".to_string())).unwrap());
        assert!(!verdict(Tagged::No("Authentication failed".to_string())).unwrap());
        assert!(verdict(Tagged::No("[UNAVAILABLE] try later".to_string())).is_err());
        assert!(verdict(Tagged::Bad("syntax".to_string())).is_err());
    }
}
