#!/usr/bin/env bash
# Per-language policy figures: builds every variant under policies/ (see
# policies/build.sh) plus the Python one once more without --stub-wasi (to
# show what WASI costs), then measures them next to the default Rust policy
# with the `policy_languages` bench (release build): component size, compile
# time, instantiate time and per-hook call time, medians. Prints a Markdown
# table.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${CARGO_TARGET_DIR:-$root/target}/policies"
"$root/policies/build.sh"
. "$root/policies/tools.sh"
(cd "$root/policies/sender-domains" &&
    "$(componentize_py)" -d "$root/wit" -w policy componentize app -p . -o "$out/sender-domains-wasi.wasm")
cd "$root"
cargo bench -p relaygate --bench policy_languages
