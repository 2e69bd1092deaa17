#!/usr/bin/env bash
# Builds this policy into the component given as $1 (default: policy.wasm):
# the unit tests first, then a core module linked with the bindings in gen/,
# which `relaygate policy componentize` turns into a component. Needs clang
# with wasi-libc, and relaygate ($RELAYGATE, else the one on PATH).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/policy.wasm}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
clang="${CLANG:-clang-19}"
relaygate="${RELAYGATE:-relaygate}"
"$here/test/run.sh"
mkdir -p "$here/build"
"$clang" --target=wasm32-wasi -mexec-model=reactor -std=c11 -Os -Wall -Wextra -Werror \
    -Wno-unused-parameter -Wl,--strip-all -I "$here/gen" -o "$here/build/core.wasm" \
    "$here/policy.c" "$here/rules.c" "$here/gen/{{world_c}}.c" "$here/gen/{{world_c}}_component_type.o"
"$relaygate" policy componentize "$here/build/core.wasm" "$out"
