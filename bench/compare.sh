#!/usr/bin/env bash
# Throughput of relaygate against the same load sent directly, side by side:
#   smtp-source -> smtp-sink               (direct)
#   smtp-source -> tcp-relay -> smtp-sink  (relay: bare TCP copy, the ceiling)
#   smtp-source -> relaygate -> smtp-sink  (proxy, embedded-style Apple policy)
# Runs are interleaved (direct, relay, proxy, direct, ...) so that a noisy,
# shared machine affects all alike; the report gives medians and the ratios.
# Then per-transaction latency (p50/p99, MAIL FROM to the reply to the end of
# data) with host/examples/smtp-load.rs, the same way interleaved: first
# paced (open loop, LATENCY_RATE messages per second in all, a rate all three
# sustain: the time a transaction takes), then flat out (closed loop: each
# session sends as soon as it is answered, so latency is mostly queueing,
# about sessions / throughput).
#
# Environment knobs (defaults in brackets):
#   SESSIONS ["1 20 100"]  concurrent sessions, one load per value
#   MESSAGES [2000]        messages per run
#   SIZE     [1024]        message size in bytes
#   PERSISTENT [0]         1: all messages of a session over one connection (smtp-source -d)
#   REPEATS  [5]           interleaved repeats per load
#   LATENCY  [1]           0: skip the latency runs
#   LATENCY_MESSAGES [4000] messages per latency run (persistent sessions)
#   LATENCY_RATE [2000]    messages per second of the paced latency runs
# Needs: postfix (smtp-sink, smtp-source). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-"1 20 100"}
MESSAGES=${MESSAGES:-2000}
SIZE=${SIZE:-1024}
PERSISTENT=${PERSISTENT:-0}
REPEATS=${REPEATS:-5}
LATENCY=${LATENCY:-1}
LATENCY_MESSAGES=${LATENCY_MESSAGES:-4000}
LATENCY_RATE=${LATENCY_RATE:-2000}


cargo build --release --quiet -p relaygate --bin relaygate --example tcp-relay --example smtp-load
RELAYGATE=target/release/relaygate
TCP_RELAY=target/release/examples/tcp-relay
SMTP_LOAD=target/release/examples/smtp-load

# shellcheck source=bench/lib.sh
. bench/lib.sh
need_postfix_tools

sink_port=$(free_port)
start_smtp_sink "$sink_port"

proxy_port=$(free_port)
cat > "$work/relaygate.toml" <<TOML
[proxy]
listen = ["127.0.0.1:$proxy_port"]
upstream = "127.0.0.1:$sink_port"
hostname = "bench.relaygate.test"
max_connections = 2000
max_connections_per_client = 2000

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.1"]
local_domains = ["example.com"]
TOML
RUST_LOG=warn "$RELAYGATE" --config "$work/relaygate.toml" 2>"$work/relaygate.log" &
proxy_pid=$!
pids+=($proxy_pid)
wait_port "$proxy_port"

relay_port=$(free_port)
"$TCP_RELAY" 127.0.0.1:"$relay_port" 127.0.0.1:"$sink_port" &
pids+=($!)
wait_port "$relay_port"

# Seconds (float) for one smtp-source run against a port.
run_load() {
    local port=$1 sessions=$2 start end
    start=$(date +%s.%N)
    local keep=(); [ "$PERSISTENT" = 1 ] && keep=(-d)
    smtp-source "${keep[@]}" -s "$sessions" -m "$MESSAGES" -l "$SIZE" \
        -f bench@example.com -t sink@remote.example.net -M client.bench.test \
        127.0.0.1:"$port" >/dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}



printf '%s\n' "machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "messages/run $MESSAGES, size $SIZE B, persistent $PERSISTENT, repeats $REPEATS"
printf '%-9s %13s %13s %13s %7s %7s %11s %14s\n' sessions "direct msg/s" "relay msg/s" "proxy msg/s" relay proxy proxy/relay "proxy CPU/msg"
for sessions in $SESSIONS; do
    : > "$work/direct"; : > "$work/relay"; : > "$work/proxy"; cpu_total=0
    for _ in $(seq "$REPEATS"); do
        run_load "$sink_port" "$sessions" >> "$work/direct"
        run_load "$relay_port" "$sessions" >> "$work/relay"
        before=$(cpu_ticks "$proxy_pid")
        run_load "$proxy_port" "$sessions" >> "$work/proxy"
        cpu_total=$(( cpu_total + $(cpu_ticks "$proxy_pid") - before ))
    done
    d=$(median < "$work/direct"); r=$(median < "$work/relay"); p=$(median < "$work/proxy")
    d_rate=$(echo "$MESSAGES / $d" | bc -l); r_rate=$(echo "$MESSAGES / $r" | bc -l); p_rate=$(echo "$MESSAGES / $p" | bc -l)
    cpu_us=$(echo "$cpu_total * 1000000 / $ticks_per_second / ($MESSAGES * $REPEATS)" | bc -l)
    printf '%-9s %13.0f %13.0f %13.0f %6.2fx %6.2fx %10.2fx %11.0f us\n' "$sessions" "$d_rate" "$r_rate" "$p_rate" \
        "$(echo "$r_rate / $d_rate" | bc -l)" "$(echo "$p_rate / $d_rate" | bc -l)" "$(echo "$p_rate / $r_rate" | bc -l)" "$cpu_us"
done

[ "$LATENCY" = 1 ] || exit 0
# $1: "paced" or "flat-out"
latency_runs() {
    local mode=$1 rate=()
    [ "$mode" = paced ] && rate=("$LATENCY_RATE")
    echo
    echo "latency per transaction, $mode (smtp-load, persistent sessions, $LATENCY_MESSAGES messages/run$([ "$mode" = paced ] && echo ", $LATENCY_RATE msg/s in all"), medians of $REPEATS):"
    printf '%-9s %-7s %10s %10s %10s %16s %16s\n' sessions target "msg/s" "p50 us" "p99 us" "p50 over direct" "p99 over direct"
    for sessions in $SESSIONS; do
        for target in direct relay proxy; do : > "$work/lat-$target"; done
        for _ in $(seq "$REPEATS"); do
            for target in direct relay proxy; do
                case $target in direct) port=$sink_port ;; relay) port=$relay_port ;; proxy) port=$proxy_port ;; esac
                "$SMTP_LOAD" 127.0.0.1:"$port" "$sessions" "$LATENCY_MESSAGES" "$SIZE" "${rate[@]}" >> "$work/lat-$target"
            done
        done
        direct_p50=$(cut -d' ' -f2 "$work/lat-direct" | median)
        direct_p99=$(cut -d' ' -f3 "$work/lat-direct" | median)
        for target in direct relay proxy; do
            rate_median=$(cut -d' ' -f1 "$work/lat-$target" | median)
            p50=$(cut -d' ' -f2 "$work/lat-$target" | median)
            p99=$(cut -d' ' -f3 "$work/lat-$target" | median)
            if [ $target = direct ]; then over50=-; over99=-; else
                over50="$(echo "$p50 - $direct_p50" | bc) us"; over99="$(echo "$p99 - $direct_p99" | bc) us"; fi
            printf '%-9s %-7s %10.0f %10.0f %10.0f %16s %16s\n' "$sessions" "$target" "$rate_median" "$p50" "$p99" "$over50" "$over99"
        done
    done
}
latency_runs paced
latency_runs flat-out
