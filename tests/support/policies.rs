//! The site-specific policy variants under `policies/`, built from source on demand.
//!
//! A test asks for a variant by folder name; the first ask in a test process runs that
//! variant's `build.sh` when its component is missing or older than any of its sources
//! (or the WIT contract, the guest kit in `policy-guest/` that the Rust variants build on,
//! or the shipped C bindings in `policies/bindings/` that the C and Zig ones build on), so
//! `cargo test` alone builds what it needs, and later asks reuse the file. A lock file
//! keeps parallel test processes from building the same variant twice at once.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

/// Folders under a variant that hold build output or fetched tools, not sources.
const NOT_SOURCES: [&str; 8] = [
    "target",
    "node_modules",
    "venv",
    ".venv",
    "__pycache__",
    "gen",
    "bindings",
    "build",
];

/// The repository root (the parent of the `tests` crate).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

/// Where built variants go: `target/policies/NAME.wasm` (honouring `CARGO_TARGET_DIR`).
pub fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target"));
    target.join("policies")
}

/// Returns the component of `policies/NAME`, building it first when it is missing or
/// stale. Panics with the build script's output when the build fails.
pub fn built(name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let path = build(name);
    built.insert(name.to_owned(), path.clone());
    path
}

fn build(name: &str) -> PathBuf {
    let root = repository_root();
    let source = root.join("policies").join(name);
    let script = source.join("build.sh");
    assert!(script.exists(), "{} does not exist", script.display());
    let out_dir = output_dir();
    fs::create_dir_all(&out_dir).expect("create target/policies");
    let output = out_dir.join(format!("{name}.wasm"));

    let lock = File::create(out_dir.join(format!(".{name}.lock"))).expect("create build lock");
    lock.lock().expect("lock the policy build");
    let newest_source = newest_modification([
        source.as_path(),
        &root.join("wit"),
        &root.join("policy-guest"),
        &root.join("policies").join("bindings"),
    ]);
    let current = fs::metadata(&output)
        .and_then(|meta| meta.modified())
        .is_ok_and(|built| built >= newest_source);
    if !current {
        let result = Command::new("bash")
            .arg(&script)
            .arg(&output)
            .current_dir(&source)
            .output()
            .unwrap_or_else(|err| panic!("running {}: {err}", script.display()));
        assert!(
            result.status.success() && output.exists(),
            "building policy {name} failed ({}):\n{}\n{}",
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
    }
    output
}

/// The latest modification time of any source file under the given folders.
fn newest_modification<'a>(folders: impl IntoIterator<Item = &'a Path>) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut pending: Vec<PathBuf> = folders.into_iter().map(Path::to_path_buf).collect();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                let skip = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|name| NOT_SOURCES.contains(&name));
                if !skip {
                    pending.push(path);
                }
            } else if let Ok(modified) = meta.modified() {
                newest = newest.max(modified);
            }
        }
    }
    newest
}
