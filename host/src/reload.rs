//! Hot swap: re-read the configuration, compile and check every chain's
//! modules off the hot path (reusing each module whose file digest and
//! settings did not change), smoke-call the new ones' `init`, then swap the
//! chains in atomically. Sessions in progress keep the chain they started
//! with; new sessions get the new one. A module that fails any step leaves
//! every old chain serving, and the error names the chain and the module.

use crate::config::{Config, ConfigSource};
use crate::connection::SharedState;
use crate::dns::Dns;
use crate::policy::{Chains, LoadedPolicy, PolicyEngine, load_chains};
use crate::recent::ReloadEvent;
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
    /// Every chain module now serving: `chain/module` and its sha256.
    pub modules: Vec<(String, String)>,
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

    /// Every module file the chains now configured load.
    pub fn module_files(&self) -> Vec<std::path::PathBuf> {
        self.lock_running().module_files()
    }

    /// Whether `[policy] watch` is on.
    pub fn watching(&self) -> bool {
        self.lock_running().policy.watch
    }

    /// The policy now serving new sessions: the first module of the chain
    /// `default`.
    pub fn current(&self) -> Arc<LoadedPolicy> {
        self.state.chains.load().default_chain().modules[0]
            .policy
            .clone()
    }

    /// Every chain now serving new sessions.
    pub fn chains(&self) -> Arc<Chains> {
        self.state.chains.load_full()
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
        self.state.metrics.recent.reload(ReloadEvent {
            at: SystemTime::now(),
            trigger: trigger.to_string(),
            ok: result.is_ok(),
            detail: match &result {
                Ok(chains) => chain_digests(chains)
                    .iter()
                    .map(|(module, digest)| format!("{module}:{}", &digest[..digest.len().min(12)]))
                    .collect::<Vec<_>>()
                    .join(" "),
                Err(error) => error.clone(),
            },
        });
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.last_attempt_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
        status.last_trigger = Some(trigger.to_string());
        match result {
            Ok(chains) => {
                let policy = chains.default_chain().modules[0].policy.clone();
                status.ok += 1;
                status.last_error = None;
                let swapped = Swapped {
                    digest: policy.digest().to_string(),
                    summary: policy.info().summary.clone(),
                    micros: micros(started.elapsed()),
                    origin: format!("{:?}", policy.origin()).to_lowercase(),
                    modules: chain_digests(&chains),
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
                // Listeners change only on restart: the running ones ask.
                let in_use = self.lock_running().chains_in_use();
                for chain in chains.open_relays(&in_use) {
                    tracing::warn!(
                        "OPEN RELAY: as configured, the policy lets ANY client relay mail to ANY domain{chain}"
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

    async fn try_reload(&self) -> Result<Arc<Chains>, String> {
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
        if config.upstream_pool != self.lock_running().upstream_pool {
            tracing::warn!(
                "[upstream_pool] settings changed: they take effect only after a restart"
            );
        }
        if config.upstream_tls != self.lock_running().upstream_tls {
            tracing::warn!(
                "[upstream_tls] settings changed: they take effect only after a restart"
            );
        }
        // The certificate is read before anything is swapped, so a bad one
        // leaves the old certificate and policy serving.
        let tls = config
            .tls
            .as_ref()
            .map(crate::tls::acceptor)
            .transpose()
            .map_err(|e| format!("{e:#}"))?;
        // Listeners are bound once: each one's chain must still exist.
        let running_listeners = self.lock_running().listeners();
        for listener in running_listeners {
            if !config.chains().iter().any(|c| c.name == listener.chain) {
                return Err(format!(
                    "the listener {:?} (bound until a restart) uses the chain {:?}, which the new config no longer has",
                    listener.name, listener.chain
                ));
            }
        }
        let previous = self.state.chains.load_full();
        let chains = Arc::new(
            load_chains(&self.engine, &config, self.dns.clone(), Some(&previous))
                .await
                .map_err(|e| format!("{e:#}"))?,
        );
        for chain in chains.all() {
            for module in &chain.modules {
                let reused = previous
                    .all()
                    .iter()
                    .flat_map(|c| c.modules.iter())
                    .any(|m| Arc::ptr_eq(&m.policy, &module.policy));
                tracing::info!(
                    chain = %chain.name,
                    module = %module.name,
                    digest = module.policy.digest(),
                    reused,
                    "chain module {}",
                    if reused { "kept" } else { "loaded" }
                );
            }
        }
        self.state.chains.store(chains.clone());
        self.state.tls.store(tls.map(Arc::new));
        *self.lock_running() = config;
        Ok(chains)
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, Config> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// `chain/module` and sha256 of every chain module.
pub fn chain_digests(chains: &Chains) -> Vec<(String, String)> {
    chains
        .all()
        .iter()
        .flat_map(|chain| {
            chain.modules.iter().map(move |m| {
                (
                    format!("{}/{}", chain.name, m.name),
                    m.policy.digest().to_string(),
                )
            })
        })
        .collect()
}
