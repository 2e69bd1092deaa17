//! Where the effective configuration comes from: a file (or the embedded
//! default) plus command-line overrides. Kept so that a reload reads the
//! file again and applies the same overrides.

use super::{BUILTIN_APPLE_RELAY, CertificateCheck, Config, ConfigError, ModuleSource};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The config file and the flags that override it.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// `--config`; none for the embedded default.
    pub path: Option<PathBuf>,
    /// `--listen` (replaces `[proxy] listen` when not empty).
    pub listen: Vec<SocketAddr>,
    /// `--upstream`.
    pub upstream: Option<String>,
    /// `--policy` (a file, or `builtin:apple-relay`).
    pub policy: Option<String>,
}

impl ConfigSource {
    /// Read the file (or take the embedded default) and apply the overrides;
    /// `check` judges a `[tls]` certificate and key (`relaygate::tls::check`).
    /// Combinations that cannot work are the caller's to judge
    /// ([`Config::unworkable`]): `relaygate check` refuses them, a serving
    /// proxy says so loudly and serves the clients it still can.
    pub fn load(&self, check: &CertificateCheck) -> Result<Config, ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::load(path, check)?,
            None => Config::embedded_default(),
        };
        if !self.listen.is_empty() {
            config.proxy.listen = self.listen.clone();
        }
        if let Some(upstream) = &self.upstream {
            config.proxy.upstream = upstream.clone();
        }
        if let Some(policy) = &self.policy {
            config.policy.module = if policy == BUILTIN_APPLE_RELAY {
                ModuleSource::BuiltinAppleRelay
            } else {
                ModuleSource::File(policy.into())
            };
        }
        config.revalidate()?;
        Ok(config)
    }
}
