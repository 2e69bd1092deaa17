#!/usr/bin/env bash
# Builds the rate-limit policy into the component given as the one argument:
#   policies/rate-limit/build.sh OUT.wasm
set -euo pipefail
out="${1:?usage: build.sh OUT.wasm}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
target_dir="$root/target/policies-build"
cd "$root"
cargo build --quiet --locked --profile guest --target wasm32-unknown-unknown \
    --target-dir "$target_dir" -p rate-limit-policy
# xtask runs from the same separate target directory, so a build started by
# `cargo test` never waits on the main target directory's lock.
cargo run --quiet --locked --target-dir "$target_dir" -p xtask -- componentize \
    "$target_dir/wasm32-unknown-unknown/guest/rate_limit_policy.wasm" "$out"
