//! Assembling a running proxy from a validated [`Config`]: the policy is
//! compiled and checked, the resolver built and the listeners bound before
//! anything is served.

use crate::config::{Config, ConfigSource};
use crate::connection::{ListenerProfile, SharedState};
use crate::dns::Dns;
use crate::listener::{self, Listener, ServerLimits};
use crate::metrics::Metrics;
use crate::policy::{Chains, InstancePool, LoadedPolicy, PolicyEngine, load_chains};
use crate::reload::Reloader;
use crate::session::SessionLimits;
use crate::upstream::{Servers, Upstream, UpstreamPool, UpstreamSettings, UpstreamTls};
use crate::{admin, watch};
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use tokio::net::{TcpListener, TcpSocket};

/// A proxy ready to serve: policy loaded, listeners bound.
pub struct App {
    /// What sessions share.
    pub state: Arc<SharedState>,
    /// Bound listeners.
    pub listeners: Vec<Listener>,
    admin: Option<TcpListener>,
    reloader: Arc<Reloader>,
    limits: ServerLimits,
}

impl App {
    /// Load the policy, build the resolver and bind every listener (and the
    /// admin endpoint) named by `config`, which `source` produced.
    pub async fn build(source: ConfigSource, config: &Config) -> anyhow::Result<Self> {
        let listeners = bind(config)?;
        let admin = config
            .admin_listen
            .map(|addr| {
                bind_listener(addr)
                    .with_context(|| format!("admin.listen: cannot listen on {addr}"))
            })
            .transpose()?;
        Self::assemble(source, config, listeners, admin).await
    }

    /// Like [`App::build`] with listeners the caller bound (tests bind port
    /// 0) and no config file to reload from; each behaves as `[proxy]
    /// listen` does (named `smtp`).
    pub async fn with_listeners(
        config: &Config,
        listeners: Vec<TcpListener>,
    ) -> anyhow::Result<Self> {
        let profile = Arc::new(ListenerProfile::plain(
            crate::config::SMTP_LISTENER,
            &config.proxy.hostname,
            config.auth.as_ref().is_none_or(|auth| auth.require_tls),
        ));
        let listeners = listeners
            .into_iter()
            .map(|socket| Listener {
                socket,
                proxy_protocol: false,
                profile: profile.clone(),
            })
            .collect();
        Self::assemble(ConfigSource::default(), config, listeners, None).await
    }

    /// Build the proxy around bound listeners.
    pub async fn assemble(
        source: ConfigSource,
        config: &Config,
        listeners: Vec<Listener>,
        admin: Option<TcpListener>,
    ) -> anyhow::Result<Self> {
        let dns = Dns::new(&config.dns).context("setting up DNS")?;
        let metrics = Arc::new(Metrics::default());
        let state_store = crate::state::StateStore::from_config(&config.state)?
            .with_error_counter(metrics.state_errors.clone());
        tracing::info!("policy state: {}", state_store.describe());
        // One instance per chain module per session: size for the longest
        // chain (a reload that lengthens it past this needs a restart to
        // keep every session's instances in the pool).
        let pool = InstancePool::for_sessions(
            config
                .proxy
                .max_connections
                .saturating_mul(config.longest_chain()),
            config.policy.memory_limit,
        );
        let engine = match PolicyEngine::pooled(config.policy.cache_dir.clone(), pool) {
            Ok(engine) => engine,
            Err(error) => {
                // E.g. an address-space limit (ulimit -v) too small for the
                // pool's reservation: serve anyway, allocating per session.
                tracing::warn!(
                    instances = pool.instances,
                    slot_bytes = pool.memory_slot,
                    "cannot set up the policy instance pool ({error:#}); allocating instances on demand, which costs more CPU per session"
                );
                PolicyEngine::new(config.policy.cache_dir.clone())
                    .context("starting the WebAssembly engine")?
            }
        }
        .with_state(state_store);
        let chains = load_chains(&engine, config, Some(dns.clone()), None).await?;
        let tls = config
            .tls
            .as_ref()
            .map(crate::tls::acceptor)
            .transpose()?
            .map(Arc::new);
        let auth = config
            .auth
            .as_ref()
            .map(crate::credentials::Authenticator::new)
            .transpose()
            .context("auth")?
            .map(Arc::new);
        let proxy = &config.proxy;
        let state = Arc::new(SharedState {
            hostname: proxy.hostname.clone(),
            limits: SessionLimits {
                max_message_size: proxy.max_message_size,
                max_recipients: proxy.max_recipients,
                max_errors: proxy.max_errors,
            },
            soft_error_limit: proxy.soft_error_limit,
            error_sleep: proxy.error_sleep,
            command_timeout: proxy.command_timeout,
            data_timeout: proxy.data_timeout,
            max_session_duration: proxy.max_session_duration,
            early_talker_delay: proxy.early_talker_delay,
            chains: arc_swap::ArcSwap::from_pointee(chains),
            dns: Some(dns.clone()),
            upstream: UpstreamPool::start(
                UpstreamSettings {
                    servers: Arc::new(Servers::new(
                        std::iter::once(proxy.upstream.clone())
                            .chain(proxy.upstream_fallbacks.iter().cloned())
                            .collect(),
                        proxy.upstream_back_off,
                        metrics.clone(),
                    )),
                    hostname: proxy.hostname.clone(),
                    timeout: proxy.upstream_timeout,
                    smtputf8: Arc::new(AtomicBool::new(false)),
                    tls: UpstreamTls::from_config(&config.upstream_tls)?,
                    health_interval: proxy.upstream_health_interval,
                },
                config.upstream_pool.clone(),
                metrics.clone(),
            ),
            next_session: AtomicU64::new(1),
            metrics,
            ready: AtomicBool::new(false),
            tls: arc_swap::ArcSwapOption::new(tls),
            auth,
        });
        let reloader = Arc::new(Reloader::new(
            source,
            config.clone(),
            engine,
            Some(dns),
            state.clone(),
        ));
        Ok(Self {
            state,
            listeners,
            admin,
            reloader,
            limits: server_limits(config),
        })
    }

