#!/usr/bin/env bash
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
clang-19 -std=c11 -Wall -Wextra -Werror -o "$out/t" "$here/rules.c" "$here/test/test_rules.c"
"$out/t"
