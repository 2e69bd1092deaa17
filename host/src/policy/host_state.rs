//! The per-instance host state (`Store` data) and the host side of every WIT
//! import: config, log, DNS, server facts and (for the `stateful-policy`
//! world) state. A policy reaches nothing else.

use super::bindings::relaygate::policy::{config, dns, log, server, state, types};
use super::wasi::WasiState;
use crate::config::{PolicyConfig, PolicyValue};
use crate::dns::{Dns, DnsError};
use crate::hook::ListenerIdentity;
use crate::state::StateError;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;

/// What every instance of one loaded policy shares.
pub struct PolicyServices {
    /// `[policy.config]`.
    pub config: PolicyConfig,
    /// The resolver; none in offline runs, where lookups fail.
    pub dns: Option<Dns>,
    /// The machine's own networks as CIDR text.
    pub own_networks: Vec<String>,
    /// `[proxy] hostname`.
    pub hostname: String,
}

/// The data of one instance's `Store`.
pub struct HostState {
    pub(super) services: Arc<PolicyServices>,
    pub(super) policy_name: Arc<str>,
    pub(super) session_id: u64,
    pub(super) memory_limit: usize,
    pub(super) memory_exhausted: bool,
    pub(super) budget: Duration,
    pub(super) call_started: Instant,
    pub(super) host_time: Duration,
    pub(super) waited: WaitClock,
    /// The listener of the session being asked; none during `init`.
    pub(super) listener: Option<ListenerIdentity>,
    /// The policy's keys in the state store; none during `init`.
    pub(super) state_keys: Option<crate::state::Namespace>,
    /// WASI, built on the guest's first WASI call (see [`super::wasi`]).
    wasi: Option<Box<WasiState>>,
}

/// Time a call spent yielded to the executor (shared with the yield future,
/// which cannot reach the store).
#[derive(Clone, Default)]
pub(super) struct WaitClock(Arc<AtomicU64>);

impl WaitClock {
    pub(super) fn add(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }

    fn take(&self) -> Duration {
        Duration::from_nanos(self.0.swap(0, Ordering::Relaxed))
    }

    fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

impl HostState {
    pub(super) fn new(
        services: Arc<PolicyServices>,
        policy_name: Arc<str>,
        session_id: u64,
        memory_limit: usize,
        budget: Duration,
    ) -> Self {
        Self {
            services,
            policy_name,
            session_id,
            memory_limit,
            memory_exhausted: false,
            budget,
            call_started: Instant::now(),
            host_time: Duration::ZERO,
            waited: WaitClock::default(),
            listener: None,
            state_keys: None,
            wasi: None,
        }
    }

    /// Reset the CPU budget at the start of a hook call asked for a session
    /// on `listener` (none for `init`). An instance may serve several
    /// sessions in turn, so the listener is set at every call.
    pub(super) fn begin_call(&mut self, listener: Option<&ListenerIdentity>) {
        if self.listener.as_ref() != listener {
            self.listener = listener.cloned();
        }
        self.call_started = Instant::now();
        self.host_time = Duration::ZERO;
        self.waited.take();
    }

    /// Guest time used by the current call: wall time minus time spent
    /// waiting in host calls (DNS) and for the executor, which the guest
    /// cannot control.
    pub(super) fn guest_time(&self) -> Duration {
        self.call_started
            .elapsed()
            .saturating_sub(self.host_time)
            .saturating_sub(self.waited.get())
    }

    fn resolver(&self) -> Result<Dns, dns::DnsError> {
        self.services
            .dns
            .clone()
            .ok_or_else(|| dns::DnsError::Failed("DNS is not available here".to_string()))
    }

