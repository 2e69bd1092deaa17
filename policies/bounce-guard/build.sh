#!/usr/bin/env bash
# Builds the bounce-guard policy (Zig) into the component given as $1:
#   1. `zig test rules.zig`: the native unit tests of the logic
#   2. `zig translate-c` of the shipped C header (policies/bindings/c/policy)
#      into gen/policy.zig, which policy.zig imports
#   3. the shipped C glue compiled by `zig cc`, then policy.zig linked with it
#      and the world's component-type object for wasm32-freestanding: no WASI
#   4. `wasm-tools component new` turns the core module into a component
# Zig and wasm-tools come from PyPI (pinned in policies/tools.sh) into
# target/policy-tools/venv on first use; nothing else is needed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build.sh OUT.wasm}"
# The repository root: the first folder above that holds wit/policy.wit.
root="$here"
while [ ! -f "$root/wit/policy.wit" ]; do
    [ "$root" != / ] || { echo "no wit/policy.wit above $here" >&2; exit 2; }
    root="$(dirname "$root")"
done
. "$root/policies/tools.sh"
out="$(absolute_output "$out")"
zig="$(zig_compiler)"
# Zig's caches under target/, not in the home folder nor next to the sources.
export ZIG_GLOBAL_CACHE_DIR="$root/target/policy-tools/zig-cache/global"
export ZIG_LOCAL_CACHE_DIR="$root/target/policy-tools/zig-cache/local"
bindings="$(c_bindings_dir policy)"

cd "$here"
"$zig" test rules.zig
mkdir -p gen
"$zig" translate-c -target wasm32-freestanding "$bindings/policy.h" >gen/policy.zig
# wasm32-wasi only lends the C glue libc's headers (stdlib.h, string.h); the
# functions it calls come from libc.zig, so the module imports no WASI.
"$zig" cc -target wasm32-wasi -Os -c -I "$bindings" "$bindings/policy.c" -o gen/bindings.o
"$zig" build-exe -target wasm32-freestanding -O ReleaseSmall -fno-entry -fstrip \
    policy.zig gen/bindings.o "$bindings/policy_component_type.o" -femit-bin=gen/core.wasm
"$(wasm_tools)" component new gen/core.wasm -o "$out"
