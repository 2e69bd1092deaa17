//! The default policy's rcpt-to decision compiled natively (the
//! `apple-relay` crate is plain Rust), doing what the component's
//! export does per call: read the client address from its text, decide,
//! and build the verdict with owned reply text. The ratio of the WebAssembly
//! hook call to this is the "<= 5x the same logic native" target of bench/README.md.

use apple_relay::config::{ConfigSource, OwnNetworks, Settings, Value};
use apple_relay::decision::{self, Client};
use relaygate::config::{Config, PolicyValue};
use std::net::IpAddr;

/// The `[policy.config]` table of the bench configuration as the guest sees it.
struct Table(relaygate::config::PolicyConfig);

impl ConfigSource for Table {
    fn keys(&self) -> Vec<String> {
        self.0.keys().map(str::to_owned).collect()
    }

    fn get(&self, key: &str) -> Option<Value> {
        self.0.get(key).map(|value| match value {
            PolicyValue::Text(text) => Value::Text(text.clone()),
            PolicyValue::Integer(n) => Value::Integer(*n),
            PolicyValue::Float(x) => Value::Float(*x),
            PolicyValue::Boolean(b) => Value::Boolean(*b),
            PolicyValue::TextList(list) => Value::TextList(list.clone()),
        })
    }
}

impl OwnNetworks for Table {
    fn own_networks(&self) -> Vec<String> {
        vec!["127.0.0.0/8".into(), "::1/128".into()]
    }
}

/// A verdict as the component builds it.
#[derive(Debug)]
pub struct NativeVerdict {
    /// Accepted.
    pub accept: bool,
    /// Reply code, enhanced status and text of a refusal.
    pub reply: Option<(u16, String, String)>,
}

/// The settings, read once (as the component does per instance).
pub struct NativePolicy {
    settings: Settings,
}

impl NativePolicy {
    /// Read the bench configuration.
    pub fn new() -> Self {
        let config = Config::parse(super::POLICY_TOML).expect("bench config parses");
        let settings = Settings::parse(&Table(config.policy.config)).expect("settings");
        Self { settings }
    }

    /// The rcpt-to hook's logic.
    pub fn rcpt_to(
        &self,
        client_ip: &str,
        client_name: Option<&str>,
        authenticated: bool,
        recipient: &str,
    ) -> NativeVerdict {
        let client = Client {
            ip: client_ip.parse::<IpAddr>().ok(),
            confirmed_name: client_name,
            authenticated,
        };
        match decision::rcpt_to(&self.settings, &client, recipient).reply() {
            None => NativeVerdict {
                accept: true,
                reply: None,
            },
            Some(reply) => NativeVerdict {
                accept: false,
                reply: Some((
                    reply.code,
                    reply.enhanced_status.to_owned(),
                    reply.text.to_owned(),
                )),
            },
        }
    }
}
