//! The component: binds the rules in lib.rs to relaygate's WIT world
//! `stateful-policy` (the world `policy` plus the `state` import).

#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "stateful-policy" });
    use super::MyPolicy;
    export!(MyPolicy with_types_in self);
}

use bindings::exports::relaygate::policy::hooks::{
    Guest, Message, Parameter, PolicyInfo, Session, Verdict,
};
use bindings::relaygate::policy::config::{self, Value};
use bindings::relaygate::policy::state;
use bindings::relaygate::policy::types::{Action, EsmtpExtensions, Reply};

const ACCEPT: Verdict = Verdict {
    action: Action::Accept,
    reply: None,
};

/// The config keys, read.
struct Settings {
    blocked: Vec<String>,
    limit: i64,
}

fn settings() -> Result<Settings, Vec<String>> {
    let blocked = match config::get("blocked_domains") {
        None => Ok(Vec::new()),
        Some(Value::TextList(list)) => Ok(crate::blocked_domains(Some(list))),
        Some(_) => Err("blocked_domains: must be a list of domains".to_owned()),
    };
    let limit = match config::get("max_recipients_per_hour") {
        None => crate::recipient_limit(None),
        Some(Value::Integer(limit)) => crate::recipient_limit(Some(limit)),
        Some(_) => Err("max_recipients_per_hour: must be a number".to_owned()),
    };
    match (blocked, limit) {
        (Ok(blocked), Ok(limit)) => Ok(Settings { blocked, limit }),
        (blocked, limit) => Err([blocked.err(), limit.err()].into_iter().flatten().collect()),
    }
}

fn refuse(action: Action, code: u16, status: &str, text: String) -> Verdict {
    Verdict {
        action,
        reply: Some(Reply {
            code,
            enhanced_status: Some(status.to_owned()),
            text,
        }),
    }
}

struct MyPolicy;

impl Guest for MyPolicy {
    fn init() -> Result<PolicyInfo, Vec<String>> {
        let settings = settings()?;
        Ok(PolicyInfo {
            name: "my-policy".to_owned(),
            summary: format!(
                "{} sender domains blocked, {} recipients per client and hour",
                settings.blocked.len(),
                settings.limit
            ),
            open_relay: false,
            needs_client_name: false,
        })
    }
    fn connect(_: Session) -> Verdict {
        ACCEPT
    }
    fn helo(_: Session, _: String, _: bool) -> Verdict {
        ACCEPT
    }
    fn extensions(_: Session) -> EsmtpExtensions {
        EsmtpExtensions::PIPELINING
            | EsmtpExtensions::AUTH
            | EsmtpExtensions::STARTTLS
            | EsmtpExtensions::SMTPUTF8
            | EsmtpExtensions::CHUNKING
    }
    fn auth(_: Session, _: String, _: String) -> Verdict {
        ACCEPT
    }
    fn mail_from(_: Session, sender: String, _: Vec<Parameter>) -> Verdict {
        let blocked = settings().map(|s| s.blocked).unwrap_or_default();
        match crate::refuse_sender(&blocked, &sender) {
            None => ACCEPT,
            Some(text) => refuse(Action::Reject, 550, "5.7.1", text),
        }
    }
    fn rcpt_to(session: Session, _: String, _: Vec<Parameter>) -> Verdict {
        let limit = settings().map_or(crate::DEFAULT_LIMIT, |s| s.limit);
        let key = crate::counter_key(&session.client_ip);
        match state::increment(&key, 1, crate::WINDOW_MS) {
            Ok(count) => match crate::refuse_recipient(count, limit) {
                None => ACCEPT,
                Some(text) => refuse(Action::Tempfail, 450, "4.7.1", text),
            },
            // The store is down or slow: defer, so that the client retries.
            Err(_) => refuse(
                Action::Tempfail,
                451,
                "4.3.0",
                "cannot count recipients now, try again later".to_owned(),
            ),
        }
    }
    fn data(_: Session, _: Message) -> Verdict {
        ACCEPT
    }
}
