//! The component: binds the rules in lib.rs to relaygate's WIT world `policy`.

#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({ path: "../../../wit", world: "policy" });
    use super::MyPolicy;
    export!(MyPolicy with_types_in self);
}

use bindings::exports::relaygate::policy::hooks::{
    Guest, Message, Parameter, PolicyInfo, Session, Verdict,
};
use bindings::relaygate::policy::config::{self, Value};
use bindings::relaygate::policy::types::{Action, EsmtpExtensions, Reply};

const ACCEPT: Verdict = Verdict {
    action: Action::Accept,
    reply: None,
};

fn settings() -> Result<Vec<String>, String> {
    match config::get("blocked_domains") {
        None => Ok(Vec::new()),
        Some(Value::TextList(list)) => Ok(crate::blocked_domains(Some(list))),
        Some(_) => Err("blocked_domains: must be a list of domains".to_owned()),
    }
}

struct MyPolicy;

impl Guest for MyPolicy {
    fn init() -> Result<PolicyInfo, Vec<String>> {
        let blocked = settings().map_err(|e| vec![e])?;
        Ok(PolicyInfo {
            name: "my-policy".to_owned(),
            summary: format!("{} sender domains blocked", blocked.len()),
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
        match crate::refuse_sender(&settings().unwrap_or_default(), &sender) {
            None => ACCEPT,
            Some(text) => Verdict {
                action: Action::Reject,
                reply: Some(Reply {
                    code: 550,
                    enhanced_status: Some("5.7.1".to_owned()),
                    text,
                }),
            },
        }
    }
    fn rcpt_to(_: Session, _: String, _: Vec<Parameter>) -> Verdict {
        ACCEPT
    }
    fn data(_: Session, _: Message) -> Verdict {
        ACCEPT
    }
}
