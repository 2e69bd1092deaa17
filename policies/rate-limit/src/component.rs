//! The component: WIT bindings of the `stateful-policy` world, and the hook
//! exports. Settings are read once per instance (one per SMTP session).

use std::net::IpAddr;
use std::sync::OnceLock;

use crate::kit::reply::Outcome;
use crate::{Reason, Sender, Settings};

// The generated bindings are unsafe FFI glue without doc comments of their
// own; the WIT files document them.
#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "stateful-policy" });

    use super::RateLimit;
    export!(RateLimit with_types_in self);
}

use bindings::exports::relaygate::policy::hooks::{
    Guest, Message, Parameter, PolicyInfo, Session, Verdict,
};
use bindings::relaygate::policy::log::{self, Level};
use bindings::relaygate::policy::types::EsmtpExtensions;

static SETTINGS: OnceLock<Result<Settings, Vec<String>>> = OnceLock::new();

fn settings() -> &'static Result<Settings, Vec<String>> {
    SETTINGS.get_or_init(|| Settings::parse(&Host))
}

crate::kit::stateful_host_glue!();

struct RateLimit;

impl Guest for RateLimit {
    fn init() -> Result<PolicyInfo, Vec<String>> {
        let settings = settings().as_ref().map_err(Clone::clone)?;
        Ok(PolicyInfo {
            name: "rate-limit".to_owned(),
            summary: settings.summary(),
            open_relay: settings.is_open_relay(),
            needs_client_name: false,
        })
    }

    fn connect(_session: Session) -> Verdict {
        accept()
    }

    fn helo(_session: Session, _name: String, _extended: bool) -> Verdict {
        accept()
    }

    fn extensions(_session: Session) -> EsmtpExtensions {
        EsmtpExtensions::PIPELINING
            | EsmtpExtensions::STARTTLS
            | EsmtpExtensions::SMTPUTF8
            | EsmtpExtensions::CHUNKING
            | EsmtpExtensions::AUTH
    }

    fn auth(_session: Session, _mechanism: String, _identity: String) -> Verdict {
        accept()
    }

    fn mail_from(_session: Session, _sender: String, _params: Vec<Parameter>) -> Verdict {
        accept()
    }

    fn rcpt_to(session: Session, recipient: String, _params: Vec<Parameter>) -> Verdict {
        let settings = match settings() {
            Ok(settings) => settings,
            Err(problems) => {
                log::write(
                    Level::Error,
                    &format!("configuration unusable: {}", problems.join("; ")),
                );
                return verdict(Outcome::state_failure());
            }
        };
        let sender = Sender {
            ip: session.client_ip.parse::<IpAddr>().ok(),
            auth_user: session.auth_user.as_deref(),
            address: session.sender.as_deref().unwrap_or_default(),
        };
        let (outcome, reason) = crate::rcpt_to(settings, &Host, &sender, &recipient);
        match &reason {
            Reason::StoreFailed(error) => log::write(
                Level::Warn,
                &format!("rate-limit state failed ({error}); answering per on_state_error"),
            ),
            Reason::Over(counter, reached) => log::write(
                Level::Warn,
                &format!(
                    "rate limit: {counter:?} counter at {reached} (client {}, user {:?}, sender <{}>)",
                    session.client_ip, sender.auth_user, sender.address
                ),
            ),
            _ => log::write(Level::Debug, &format!("rate limit: {reason:?}")),
        }
        verdict(outcome)
    }

    fn data(_session: Session, _message: Message) -> Verdict {
        accept()
    }
}
