//! SMTP replies: the value type, its wire form, and the catalogue of replies
//! relaygate gives on its own behalf.

use std::fmt;

/// An SMTP reply: a three-digit code and one or more lines of text.
///
/// The text lines hold everything after the code and its separator, enhanced
/// status code included ("2.1.0 Ok").
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// A one-line reply. `text` must not contain CR or LF.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            lines: vec![text.into()],
        }
    }

    /// A reply of several lines. An empty `lines` gives one empty line.
    pub fn multiline(code: u16, lines: Vec<String>) -> Self {
        let lines = if lines.is_empty() {
            vec![String::new()]
        } else {
            lines
        };
        Self { code, lines }
    }

    /// The three-digit code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The text lines, without the code.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx (e.g. 354 start mail input).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// Append the wire form ("250-a\r\n250 b\r\n") to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len() - 1;
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" "))
    }
}

/// Replies relaygate gives on its own behalf, in one place so the wording is
/// consistent and easy to review.
pub mod catalogue {
    use super::Reply;

    /// 221 at QUIT.
    pub fn closing(hostname: &str) -> Reply {
        Reply::new(221, format!("2.0.0 {hostname} closing connection"))
    }
    /// 250 for commands that change nothing upstream (RSET, NOOP).
    pub fn ok() -> Reply {
        Reply::new(250, "2.0.0 Ok")
    }
    /// 250 to HELO.
    pub fn helo(hostname: &str) -> Reply {
        Reply::new(250, hostname.to_string())
    }
    /// 252 to VRFY: no disclosure of who exists.
    pub fn vrfy() -> Reply {
        Reply::new(
            252,
            "2.5.2 Cannot VRFY user, but will accept message and attempt delivery",
        )
    }
    /// 502 to EXPN: no disclosure of list members.
    pub fn expn() -> Reply {
        Reply::new(502, "5.5.1 EXPN not available")
    }
    /// 214 to HELP.
    pub fn help() -> Reply {
        Reply::new(
            214,
            "2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
        )
    }
    /// 354 after DATA, when the upstream is ready.
    pub fn start_data() -> Reply {
        Reply::new(354, "End data with <CR><LF>.<CR><LF>")
    }
    /// 500 for an unrecognised command.
    pub fn unknown_command() -> Reply {
        Reply::new(500, "5.5.2 Error: command not recognized")
    }
    /// 500 for a command line over the length limit.
    pub fn line_too_long() -> Reply {
        Reply::new(500, "5.5.2 Error: line too long")
    }
    /// 500 for a command with NUL, bare CR/LF or other control bytes.
    pub fn bad_characters() -> Reply {
        Reply::new(500, "5.5.2 Error: invalid characters in command")
    }
    /// 501 for bad command arguments.
    pub fn syntax(usage: &str) -> Reply {
        Reply::new(501, format!("5.5.4 Syntax: {usage}"))
    }
    /// 501 for a malformed mailbox.
    pub fn bad_address(what: &str) -> Reply {
        Reply::new(501, format!("5.1.3 Bad {what} address syntax"))
    }
    /// 503 for a command out of sequence.
    pub fn bad_sequence(why: &str) -> Reply {
        Reply::new(503, format!("5.5.1 Error: {why}"))
    }
    /// 504 for an unsupported command parameter value.
    pub fn unsupported_parameter(name: &str) -> Reply {
        Reply::new(555, format!("5.5.4 Unsupported option: {name}"))
    }
    /// 552 when the declared or actual size is over the limit.
    pub fn message_too_big() -> Reply {
        Reply::new(552, "5.3.4 Message size exceeds fixed limit")
    }
    /// 452 for one recipient too many.
    pub fn too_many_recipients() -> Reply {
        Reply::new(452, "4.5.3 Error: too many recipients")
    }
    /// 554 at DATA when every recipient was refused.
    pub fn no_valid_recipients() -> Reply {
        Reply::new(554, "5.5.1 Error: no valid recipients")
    }
    /// 550 for a message containing bare CR or LF (SMTP smuggling defence).
    pub fn bare_line_ending() -> Reply {
        Reply::new(
            550,
            "5.6.11 Message refused: bare CR or LF not allowed, use CRLF line endings",
        )
    }
    /// 550 for a message with a text line over the limit.
    pub fn data_line_too_long() -> Reply {
        Reply::new(550, "5.6.0 Message refused: text line too long")
    }
    /// 550 for a message with NUL bytes.
    pub fn data_nul() -> Reply {
        Reply::new(550, "5.6.0 Message refused: NUL characters not allowed")
    }
    /// 451 when the policy failed (trap, timeout, memory, invalid reply).
    pub fn policy_failure() -> Reply {
        Reply::new(451, "4.3.0 Temporary policy failure, try again later")
    }
    /// Default reply for a policy reject without its own reply.
    pub fn policy_reject() -> Reply {
        Reply::new(550, "5.7.1 Rejected by policy")
    }
    /// Default reply for a policy tempfail without its own reply.
    pub fn policy_tempfail() -> Reply {
        Reply::new(451, "4.7.1 Try again later")
    }
    /// 451 when the upstream cannot be reached or dropped the connection.
    pub fn upstream_unavailable() -> Reply {
        Reply::new(
            451,
            "4.4.1 Upstream mail server unavailable, try again later",
        )
    }
    /// 451 when the upstream answered something that is not SMTP.
    pub fn upstream_protocol_error() -> Reply {
        Reply::new(451, "4.4.0 Upstream mail server error, try again later")
    }
    /// 421 when the session is closed for lack of activity.
    pub fn timeout(hostname: &str) -> Reply {
        Reply::new(421, format!("4.4.2 {hostname} Error: timeout exceeded"))
    }
    /// 421 when the proxy shuts down.
    pub fn shutting_down(hostname: &str) -> Reply {
        Reply::new(
            421,
            format!("4.3.2 {hostname} Service shutting down, closing connection"),
        )
    }
    /// 421 after too many errors in one session.
    pub fn too_many_errors(hostname: &str) -> Reply {
        Reply::new(
            421,
            format!("4.7.0 {hostname} Error: too many errors, closing connection"),
        )
    }
    /// 421 when a session has lasted too long.
    pub fn session_too_long(hostname: &str) -> Reply {
        Reply::new(
            421,
            format!("4.4.2 {hostname} Error: session too long, closing connection"),
        )
    }
    /// 421 when one address has too many connections open.
    pub fn too_many_connections_from_client(hostname: &str) -> Reply {
        Reply::new(
            421,
            format!("4.7.0 {hostname} Error: too many connections from your address"),
        )
    }
    /// 554 for a client that talked before the greeting.
    pub fn early_talker() -> Reply {
        Reply::new(554, "5.5.1 Error: talked before the greeting")
    }
    /// 503 for commands in a session whose connection the policy refused.
    pub fn session_refused() -> Reply {
        Reply::new(503, "5.5.1 Error: session refused, send QUIT")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multiline_wire_forms() {
        assert_eq!(Reply::new(250, "2.0.0 Ok").to_bytes(), b"250 2.0.0 Ok\r\n");
        let r = Reply::multiline(
            250,
            vec!["mx".into(), "PIPELINING".into(), "SIZE 10".into()],
        );
        assert_eq!(r.to_bytes(), b"250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
        assert_eq!(Reply::multiline(250, vec![]).to_bytes(), b"250 \r\n");
    }

    #[test]
    fn classes() {
        assert!(Reply::new(250, "").is_positive());
        assert!(Reply::new(354, "").is_intermediate());
        assert!(Reply::new(451, "").is_transient());
        assert!(!Reply::new(550, "").is_transient());
    }
}
