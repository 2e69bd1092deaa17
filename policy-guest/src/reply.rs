//! What a hook answers, independent of the WIT bindings.

/// An SMTP reply for a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 4xx or 5xx.
    pub code: u16,
    /// Enhanced status, e.g. "4.7.1".
    pub status: String,
    /// Text after the codes.
    pub text: String,
}

/// A hook's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Let the command proceed.
    Accept,
    /// Refuse for now (4xx).
    Tempfail(Reply),
    /// Refuse permanently (5xx).
    Reject(Reply),
}

impl Outcome {
    /// A refusal with `code`: tempfail for 4xx, reject for 5xx.
    pub fn refuse(code: u16, status: &str, text: &str) -> Self {
        let reply = Reply {
            code,
            status: status.to_string(),
            text: text.to_string(),
        };
        if code >= 500 {
            Outcome::Reject(reply)
        } else {
            Outcome::Tempfail(reply)
        }
    }

    /// The answer when the state store failed and the policy fails closed.
    pub fn state_failure() -> Self {
        Outcome::refuse(
            451,
            "4.3.0",
            "Temporary local problem, please try again later",
        )
    }

    /// Whether this accepts.
    pub fn is_accept(&self) -> bool {
        matches!(self, Outcome::Accept)
    }
}

/// Check an admin-configured reply: code 400..=599, status `c.s.d` whose
/// class matches the code, printable text without CR/LF of at most 400 bytes.
pub fn check_reply(code: i64, status: &str, text: &str) -> Result<(), String> {
    if !(400..=599).contains(&code) {
        return Err(format!("code {code} is not 4xx or 5xx"));
    }
    let parts: Vec<&str> = status.split('.').collect();
    let numeric = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric || parts[0] != (code / 100).to_string() {
        return Err(format!(
            "status {status:?} is not class.subject.detail with class {}",
            code / 100
        ));
    }
    if text.is_empty() || text.len() > 400 || text.chars().any(char::is_control) {
        return Err("text must be 1 to 400 printable characters".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_checked() {
        assert!(check_reply(451, "4.7.1", "slow down").is_ok());
        assert!(check_reply(550, "5.7.1", "no").is_ok());
        assert!(check_reply(250, "2.0.0", "ok").is_err());
        assert!(check_reply(451, "5.7.1", "x").is_err());
        assert!(check_reply(451, "4.7", "x").is_err());
        assert!(check_reply(451, "4.7.1", "a\r\nb").is_err());
        assert!(matches!(
            Outcome::refuse(550, "5.7.1", "x"),
            Outcome::Reject(_)
        ));
        assert!(matches!(
            Outcome::refuse(451, "4.7.1", "x"),
            Outcome::Tempfail(_)
        ));
    }
}
