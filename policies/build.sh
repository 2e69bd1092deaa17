#!/usr/bin/env bash
# Builds site-specific policy variants into target/policies/NAME.wasm.
#   policies/build.sh            every folder under policies/ that has a build.sh
#   policies/build.sh NAME...    only those
# Each variant's own build.sh takes the output path as its one argument and
# installs what it needs (rustup target, venv, npm packages) on first use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out_dir="${CARGO_TARGET_DIR:-$root/target}/policies"
mkdir -p "$out_dir"

if [ "$#" -eq 0 ]; then
    set --
    for script in "$here"/*/build.sh; do
        [ -e "$script" ] || continue
        name="$(basename "$(dirname "$script")")"
        [ "$name" = template ] && continue
        set -- "$@" "$name"
    done
fi

for name in "$@"; do
    script="$here/$name/build.sh"
    [ -x "$script" ] || { echo "no executable $script" >&2; exit 2; }
    printf '==> policy %s\n' "$name"
    "$script" "$out_dir/$name.wasm"
    printf '    %s (%s bytes)\n' "$out_dir/$name.wasm" "$(stat -c %s "$out_dir/$name.wasm")"
done
