#!/usr/bin/env bash
# Builds this policy into the component given as $1 (default: policy.wasm):
# the unit tests first, then the component. Needs Rust alone: the linker
# named in .cargo/config.toml, wasm-component-ld (shipped with rustup),
# writes the component of the world wit-bindgen embedded.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/policy.wasm}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
cd "$here"
if command -v rustup >/dev/null &&
    ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
cargo test --quiet --target-dir target
cargo build --quiet --release --target wasm32-unknown-unknown --target-dir target
cp target/wasm32-unknown-unknown/release/my_policy.wasm "$out"
