//! The `pop3` backend: the credentials are right when the mail server's POP3
//! service accepts USER/PASS (RFC 1939; no APOP).
//!
//! Only `+OK` to PASS accepts: `+OK` to USER says nothing about the
//! password. `-ERR` to USER or PASS rejects, except `-ERR [SYS/...]` (the
//! server cannot answer now, RFC 3206) and `-ERR [IN-USE]` (the maildrop is
//! locked, RFC 2449: the server may say so before or without checking the
//! password), which are unavailable like garbage or a closed connection.
//! A server that sends more than one line for a command is out of step and
//! unavailable: a stale `+OK` must never be read as the answer to PASS.

use anyhow::bail;

use super::transport::{Connector, Conversation, excerpt};
use super::{BackendAnswer, Credentials};

/// Checks credentials by logging in to a POP3 server.
pub struct Pop3Backend {
    connector: Connector,
}

/// A POP3 status line.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Ok,
    Err(String),
}

impl Pop3Backend {
    pub(crate) fn new(connector: Connector) -> Self {
        Self { connector }
    }

    pub(crate) async fn check(&self, attempt: &Credentials) -> BackendAnswer {
        if !sendable(&attempt.user) || !sendable(attempt.password()) {
            // POP3 lines cannot carry CR, LF or NUL: no account has such a name or password.
            return Ok(false);
        }
        let mut conversation = self.connector.connect().await?;
        match reply(&mut conversation).await? {
            Reply::Ok => {}
            Reply::Err(text) => bail!("POP3 server refused the session: {}", excerpt(&text)),
        }
        if self.connector.wants_starttls() {
            conversation.send_line("STLS").await?;
            match reply(&mut conversation).await? {
                Reply::Ok => {}
                Reply::Err(text) => bail!("STLS refused: {}", excerpt(&text)),
            }
            conversation = self.connector.upgrade(conversation).await?;
        }
        conversation
            .send_line(&format!("USER {}", attempt.user))
            .await?;
        let answer = match reply(&mut conversation).await? {
            Reply::Ok => {
                conversation.ensure_in_step("USER")?;
                let line = zeroize::Zeroizing::new(format!("PASS {}", attempt.password()));
                conversation.send_line(&line).await?;
                let answer = verdict(reply(&mut conversation).await?);
                conversation.ensure_in_step("PASS")?;
                answer
            }
            // The password was never sent, so this can only be a refusal.
            Reply::Err(text) => match verdict(Reply::Err(text)) {
                Ok(_) => Ok(false),
                Err(error) => Err(error),
            },
        };
        conversation.goodbye("QUIT").await;
        answer
    }
}

fn sendable(text: &str) -> bool {
    !text.is_empty() && !text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

fn verdict(reply: Reply) -> BackendAnswer {
    match reply {
        Reply::Ok => Ok(true),
        Reply::Err(text) => {
            let code = text
                .trim_start()
                .strip_prefix('[')
                .and_then(|rest| rest.split(']').next())
                .unwrap_or("")
                .to_ascii_uppercase();
            if code == "IN-USE" || code.starts_with("SYS/") {
                bail!(
                    "POP3 server cannot check credentials now: {}",
                    excerpt(&text)
                )
            } else {
                Ok(false)
            }
        }
    }
}

async fn reply(conversation: &mut Conversation) -> anyhow::Result<Reply> {
    let line = conversation.read_line().await?;
    parse_reply(&line).ok_or_else(|| anyhow::anyhow!("unexpected POP3 reply {}", excerpt(&line)))
}

fn parse_reply(line: &str) -> Option<Reply> {
    if line == "+OK" || line.starts_with("+OK ") {
        Some(Reply::Ok)
    } else if line == "-ERR" {
        Some(Reply::Err(String::new()))
    } else {
        line.strip_prefix("-ERR ")
            .map(|text| Reply::Err(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_reply("+OK Dovecot ready."), Some(Reply::Ok));
        assert_eq!(parse_reply("+OK"), Some(Reply::Ok));
        assert_eq!(
            parse_reply("-ERR [AUTH] Authentication failed."),
            Some(Reply::Err("[AUTH] Authentication failed.".to_string()))
        );
        assert_eq!(parse_reply("* OK imap"), None);
        assert_eq!(parse_reply("+OKAY"), None);
    }

    #[test]
    fn verdicts_follow_the_response_codes() {
        assert!(verdict(Reply::Ok).unwrap());
        assert!(!verdict(Reply::Err("[AUTH] Authentication failed.".into())).unwrap());
        assert!(!verdict(Reply::Err(String::new())).unwrap());
        assert!(verdict(Reply::Err("[IN-USE] locked".into())).is_err());
        assert!(verdict(Reply::Err("[SYS/PERM] broken".into())).is_err());
        assert!(verdict(Reply::Err("[SYS/TEMP] try later".into())).is_err());
    }

    #[test]
    fn line_breaks_cannot_be_sent() {
        assert!(sendable("alice"));
        assert!(!sendable("alice\r\nDELE 1"));
        assert!(!sendable(""));
    }
}
