#!/usr/bin/env bash
# Builds the submission policy (Rust) into the component given as $1:
# cargo for wasm32-unknown-unknown with the workspace's `guest` profile, in
# its own target directory, then `cargo xtask componentize` (no WASI imports).
# Unit tests: `cargo test -p submission-policy`.
set -euo pipefail
out="${1:?usage: build.sh OUT.wasm}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$root/policies/tools.sh"
out="$(absolute_output "$out")"
build="$root/target/policies-build"

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo build --quiet --manifest-path "$root/Cargo.toml" --profile guest \
    --target wasm32-unknown-unknown -p submission-policy --target-dir "$build"
xtask componentize "$build/wasm32-unknown-unknown/guest/submission_policy.wasm" "$out"
