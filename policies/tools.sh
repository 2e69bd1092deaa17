# Helpers shared by the variants' build.sh scripts (sourced, not run).
# `root` must be set to the repository root.

# Runs `cargo xtask ARGS...` with its own target directory: a build script may
# run while `cargo test` holds the lock of the main target directory.
xtask() {
    cargo run --quiet --manifest-path "$root/Cargo.toml" --package xtask \
        --target-dir "$root/target/policy-tools/xtask" -- "$@"
}

# Makes the output path absolute (its folder is created).
absolute_output() {
    mkdir -p "$(dirname "$1")"
    printf '%s/%s\n' "$(cd "$(dirname "$1")" && pwd)" "$(basename "$1")"
}

# The componentize-py version the Python policies are built with.
COMPONENTIZE_PY_VERSION=0.25.1

# Prints the path of componentize-py, installing it into a venv under
# target/policy-tools on first use (`.ci/run` does the same ahead of time).
componentize_py() {
    local venv="$root/target/policy-tools/venv"
    local tool="$venv/bin/componentize-py"
    if ! "$tool" --version 2>/dev/null | grep -q "$COMPONENTIZE_PY_VERSION"; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
    fi
    printf '%s\n' "$tool"
}
