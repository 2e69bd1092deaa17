#!/usr/bin/env bash
# Throughput per core: relaygate against a bare TCP relay (no SMTP parsing,
# the least a proxy can do) and against sending directly, with the proxy
# pinned to 1, 2, 4 (and 8) cores and the load generator and sink on other
# cores. Cases:
#   persistent   SESSIONS persistent sessions, 1 KiB messages (smtp-source -d)
#   per-conn     one message per connection, 1 KiB (smtp-source)
#   100k         100 persistent sessions, 100 KiB messages
#   pipelining   persistent sessions whose client pipelines MAIL/RCPT/DATA
#                (host/examples/smtp-load.rs, SMTP_LOAD_PIPELINE=1)
#   latency      persistent sessions, each transaction timed (smtp-load):
#                the msg/s columns, plus p50/p99 per transaction in the CSV
# The sink is host/examples/fast-sink.rs (multi-threaded; Postfix's
# smtp-sink serves everything from one thread). Runs are interleaved
# (direct, relay, relaygate, ...) and medians reported; the proxy's CPU per
# transaction comes from its own utime+stime (/proc/PID/stat).
#
# On a machine with fewer than 8 cores nothing is pinned (the proxy count
# column says "all"): the figures to read there are CPU per transaction and
# the relaygate/relay ratio of those, not throughput.
#
# Environment knobs (defaults in brackets):
#   CORES     ["1 2 4 8"]  proxy core counts to try (those the machine can host)
#   CASES     ["persistent per-conn 100k pipelining"]
#   MESSAGES  [20000]      messages per run (100k: a tenth)
#   REPEATS   [3]          interleaved repeats
#   SESSIONS  [200]        sessions for persistent/pipelining (400 at 8 cores)
#   PER_CONN_SESSIONS [100] concurrent connections for per-conn (200 at 8 cores)
#   CSV       []           also append each row to this CSV file (bench/plot.py draws it)
# Needs: postfix (smtp-source), taskset (util-linux). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

CORES=${CORES:-"1 2 4 8"}
CASES=${CASES:-"persistent per-conn 100k pipelining latency"}
CSV=${CSV:-}
[ -z "$CSV" ] || [ -s "$CSV" ] || echo "case,cores,target,msgs_per_s,cpu_us_per_tx,p50_us,p99_us" > "$CSV"
MESSAGES=${MESSAGES:-20000}
REPEATS=${REPEATS:-3}
SESSIONS=${SESSIONS:-200}
PER_CONN_SESSIONS=${PER_CONN_SESSIONS:-100}

command -v smtp-source >/dev/null || PATH="$PATH:/usr/sbin"
command -v smtp-source >/dev/null || { echo "need smtp-source: apt-get install postfix" >&2; exit 1; }
command -v taskset >/dev/null || { echo "need taskset: apt-get install util-linux" >&2; exit 1; }

if [ -z "${PREBUILT:-}" ]; then
    cargo build --release --quiet -p relaygate --bin relaygate \
        --example tcp-relay --example smtp-load --example fast-sink
fi
RELAYGATE=target/release/relaygate
TCP_RELAY=target/release/examples/tcp-relay
SMTP_LOAD=target/release/examples/smtp-load
FAST_SINK=target/release/examples/fast-sink

# shellcheck source=bench/lib.sh
. bench/lib.sh

total_cores=$(nproc)
pinned=0; [ "$total_cores" -ge 8 ] && pinned=1

# "first-last" for N cores starting at core FROM.
core_range() { echo "$1-$(( $1 + $2 - 1 ))"; }


# Start (pinned to $1 when pinning) a process in the background; its pid in $started.
start_on() {
    local cores=$1; shift
    if [ "$pinned" = 1 ]; then taskset -c "$cores" "$@" & else "$@" & fi
    started=$!
    pids+=("$started")
}

# One load run of case $1 against port $2 on load cores $3: seconds (float).
run_case() {
    local case=$1 port=$2 cores=$3 sessions=$4 start end
    local pin=(); [ "$pinned" = 1 ] && pin=(taskset -c "$cores")
    start=$(date +%s.%N)
    case $case in
        persistent)
            "${pin[@]}" smtp-source -d -s "$sessions" -m "$MESSAGES" -l 1024 \
                -f bench@example.com -t sink@remote.example.net -M client.bench.test 127.0.0.1:"$port" >/dev/null ;;
        per-conn)
            "${pin[@]}" smtp-source -s "$sessions" -m "$MESSAGES" -l 1024 \
                -f bench@example.com -t sink@remote.example.net -M client.bench.test 127.0.0.1:"$port" >/dev/null ;;
        100k)
            "${pin[@]}" smtp-source -d -s 100 -m "$(( MESSAGES / 10 ))" -l 102400 \
                -f bench@example.com -t sink@remote.example.net -M client.bench.test 127.0.0.1:"$port" >/dev/null ;;
        pipelining)
            SMTP_LOAD_PIPELINE=1 "${pin[@]}" "$SMTP_LOAD" 127.0.0.1:"$port" "$sessions" "$MESSAGES" 1024 >/dev/null ;;
        latency)
            # msgs/s p50_us p99_us, kept beside the timing.
            "${pin[@]}" "$SMTP_LOAD" 127.0.0.1:"$port" "$sessions" "$MESSAGES" 1024 >> "$work/latency-$port" ;;
    esac
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

messages_of() { [ "$1" = 100k ] && echo $(( MESSAGES / 10 )) || echo "$MESSAGES"; }

