//! The wasmtime engine, its epoch ticker, and loading a component: compile,
//! check it fits the WIT world (naming both versions when it does not),
//! pre-instantiate, and run its `init` once.

use super::bindings::{PACKAGE, PolicyPre, VERSION};
use super::cache::{CompiledCache, hex};
use super::host_state::{HostState, PolicyServices};
use super::instance::PolicyInstance;
use super::load_error::LoadError;
use super::{LoadedPolicy, PolicyInfo};
use crate::config::PolicySettings;
use crate::state::StateStore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

/// How often the epoch advances; the resolution of call deadlines.
pub(super) const TICK: Duration = Duration::from_millis(10);

/// The embedded default policy (built from `policies/apple-relay/` by `cargo xtask guests`).
pub const BUILTIN_APPLE_RELAY_WASM: &[u8] = include_bytes!("../../assets/apple-relay.wasm");

/// How many policy instances the proxy may need at once, and how large.
#[derive(Debug, Clone, Copy)]
pub struct InstancePool {
    /// Instances alive at once: one per session plus those that loads and
    /// swaps run `init` in.
    pub instances: u32,
    /// The largest linear memory of one instance (`[policy] memory_limit`).
    pub memory_slot: usize,
}

impl InstancePool {
    /// Room beyond one instance per session: `init` runs of loads and swaps,
    /// sessions still closing.
    const SPARE_INSTANCES: u32 = 64;

    /// A pool for `max_connections` sessions whose policies may use up to
    /// `memory_limit` bytes each.
    pub fn for_sessions(max_connections: usize, memory_limit: usize) -> Self {
        let sessions = u32::try_from(max_connections).unwrap_or(u32::MAX);
        Self {
            instances: sessions.saturating_add(Self::SPARE_INSTANCES),
            memory_slot: memory_limit,
        }
    }

    fn configure(&self, config: &mut wasmtime::Config) {
        let n = self.instances;
        let mut pooling = wasmtime::PoolingAllocationConfig::new();
        // A component has several core instances (its module, the
        // canonical-ABI shims, a WASI adapter) but rarely more than one or
        // two memories; only address space is reserved per slot.
        pooling
            .total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(self.memory_slot);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
        // Reserve only what a memory may grow to, not the default 4 GiB per
        // slot: thousands of slots then need gigabytes of address space, not
        // terabytes (wasm code checks bounds explicitly instead).
        config.memory_reservation(self.memory_slot as u64);
    }
}

/// The compilation engine shared by every loaded policy.
#[derive(Clone)]
pub struct PolicyEngine {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    cache: Arc<CompiledCache>,
    state: StateStore,
    /// The largest linear memory a pooled instance can have, if pooled.
    memory_slot: Option<usize>,
}

impl PolicyEngine {
    /// Create the engine and start its epoch ticker thread (which stops when
    /// the last clone of the engine is dropped). Compiled modules are cached
    /// in `cache_dir` when given. Instances are allocated on demand: for
    /// one-off uses (`relaygate check`, `policy check`, `policy test`).
    pub fn new(cache_dir: Option<std::path::PathBuf>) -> anyhow::Result<Self> {
        Self::build(cache_dir, None)
    }

    /// The proxy's engine: like [`PolicyEngine::new`], but every instance
    /// takes a slot of a pre-allocated pool sized by `pool`. A session then
    /// reuses the memory mappings a finished session left, instead of mapping
    /// fresh memory and a fiber stack and unmapping them at its end (each
    /// unmap interrupts every core running the proxy to flush its TLB).
    pub fn pooled(
        cache_dir: Option<std::path::PathBuf>,
        pool: InstancePool,
    ) -> anyhow::Result<Self> {
        Self::build(cache_dir, Some(pool))
    }

