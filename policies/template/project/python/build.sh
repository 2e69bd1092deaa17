#!/usr/bin/env bash
# Builds this policy into the component given as $1 (default: policy.wasm):
# the unit tests first, then the component with componentize-py
# ($COMPONENTIZE_PY, else one installed into .venv/ on first use).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/policy.wasm}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
version=0.25.1
cd "$here"
PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tests -q
tool="${COMPONENTIZE_PY:-$here/.venv/bin/componentize-py}"
if ! "$tool" --version 2>/dev/null | grep -q "$version"; then
    python3 -m venv "$here/.venv"
    "$here/.venv/bin/pip" install --quiet "componentize-py==$version"
    tool="$here/.venv/bin/componentize-py"
fi
"$tool" -d wit -w {{world}} componentize --stub-wasi app -p "$here" -o "$out"
