//! What a case's client does: the SMTP steps its fields imply, in the
//! order a client sends them (EHLO or HELO, AUTH, MAIL, each RCPT, DATA).

use super::cases::Case;
use super::offline::{ClientStep, ScriptedCredentials};
use crate::hook::MessageSummary;
use std::net::IpAddr;

/// The steps of a case's client, in the order it sends them.
pub fn steps(case: &Case) -> Vec<ClientStep> {
    let mut steps = Vec::new();
    // The proxy takes no AUTH or MAIL before a greeting, so a case that
    // names no `helo` but goes further greets with its address literal.
    let needs_greeting = case.auth.is_some() || case.sender.is_some();
    let helo = case
        .helo
        .clone()
        .or_else(|| needs_greeting.then(|| address_literal(case.client)));
    if let Some(name) = helo {
        steps.push(ClientStep::Hello {
            name,
            extended: case.ehlo,
        });
    }
    if let Some(user) = &case.auth {
        steps.push(ClientStep::Auth {
            mechanism: case
                .auth_mechanism
                .clone()
                .unwrap_or_else(|| "PLAIN".to_string()),
            user: user.clone(),
        });
    }
    if let Some(sender) = &case.sender {
        // A client with a non-ASCII address asks for SMTPUTF8 (RFC 6531).
        let smtputf8 = !sender.is_ascii() || case.recipients.iter().any(|r| !r.is_ascii());
        steps.push(ClientStep::Mail {
            sender: sender.clone(),
            smtputf8,
        });
        steps.extend(case.recipients.iter().map(|recipient| ClientStep::Rcpt {
            recipient: recipient.clone(),
        }));
    }
    if case.expect.data.is_some() {
        steps.push(ClientStep::Data {
            message: MessageSummary {
                size: case.size,
                headers: case.headers.clone(),
                headers_truncated: false,
            },
        });
    }
    steps
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 4.1.3).
fn address_literal(address: IpAddr) -> String {
    match crate::net::canonical(address) {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

/// The credential backend of a case: its `auth` identity exists, with the
/// password the scripted client sends.
pub fn credentials(case: &Case) -> ScriptedCredentials {
    ScriptedCredentials {
        user: case.auth.clone(),
    }
}
