#!/usr/bin/env bash
# Builds the recipient-limits policy (C) into the component given as $1.
#   1. native unit tests of the logic (test/run.sh)
#   2. C bindings of wit/ with `cargo xtask c-bindings gen/` (wit-bindgen's C generator)
#   3. clang-19 --target=wasm32-wasi as a reactor, no WASI calls
#   4. `cargo xtask componentize` turns the core module into a component
# Needs: clang-19, lld-19, wasi-libc, libclang-rt-19-dev-wasm32 (Debian packages).
set -euo pipefail
out="${1:?usage: build.sh OUT.wasm}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cc="${CC_WASM:-clang-19}"
. "$root/policies/tools.sh"
out="$(absolute_output "$out")"

"$here/test/run.sh"

xtask c-bindings "$here/gen" >/dev/null

build="$root/target/policies-build/recipient-limits"
mkdir -p "$build"
"$cc" --target=wasm32-wasi -mexec-model=reactor -std=c11 -Os -Wall -Wextra -Werror \
    -Wno-unused-parameter -Wl,--strip-all \
    -o "$build/core.wasm" \
    "$here/policy.c" "$here/limits.c" "$here/gen/policy.c" "$here/gen/policy_component_type.o"
xtask componentize "$build/core.wasm" "$out"
