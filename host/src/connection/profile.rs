//! What one listener changes about the sessions it accepts: its name (in
//! the session's log span and the metrics' `listener` label), whether TLS
//! starts at accept, whether STARTTLS may be offered, its host name, its
//! AUTH rules and the policy chain its sessions are asked.

use crate::config::{ListenerAuth, ListenerConfig, ListenerTls};
use crate::hook::ListenerIdentity;

/// The per-listener settings a session runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerProfile {
    /// The listener's name and the host name it greets with (in the
    /// greeting and EHLO), as its sessions' policies see them.
    pub identity: ListenerIdentity,
    /// STARTTLS, TLS from the first byte, or no TLS.
    pub tls: ListenerTls,
    /// AUTH offered, required or off.
    pub auth: ListenerAuth,
    /// AUTH only under TLS.
    pub auth_requires_tls: bool,
    /// The policy chain its sessions are asked.
    pub chain: String,
}

impl ListenerProfile {
    /// The profile of a configured listener.
    pub fn of(listener: &ListenerConfig) -> Self {
        Self {
            identity: ListenerIdentity::new(&listener.name, &listener.hostname),
            tls: listener.tls,
            auth: listener.auth,
            auth_requires_tls: listener.require_tls,
            chain: listener.chain.clone(),
        }
    }

    /// A listener that behaves as `[proxy] listen` does: STARTTLS where a
    /// certificate is set, AUTH as offered.
    pub fn plain(name: &str, hostname: &str, auth_requires_tls: bool) -> Self {
        Self {
            identity: ListenerIdentity::new(name, hostname),
            tls: ListenerTls::Starttls,
            auth: ListenerAuth::Offered,
            auth_requires_tls,
            chain: crate::config::DEFAULT_CHAIN.to_string(),
        }
    }
}
