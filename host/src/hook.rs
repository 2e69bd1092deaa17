//! The plain data a session and its policy exchange at each hook: what the
//! session knows ([`PolicyContext`]), the question ([`PolicyRequest`]), and
//! the checked answers ([`Decision`], [`Offer`]). No I/O and no WebAssembly
//! here: the session, the connection driver, the offline `policy test` and
//! the wasmtime host all speak these types, and only `policy` converts them
//! to and from the WIT records.

use crate::smtp::{Param, Reply};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// The hooks of the policy contract, in the order a session reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// `init`, once when the module is loaded.
    Init,
    /// A client connected.
    Connect,
    /// HELO or EHLO.
    Helo,
    /// Which ESMTP extensions to offer after EHLO.
    Extensions,
    /// Credentials were verified.
    Auth,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO.
    RcptTo,
    /// End of DATA.
    Data,
}

impl Hook {
    /// The hook's name in the WIT contract, logs, traces and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Init => "init",
            Hook::Connect => "connect",
            Hook::Helo => "helo",
            Hook::Extensions => "extensions",
            Hook::Auth => "auth",
            Hook::MailFrom => "mail-from",
            Hook::RcptTo => "rcpt-to",
            Hook::Data => "data",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated policy verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on.
    Accept,
    /// Refuse with this 5xx reply.
    Reject(Reply),
    /// Refuse for now with this 4xx reply.
    Tempfail(Reply),
}

impl Decision {
    /// Short name for logs and traces.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::Reject(_) => "reject",
            Decision::Tempfail(_) => "tempfail",
        }
    }
}

/// What the session knows, as shown to the policy at each hook.
#[derive(Debug, Clone)]
pub struct PolicyContext {
    /// Session id (as in the logs).
    pub id: u64,
    /// The listener the client connected to.
    pub listener: ListenerIdentity,
    /// The client's address.
    pub client: SocketAddr,
    /// The client's confirmed reverse-DNS name.
    pub client_name: Option<String>,
    /// The local address the client reached.
    pub server: SocketAddr,
    /// Last accepted HELO/EHLO name.
    pub helo: Option<String>,
    /// EHLO rather than HELO.
    pub esmtp: bool,
    /// TLS is active.
    pub tls: bool,
    /// Authenticated identity.
    pub auth_user: Option<String>,
    /// Current transaction's reverse path.
    pub sender: Option<String>,
    /// Recipients accepted so far in the transaction.
    pub recipients: Vec<String>,
}

/// The listener a session arrived on, as its policies see it through the
/// `server` import (`listener`, `hostname`). Shared, so a session start
/// copies two pointers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerIdentity {
    /// The listener's name (`smtp` for `[proxy] listen`).
    pub name: Arc<str>,
    /// The host name it greets with.
    pub hostname: Arc<str>,
}

impl ListenerIdentity {
    /// The identity of listener `name` greeting as `hostname`.
    pub fn new(name: &str, hostname: &str) -> Self {
        Self {
            name: name.into(),
            hostname: hostname.into(),
        }
    }
}

impl PolicyContext {
    /// What is known when a client connects: who, where, and its confirmed
    /// reverse name; no greeting, identity or transaction yet.
    pub fn connected(
        id: u64,
        listener: ListenerIdentity,
        client: SocketAddr,
        server: SocketAddr,
        client_name: Option<String>,
    ) -> Self {
        Self {
            id,
            listener,
            client,
            client_name,
            server,
            helo: None,
            esmtp: false,
            tls: false,
            auth_user: None,
            sender: None,
            recipients: Vec::new(),
        }
    }
}

/// What the data hook is told about a received message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageSummary {
    /// Bytes received (unstuffed, CRLF counted).
    pub size: u64,
    /// Header fields in order, unfolded.
    pub headers: Vec<(String, String)>,
    /// The header section was cut at the host's limit.
    pub headers_truncated: bool,
}

/// A question for the policy, one per hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRequest {
    /// `init` (only at load).
    Init,
    /// A client connected.
    Connect,
    /// HELO/EHLO.
    Helo {
        /// The name given.
        name: String,
        /// EHLO.
        extended: bool,
    },
    /// Which extensions to offer after EHLO.
    Extensions,
    /// Credentials were verified.
    Auth {
        /// PLAIN or LOGIN.
        mechanism: String,
        /// The authenticated identity.
        identity: String,
    },
    /// MAIL FROM.
    MailFrom {
        /// Reverse path.
        sender: String,
        /// ESMTP parameters.
        params: Vec<Param>,
    },
    /// RCPT TO.
    RcptTo {
        /// Forward path.
        recipient: String,
        /// ESMTP parameters.
        params: Vec<Param>,
    },
    /// End of DATA.
    Data(MessageSummary),
}

impl PolicyRequest {
    /// Which hook this request is for.
    pub fn hook(&self) -> Hook {
        match self {
            PolicyRequest::Init => Hook::Init,
            PolicyRequest::Connect => Hook::Connect,
            PolicyRequest::Helo { .. } => Hook::Helo,
            PolicyRequest::Extensions => Hook::Extensions,
            PolicyRequest::Auth { .. } => Hook::Auth,
            PolicyRequest::MailFrom { .. } => Hook::MailFrom,
            PolicyRequest::RcptTo { .. } => Hook::RcptTo,
            PolicyRequest::Data(_) => Hook::Data,
        }
    }
}

/// Optional extensions the policy wants offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// PIPELINING.
    pub pipelining: bool,
    /// AUTH.
    pub auth: bool,
    /// STARTTLS.
    pub starttls: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// CHUNKING.
    pub chunking: bool,
}

impl Default for Offer {
    fn default() -> Self {
        Self {
            pipelining: true,
            auth: false,
            starttls: true,
            smtputf8: true,
            chunking: true,
        }
    }
}

impl Offer {
    /// What to offer when the policy failed to say: nothing that widens
    /// access (no AUTH).
    pub fn fail_safe() -> Self {
        Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_names_its_hook() {
        let cases = [
            (PolicyRequest::Init, "init"),
            (PolicyRequest::Connect, "connect"),
            (PolicyRequest::Extensions, "extensions"),
            (PolicyRequest::Data(MessageSummary::default()), "data"),
        ];
        for (request, name) in cases {
            assert_eq!(request.hook().to_string(), name);
        }
        let auth = PolicyRequest::Auth {
            mechanism: "PLAIN".into(),
            identity: "u".into(),
        };
        assert_eq!(auth.hook(), Hook::Auth);
        assert!(Hook::Connect < Hook::Helo && Hook::RcptTo < Hook::Data);
    }
}
