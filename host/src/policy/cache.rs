//! Compiled modules, cached in memory (swapping back to a module this
//! process already ran is instant) and on disk (a restart does not
//! recompile). Entries are keyed by the module's sha256 and the engine's
//! compatibility hash, so a cache written by another wasmtime or with other
//! engine settings is simply not used.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Compiled components kept in memory at most.
const MEMORY_ENTRIES: usize = 16;

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This process compiled it before.
    Memory,
    /// A previous run compiled it.
    Disk,
    /// Compiled now.
    Compiled,
}

/// The cache of compiled components.
pub struct CompiledCache {
    memory: Mutex<HashMap<String, Component>>,
    dir: Option<PathBuf>,
    engine_key: String,
}

impl CompiledCache {
    /// A cache for components of `engine`, persisted in `dir` if given.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            memory: Mutex::new(HashMap::new()),
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    /// The component for `bytes` (whose sha256 is `digest`), compiling it
    /// on a blocking thread only when no cache has it.
    pub async fn component(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: Arc<[u8]>,
    ) -> Result<(Component, Origin), String> {
        if let Some(component) = self.memory().get(digest) {
            return Ok((component.clone(), Origin::Memory));
        }
        let file = self
            .dir
            .as_ref()
            .map(|dir| dir.join(format!("{digest}-{}.cwasm", self.engine_key)));
        if let Some(component) = file.as_deref().and_then(|f| load(engine, f)) {
            self.remember(digest, &component);
            return Ok((component, Origin::Disk));
        }
        let engine = engine.clone();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .map_err(|e| format!("compiler task failed: {e}"))?
            .map_err(|e| format!("{e:#}"))?;
        if let Some(file) = &file
            && let Err(e) = store(&component, file)
        {
            tracing::warn!(
                "cannot cache the compiled policy in {}: {e}",
                file.display()
            );
        }
        self.remember(digest, &component);
        Ok((component, Origin::Compiled))
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<String, Component>> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, digest: &str, component: &Component) {
        let mut memory = self.memory();
        if memory.len() >= MEMORY_ENTRIES {
            memory.clear();
        }
        memory.insert(digest.to_string(), component.clone());
    }
}

/// A cached component, if the file and its checksum are intact.
#[allow(unsafe_code)]
fn load(engine: &Engine, file: &Path) -> Option<Component> {
    let bytes = std::fs::read(file).ok()?;
    let recorded = std::fs::read_to_string(checksum_path(file)).ok()?;
    if recorded.trim() != hex(&Sha256::digest(&bytes)) {
        tracing::warn!("ignoring {}: checksum mismatch", file.display());
        return None;
    }
    // SAFETY: wasmtime cannot validate precompiled code, so only artifacts
    // this program wrote may be loaded. The file was written by `store`
    // below into relaygate's own cache directory (which must not be writable
    // by others), and its checksum, written after it, still matches: a
    // truncated or corrupted file is refused above. wasmtime itself refuses
    // artifacts from another version or engine configuration.
    match unsafe { Component::deserialize(engine, &bytes) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!("ignoring {}: {e:#}", file.display());
            None
        }
    }
}

/// Write the compiled artifact, then its checksum (both atomically).
fn store(component: &Component, file: &Path) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomically(file, &bytes)?;
    write_atomically(
        &checksum_path(file),
        hex(&Sha256::digest(&bytes)).as_bytes(),
    )
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path)
}

fn checksum_path(file: &Path) -> PathBuf {
    file.with_extension("cwasm.sha256")
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
