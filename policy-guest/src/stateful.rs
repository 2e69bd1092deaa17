//! The plain-Rust face of a stateful policy: what it tells
//! [`stateful_component!`](crate::stateful_component) so that the component
//! glue is written once, and what it is told per recipient.

use std::net::IpAddr;

use crate::config::ConfigSource;
use crate::reply::Outcome;
use crate::store::{Store, StoreError};

/// The session as a stateful policy sees it at RCPT TO.
#[derive(Debug, Clone, Copy)]
pub struct Transaction<'a> {
    /// The client's address as the host wrote it, for log lines.
    pub client_ip: &'a str,
    /// The same address read (none when unreadable).
    pub ip: Option<IpAddr>,
    /// The authenticated identity, if the client logged in.
    pub auth_user: Option<&'a str>,
    /// The reverse path ("" for the null sender).
    pub sender: &'a str,
}

impl<'a> Transaction<'a> {
    /// A transaction from the host's view of the session.
    pub fn new(client_ip: &'a str, auth_user: Option<&'a str>, sender: &'a str) -> Self {
        Self {
            client_ip,
            ip: client_ip.parse().ok(),
            auth_user,
            sender,
        }
    }
}

/// How loud a [`LogLine`] is (the WIT `log.level`s a policy uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Detail for tracing a decision.
    Debug,
    /// A decision worth noting.
    Info,
    /// Something an admin should look at.
    Warn,
    /// The policy cannot work as configured.
    Error,
}

/// One line for the host's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: Level,
    /// Its text.
    pub message: String,
}

impl LogLine {
    /// A line at `level`.
    pub fn new(level: Level, message: impl Into<String>) -> Self {
        Self {
            level,
            message: message.into(),
        }
    }

    /// The warning that `what` (e.g. "greylisting") lost its state store and
    /// answered as `on_state_error` says.
    pub fn state_failed(what: &str, error: &StoreError) -> Self {
        Self::new(
            Level::Warn,
            format!("{what} state failed ({error}); answering per on_state_error"),
        )
    }
}

/// The validated `[policy.config]` of a stateful policy.
pub trait PolicySettings: Sized + Send + Sync + 'static {
    /// Reads and checks the configuration; every problem names its key.
    fn parse(source: &dyn ConfigSource) -> Result<Self, Vec<String>>;
    /// One line for the admin.
    fn summary(&self) -> String;
    /// Whether, as configured, any client may relay to any domain.
    fn is_open_relay(&self) -> bool;
}

/// A policy of the `stateful-policy` world that decides at RCPT TO and
/// accepts everything else.
pub trait StatefulPolicy {
    /// Its name in `policy-info`.
    const NAME: &'static str;
    /// Its settings.
    type Settings: PolicySettings;
    /// Decides one recipient, with the line to log about it.
    fn rcpt_to(
        settings: &Self::Settings,
        store: &dyn Store,
        transaction: &Transaction<'_>,
        recipient: &str,
    ) -> (Outcome, LogLine);
}
