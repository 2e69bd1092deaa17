#!/usr/bin/env bash
# Per-language policy figures: builds every variant under policies/ (see
# policies/build.sh), then measures them next to the default Rust policy with
# the `policy_languages` bench (release build): component size, compile time,
# instantiate time and per-hook call time, medians. Prints a Markdown table.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/policies/build.sh"
cd "$root"
cargo bench -p relaygate --bench policy_languages