    /// The loaded policy: the first module of the chain `default`.
    pub fn policy(&self) -> Arc<LoadedPolicy> {
        self.state.chains.load().default_chain().modules[0]
            .policy
            .clone()
    }

    /// Every policy chain now serving new sessions.
    pub fn chains(&self) -> Arc<Chains> {
        self.state.chains.load_full()
    }

    /// What reloads the policy (SIGHUP, file changes, the admin endpoint).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// Where the admin endpoint listens, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serve until `shutdown` completes, then drain.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let pool = self.state.upstream.clone();
        let probe_settings = pool.settings().clone();
        tokio::spawn(async move {
            for server in 0..probe_settings.servers.len() {
                if let Err(e) = Upstream::probe(&probe_settings, server).await {
                    let addr = probe_settings.servers.addr(server);
                    tracing::warn!("upstream {addr} not reachable yet: {e}");
                }
            }
        });
        let watcher = watch::spawn(self.reloader.clone());
        let admin = self
            .admin
            .map(|listener| admin::spawn(listener, self.reloader.clone()));
        listener::run(self.listeners, self.state, self.limits, shutdown).await;
        pool.close_idle().await;
        watcher.abort();
        if let Some(admin) = admin {
            admin.abort();
        }
    }
}

/// `[proxy]`'s connection limits, with the per-client exemption resolved
/// (by default loopback and this machine's addresses, as found now).
fn server_limits(config: &Config) -> ServerLimits {
    let proxy = &config.proxy;
    let exempt = crate::net::client_group::exempt_or_own(proxy.per_client_exempt.as_deref());
    tracing::info!(
        max_connections = proxy.max_connections,
        per_client = proxy.max_connections_per_client,
        ipv6_prefix = proxy.per_client_ipv6_prefix,
        exempt = %describe_networks(&exempt),
        "connection limits"
    );
    ServerLimits {
        max_connections: proxy.max_connections,
        max_connections_per_client: proxy.max_connections_per_client,
        per_client_ipv6_prefix: proxy.per_client_ipv6_prefix,
        per_client_exempt: exempt,
        shutdown_grace: proxy.shutdown_grace,
    }
}

/// Networks for a log line or `relaygate check`: "none" when empty.
pub fn describe_networks(networks: &[ipnet::IpNet]) -> String {
    if networks.is_empty() {
        return "none".to_string();
    }
    networks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Bind every listener of `config` ([`Config::listeners`]).
fn bind(config: &Config) -> anyhow::Result<Vec<Listener>> {
    config
        .listeners()
        .iter()
        .map(|listener| {
            let addr = listener.address;
            let socket = bind_listener(addr).with_context(|| {
                format!("listener {:?}: cannot listen on {addr}", listener.name)
            })?;
            tracing::info!("listening: {}", config.describe_listener(listener));
            Ok(Listener {
                socket,
                proxy_protocol: listener.proxy_protocol,
                profile: Arc::new(ListenerProfile::of(listener)),
            })
        })
        .collect()
}

/// Connections the kernel may queue before they are accepted (capped by
/// net.core.somaxconn). The default of 128 overflows under a burst of
/// clients, and overflowed connections look open to the client but are never
/// served.
const LISTEN_BACKLOG: u32 = 4096;

/// Bind a listening socket with a backlog fit for bursts of clients.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
