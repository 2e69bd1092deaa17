//! `relaygate policy new` end to end: for each language whose toolchain is
//! installed, a project is written into a temporary folder outside the
//! repository, built by its own `build.sh`, and its `cases.toml` passes
//! `relaygate policy test` unchanged. A language whose toolchain is missing
//! is skipped, except in CI (`RELAYGATE_REQUIRE_TOOLS=1`), where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

const RELAYGATE: &str = env!("CARGO_BIN_EXE_relaygate");

/// Set to `1` to make a missing toolchain a failure rather than a skip.
const REQUIRE_TOOLS_ENV: &str = "RELAYGATE_REQUIRE_TOOLS";

/// True when every one of `tools` is on `PATH`; otherwise says why the test
/// is skipped, or fails it when [`REQUIRE_TOOLS_ENV`] is `1`.
fn toolchain(tools: &[&str]) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("{} not installed", missing.join(", "));
    let required = std::env::var(REQUIRE_TOOLS_ENV).is_ok_and(|value| value == "1");
    assert!(!required, "{why}, and {REQUIRE_TOOLS_ENV}=1 requires it");
    eprintln!("skipping: {why}");
    false
}

fn show(output: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A componentize-py already installed by `policies/tools.sh`, which spares
/// the build its download.
fn installed_componentize_py() -> Option<PathBuf> {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository.join("target"));
    let tool = target.join("policy-tools/venv/bin/componentize-py");
    tool.is_file().then_some(tool)
}

/// The Zig compiler `policies/tools.sh` installed, which spares the build
/// its download.
fn installed_zig() -> Option<PathBuf> {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository.join("target"));
    let python = target.join("policy-tools/venv/bin/python3");
    let output = Command::new(python)
        .args([
            "-c",
            "import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), 'zig'))",
        ])
        .output()
        .ok()?;
    let zig = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    (output.status.success() && zig.is_file()).then_some(zig)
}

/// Writes the project, builds it outside the repository and plays its cases.
/// One project at a time: eight toolchains building at once starve the
/// machine, and `policy test` then measures the starvation against the
/// policies' per-call time budget instead of the policies.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn new_project_builds_and_passes_its_cases(language: &str, world: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    assert!(
        dir.path()
            .ancestors()
            .all(|folder| !folder.join("wit/policy.wit").exists()),
        "{} is inside a relaygate checkout",
        dir.path().display()
    );
    let name = format!("new-{language}");
    let written = Command::new(RELAYGATE)
        .args(["policy", "new", language, &name, "--world", world, "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(written.status.success(), "{}", show(&written));
    let project = dir.path().join(&name);

    let mut build = Command::new("bash");
    build
        .arg(project.join("build.sh"))
        .current_dir(&project)
        .env("RELAYGATE", RELAYGATE)
        .env_remove("CARGO_TARGET_DIR");
    if let Some(tool) = installed_componentize_py() {
        build.env("COMPONENTIZE_PY", tool);
    }
    if let Some(zig) = installed_zig() {
        build.env("ZIG", zig);
    }
    let built = build.output().unwrap();
    assert!(
        built.status.success() && project.join("policy.wasm").is_file(),
        "{language} ({world}) did not build: {}",
        show(&built)
    );

    let tested = Command::new(RELAYGATE)
        .args(["policy", "test", "policy.wasm", "cases.toml"])
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(
        tested.status.success(),
        "{language} ({world}): {}",
        show(&tested)
    );
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(report.contains(" 0 FAILED"), "{report}");
}

#[test]
fn rust_project() {
    if toolchain(&["cargo"]) {
        new_project_builds_and_passes_its_cases("rust", "policy");
    }
}

#[test]
fn rust_stateful_project() {
    if toolchain(&["cargo"]) {
        new_project_builds_and_passes_its_cases("rust", "stateful-policy");
    }
}

#[test]
fn c_project() {
    if toolchain(&["clang-19"]) {
        new_project_builds_and_passes_its_cases("c", "policy");
    }
}

#[test]
fn c_stateful_project() {
    if toolchain(&["clang-19"]) {
        new_project_builds_and_passes_its_cases("c", "stateful-policy");
    }
}

#[test]
fn zig_project() {
    if toolchain(&["python3"]) {
        new_project_builds_and_passes_its_cases("zig", "policy");
    }
}

#[test]
fn python_project() {
    if toolchain(&["python3"]) {
        new_project_builds_and_passes_its_cases("python", "policy");
    }
}

#[test]
fn python_stateful_project() {
    if toolchain(&["python3"]) {
        new_project_builds_and_passes_its_cases("python", "stateful-policy");
    }
}

#[test]
fn javascript_project() {
    if toolchain(&["node", "npm"]) {
        new_project_builds_and_passes_its_cases("javascript", "policy");
    }
}

#[test]
fn javascript_stateful_project() {
    if toolchain(&["node", "npm"]) {
        new_project_builds_and_passes_its_cases("javascript", "stateful-policy");
    }
}
