//! Parsing one SMTP command line into a typed [`Command`].

use super::address::{AddressError, PathKind, parse_path};

/// An ESMTP parameter of MAIL FROM / RCPT TO (`KEYWORD[=value]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Keyword, upper-cased.
    pub name: String,
    /// Value as sent, if any.
    pub value: Option<String>,
}

/// A parsed SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// HELO with the client's name.
    Helo(String),
    /// EHLO with the client's name.
    Ehlo(String),
    /// MAIL FROM with the reverse path ("" for `<>`) and parameters.
    Mail {
        /// Reverse path without angle brackets.
        path: String,
        /// ESMTP parameters.
        params: Vec<Param>,
    },
    /// RCPT TO with the forward path and parameters.
    Rcpt {
        /// Forward path without angle brackets, source route kept.
        path: String,
        /// ESMTP parameters.
        params: Vec<Param>,
    },
    /// DATA.
    Data,
    /// RSET.
    Rset,
    /// NOOP (argument ignored).
    Noop,
    /// QUIT.
    Quit,
    /// VRFY (argument ignored: nothing is disclosed).
    Vrfy,
    /// EXPN (argument ignored: nothing is disclosed).
    Expn,
    /// HELP (argument ignored).
    Help,
    /// STARTTLS.
    StartTls,
    /// AUTH with mechanism and optional initial response.
    Auth {
        /// Mechanism, upper-cased.
        mechanism: String,
        /// Initial response (base64 or "=").
        initial: Option<String>,
    },
    /// BDAT (CHUNKING); recognised so it can be refused cleanly.
    Bdat,
}

/// Why a command line was refused; each maps to one reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The verb is not one relaygate knows.
    #[error("unknown command")]
    Unknown,
    /// NUL, bare CR/LF, other control bytes, or invalid UTF-8.
    #[error("invalid characters")]
    BadCharacters,
    /// The arguments do not fit the command; carries the usage text.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// The path is malformed.
    #[error("bad address: {0}")]
    Address(AddressError),
    /// A well-formed MAIL or RCPT whose path holds non-ASCII characters but
    /// whose own parameters do not include SMTPUTF8. The parser cannot tell
    /// whether that is allowed: a RCPT belongs to the transaction its MAIL
    /// opened, and SMTPUTF8 on that MAIL covers every recipient (RFC 6531).
    /// The session decides, with the command at hand.
    #[error("non-ASCII address without SMTPUTF8")]
    NeedsSmtpUtf8(Box<Command>),
}

const MAIL_USAGE: &str = "MAIL FROM:<address>";
const RCPT_USAGE: &str = "RCPT TO:<address>";

/// Parse a command line without its CRLF.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    if line
        .iter()
        .any(|&b| b == 0 || b == b'\r' || b == b'\n' || (b < 32 && b != b'\t') || b == 127)
    {
        return Err(CommandError::BadCharacters);
    }
    let line = std::str::from_utf8(line).map_err(|_| CommandError::BadCharacters)?;
    let (verb, args) = match line.split_once(' ') {
        Some((verb, args)) => (verb, args.trim_matches(' ')),
        None => (line, ""),
    };
    match verb.to_ascii_uppercase().as_str() {
        "HELO" => domain_arg(args, "HELO hostname").map(Command::Helo),
        "EHLO" => domain_arg(args, "EHLO hostname").map(Command::Ehlo),
        "MAIL" => path_command(args, "FROM:", PathKind::Reverse, MAIL_USAGE)
            .and_then(|(path, params)| utf8_checked(Command::Mail { path, params })),
        "RCPT" => path_command(args, "TO:", PathKind::Forward, RCPT_USAGE)
            .and_then(|(path, params)| utf8_checked(Command::Rcpt { path, params })),
        "DATA" => no_args(args, "DATA", Command::Data),
        "RSET" => no_args(args, "RSET", Command::Rset),
        "QUIT" => no_args(args, "QUIT", Command::Quit),
        "STARTTLS" => no_args(args, "STARTTLS", Command::StartTls),
        "NOOP" => Ok(Command::Noop),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "HELP" => Ok(Command::Help),
        "BDAT" => Ok(Command::Bdat),
        "AUTH" => auth(args),
        _ => Err(CommandError::Unknown),
    }
}

fn no_args(args: &str, usage: &'static str, command: Command) -> Result<Command, CommandError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Syntax(usage))
    }
}