    fn build(
        cache_dir: Option<std::path::PathBuf>,
        pool: Option<InstancePool>,
    ) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        config.max_wasm_stack(512 * 1024);
        if let Some(pool) = &pool {
            pool.configure(&mut config);
        }
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("policy-epoch".to_string())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })?;
        let mut linker = Linker::new(&engine);
        super::bindings::Policy::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(anyhow::Error::from)?;
        // Capability-free WASI for guests whose toolchain imports it.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        Ok(Self {
            cache: Arc::new(CompiledCache::new(&engine, cache_dir)),
            memory_slot: pool.map(|pool| pool.memory_slot),
            engine,
            linker: Arc::new(linker),
            state: StateStore::memory_default(),
        })
    }

    /// Give policies that import `state` this store instead of the default
    /// in-process one. Clones of the engine (the reloader's) share it, so
    /// state survives reloads.
    pub fn with_state(mut self, state: StateStore) -> Self {
        self.state = state;
        self
    }

    /// The store policies keep their state in.
    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// Compile (or take from the cache) and check a component, then run its
    /// `init`. Compiling happens on a blocking thread, off the sessions' path.
    pub async fn load(
        &self,
        name: &str,
        bytes: &[u8],
        settings: &PolicySettings,
        services: PolicyServices,
    ) -> Result<Arc<LoadedPolicy>, LoadError> {
        let started = Instant::now();
        if let Some(slot) = self.memory_slot
            && settings.memory_limit > slot
        {
            return Err(LoadError::PoolTooSmall {
                memory_limit: settings.memory_limit,
                slot,
            });
        }
        let digest = hex(&Sha256::digest(bytes));
        check_is_component(bytes)?;
        let (component, origin) = self
            .cache
            .component(&self.engine, &digest, Arc::from(bytes))
            .await
            .map_err(LoadError::Invalid)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| self.explain_mismatch(&component, e))?;
        let pre = PolicyPre::new(pre).map_err(|e| self.explain_mismatch(&component, e))?;
        let mut loaded = Arc::new(LoadedPolicy {
            pre,
            digest,
            name: Arc::from(name),
            info: PolicyInfo::default(),
            settings: settings.clone(),
            services: Arc::new(services),
            state: self.state.clone(),
            compile_time: Duration::ZERO,
            origin,
        });
        let info = PolicyInstance::run_init(loaded.clone()).await?;
        let only = Arc::get_mut(&mut loaded).expect("the init instance is gone");
        only.info = info;
        only.compile_time = started.elapsed();
        Ok(loaded)
    }

    /// Compile bytes into a component (no cache: for inspection).
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        check_is_component(bytes)?;
        Component::new(&self.engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))
    }

    /// The names under which `component` exports and imports instances.
    pub fn interface_names(&self, component: &Component) -> (Vec<String>, Vec<String>) {
        let ty = component.component_type();
        let exports = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let imports = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        (exports, imports)
    }

    /// The function names of the instance `name` that `component` exports
    /// (`exported`) or imports; empty when it has no such instance.
    pub fn instance_functions(
        &self,
        component: &Component,
        name: &str,
        exported: bool,
    ) -> Vec<String> {
        use wasmtime::component::types::ComponentItem;
        let ty = component.component_type();
        let item = if exported {
            ty.get_export(&self.engine, name)
        } else {
            ty.get_import(&self.engine, name)
        };
        match item.map(|item| item.ty) {
            Some(ComponentItem::ComponentInstance(instance)) => instance
                .exports(&self.engine)
                .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
                .map(|(n, _)| n.to_string())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Turn a link error into a version mismatch when the component names our
    /// package at an incompatible version.
    fn explain_mismatch(&self, component: &Component, error: wasmtime::Error) -> LoadError {
        let (exports, imports) = self.interface_names(component);
        let prefix = format!("{PACKAGE}/");
        for name in exports.iter().chain(imports.iter()) {
            if let Some(rest) = name.strip_prefix(&prefix)
                && let Some((_, version)) = rest.split_once('@')
                && !semver_compatible(version, VERSION)
            {
                return LoadError::VersionMismatch {
                    found: format!("{PACKAGE}@{version}"),
                };
            }
        }
        LoadError::WrongWorld(format!("{error:#}"))
    }
}

/// Component-model semver: 0.x.y matches 0.x.*, and x.y.z matches x.*.
pub fn semver_compatible(found: &str, ours: &str) -> bool {
    let parts = |v: &str| -> Vec<String> { v.split('.').map(str::to_string).collect() };
    let (a, b) = (parts(found), parts(ours));
    match (a.first().map(String::as_str), b.first().map(String::as_str)) {
        (Some("0"), Some("0")) => a.get(1) == b.get(1),
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// A core module starts with the same magic as a component but a different
/// layer/version word; say so rather than let the parser be cryptic.
fn check_is_component(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::Invalid(
            "this is a core WebAssembly module, not a component (use wit-component or wasm-tools component new)".to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[proxy]
listen = ["127.0.0.1:2525"]
upstream = "127.0.0.1:25"
hostname = "pool.relaygate.test"

[policy]
memory_limit = 33554432

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.1"]
"#;

    async fn load_into(
        engine: &PolicyEngine,
        memory_limit: usize,
    ) -> Result<Arc<LoadedPolicy>, LoadError> {
        let config = crate::config::Config::parse(CONFIG).expect("the test config parses");
        let mut settings = config.policy.clone();
        settings.memory_limit = memory_limit;
        let services = PolicyServices {
            config: config.policy.config.clone(),
            dns: None,
            own_networks: vec!["127.0.0.0/8".to_string()],
            hostname: config.proxy.hostname.clone(),
        };
        engine
            .load(
                "builtin:apple-relay",
                BUILTIN_APPLE_RELAY_WASM,
                &settings,
                services,
            )
            .await
    }

    #[tokio::test]
    async fn pooled_instances_serve_sessions_within_the_slot_size() {
        let engine =
            PolicyEngine::pooled(None, InstancePool::for_sessions(2, 32 << 20)).expect("engine");
        let policy = load_into(&engine, 32 << 20).await.expect("fits the slot");
        // More sessions one after another than the pool has slots: each
        // finished session's slot is reused.
        for session in 0..200 {
            let mut instance = PolicyInstance::new(policy.clone(), session);
            instance.prepare().await.expect("a slot is free");
        }
    }

    #[tokio::test]
    async fn a_memory_limit_above_the_pool_slot_is_refused_with_a_restart_hint() {
        let engine =
            PolicyEngine::pooled(None, InstancePool::for_sessions(2, 16 << 20)).expect("engine");
        let error = load_into(&engine, 32 << 20)
            .await
            .err()
            .expect("a limit above the slot is refused");
        assert!(matches!(error, LoadError::PoolTooSmall { .. }), "{error}");
        assert!(error.to_string().contains("restart"), "{error}");
        // An unpooled engine has no such bound.
        load_into(&PolicyEngine::new(None).expect("engine"), 32 << 20)
            .await
            .expect("loads");
    }

    #[test]
    fn semver_rules() {
        assert!(semver_compatible("0.1.0", "0.1.0"));
        assert!(semver_compatible("0.1.3", "0.1.0"));
        assert!(!semver_compatible("0.2.0", "0.1.0"));
        assert!(semver_compatible("1.4.0", "1.0.0"));
        assert!(!semver_compatible("2.0.0", "1.0.0"));
    }
}
