#!/usr/bin/env bash
# Builds every variant and every template from source (each build.sh runs the
# variant's own unit tests first) and runs each one's cases.toml through
# `relaygate policy test`.
#   policies/check.sh [RELAYGATE]     RELAYGATE defaults to target/debug/relaygate
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
relaygate="${1:-$root/target/debug/relaygate}"
out_dir="${CARGO_TARGET_DIR:-$root/target}/policies"
[ -x "$relaygate" ] || { echo "no relaygate binary at $relaygate (cargo build -p relaygate)" >&2; exit 2; }

failed=()
for dir in "$here"/*/ "$here"/template/*/; do
    dir="${dir%/}"
    [ -x "$dir/build.sh" ] && [ -f "$dir/cases.toml" ] || continue
    name="${dir#"$here"/}"
    wasm="$out_dir/${name//\//-}.wasm"
    printf '==> %s\n' "$name"
    if ! "$dir/build.sh" "$wasm"; then
        failed+=("$name (build)")
        continue
    fi
    if report="$("$relaygate" policy test "$wasm" "$dir/cases.toml" 2>/dev/null)"; then
        printf '%s\n' "${report##*$'\n'}"
    else
        printf '%s\n' "$report" | grep -v '^ok' >&2
        failed+=("$name (cases)")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all policies built and passed their cases"