/// HELO/EHLO take one word (a domain or address literal; checked loosely, as
/// real clients send all sorts of names and the policy judges them).
fn domain_arg(args: &str, usage: &'static str) -> Result<String, CommandError> {
    let mut words = args.split_ascii_whitespace();
    match (words.next(), words.next()) {
        (Some(name), None) if name.len() <= 255 => Ok(name.to_string()),
        _ => Err(CommandError::Syntax(usage)),
    }
}

fn auth(args: &str) -> Result<Command, CommandError> {
    let mut words = args.split_ascii_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(mechanism), initial, None) => Ok(Command::Auth {
            mechanism: mechanism.to_ascii_uppercase(),
            initial: initial.map(str::to_string),
        }),
        _ => Err(CommandError::Syntax("AUTH mechanism [initial-response]")),
    }
}

/// True when `params` include SMTPUTF8 (RFC 6531: a keyword without value).
pub fn has_smtputf8(params: &[Param]) -> bool {
    params
        .iter()
        .any(|p| p.name == "SMTPUTF8" && p.value.is_none())
}

/// A MAIL/RCPT whose path is ASCII, or which gives SMTPUTF8 itself, is
/// accepted as it is; any other non-ASCII path goes to the session as
/// [`CommandError::NeedsSmtpUtf8`], which only an SMTPUTF8 transaction
/// turns back into the command.
fn utf8_checked(command: Command) -> Result<Command, CommandError> {
    let (Command::Mail { path, params } | Command::Rcpt { path, params }) = &command else {
        return Ok(command);
    };
    if path.is_ascii() || has_smtputf8(params) {
        Ok(command)
    } else {
        Err(CommandError::NeedsSmtpUtf8(Box::new(command)))
    }
}

/// `FROM:<path> params` / `TO:<path> params`; a space after the colon is
/// tolerated, as in most MTAs. UTF-8 in the path is checked for syntax here
/// and for permission by [`utf8_checked`] and the session.
fn path_command(
    args: &str,
    keyword: &str,
    kind: PathKind,
    usage: &'static str,
) -> Result<(String, Vec<Param>), CommandError> {
    let head = args
        .get(..keyword.len())
        .ok_or(CommandError::Syntax(usage))?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(CommandError::Syntax(usage));
    }
    let rest = args[keyword.len()..].trim_start_matches(' ');
    let (path_text, params_text) = split_path(rest);
    let path = parse_path(path_text, kind, true).map_err(CommandError::Address)?;
    let params = parse_params(params_text).ok_or(CommandError::Syntax(usage))?;
    Ok((path, params))
}

/// Split at the end of the path: the closing `>` (outside a quoted local
/// part) or, for a bare mailbox, the first space.
fn split_path(text: &str) -> (&str, &str) {
    if text.starts_with('<') {
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in text.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '>' if !quoted => return (&text[..=i], text[i + 1..].trim_matches(' ')),
                _ => {}
            }
        }
        return (text, "");
    }
    match text.split_once(' ') {
        Some((path, params)) => (path, params.trim_matches(' ')),
        None => (text, ""),
    }
}

