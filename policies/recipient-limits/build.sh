#!/usr/bin/env bash
# Builds the recipient-limits policy (C) into the component given as $1.
#   1. native unit tests of the logic (test/run.sh)
#   2. clang-19 --target=wasm32-wasi as a reactor, no WASI calls, with the
#      checked-in C bindings of the `policy` world (policies/bindings/c/policy)
#   3. `wasm-tools component new` (PyPI, pinned in ../tools.sh) turns the core
#      module into a component
# Needs: clang-19, lld-19, wasi-libc, libclang-rt-19-dev-wasm32 (Debian packages).
set -euo pipefail
out="${1:?usage: build.sh OUT.wasm}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cc="${CC_WASM:-clang-19}"
. "$root/policies/tools.sh"
out="$(absolute_output "$out")"

"$here/test/run.sh"

bindings="$(c_bindings_dir policy)"
build="$root/target/policies-build/recipient-limits"
mkdir -p "$build"
"$cc" --target=wasm32-wasi -mexec-model=reactor -std=c11 -Os -Wall -Wextra -Werror \
    -Wno-unused-parameter -Wl,--strip-all -I "$bindings" \
    -o "$build/core.wasm" \
    "$here/policy.c" "$here/limits.c" "$bindings/policy.c" "$bindings/policy_component_type.o"
"$(wasm_tools)" component new "$build/core.wasm" -o "$out"
