//! Hot swap: re-read the configuration, compile and check the policy off the
//! hot path, smoke-call its `init`, then swap it in atomically. Sessions in
//! progress keep the module they started with; new sessions get the new one.
//! A module that fails any step leaves the old one serving and is reported.

use crate::config::{Config, ConfigSource, ModuleSource};
use crate::connection::SharedState;
use crate::dns::Dns;
use crate::policy::{LoadedPolicy, PolicyEngine, load_configured};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What `/status` and `relaygate status` report about reloads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// Successful reloads since start.
    pub ok: u64,
    /// Failed reloads since start.
    pub failed: u64,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the last attempt ended (seconds since the Unix epoch).
    pub last_attempt_unix: Option<u64>,
    /// What triggered the last attempt ("SIGHUP", "file change", "admin").
    pub last_trigger: Option<String>,
}

/// The result of a successful reload.
#[derive(Debug, Clone, Serialize)]
pub struct Swapped {
    /// sha256 of the module now serving.
    pub digest: String,
    /// The policy's one-line summary.
    pub summary: String,
    /// Time from trigger to swap, in microseconds.
    pub micros: u64,
    /// Whether the compiled code came from a cache.
    pub origin: String,
}

/// Performs reloads, one at a time.
pub struct Reloader {
    source: ConfigSource,
    engine: PolicyEngine,
    dns: Option<Dns>,
    state: Arc<SharedState>,
    running: Mutex<Config>,
    status: Mutex<ReloadStatus>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader for the proxy whose shared `state` was built from `config`.
    pub fn new(
        source: ConfigSource,
        config: Config,
        engine: PolicyEngine,
        dns: Option<Dns>,
        state: Arc<SharedState>,
    ) -> Self {
        Self {
            source,
            engine,
            dns,
            state,
            running: Mutex::new(config),
            status: Mutex::new(ReloadStatus::default()),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// The module file now configured, if the policy is a file.
    pub fn module_path(&self) -> Option<std::path::PathBuf> {
        match &self.lock_running().policy.module {
            ModuleSource::File(path) => Some(path.clone()),
            ModuleSource::BuiltinAppleRelay => None,
        }
    }

    /// Whether `[policy] watch` is on.
    pub fn watching(&self) -> bool {
        self.lock_running().policy.watch
    }

    /// The policy now serving new sessions.
    pub fn current(&self) -> Arc<LoadedPolicy> {
        self.state.policy.load_full()
    }

    /// Serving: listeners bound, policy compiled, not shutting down.
    pub fn ready(&self) -> bool {
        self.state.ready.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The proxy's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.state.metrics
    }

    /// Reload counters and the last error.
    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-read the config and the module and swap them in.
    pub async fn reload(&self, trigger: &str) -> Result<Swapped, String> {
        let _one = self.one_at_a_time.lock().await;
        let started = Instant::now();
        let result = self.try_reload().await;
        self.state.metrics.reload(result.is_ok());
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.last_attempt_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
        status.last_trigger = Some(trigger.to_string());
        match result {
            Ok(policy) => {
                status.ok += 1;
                status.last_error = None;
                let swapped = Swapped {
                    digest: policy.digest().to_string(),
                    summary: policy.info().summary.clone(),
                    micros: micros(started.elapsed()),
                    origin: format!("{:?}", policy.origin()).to_lowercase(),
                };
                tracing::info!(
                    trigger,
                    policy = policy.name(),
                    digest = %swapped.digest,
                    micros = swapped.micros,
                    origin = %swapped.origin,
                    "policy swapped in: {}",
                    swapped.summary
                );
                if policy.info().open_relay {
                    tracing::warn!(
                        "OPEN RELAY: as configured, the policy lets ANY client relay mail to ANY domain"
                    );
                }
                Ok(swapped)
            }
            Err(error) => {
                status.failed += 1;
                status.last_error = Some(error.clone());
                tracing::error!(
                    trigger,
                    "reload refused, the previous policy keeps serving: {error}"
                );
                Err(error)
            }
        }
    }

    async fn try_reload(&self) -> Result<Arc<LoadedPolicy>, String> {
        let config = match &self.source.path {
            Some(_) => self
                .source
                .load(&crate::tls::check)
                .map_err(|e| e.to_string())?,
            None => self.lock_running().clone(),
        };
        for problem in config.unworkable() {
            tracing::error!("CONFIG CANNOT WORK (relaygate check refuses it): {problem}");
        }
        if config.proxy != self.lock_running().proxy {
            tracing::warn!("[proxy] settings changed: they take effect only after a restart");
        }
        if config.listener_tables != self.lock_running().listener_tables {
            tracing::warn!("[[listener]] settings changed: they take effect only after a restart");
        }
        if config.state != self.lock_running().state {
            tracing::warn!("[state] settings changed: they take effect only after a restart");
        }
        if config.auth != self.lock_running().auth {
            tracing::warn!("[auth] settings changed: they take effect only after a restart");
        }
        // The certificate is read before anything is swapped, so a bad one
        // leaves the old certificate and policy serving.
        let tls = config
            .tls
            .as_ref()
            .map(crate::tls::acceptor)
            .transpose()
            .map_err(|e| format!("{e:#}"))?;
        let policy = load_configured(&self.engine, &config, self.dns.clone())
            .await
            .map_err(|e| format!("{e:#}"))?;
        self.state.policy.store(policy.clone());
        self.state.tls.store(tls.map(Arc::new));
        *self.lock_running() = config;
        Ok(policy)
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, Config> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
