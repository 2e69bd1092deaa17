//! The component: WIT bindings and the hook exports.
//!
//! relaygate makes one instance per SMTP session (and one to call `init`), so
//! the settings are read from the host once per instance, on first use, and
//! kept for the rest of it.

use std::net::IpAddr;
use std::sync::OnceLock;

use crate::config::{OwnNetworks, Settings};
use crate::decision::{self, Client, Decision};

// The generated bindings and exports are unsafe FFI glue without doc
// comments of their own; the WIT file documents them.
#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "policy" });

    use super::ApplePolicy;
    export!(ApplePolicy with_types_in self);
}

use bindings::exports::relaygate::policy::hooks::{
    Guest, Message, Parameter, PolicyInfo, Session, Verdict,
};
use bindings::relaygate::policy::log::{self, Level};
use bindings::relaygate::policy::server;
use bindings::relaygate::policy::types::{Action, EsmtpExtensions, Reply};

#[global_allocator]
static ALLOCATOR: crate::allocator::SizeClassAllocator =
    crate::allocator::SizeClassAllocator::new();

/// The settings of this instance, read on first use.
static SETTINGS: OnceLock<Result<Settings, Vec<String>>> = OnceLock::new();

fn settings() -> &'static Result<Settings, Vec<String>> {
    SETTINGS.get_or_init(|| Settings::parse(&Host))
}

// `struct Host`: the host's `config` import as the kit's `ConfigSource`.
kit::host_config!();

impl OwnNetworks for Host {
    fn own_networks(&self) -> Vec<String> {
        server::own_networks()
    }
}

fn accept() -> Verdict {
    Verdict {
        action: Action::Accept,
        reply: None,
    }
}

fn reject(reply: decision::Reply) -> Verdict {
    Verdict {
        action: Action::Reject,
        reply: Some(Reply {
            code: reply.code,
            enhanced_status: Some(reply.enhanced_status.to_owned()),
            text: reply.text.to_owned(),
        }),
    }
}

/// The extensions every configuration offers; AUTH is added when enabled.
fn base_extensions() -> EsmtpExtensions {
    EsmtpExtensions::PIPELINING
        | EsmtpExtensions::STARTTLS
        | EsmtpExtensions::SMTPUTF8
        | EsmtpExtensions::CHUNKING
}

struct ApplePolicy;

impl Guest for ApplePolicy {
    fn init() -> Result<PolicyInfo, Vec<String>> {
        let settings = settings().as_ref().map_err(Clone::clone)?;
        Ok(PolicyInfo {
            name: "apple-relay".to_owned(),
            summary: settings.summary(),
            open_relay: settings.is_open_relay(),
            needs_client_name: settings.needs_client_name(),
        })
    }

    fn connect(_session: Session) -> Verdict {
        accept()
    }

    fn helo(_session: Session, _name: String, _extended: bool) -> Verdict {
        accept()
    }

    fn extensions(_session: Session) -> EsmtpExtensions {
        match settings() {
            Ok(settings) if settings.smtp_auth => base_extensions() | EsmtpExtensions::AUTH,
            _ => base_extensions(),
        }
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
                // `init` refuses such a configuration, so this means the
                // host's view changed under the session: fail closed.
                log::write(
                    Level::Error,
                    &format!("configuration unusable: {}", problems.join("; ")),
                );
                return Verdict {
                    action: Action::Tempfail,
                    reply: Some(Reply {
                        code: 451,
                        enhanced_status: Some("4.3.0".to_owned()),
                        text: "Relay policy misconfigured, try again later".to_owned(),
                    }),
                };
            }
        };
        let ip = session.client_ip.parse::<IpAddr>().ok();
        if ip.is_none() {
            log::write(
                Level::Warn,
                &format!(
                    "client address {:?} unreadable; matching by name only",
                    session.client_ip
                ),
            );
        }
        let client = Client {
            ip,
            confirmed_name: session.client_name.as_deref(),
            authenticated: session.auth_user.is_some(),
        };
        let decision = decision::rcpt_to(settings, &client, &recipient);
        if decision == Decision::RelayDenied {
            log::write(
                Level::Debug,
                &format!(
                    "relay denied: client {} is not listed and this is a {}",
                    session.client_ip,
                    settings.local_domains.classify(&recipient)
                ),
            );
        }
        decision.reply().map_or_else(accept, reject)
    }

    fn data(_session: Session, _message: Message) -> Verdict {
        accept()
    }
}
