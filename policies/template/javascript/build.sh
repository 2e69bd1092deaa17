#!/usr/bin/env bash
# Builds this policy into the component given as $1 (default: policy.wasm).
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
cd "$here"
[ -x node_modules/.bin/componentize-qjs ] || npm ci --no-audit --no-fund --loglevel=error
node --test test/*.test.js
node_modules/.bin/componentize-qjs --wit "$root/wit" --world policy --js policy.js --sync --stub-wasi -o "$out"
