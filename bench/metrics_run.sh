#!/usr/bin/env bash
# relaygate's own metrics over a benchmark run: relaygate (with [admin]) in
# front of host/examples/fast-sink.rs, its /metrics scraped every half second
# into a CSV while smtp-source runs three phases (persistent sessions, one
# message per connection, relaying attempts the policy refuses). bench/plot.py
# draws the CSV: sessions open, transactions per second by outcome, policy
# verdicts per second, the mean policy call time, and upstream connections
# opened and reused (from the pool) per second.
#   bench/metrics_run.sh OUT.csv
# Environment: MESSAGES [20000] per phase. Needs postfix (smtp-source).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/metrics_run.sh OUT.csv}
MESSAGES=${MESSAGES:-20000}
command -v smtp-source >/dev/null || PATH="$PATH:/usr/sbin"

if [ -z "${PREBUILT:-}" ]; then
    cargo build --release --quiet -p relaygate --bin relaygate --example fast-sink
fi
# shellcheck source=bench/lib.sh
. bench/lib.sh

sink_port=$(free_port); proxy_port=$(free_port); admin_port=$(free_port)
target/release/examples/fast-sink 127.0.0.1:"$sink_port" 2 &
pids+=($!)
cat > "$work/relaygate.toml" <<TOML
[proxy]
listen = ["127.0.0.1:$proxy_port"]
upstream = "127.0.0.1:$sink_port"
max_connections = 2000
max_connections_per_client = 2000

[admin]
listen = "127.0.0.1:$admin_port"

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["192.0.2.10"]   # not the benchmark's client: it may send to example.com only
local_domains = ["example.com"]
TOML
RUST_LOG=warn target/release/relaygate --config "$work/relaygate.toml" 2>"$work/relaygate.log" &
pids+=($!)
wait_port "$sink_port"; wait_port "$proxy_port"; wait_port "$admin_port"

# Scraper: one CSV row per half second, counters as totals (plot.py differentiates).
scrape() {
    local start; start=$(date +%s.%N)
    echo "t,phase,sessions_active,delivered,rejected,failed,policy_accept,policy_reject,call_seconds_sum,call_count,upstream_opened,upstream_reused" > "$out"
    while :; do
        local now metrics phase
        now=$(echo "$(date +%s.%N) - $start" | bc -l)
        phase=$(cat "$work/phase" 2>/dev/null || echo idle)
        metrics=$(python3 -c 'import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())' "http://127.0.0.1:$admin_port/metrics" 2>/dev/null) || break
        awk -v t="$now" -v phase="$phase" '
            /^relaygate_sessions_active / {s=$2}
            /^relaygate_transactions_total\{kind="delivered"\}/ {d=$2}
            /^relaygate_transactions_total\{kind="rejected"\}/ {r=$2}
            /^relaygate_transactions_total\{kind="failed"\}/ {f=$2}
            /^relaygate_policy_calls_total\{.*verdict="accept"/ {pa+=$2}
            /^relaygate_policy_calls_total\{.*verdict="reject"/ {pr+=$2}
            /^relaygate_policy_call_seconds_sum/ {cs+=$2}
            /^relaygate_policy_call_seconds_count/ {cc+=$2}
            /^relaygate_upstream_connections_total\{kind="opened"\}/ {uo=$2}
            /^relaygate_upstream_connections_total\{kind="reused"\}/ {ur=$2}
            END {printf "%.2f,%s,%d,%d,%d,%d,%d,%d,%.6f,%d,%d,%d\n", t, phase, s, d, r, f, pa, pr, cs, cc, uo, ur}
        ' <<< "$metrics" >> "$out"
        sleep 0.5
    done
}
scrape &
scraper=$!
pids+=($scraper)

phase() { echo "$1" > "$work/phase"; }
sleep 1
phase persistent
smtp-source -d -s 100 -m "$MESSAGES" -l 1024 -f bench@example.com -t sink@example.com 127.0.0.1:"$proxy_port" >/dev/null
phase idle; sleep 1
phase per-connection
smtp-source -s 50 -m "$(( MESSAGES / 4 ))" -l 1024 -f bench@example.com -t sink@example.com 127.0.0.1:"$proxy_port" >/dev/null
phase idle; sleep 1
# Relaying to another domain from a client the policy does not list: every RCPT refused.
phase refused-relay
smtp-source -s 50 -m "$(( MESSAGES / 4 ))" -l 1024 -f bench@example.com -t someone@elsewhere.example \
    127.0.0.1:"$proxy_port" >/dev/null 2>&1 || true
phase idle; sleep 1.5
kill "$scraper" 2>/dev/null || true
echo "$out: $(( $(wc -l < "$out") - 1 )) samples"
