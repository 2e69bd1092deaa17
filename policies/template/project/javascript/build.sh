#!/usr/bin/env bash
# Builds this policy into the component given as $1 (default: policy.wasm):
# the unit tests first, then the component with componentize-qjs, which
# `npm ci` installs as pinned in package-lock.json.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/policy.wasm}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
cd "$here"
[ -x node_modules/.bin/componentize-qjs ] || npm ci --no-audit --no-fund --loglevel=error
node --test test/*.test.js
node_modules/.bin/componentize-qjs --wit wit --world {{world}} --js policy.js --sync --stub-wasi -o "$out"