    /// Count a lookup's wait as host time and convert its error.
    fn finish_lookup<T>(
        &mut self,
        started: Instant,
        result: Result<T, DnsError>,
    ) -> Result<T, dns::DnsError> {
        self.host_time += started.elapsed();
        result.map_err(|e| match e {
            DnsError::Timeout => dns::DnsError::Timeout,
            DnsError::Failed(why) => dns::DnsError::Failed(why),
        })
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_limit;
        if !allowed {
            self.memory_exhausted = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl wasmtime_wasi::WasiView for HostState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        let (policy, session) = (&self.policy_name, self.session_id);
        let wasi = self
            .wasi
            .get_or_insert_with(|| Box::new(WasiState::new(policy.clone(), session)));
        wasmtime_wasi::WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

impl types::Host for HostState {}

impl config::Host for HostState {
    async fn get(&mut self, key: String) -> Option<config::Value> {
        self.services.config.get(&key).map(|value| match value {
            PolicyValue::Text(s) => config::Value::Text(s.clone()),
            PolicyValue::Integer(i) => config::Value::Integer(*i),
            PolicyValue::Float(f) => config::Value::Float(*f),
            PolicyValue::Boolean(b) => config::Value::Boolean(*b),
            PolicyValue::TextList(items) => config::Value::TextList(items.clone()),
        })
    }

    async fn keys(&mut self) -> Vec<String> {
        self.services.config.keys().map(str::to_string).collect()
    }
}

/// Longest guest log line kept.
const MAX_LOG_LINE: usize = 1000;

impl log::Host for HostState {
    async fn write(&mut self, level: log::Level, message: String) {
        let mut line: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if line.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str("...");
        }
        let policy = &*self.policy_name;
        let session = self.session_id;
        match level {
            log::Level::Trace => tracing::trace!(target: "policy", policy, session, "{line}"),
            log::Level::Debug => tracing::debug!(target: "policy", policy, session, "{line}"),
            log::Level::Info => tracing::info!(target: "policy", policy, session, "{line}"),
            log::Level::Warn => tracing::warn!(target: "policy", policy, session, "{line}"),
            log::Level::Error => tracing::error!(target: "policy", policy, session, "{line}"),
        }
    }
}

fn parse_ip(text: &str) -> Result<IpAddr, dns::DnsError> {
    text.parse()
        .map_err(|_| dns::DnsError::Failed(format!("{text:?} is not an IP address")))
}

impl dns::Host for HostState {
    async fn reverse(&mut self, ip: String) -> Result<Vec<String>, dns::DnsError> {
        let (ip, resolver) = (parse_ip(&ip)?, self.resolver()?);
        let started = Instant::now();
        let result = resolver.reverse(ip).await;
        self.finish_lookup(started, result)
    }

    async fn forward(&mut self, name: String) -> Result<Vec<String>, dns::DnsError> {
        let resolver = self.resolver()?;
        let started = Instant::now();
        let result = resolver.forward(&name).await;
        self.finish_lookup(started, result)
            .map(|ips| ips.into_iter().map(|ip| ip.to_string()).collect())
    }

    async fn confirmed_name(&mut self, ip: String) -> Result<Option<String>, dns::DnsError> {
        let (ip, resolver) = (parse_ip(&ip)?, self.resolver()?);
        let started = Instant::now();
        let result = resolver.confirmed_name(ip).await;
        self.finish_lookup(started, result)
    }
}

impl server::Host for HostState {
    async fn own_networks(&mut self) -> Vec<String> {
        self.services.own_networks.clone()
    }

    async fn hostname(&mut self) -> String {
        match &self.listener {
            Some(listener) => listener.hostname.to_string(),
            None => self.services.hostname.clone(),
        }
    }

    async fn listener(&mut self) -> String {
        self.listener
            .as_ref()
            .map(|l| l.name.to_string())
            .unwrap_or_default()
    }
}

impl HostState {
    /// The policy's namespace, or the error a call during `init` gets.
    fn namespace(&self) -> Result<crate::state::Namespace, state::StateError> {
        self.state_keys.clone().ok_or_else(|| {
            state::StateError::Unavailable("state is not available during init".to_string())
        })
    }

    /// Count a state call's wait as host time; log and convert its error.
    fn finish_state<T>(
        &mut self,
        started: Instant,
        operation: &str,
        result: Result<T, StateError>,
    ) -> Result<T, state::StateError> {
        self.host_time += started.elapsed();
        result.map_err(|error| {
            let policy = &*self.policy_name;
            let session = self.session_id;
            let kind = error.kind();
            match error {
                StateError::Unavailable(_) | StateError::Timeout => {
                    tracing::warn!(
                        policy,
                        session,
                        operation,
                        kind,
                        "state store failed: {error}"
                    )
                }
                StateError::TooLarge(_) | StateError::Invalid(_) => {
                    tracing::debug!(
                        policy,
                        session,
                        operation,
                        kind,
                        "state call refused: {error}"
                    )
                }
            }
            match error {
                StateError::Unavailable(why) => state::StateError::Unavailable(why),
                StateError::Timeout => state::StateError::Timeout,
                StateError::TooLarge(why) => state::StateError::TooLarge(why),
                StateError::Invalid(why) => state::StateError::Invalid(why),
            }
        })
    }
}

impl state::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, state::StateError> {
        let namespace = self.namespace()?;
        let started = Instant::now();
        let result = namespace.get(&key).await;
        self.finish_state(started, "get", result)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> Result<(), state::StateError> {
        let namespace = self.namespace()?;
        let started = Instant::now();
        let result = namespace
            .set(&key, &value, Duration::from_millis(ttl_ms))
            .await;
        self.finish_state(started, "set", result)
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: u64,
    ) -> Result<i64, state::StateError> {
        let namespace = self.namespace()?;
        let started = Instant::now();
        let result = namespace
            .increment(&key, delta, Duration::from_millis(ttl_ms))
            .await;
        self.finish_state(started, "increment", result)
    }

    async fn delete(&mut self, key: String) -> Result<bool, state::StateError> {
        let namespace = self.namespace()?;
        let started = Instant::now();
        let result = namespace.delete(&key).await;
        self.finish_state(started, "delete", result)
    }
}
