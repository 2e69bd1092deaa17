#!/usr/bin/env bash
# Builds this policy into the component given as $1 (default: policy.wasm):
#   1. `zig test rules.zig`: the native unit tests of the logic
#   2. `zig translate-c` of the bindings header in gen/ into gen/policy.zig,
#      which policy.zig imports
#   3. the C glue in gen/ compiled by `zig cc`, then policy.zig linked with it
#      and the world's component-type object for wasm32-freestanding: no WASI
#   4. `relaygate policy componentize` turns the core module into a component
# Zig: $ZIG (the `zig` binary), else ziglang 0.17.0 from PyPI, installed
# into .venv/ on first use. relaygate: $RELAYGATE, else the one on PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/policy.wasm}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
version=0.17.0
relaygate="${RELAYGATE:-relaygate}"
cd "$here"
if [ -n "${ZIG:-}" ]; then
    zig=("$ZIG")
else
    if ! .venv/bin/python3 -m ziglang version 2>/dev/null | grep -qx "$version"; then
        python3 -m venv .venv
        .venv/bin/pip install --quiet "ziglang==$version"
    fi
    zig=(.venv/bin/python3 -m ziglang)
fi
# Zig's caches in this folder, not in the home folder.
export ZIG_GLOBAL_CACHE_DIR="$here/.zig-cache/global"
export ZIG_LOCAL_CACHE_DIR="$here/.zig-cache/local"

"${zig[@]}" test rules.zig
mkdir -p build
"${zig[@]}" translate-c -target wasm32-freestanding gen/policy.h >gen/policy.zig
# wasm32-wasi only lends the C glue libc's headers (stdlib.h, string.h); the
# functions it calls come from libc.zig, so the module imports no WASI.
"${zig[@]}" cc -target wasm32-wasi -Os -c -I gen gen/policy.c -o build/bindings.o
"${zig[@]}" build-exe -target wasm32-freestanding -O ReleaseSmall -fno-entry -fstrip \
    policy.zig build/bindings.o gen/policy_component_type.o -femit-bin=build/core.wasm
"$relaygate" policy componentize build/core.wasm "$out"
