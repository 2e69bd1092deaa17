//! The EHLO reply: the extensions relaygate offers.

use super::{Advertised, Capabilities, SessionLimits};
use crate::hook::Offer;
use crate::smtp::Reply;

/// `250-hostname` followed by one line per extension offered.
pub fn reply(
    hostname: &str,
    limits: &SessionLimits,
    capabilities: Capabilities,
    offer: Offer,
    advertised: Advertised,
) -> Reply {
    let mut lines = vec![hostname.to_string()];
    if offer.pipelining {
        lines.push("PIPELINING".to_string());
    }
    lines.push(format!("SIZE {}", limits.max_message_size));
    lines.push("8BITMIME".to_string());
    lines.push("ENHANCEDSTATUSCODES".to_string());
    if offer.smtputf8 && capabilities.smtputf8 {
        lines.push("SMTPUTF8".to_string());
    }
    if advertised.starttls {
        lines.push("STARTTLS".to_string());
    }
    if advertised.auth {
        lines.push(super::sasl::EHLO_LINE.to_string());
    }
    Reply::multiline(250, lines)
}
