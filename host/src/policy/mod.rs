//! Policies: WebAssembly components behind the `relaygate:policy` WIT world.
//!
//! [`PolicyEngine`] compiles and checks a component into a [`LoadedPolicy`]
//! (pre-instantiated once); each SMTP session gets its own
//! [`PolicyInstance`], whose hook calls run under a time and memory budget.

mod bindings;
mod cache;
mod engine;
mod host_state;
mod instance;
mod verdict;
mod wasi;

pub use bindings::{PACKAGE as WIT_PACKAGE, VERSION as WIT_VERSION};
pub use cache::Origin;
pub use engine::{
    BUILTIN_APPLE_RELAY_WASM, InstancePool, LoadError, PolicyEngine, semver_compatible,
};
pub use host_state::{PolicyServices, own_networks};
pub use instance::{PolicyAnswer, PolicyFailure, PolicyInstance};
pub use verdict::Decision;

use crate::config::PolicySettings;
use crate::smtp::Param;
use bindings::relaygate::policy::types as wit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A compiled, checked, pre-instantiated policy with its configuration.
pub struct LoadedPolicy {
    pre: bindings::PolicyPre<host_state::HostState>,
    digest: String,
    name: Arc<str>,
    info: PolicyInfo,
    settings: PolicySettings,
    services: Arc<PolicyServices>,
    state: crate::state::StateStore,
    compile_time: Duration,
    origin: Origin,
}

impl LoadedPolicy {
    /// SHA-256 of the component bytes, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Where it came from ("builtin:apple-relay" or the file path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `[policy]` settings it was loaded with.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// What the policy's `init` said about itself.
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// Compile (or cache lookup), check and init time.
    pub fn load_time(&self) -> Duration {
        self.compile_time
    }

    /// Whether the compiled code came from a cache.
    pub fn origin(&self) -> Origin {
        self.origin
    }
}

/// What a policy said about itself in `init`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyInfo {
    /// The policy's own short name.
    pub name: String,
    /// One-line description of the effective behaviour.
    pub summary: String,
    /// Relays for anyone as configured.
    pub open_relay: bool,
    /// Reads the client's confirmed reverse-DNS name.
    pub needs_client_name: bool,
}

impl PolicyInfo {
    fn from_wit(info: wit::PolicyInfo) -> Self {
        Self {
            name: info.name,
            summary: info.summary,
            open_relay: info.open_relay,
            needs_client_name: info.needs_client_name,
        }
    }
}

