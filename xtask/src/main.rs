//! Developer tasks for relaygate, run as `cargo xtask <task>`.
//!
//! - `guests`: builds the Rust guest policies for `wasm32-unknown-unknown`,
//!   turns each core module into a component of the `policy` world and writes
//!   the checked-in artifacts (the embedded default policy and the test
//!   fixture).
//! - `guests --check`: builds the same and fails when a checked-in artifact
//!   differs byte for byte, which proves in CI that the embedded default
//!   policy is exactly what its source compiles to.
//! - `componentize CORE.wasm OUT.wasm`: turns a core module whose world was
//!   embedded by a bindings generator (wit-bindgen for Rust or C) into a
//!   component. The build scripts under `policies/` use it, so building a
//!   policy needs no `wasm-tools` install.
//! - `bindings`: writes the C bindings of every world in `wit/` (header,
//!   source and component-type object) with wit-bindgen's C generator into
//!   `policies/bindings/c/WORLD/`, where they are checked in, so a C or Zig
//!   policy builds nothing Rust.
//! - `bindings --check`: generates the same and fails when a checked-in file
//!   differs, is missing or is left over.
//!
//! Builds go to their own target directory, `target/guests`, so they never
//! wait on the main target directory's lock nor disturb its cache, and with
//! the workspace and cargo home paths remapped, so the bytes do not depend on
//! where the clone lives.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use wit_component::ComponentEncoder;

mod bindings;

/// The target guests are compiled for: no WASI, so the component imports
/// only the capabilities its world names.
const TARGET: &str = "wasm32-unknown-unknown";

/// The cargo profile for guests (defined in the workspace `Cargo.toml`).
const PROFILE: &str = "guest";

/// A guest crate and the component file built from it.
struct Guest {
    /// Cargo package name.
    package: &'static str,
    /// Cargo features to build it with.
    features: &'static str,
    /// The core module cargo produces, in the profile's output directory.
    module: &'static str,
    /// The checked-in component, relative to the workspace root.
    artifact: &'static str,
}

const GUESTS: [Guest; 3] = [
    Guest {
        package: "apple-relay",
        features: "",
        module: "apple_relay.wasm",
        artifact: "host/assets/apple-relay.wasm",
    },
    Guest {
        package: "misbehaving-guest",
        features: "",
        module: "misbehaving_guest.wasm",
        artifact: "tests/fixtures/misbehaving.wasm",
    },
    // The same fixture judging recipients the other way: hot-swap tests
    // need two modules that accept the same config and disagree.
    Guest {
        package: "misbehaving-guest",
        features: "reject-by-default",
        module: "misbehaving_guest.wasm",
        artifact: "tests/fixtures/misbehaving-reject.wasm",
    },
];

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  guests            build the guest policies and write the checked-in components
  guests --check    build them and fail if a checked-in component differs
  componentize CORE.wasm OUT.wasm
                    turn a core module with an embedded world into a component
  bindings          write the C bindings of every world in wit/ into policies/bindings/c
  bindings --check  generate them and fail if a checked-in file differs";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["guests"] => guests(Mode::Write),
        ["guests", "--check"] => guests(Mode::Check),
        ["componentize", core, out] => componentize(Path::new(core), Path::new(out)),
        ["bindings"] => bindings::run(Mode::Write),
        ["bindings", "--check"] => bindings::run(Mode::Check),
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `guests` and `bindings` do with what they built.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Update the checked-in artifacts.
    Write,
    /// Compare with the checked-in artifacts and fail on any difference.
    Check,
}

