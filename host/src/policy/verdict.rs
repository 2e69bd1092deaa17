//! Turning what a policy returned into a checked [`Decision`]: the host never
//! sends a reply it has not validated.

use super::bindings::relaygate::policy::types::{Action, Reply as WitReply, Verdict};
use crate::hook::Decision;
use crate::smtp::Reply;
use crate::smtp::reply::catalogue;

/// Longest reply text a policy may give.
const MAX_TEXT: usize = 400;

/// Check a guest verdict; the error says what is wrong with its reply.
pub fn validate(verdict: Verdict) -> Result<Decision, String> {
    match verdict.action {
        Action::Accept => Ok(Decision::Accept),
        Action::Reject => match verdict.reply {
            None => Ok(Decision::Reject(catalogue::policy_reject())),
            Some(reply) => checked_reply(reply, 5).map(Decision::Reject),
        },
        Action::Tempfail => match verdict.reply {
            None => Ok(Decision::Tempfail(catalogue::policy_tempfail())),
            Some(reply) => checked_reply(reply, 4).map(Decision::Tempfail),
        },
    }
}

fn checked_reply(reply: WitReply, class: u16) -> Result<Reply, String> {
    if reply.code / 100 != class || !(400..600).contains(&reply.code) {
        return Err(format!(
            "reply code {} does not fit the verdict (needs {class}xx)",
            reply.code
        ));
    }
    if reply.text.len() > MAX_TEXT {
        return Err(format!("reply text longer than {MAX_TEXT} bytes"));
    }
    if reply.text.chars().any(char::is_control) {
        return Err("reply text contains CR, LF or other control characters".to_string());
    }
    let enhanced = match reply.enhanced_status {
        Some(status) => {
            check_enhanced(&status, class)?;
            status
        }
        None => default_enhanced(reply.code).to_string(),
    };
    let text = if reply.text.is_empty() {
        enhanced
    } else {
        format!("{enhanced} {}", reply.text)
    };
    Ok(Reply::new(reply.code, text))
}

/// RFC 3463: `class.subject.detail`, subject and detail 1-3 digits.
fn check_enhanced(status: &str, class: u16) -> Result<(), String> {
    let parts: Vec<&str> = status.split('.').collect();
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    let well_formed = parts.len() == 3 && digits(parts[1], 3) && digits(parts[2], 3);
    if !well_formed || parts[0] != class.to_string() {
        return Err(format!(
            "enhanced status {status:?} is not {class}.x.y (RFC 3463)"
        ));
    }
    Ok(())
}

fn default_enhanced(code: u16) -> &'static str {
    match code {
        530 => "5.7.0",
        554 | 550 | 553 => "5.7.1",
        552 => "5.3.4",
        421 => "4.3.0",
        450..=452 => "4.7.1",
        c if c >= 500 => "5.0.0",
        _ => "4.0.0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(action: Action, reply: Option<(u16, Option<&str>, &str)>) -> Verdict {
        Verdict {
            action,
            reply: reply.map(|(code, enhanced, text)| WitReply {
                code,
                enhanced_status: enhanced.map(Into::into),
                text: text.into(),
            }),
        }
    }

    #[test]
    fn good_replies_pass_through() {
        assert_eq!(
            validate(verdict(
                Action::Reject,
                Some((554, Some("5.7.1"), "relay denied"))
            )),
            Ok(Decision::Reject(Reply::new(554, "5.7.1 relay denied")))
        );
        assert_eq!(
            validate(verdict(Action::Tempfail, Some((451, None, "later")))),
            Ok(Decision::Tempfail(Reply::new(451, "4.7.1 later")))
        );
        assert_eq!(
            validate(verdict(Action::Reject, None)),
            Ok(Decision::Reject(catalogue::policy_reject()))
        );
        assert_eq!(
            validate(verdict(Action::Accept, Some((250, None, "x")))),
            Ok(Decision::Accept)
        );
    }

    #[test]
    fn bad_replies_are_refused() {
        let bad = [
            (Action::Reject, 250, None, "fine"),
            (Action::Reject, 451, None, "wrong class"),
            (Action::Tempfail, 554, None, "wrong class"),
            (Action::Reject, 999, None, "out of range"),
            (Action::Reject, 554, None, "line\r\n250 smuggled"),
            (Action::Reject, 554, None, "nul\0"),
            (Action::Reject, 554, Some("4.7.1"), "class mismatch"),
            (Action::Reject, 554, Some("5.7"), "short"),
            (Action::Reject, 554, Some("5.x.1"), "letters"),
        ];
        for (action, code, enhanced, text) in bad {
            assert!(
                validate(verdict(action, Some((code, enhanced, text)))).is_err(),
                "{code} {enhanced:?} {text:?}"
            );
        }
        let long = "x".repeat(MAX_TEXT + 1);
        assert!(validate(verdict(Action::Reject, Some((554, None, &long)))).is_err());
    }
}