/// What the session knows, as shown to the policy at each hook.
#[derive(Debug, Clone)]
pub struct PolicyContext {
    /// Session id (as in the logs).
    pub id: u64,
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

impl PolicyContext {
    /// What is known when a client connects: who, where, and its confirmed
    /// reverse name; no greeting, identity or transaction yet.
    pub fn connected(
        id: u64,
        client: SocketAddr,
        server: SocketAddr,
        client_name: Option<String>,
    ) -> Self {
        Self {
            id,
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

    /// Write the record the policy sees over the previous call's, reusing
    /// its allocations: the addresses are formatted again only when they
    /// changed, the strings are overwritten in place (a hook call is a few
    /// microseconds, of which formatting two IP addresses was a tenth).
    fn write_wit(&self, record: &mut Option<SessionRecord>) {
        match record {
            Some(previous) if previous.client == self.client && previous.server == self.server => {
                let wit = &mut previous.wit;
                wit.id = self.id;
                wit.client_name.clone_from(&self.client_name);
                wit.helo.clone_from(&self.helo);
                wit.esmtp = self.esmtp;
                wit.tls = self.tls;
                wit.auth_user.clone_from(&self.auth_user);
                wit.sender.clone_from(&self.sender);
                wit.recipients.clone_from(&self.recipients);
            }
            _ => {
                *record = Some(SessionRecord {
                    client: self.client,
                    server: self.server,
                    wit: self.to_wit(),
                })
            }
        }
    }

    fn to_wit(&self) -> wit::Session {
        wit::Session {
            id: self.id,
            client_ip: crate::dns::canonical(self.client.ip()).to_string(),
            client_port: self.client.port(),
            client_name: self.client_name.clone(),
            server_ip: crate::dns::canonical(self.server.ip()).to_string(),
            server_port: self.server.port(),
            helo: self.helo.clone(),
            esmtp: self.esmtp,
            tls: self.tls,
            auth_user: self.auth_user.clone(),
            sender: self.sender.clone(),
            recipients: self.recipients.clone(),
        }
    }
}

/// The last session record an instance gave its policy, and the addresses
/// it was formatted from.
struct SessionRecord {
    client: SocketAddr,
    server: SocketAddr,
    wit: wit::Session,
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
    /// The WIT hook name.
    pub fn hook(&self) -> &'static str {
        match self {
            PolicyRequest::Init => "init",
            PolicyRequest::Connect => "connect",
            PolicyRequest::Helo { .. } => "helo",
            PolicyRequest::Extensions => "extensions",
            PolicyRequest::Auth { .. } => "auth",
            PolicyRequest::MailFrom { .. } => "mail-from",
            PolicyRequest::RcptTo { .. } => "rcpt-to",
            PolicyRequest::Data(_) => "data",
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
    fn from_wit(flags: wit::EsmtpExtensions) -> Self {
        Self {
            pipelining: flags.contains(wit::EsmtpExtensions::PIPELINING),
            auth: flags.contains(wit::EsmtpExtensions::AUTH),
            starttls: flags.contains(wit::EsmtpExtensions::STARTTLS),
            smtputf8: flags.contains(wit::EsmtpExtensions::SMTPUTF8),
            chunking: flags.contains(wit::EsmtpExtensions::CHUNKING),
        }
    }

    /// What to offer when the policy failed to say: nothing that widens
    /// access (no AUTH).
    pub fn fail_safe() -> Self {
        Self::default()
    }
}

/// Load the module named by `settings` (the embedded default or a file).
pub async fn load_configured(
    engine: &PolicyEngine,
    settings: &PolicySettings,
    services: PolicyServices,
) -> anyhow::Result<Arc<LoadedPolicy>> {
    use crate::config::ModuleSource;
    use anyhow::Context;
    let (name, bytes) = match &settings.module {
        ModuleSource::BuiltinAppleRelay => (
            crate::config::BUILTIN_APPLE_RELAY.to_string(),
            BUILTIN_APPLE_RELAY_WASM.to_vec(),
        ),
        ModuleSource::File(path) => (
            path.display().to_string(),
            std::fs::read(path)
                .with_context(|| format!("reading policy module {}", path.display()))?,
        ),
    };
    engine
        .load(&name, &bytes, settings, services)
        .await
        .with_context(|| format!("loading policy {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overwriting the previous call's record gives what a fresh one would.
    #[test]
    fn rewritten_record_matches_a_fresh_one() {
        let client: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let server: SocketAddr = "[::ffff:198.51.100.2]:25".parse().unwrap();
        let mut context = PolicyContext::connected(1, client, server, Some("c.test".into()));
        context.helo = Some("a-rather-long-helo-name.example.net".into());
        context.sender = Some("s@example.com".into());
        context.recipients = vec!["a@example.com".into(), "b@example.com".into()];
        let mut record = None;
        context.write_wit(&mut record);
        let same = |record: &Option<SessionRecord>, context: &PolicyContext| {
            format!("{:?}", record.as_ref().unwrap().wit) == format!("{:?}", context.to_wit())
        };
        assert!(same(&record, &context));
        assert_eq!(record.as_ref().unwrap().wit.server_ip, "198.51.100.2");

        // Next transaction: fewer recipients, no sender, HELO changed, AUTH done.
        context.helo = Some("b".into());
        context.sender = None;
        context.recipients = vec!["c@example.net".into()];
        context.auth_user = Some("user".into());
        context.tls = true;
        context.write_wit(&mut record);
        assert!(same(&record, &context));

        // Another client address (as after a PROXY header) is formatted again.
        context.client = "[2001:db8::1]:1".parse().unwrap();
        context.write_wit(&mut record);
        assert!(same(&record, &context));
        assert_eq!(record.as_ref().unwrap().wit.client_ip, "2001:db8::1");
    }
}
