//! The `smtp` backend: the credentials are right when the upstream's
//! submission service accepts them with AUTH PLAIN or AUTH LOGIN (RFC 4954).
//!
//! Only 235 to the exchange's last step (the PLAIN initial response, the
//! LOGIN password) accepts; 535 rejects; any other reply, garbage or a
//! closed connection is unavailable. So is 235 before the password was sent,
//! a 334 asking for more after it, a multi-line reply whose lines disagree
//! on the code, and a server that sent a reply before it was asked (a stale
//! reply must never be read as the answer to AUTH).

use anyhow::bail;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

use super::transport::{Connector, Conversation, excerpt};
use super::{BackendAnswer, Credentials};
use crate::config::SmtpMechanism;

/// Checks credentials with SMTP AUTH against a submission server.
pub struct SmtpBackend {
    connector: Connector,
    mechanism: SmtpMechanism,
    ehlo_name: String,
}

/// The most lines one reply may have.
const MAX_REPLY_LINES: usize = 100;

/// One (possibly multi-line) SMTP reply.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl SmtpBackend {
    pub(crate) fn new(connector: Connector, mechanism: SmtpMechanism, ehlo_name: String) -> Self {
        Self {
            connector,
            mechanism,
            ehlo_name,
        }
    }

    pub(crate) async fn check(&self, attempt: &Credentials) -> BackendAnswer {
        let mut conversation = self.connector.connect().await?;
        expect(&mut conversation, 220, "greeting").await?;
        conversation
            .send_line(&format!("EHLO {}", self.ehlo_name))
            .await?;
        expect(&mut conversation, 250, "EHLO").await?;
        if self.connector.wants_starttls() {
            conversation.send_line("STARTTLS").await?;
            expect(&mut conversation, 220, "STARTTLS").await?;
            conversation = self.connector.upgrade(conversation).await?;
            conversation
                .send_line(&format!("EHLO {}", self.ehlo_name))
                .await?;
            expect(&mut conversation, 250, "EHLO after STARTTLS").await?;
        }
        let final_reply = match self.mechanism {
            SmtpMechanism::Plain => {
                let mut message = Zeroizing::new(Vec::new());
                message.push(0);
                message.extend_from_slice(attempt.user.as_bytes());
                message.push(0);
                message.extend_from_slice(attempt.password().as_bytes());
                let line = Zeroizing::new(format!("AUTH PLAIN {}", BASE64.encode(&*message)));
                conversation.ensure_in_step("EHLO")?;
                conversation.send_line(&line).await?;
                read_reply(&mut conversation).await?
            }
            SmtpMechanism::Login => login(&mut conversation, attempt).await?,
        };
        let answer = verdict(&final_reply);
        conversation.ensure_in_step("AUTH")?;
        conversation.goodbye("QUIT").await;
        answer
    }
}

/// AUTH LOGIN: user and password each after a 334 challenge. Before the
/// password is sent, only 334 continues; anything else (235 included) ends
/// the exchange without an answer about the password.
async fn login(conversation: &mut Conversation, attempt: &Credentials) -> anyhow::Result<Reply> {
    conversation.ensure_in_step("EHLO")?;
    conversation.send_line("AUTH LOGIN").await?;
    let reply = read_reply(conversation).await?;
    if reply.code != 334 {
        return early(reply, "AUTH LOGIN");
    }
    conversation.ensure_in_step("AUTH LOGIN")?;
    conversation
        .send_line(&BASE64.encode(attempt.user.as_bytes()))
        .await?;
    let reply = read_reply(conversation).await?;
    if reply.code != 334 {
        return early(reply, "the user name");
    }
    conversation.ensure_in_step("the user name")?;
    let line = Zeroizing::new(BASE64.encode(attempt.password().as_bytes()));
    conversation.send_line(&line).await?;
    read_reply(conversation).await
}

/// A reply before the password was sent: a refusal (535) stands, anything
/// else, 235 above all, says nothing about the password.
fn early(reply: Reply, step: &str) -> anyhow::Result<Reply> {
    if reply.code == 535 {
        return Ok(reply);
    }
    bail!(
        "SMTP server answered {step} with {} {} before the password was sent",
        reply.code,
        excerpt(reply.lines.last().map_or("", String::as_str))
    )
}

fn verdict(reply: &Reply) -> BackendAnswer {
    match reply.code {
        235 => Ok(true),
        535 => Ok(false),
        other => bail!(
            "SMTP server answered AUTH with {other} {}",
            excerpt(reply.lines.last().map_or("", String::as_str))
        ),
    }
}

async fn expect(conversation: &mut Conversation, code: u16, stage: &str) -> anyhow::Result<Reply> {
    let reply = read_reply(conversation).await?;
    if reply.code != code {
        bail!(
            "SMTP server answered {stage} with {} {}",
            reply.code,
            excerpt(reply.lines.last().map_or("", String::as_str))
        );
    }
    Ok(reply)
}

/// Reads one reply: lines `NNN-text` up to the last `NNN text`.
async fn read_reply(conversation: &mut Conversation) -> anyhow::Result<Reply> {
    let mut lines = Vec::new();
    let mut first_code = 0;
    loop {
        let line = conversation.read_line().await?;
        let Some((code, last, text)) = parse_line(&line) else {
            bail!("unexpected SMTP line {}", excerpt(&line));
        };
        if let Some(first) = lines.first().map(|_| first_code)
            && first != code
        {
            bail!("SMTP reply whose lines disagree: {first} then {code}");
        }
        first_code = code;
        if lines.len() >= MAX_REPLY_LINES {
            bail!("SMTP reply of more than {MAX_REPLY_LINES} lines");
        }
        lines.push(text.to_string());
        if last {
            return Ok(Reply { code, lines });
        }
    }
}

/// `NNN text` (last line) or `NNN-text` (more follow).
fn parse_line(line: &str) -> Option<(u16, bool, &str)> {
    let code = line.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code = code.parse().ok()?;
    match line.as_bytes().get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_line("250-PIPELINING"),
            Some((250, false, "PIPELINING"))
        );
        assert_eq!(parse_line("235 2.7.0 ok"), Some((235, true, "2.7.0 ok")));
        assert_eq!(parse_line("334"), Some((334, true, "")));
        assert_eq!(parse_line("OK"), None);
        assert_eq!(parse_line("25x ok"), None);
        assert_eq!(parse_line("250_x"), None);
    }

    #[test]
    fn only_235_accepts_and_only_535_rejects() {
        let reply = |code| Reply {
            code,
            lines: vec!["x".into()],
        };
        assert!(verdict(&reply(235)).unwrap());
        assert!(!verdict(&reply(535)).unwrap());
        assert!(verdict(&reply(454)).is_err());
        assert!(verdict(&reply(504)).is_err());
        assert!(verdict(&reply(250)).is_err());
    }
}
