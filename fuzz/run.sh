#!/usr/bin/env bash
# Run every relaygate fuzz target for SECONDS seconds each (default 30),
# one after the other, on the stable toolchain.
#
#   fuzz/run.sh 30          # the short bounded run CI does
#   fuzz/run.sh 3600        # a longer run; report the summary it prints
#
# Installs cargo-fuzz if missing. Targets are built without a sanitizer
# (`--sanitizer none`): AddressSanitizer needs `-Zsanitizer`, which stable
# refuses, and the host is safe Rust. Debug assertions and overflow checks
# are on (cargo-fuzz's default).
#
# The seed corpus in fuzz/corpus/<target>/ is read only; what a run learns
# goes to fuzz/target/corpus/<target>/ (kept between runs, never committed).
# A crash leaves its input in fuzz/artifacts/<target>/ and makes this script
# exit 1 after the other targets have run. Reproduce one with
#   cargo fuzz run --fuzz-dir fuzz --sanitizer none <target> <artifact>
# (RELAYGATE_FUZZ_TRACE=1 makes the session and data_framing targets print
# what they fed and what came back.)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
case "$seconds" in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS]" >&2
    exit 2
    ;;
esac

targets=(command_parser data_framing session)
flags=(--fuzz-dir fuzz --sanitizer none)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version '^0.13'
fi

# Fuzz the dependency versions the workspace is tested with: start from its
# lock file (cargo drops what the fuzz crate does not use and adds libFuzzer).
cp Cargo.lock fuzz/Cargo.lock

echo "==> building fuzz targets ($(cargo fuzz --version))"
start=$(date +%s)
cargo fuzz build "${flags[@]}"
echo "built in $(($(date +%s) - start)) s"

mkdir -p fuzz/target/logs
failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="fuzz/target/corpus/$target"
    log="fuzz/target/logs/$target.log"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    max_len=4096
    [ "$target" = data_framing ] && max_len=8192
    echo "==> $target for ${seconds}s"
    rc=0
    # The first corpus directory receives new inputs; the seeds stay as they are.
    cargo fuzz run "${flags[@]}" "$target" "$corpus" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -max_len="$max_len" -print_final_stats=1 >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    stats=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [^ ]+' || true)
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        result="FAILED (exit $rc)"
        failed+=("$target")
        tail -n 40 "$log"
        ls -t "fuzz/artifacts/$target" | head -n 3 | sed "s|^|  artifact: fuzz/artifacts/$target/|"
    fi
    summary+=("$(printf '%-15s %12s executions  %-40s %s' "$target" "${runs:-?}" "$stats" "$result")")
done

echo
echo "==> fuzz summary (${seconds}s per target; logs in fuzz/target/logs/)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]}" >&2
    exit 1
fi
