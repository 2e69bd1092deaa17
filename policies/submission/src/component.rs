//! The component: WIT bindings and the hook exports around [`crate::rules`].

use std::sync::OnceLock;

use crate::rules::{self, Refusal, Settings};

// Generated FFI glue; the WIT file documents it.
#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "policy" });

    use super::SubmissionPolicy;
    export!(SubmissionPolicy with_types_in self);
}

use bindings::exports::relaygate::policy::hooks::{
    Guest, Message, Parameter, PolicyInfo, Session, Verdict,
};
use bindings::relaygate::policy::log::{self, Level};
use bindings::relaygate::policy::types::{Action, EsmtpExtensions, Reply};

/// This instance's settings (one instance per session), read on first use.
static SETTINGS: OnceLock<Result<Settings, Vec<String>>> = OnceLock::new();

fn settings() -> &'static Result<Settings, Vec<String>> {
    SETTINGS.get_or_init(|| Settings::parse(&Host))
}

// `struct Host`: the host's `config` import as the kit's `ConfigSource`.
kit::host_config!();

fn verdict(refusal: Option<Refusal>) -> Verdict {
    match refusal {
        None => Verdict {
            action: Action::Accept,
            reply: None,
        },
        Some(refusal) => Verdict {
            action: Action::Reject,
            reply: Some(Reply {
                code: refusal.code,
                enhanced_status: Some(refusal.status.to_owned()),
                text: refusal.text,
            }),
        },
    }
}

/// A misconfigured instance (init refuses such a config) fails closed.
fn misconfigured() -> Verdict {
    Verdict {
        action: Action::Tempfail,
        reply: Some(Reply {
            code: 451,
            enhanced_status: Some("4.3.0".to_owned()),
            text: "policy misconfigured".to_owned(),
        }),
    }
}

struct SubmissionPolicy;

impl Guest for SubmissionPolicy {
    fn init() -> Result<PolicyInfo, Vec<String>> {
        let settings = settings().as_ref().map_err(Clone::clone)?;
        Ok(PolicyInfo {
            name: "submission".to_owned(),
            summary: settings.summary(),
            open_relay: false,
            needs_client_name: false,
        })
    }

    fn connect(_session: Session) -> Verdict {
        verdict(None)
    }

    fn helo(_session: Session, _name: String, _extended: bool) -> Verdict {
        verdict(None)
    }

    fn extensions(_session: Session) -> EsmtpExtensions {
        EsmtpExtensions::PIPELINING
            | EsmtpExtensions::AUTH
            | EsmtpExtensions::STARTTLS
            | EsmtpExtensions::SMTPUTF8
            | EsmtpExtensions::CHUNKING
    }

    fn auth(_session: Session, _mechanism: String, identity: String) -> Verdict {
        let Ok(settings) = settings() else {
            return misconfigured();
        };
        verdict(rules::judge_login(settings, &identity))
    }

    fn mail_from(session: Session, sender: String, _params: Vec<Parameter>) -> Verdict {
        let Ok(settings) = settings() else {
            return misconfigured();
        };
        let refusal = rules::judge_sender(
            settings,
            &session.client_ip,
            session.auth_user.as_deref(),
            &sender,
        );
        if let Some(refusal) = &refusal {
            log::write(
                Level::Info,
                &format!(
                    "MAIL refused ({}) for client {}",
                    refusal.code, session.client_ip
                ),
            );
        }
        verdict(refusal)
    }

    fn rcpt_to(session: Session, _recipient: String, _params: Vec<Parameter>) -> Verdict {
        let Ok(settings) = settings() else {
            return misconfigured();
        };
        verdict(rules::judge_recipient(
            settings,
            &session.client_ip,
            session.auth_user.as_deref(),
        ))
    }

    fn data(_session: Session, _message: Message) -> Verdict {
        verdict(None)
    }
}
