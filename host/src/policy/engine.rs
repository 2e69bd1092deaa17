//! The wasmtime engine, its epoch ticker, and loading a component: compile,
//! check it fits the WIT world (naming both versions when it does not),
//! pre-instantiate, and run its `init` once.

use super::bindings::{PACKAGE, PolicyPre, VERSION};
use super::cache::{CompiledCache, hex};
use super::host_state::{HostState, PolicyServices};
use super::instance::PolicyInstance;
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

/// The embedded default policy (built from `policy-guest/` by `cargo xtask guests`).
pub const BUILTIN_APPLE_RELAY_WASM: &[u8] = include_bytes!("../../assets/apple-relay.wasm");

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid component (or not WebAssembly at all).
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// Built against a different, incompatible version of the WIT package.
    #[error("built for {found}, but this relaygate provides {PACKAGE}@{VERSION}")]
    VersionMismatch {
        /// What the component names, `package@version`.
        found: String,
    },
    /// Does not export the hooks, or imports something the host does not give.
    #[error("does not fit the {PACKAGE}@{VERSION} world: {0}")]
    WrongWorld(String),
    /// Its `init` refused the configuration.
    #[error("the policy refused its configuration:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    /// `init` trapped, timed out or ran out of memory.
    #[error("the policy failed in init: {0}")]
    InitFailed(String),
}

/// The compilation engine shared by every loaded policy.
#[derive(Clone)]
pub struct PolicyEngine {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    cache: Arc<CompiledCache>,
    state: StateStore,
}

impl PolicyEngine {
    /// Create the engine and start its epoch ticker thread (which stops when
    /// the last clone of the engine is dropped). Compiled modules are cached
    /// in `cache_dir` when given.
    pub fn new(cache_dir: Option<std::path::PathBuf>) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        config.max_wasm_stack(512 * 1024);
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

    #[test]
    fn semver_rules() {
        assert!(semver_compatible("0.1.0", "0.1.0"));
        assert!(semver_compatible("0.1.3", "0.1.0"));
        assert!(!semver_compatible("0.2.0", "0.1.0"));
        assert!(semver_compatible("1.4.0", "1.0.0"));
        assert!(!semver_compatible("2.0.0", "1.0.0"));
    }
}
