#!/usr/bin/env bash
# Builds the helo-sanity policy (JavaScript) into the component given as $1.
#   1. `npm ci` (componentize-qjs pinned in package.json/package-lock.json)
#   2. unit tests of rules.js with node's test runner
#   3. componentize-qjs --sync --stub-wasi: QuickJS with the script
#      pre-initialised, importing nothing but the policy world
set -euo pipefail
out="${1:?usage: build.sh OUT.wasm}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$root/policies/tools.sh"
out="$(absolute_output "$out")"

cd "$here"
if [ ! -x node_modules/.bin/componentize-qjs ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
node --test test/*.test.js
node_modules/.bin/componentize-qjs --wit "$root/wit" --world policy --js policy.js \
    --sync --stub-wasi -o "$out.tmp"
mv "$out.tmp" "$out"