/// `KEYWORD[=value]` separated by spaces; keywords are `ALPHA / DIGIT / "-"`.
fn parse_params(text: &str) -> Option<Vec<Param>> {
    text.split(' ')
        .filter(|word| !word.is_empty())
        .map(|word| {
            let (name, value) = match word.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (word, None),
            };
            let name_ok =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            let value_ok = value.as_deref().is_none_or(|v| {
                !v.is_empty() && v.bytes().all(|b| (33..=126).contains(&b) && b != b'=')
                    || !v.is_ascii()
            });
            (name_ok && value_ok).then(|| Param {
                name: name.to_ascii_uppercase(),
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, value: Option<&str>) -> Param {
        Param {
            name: name.into(),
            value: value.map(Into::into),
        }
    }

    #[test]
    fn commands() {
        let cases: Vec<(&str, Command)> = vec![
            (
                "HELO client.example",
                Command::Helo("client.example".into()),
            ),
            ("ehlo [192.0.2.1]", Command::Ehlo("[192.0.2.1]".into())),
            (
                "MAIL FROM:<a@example.com> SIZE=1000 BODY=8BITMIME",
                Command::Mail {
                    path: "a@example.com".into(),
                    params: vec![param("SIZE", Some("1000")), param("BODY", Some("8BITMIME"))],
                },
            ),
            (
                "mail from: <>",
                Command::Mail {
                    path: "".into(),
                    params: vec![],
                },
            ),
            (
                "MAIL FROM:a@example.com",
                Command::Mail {
                    path: "a@example.com".into(),
                    params: vec![],
                },
            ),
            (
                "RCPT TO:<\"x> y\"@example.com> notify=never",
                Command::Rcpt {
                    path: "\"x> y\"@example.com".into(),
                    params: vec![param("NOTIFY", Some("never"))],
                },
            ),
            (
                "RCPT TO:<postmaster>",
                Command::Rcpt {
                    path: "postmaster".into(),
                    params: vec![],
                },
            ),
            ("DATA", Command::Data),
            ("rset", Command::Rset),
            ("NOOP anything", Command::Noop),
            ("QUIT", Command::Quit),
            ("VRFY root", Command::Vrfy),
            ("EXPN staff", Command::Expn),
            ("HELP", Command::Help),
            ("STARTTLS", Command::StartTls),
            (
                "AUTH plain AGFAYg==",
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial: Some("AGFAYg==".into()),
                },
            ),
            (
                "AUTH LOGIN",
                Command::Auth {
                    mechanism: "LOGIN".into(),
                    initial: None,
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_command(line.as_bytes()), Ok(want), "{line}");
        }
    }

    #[test]
    fn errors() {
        let cases: Vec<(&[u8], CommandError)> = vec![
            (b"FOO bar", CommandError::Unknown),
            (b"", CommandError::Unknown),
            (b"HELO", CommandError::Syntax("HELO hostname")),
            (b"HELO a b", CommandError::Syntax("HELO hostname")),
            (b"MAIL <a@example.com>", CommandError::Syntax(MAIL_USAGE)),
            (
                b"MAIL FROM:<a@example.com> SIZE=",
                CommandError::Syntax(MAIL_USAGE),
            ),
            (b"RCPT TO:<>", CommandError::Address(AddressError::Null)),
            (
                b"RCPT TO:<a@b@example.com>",
                CommandError::Address(AddressError::Domain),
            ),
            (b"DATA now", CommandError::Syntax("DATA")),
            (b"HELO a\0b", CommandError::BadCharacters),
            (b"HELO a\rb", CommandError::BadCharacters),
            (b"HELO a\nb", CommandError::BadCharacters),
            (b"HELO \xff", CommandError::BadCharacters),
            (
                b"MAIL FROM:<j\xc3\xbcrgen@example.com>",
                CommandError::NeedsSmtpUtf8(Box::new(Command::Mail {
                    path: "j\u{fc}rgen@example.com".into(),
                    params: vec![],
                })),
            ),
            (
                b"MAIL FROM:<j\xc3\xbc..rgen@example.com> SMTPUTF8",
                CommandError::Address(AddressError::LocalPart),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_command(line),
                Err(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn utf8_paths_without_their_own_smtputf8_go_to_the_session_parsed() {
        // A RCPT never carries SMTPUTF8 itself: its MAIL's parameter decides,
        // which only the session knows. The parser checks the syntax and
        // hands the command over.
        for (line, want) in [
            (
                "RCPT TO:<用户@例子.广告>",
                Command::Rcpt {
                    path: "用户@例子.广告".into(),
                    params: vec![],
                },
            ),
            (
                "RCPT TO:<\"josé q\"@example.com> NOTIFY=NEVER",
                Command::Rcpt {
                    path: "\"josé q\"@example.com".into(),
                    params: vec![param("NOTIFY", Some("NEVER"))],
                },
            ),
            (
                "MAIL FROM:<josé@example.com> SMTPUTF8=yes",
                Command::Mail {
                    path: "josé@example.com".into(),
                    params: vec![param("SMTPUTF8", Some("yes"))],
                },
            ),
        ] {
            assert_eq!(
                parse_command(line.as_bytes()),
                Err(CommandError::NeedsSmtpUtf8(Box::new(want))),
                "{line}"
            );
        }
        assert_eq!(
            parse_command("RCPT TO:<用户@例子..广告>".as_bytes()),
            Err(CommandError::Address(AddressError::Domain)),
            "the syntax is checked all the same"
        );
    }

    #[test]
    fn smtputf8_parameter_allows_utf8_paths() {
        assert_eq!(
            parse_command("MAIL FROM:<jürgen@example.com> SMTPUTF8".as_bytes()),
            Ok(Command::Mail {
                path: "jürgen@example.com".into(),
                params: vec![param("SMTPUTF8", None)],
            })
        );
    }
}
