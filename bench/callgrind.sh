#!/usr/bin/env bash
# Regression guard on instruction counts: runs each micro-benchmark workload
# (host/benches/workloads) under valgrind's callgrind, counting only the
# measured loop, and compares instructions per iteration with the committed
# baseline. Instruction counts do not depend on machine load, so a change
# that makes a hot path much more expensive shows up here reliably.
#
#   bench/callgrind.sh                 compare; exit 1 when a workload exceeds
#                                      its baseline by more than THRESHOLD %
#   bench/callgrind.sh --update        rewrite the baseline from this run
#   bench/callgrind.sh hook/rcpt-to    only the named workloads
#
# Environment: THRESHOLD [20] percent, BASELINE [bench/baseline.callgrind.toml].
# Needs valgrind. Takes about a minute (release build not included).
set -euo pipefail
cd "$(dirname "$0")/.."

THRESHOLD=${THRESHOLD:-20}
BASELINE=${BASELINE:-bench/baseline.callgrind.toml}
update=0
names=()
for arg in "$@"; do
    case "$arg" in
        --update) update=1 ;;
        -*) echo "unknown option $arg" >&2; exit 2 ;;
        *) names+=("$arg") ;;
    esac
done
command -v valgrind >/dev/null || { echo "need valgrind: apt-get install valgrind" >&2; exit 1; }

bin=$(cargo bench -p relaygate --bench callgrind --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "callgrind" and m.get("executable"):
        print(m["executable"])')
[ -x "$bin" ] || { echo "could not build the callgrind bench" >&2; exit 1; }
[ ${#names[@]} -gt 0 ] || mapfile -t names < <("$bin" --list)

# Iterations per workload: enough that per-iteration counts are stable.
iterations() {
    case "$1" in
        parse/* | native/*) echo 2000 ;;
        hook/*) echo 200 ;;
        data/*) echo 20 ;;
        instance/*) echo 50 ;;
        swap/*) echo 5 ;;
        *) echo 20 ;;
    esac
}

baseline_of() { # name -> instructions per iteration in the baseline, or empty
    [ -f "$BASELINE" ] && awk -F' = ' -v k="\"$1\"" '$1 == k {print $2}' "$BASELINE" || true
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Compile the policy once, natively, into a disk cache the runs below share.
export RELAYGATE_BENCH_CACHE="$work/cache"
mkdir -p "$RELAYGATE_BENCH_CACHE"
"$bin" instance/ready 1
status=0
printf '%-22s %14s %14s %8s\n' workload "instr/iter" baseline change
for name in "${names[@]}"; do
    n=$(iterations "$name")
    valgrind --tool=callgrind --callgrind-out-file="$work/out" \
        --toggle-collect='*callgrind::measured*' "$bin" "$name" "$n" 2>"$work/log" \
        || { cat "$work/log" >&2; echo "$name: valgrind run failed" >&2; exit 1; }
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$work/out")
    per=$(( total / n ))
    echo "\"$name\" = $per" >> "$work/new"
    base=$(baseline_of "$name")
    if [ -n "$base" ] && [ "$base" -gt 0 ]; then
        change=$(awk -v a="$per" -v b="$base" 'BEGIN {printf "%+.1f%%", (a - b) * 100 / b}')
        if [ "$update" = 0 ] && awk -v a="$per" -v b="$base" -v t="$THRESHOLD" 'BEGIN {exit !(a > b * (1 + t / 100))}'; then
            change="$change REGRESSED"
            status=1
        fi
    else
        base="-"; change="new"
    fi
    printf '%-22s %14s %14s %8s\n' "$name" "$per" "$base" "$change"
done

if [ "$update" = 1 ]; then
    {
        echo "# Instructions per iteration of each micro-benchmark workload, counted by"
        echo "# callgrind (bench/callgrind.sh). Rewrite with: bench/callgrind.sh --update"
        # Keep entries of workloads not run this time.
        [ -f "$BASELINE" ] && grep '^"' "$BASELINE" | while IFS= read -r line; do
            key=${line%% = *}
            grep -qF "$key = " "$work/new" || echo "$line"
        done
        cat "$work/new"
    } > "$work/baseline"
    { head -2 "$work/baseline"; tail -n +3 "$work/baseline" | sort; } > "$BASELINE"
    echo "baseline written to $BASELINE"
elif [ "$status" != 0 ]; then
    echo "instruction counts grew more than $THRESHOLD% over $BASELINE" >&2
fi
exit "$status"
