//! Policies: WebAssembly components behind the `relaygate:policy` WIT world.
//!
//! [`PolicyEngine`] compiles and checks a component into a [`LoadedPolicy`]
//! (pre-instantiated once); each SMTP session gets its own
//! [`PolicyInstance`], whose hook calls run under a time and memory budget.

mod bindings;
mod cache;
mod chain;
mod engine;
mod host_state;
mod instance;
mod load_error;
mod verdict;
mod wasi;

pub use bindings::{PACKAGE as WIT_PACKAGE, VERSION as WIT_VERSION};
pub use cache::Origin;
pub use chain::{
    AskModule, ChainModule, ChainVerdict, Chains, ModuleDigests, Next, PolicyChain, ask_in_order,
    load_chains, load_chains_offline,
};
pub use engine::{BUILTIN_APPLE_RELAY_WASM, InstancePool, PolicyEngine, semver_compatible};
pub use host_state::PolicyServices;
pub use instance::{PolicyAnswer, PolicyFailure, PolicyInstance};
pub use load_error::LoadError;

use crate::config::PolicySettings;
use crate::hook::{Offer, PolicyContext};
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

impl PolicyContext {
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
            client_ip: crate::net::canonical(self.client.ip()).to_string(),
            client_port: self.client.port(),
            client_name: self.client_name.clone(),
            server_ip: crate::net::canonical(self.server.ip()).to_string(),
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
}

/// Load the module `config` names (the embedded default or a file) with
/// the services a policy is given: the one place a policy is loaded, at
/// start, on reload and by `relaygate check`.
pub async fn load_configured(
    engine: &PolicyEngine,
    config: &crate::config::Config,
    dns: Option<crate::dns::Dns>,
) -> anyhow::Result<Arc<LoadedPolicy>> {
    use crate::config::ModuleSource;
    use anyhow::Context;
    let settings = &config.policy;
    let services = PolicyServices {
        config: settings.config.clone(),
        dns,
        own_networks: crate::net::own_networks(),
        hostname: config.proxy.hostname.clone(),
    };
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
    use crate::hook::ListenerIdentity;

    /// Overwriting the previous call's record gives what a fresh one would.
    #[test]
    fn rewritten_record_matches_a_fresh_one() {
        let client: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let server: SocketAddr = "[::ffff:198.51.100.2]:25".parse().unwrap();
        let mut context = PolicyContext::connected(
            1,
            ListenerIdentity::new("smtp", "relay.test"),
            client,
            server,
            Some("c.test".into()),
        );
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
