#!/usr/bin/env bash
# Builds the sender-domains policy (Python) into the component given as $1.
#   1. unit tests of rules.py with the stdlib's unittest
#   2. componentize-py (PyPI, pinned in ../tools.sh; a venv under
#      target/policy-tools is made on first use) with --stub-wasi, so the
#      component imports nothing but the policy world
set -euo pipefail
out="${1:?usage: build.sh OUT.wasm}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$root/policies/tools.sh"
out="$(absolute_output "$out")"

cd "$here"
PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tests -q
tool="$(componentize_py)"
"$tool" -d "$root/wit" -w policy componentize --stub-wasi app -p "$here" -o "$out.tmp"
mv "$out.tmp" "$out"