printf '%s\n' "machine: $total_cores cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$pinned" = 1 ]; then
    echo "pinned: proxy on the first N cores, sink on the next ones, load on the rest"
else
    echo "fewer than 8 cores: nothing pinned; read CPU per transaction, not throughput"
fi
printf '%-11s %5s %12s %12s %12s %9s %9s %12s %12s %9s\n' case cores "direct msg/s" "relay msg/s" "rg msg/s" "rg/relay" "rg/direct" "relay us/tx" "rg us/tx" "cpu rg/rl"

for cores in $CORES; do
    if [ "$pinned" = 1 ]; then
        # proxy: cores; sink: as many again (at least 2); load: the rest.
        sink_cores=$(( cores < 2 ? 2 : cores ))
        [ $(( cores + sink_cores + 2 )) -le "$total_cores" ] || { echo "($cores proxy cores: not enough cores on this machine, skipped)"; continue; }
        proxy_set=$(core_range 0 "$cores")
        sink_set=$(core_range "$cores" "$sink_cores")
        load_set=$(core_range $(( cores + sink_cores )) $(( total_cores - cores - sink_cores )))
        label=$cores
    else
        [ "$cores" = "$(echo "$CORES" | awk '{print $1}')" ] || continue
        proxy_set=; sink_set=; load_set=; label=all
    fi
    sink_port=$(free_port)
    start_on "$sink_set" "$FAST_SINK" 127.0.0.1:"$sink_port" "${sink_cores:-2}"
    sink_pid=$started
    wait_port "$sink_port"
    relay_port=$(free_port)
    start_on "$proxy_set" "$TCP_RELAY" 127.0.0.1:"$relay_port" 127.0.0.1:"$sink_port"
    relay_pid=$started
    proxy_port=$(free_port)
    cat > "$work/relaygate.toml" <<TOML
[proxy]
listen = ["127.0.0.1:$proxy_port"]
upstream = "127.0.0.1:$sink_port"
hostname = "bench.relaygate.test"
max_connections = 5000
max_connections_per_client = 5000

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.1"]
local_domains = ["example.com"]
TOML
    # The runtime's worker threads follow the cores the proxy may use.
    TOKIO_WORKER_THREADS=$([ "$pinned" = 1 ] && echo "$cores" || nproc) RUST_LOG=warn \
        start_on "$proxy_set" "$RELAYGATE" --config "$work/relaygate.toml" 2>"$work/relaygate.log"
    proxy_pid=$started
    wait_port "$relay_port"; wait_port "$proxy_port"

    for case in $CASES; do
        sessions=$SESSIONS; [ "$case" = per-conn ] && sessions=$PER_CONN_SESSIONS
        if [ "$pinned" = 1 ] && [ "$cores" -ge 8 ]; then sessions=$(( sessions * 2 )); fi
        : > "$work/direct"; : > "$work/relay"; : > "$work/proxy"
        : > "$work/latency-$sink_port"; : > "$work/latency-$relay_port"; : > "$work/latency-$proxy_port"
        relay_cpu=0; proxy_cpu=0
        for _ in $(seq "$REPEATS"); do
            run_case "$case" "$sink_port" "$load_set" "$sessions" >> "$work/direct"
            before=$(cpu_ticks "$relay_pid")
            run_case "$case" "$relay_port" "$load_set" "$sessions" >> "$work/relay"
            relay_cpu=$(( relay_cpu + $(cpu_ticks "$relay_pid") - before ))
            before=$(cpu_ticks "$proxy_pid")
            run_case "$case" "$proxy_port" "$load_set" "$sessions" >> "$work/proxy"
            proxy_cpu=$(( proxy_cpu + $(cpu_ticks "$proxy_pid") - before ))
        done
        n=$(messages_of "$case")
        rate() { echo "$n / $(median < "$work/$1")" | bc -l; }
        d=$(rate direct); r=$(rate relay); p=$(rate proxy)
        per_tx() { echo "$1 * 1000000 / $ticks_per_second / ($n * $REPEATS)" | bc -l; }
        relay_us=$(per_tx "$relay_cpu"); proxy_us=$(per_tx "$proxy_cpu")
        printf '%-11s %5s %12.0f %12.0f %12.0f %8.2fx %8.2fx %12.0f %12.0f %8.2fx\n' "$case" "$label" "$d" "$r" "$p" \
            "$(echo "$p / $r" | bc -l)" "$(echo "$p / $d" | bc -l)" "$relay_us" "$proxy_us" \
            "$(echo "$proxy_us / ($relay_us + 0.000001)" | bc -l)"
        if [ -n "$CSV" ]; then
            for target in direct relay relaygate; do
                case $target in
                    direct) port=$sink_port rate_=$d cpu=;;
                    relay) port=$relay_port rate_=$r cpu=$relay_us;;
                    relaygate) port=$proxy_port rate_=$p cpu=$proxy_us;;
                esac
                p50=; p99=
                if [ -s "$work/latency-$port" ]; then
                    p50=$(cut -d' ' -f2 "$work/latency-$port" | median)
                    p99=$(cut -d' ' -f3 "$work/latency-$port" | median)
                fi
                printf '%s,%s,%s,%.0f,%s,%s,%s\n' "$case" "$label" "$target" "$rate_" "${cpu:+$(printf '%.1f' "$cpu")}" "$p50" "$p99" >> "$CSV"
            done
        fi
    done
    kill "$proxy_pid" "$relay_pid" "$sink_pid" 2>/dev/null || true
    wait "$proxy_pid" "$relay_pid" "$sink_pid" 2>/dev/null || true
done
