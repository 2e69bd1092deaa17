//! Where the effective configuration comes from: a file (or the embedded
//! default) plus command-line overrides. Kept so that a reload reads the
//! file again and applies the same overrides.

use super::{BUILTIN_APPLE_RELAY, Config, ConfigError, ModuleSource};
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
    /// Read the file (or take the embedded default), apply the overrides, and
    /// refuse combinations that cannot work ([`Config::unworkable`]).
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::load(path)?,
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
        // Serving a config that locks clients out without a word is refused.
        let unworkable = config.unworkable();
        if !unworkable.is_empty() {
            let problems = match &self.path {
                Some(path) => unworkable
                    .into_iter()
                    .map(|p| format!("{}: {p}", path.display()))
                    .collect(),
                None => unworkable,
            };
            return Err(ConfigError { problems });
        }
        Ok(config)
    }
}