fn guests(mode: Mode) -> Result<()> {
    let root = workspace_root()?;
    let target_dir = root.join("target").join("guests");
    ensure_target_installed()?;
    let rustflags = remapping_rustflags(&root)?;

    let mut drifted = Vec::new();
    for guest in &GUESTS {
        let module = build(&root, &target_dir, &rustflags, guest)?;
        let component = encode_component(&module)
            .with_context(|| format!("turning {} into a component", guest.module))?;

        let artifact = root.join(guest.artifact);
        let checked_in = read_if_exists(&artifact)?;
        let same = checked_in.as_deref() == Some(component.as_slice());
        match mode {
            Mode::Write => {
                if !same {
                    write(&artifact, &component)?;
                }
                let state = if same { "unchanged" } else { "written" };
                println!("{}: {} bytes ({state})", guest.artifact, component.len());
            }
            Mode::Check => {
                // Keep the fresh build where a developer can compare it.
                let fresh = target_dir.join("check").join(file_name(guest.artifact));
                write(&fresh, &component)?;
                if same {
                    println!("{}: {} bytes, up to date", guest.artifact, component.len());
                } else {
                    let problem = match checked_in {
                        None => "is missing".to_owned(),
                        Some(bytes) => format!(
                            "differs from a fresh build (checked in: {} bytes)",
                            bytes.len()
                        ),
                    };
                    eprintln!(
                        "{} {problem}; the fresh build ({} bytes) is at {}",
                        guest.artifact,
                        component.len(),
                        fresh.display()
                    );
                    drifted.push(guest.artifact);
                }
            }
        }
    }
    if !drifted.is_empty() {
        let verb = if drifted.len() == 1 { "is" } else { "are" };
        bail!(
            "{} {verb} not what the source builds to; run `cargo xtask guests` and commit the result",
            drifted.join(" and ")
        );
    }
    Ok(())
}

/// The workspace root: xtask lives one level below it.
fn componentize(core: &Path, out: &Path) -> Result<()> {
    let module = fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = encode_component(&module)
        .with_context(|| format!("turning {} into a component", core.display()))?;
    write(out, &component)
}

/// Encodes a core module, whose world a bindings generator embedded in a
/// custom section, as a validated component.
fn encode_component(module: &[u8]) -> Result<Vec<u8>> {
    ComponentEncoder::default()
        .validate(true)
        .module(module)
        .and_then(|encoder| encoder.encode())
}

fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .with_context(|| format!("{} has no parent directory", manifest_dir.display()))
}

/// Installs the guest target with rustup when it is missing. Without rustup
/// (a distribution toolchain) the build itself reports a missing target.
fn ensure_target_installed() -> Result<()> {
    let output = match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(output) => output,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).context("running `rustup target list --installed`"),
    };
    if !output.status.success() {
        bail!(
            "`rustup target list --installed` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    if String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!("installing the {TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .context("running `rustup target add`")?;
    if !status.success() {
        bail!("`rustup target add {TARGET}` failed ({status})");
    }
    Ok(())
}

/// Rust flags that replace the workspace and cargo home paths (which end up
/// in panic locations) with fixed ones. Passed as `CARGO_ENCODED_RUSTFLAGS`,
/// whose separator is 0x1f, so paths with spaces survive.
fn remapping_rustflags(root: &Path) -> Result<String> {
    let cargo_home = match env::var_os("CARGO_HOME") {
        Some(home) => PathBuf::from(home),
        None => env::home_dir()
            .context("neither CARGO_HOME nor a home directory is set")?
            .join(".cargo"),
    };
    let utf8 = |path: &Path| {
        path.to_str()
            .map(str::to_owned)
            .with_context(|| format!("path {} is not UTF-8", path.display()))
    };
    Ok(format!(
        "--remap-path-prefix={}=/relaygate\u{1f}--remap-path-prefix={}=/cargo",
        utf8(root)?,
        utf8(&cargo_home)?
    ))
}

/// Compiles one guest and returns its core module.
fn build(root: &Path, target_dir: &Path, rustflags: &str, guest: &Guest) -> Result<Vec<u8>> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--profile", PROFILE, "--target", TARGET])
        .args(["--package", guest.package])
        .args(["--features", guest.features])
        .arg("--target-dir")
        .arg(target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env_remove("RUSTFLAGS")
        .status()
        .with_context(|| format!("running cargo to build {}", guest.package))?;
    if !status.success() {
        bail!("building {} failed ({status})", guest.package);
    }
    let module = target_dir.join(TARGET).join(PROFILE).join(guest.module);
    fs::read(&module).with_context(|| format!("reading {}", module.display()))
}

fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn file_name(artifact: &str) -> &str {
    artifact.rsplit('/').next().unwrap_or(artifact)
}
