#!/usr/bin/env bash
# Builds this policy into the component given as $1 (default: policy.wasm):
# native unit tests, clang-19 with the checked-in C bindings of the `policy`
# world (policies/bindings/c/policy), then `wasm-tools component new`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/policy.wasm}"
# The repository root: the first folder above that holds wit/policy.wit.
root="$here"
while [ ! -f "$root/wit/policy.wit" ]; do
    [ "$root" != / ] || { echo "no wit/policy.wit above $here" >&2; exit 2; }
    root="$(dirname "$root")"
done
. "$root/policies/tools.sh"
out="$(absolute_output "$out")"
"$here/test/run.sh"
bindings="$(c_bindings_dir policy)"
mkdir -p "$here/gen"
clang-19 --target=wasm32-wasi -mexec-model=reactor -std=c11 -Os -Wall -Wextra -Werror \
    -Wno-unused-parameter -Wl,--strip-all -I "$bindings" -o "$here/gen/core.wasm" \
    "$here/policy.c" "$here/rules.c" "$bindings/policy.c" "$bindings/policy_component_type.o"
"$(wasm_tools)" component new "$here/gen/core.wasm" -o "$out"
