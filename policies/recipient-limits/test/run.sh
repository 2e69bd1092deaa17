#!/usr/bin/env bash
# Native unit tests of the decision logic (no wasm involved).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"${CC_NATIVE:-clang-19}" -std=c11 -Wall -Wextra -Werror -O1 -fsanitize=undefined,address \
    -o "$out/test_limits" "$here/limits.c" "$here/test/test_limits.c"
"$out/test_limits"
