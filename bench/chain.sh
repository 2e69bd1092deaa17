#!/usr/bin/env bash
# What a policy chain costs per message: relaygate asking one module against
# relaygate asking a chain of three, side by side on the same load:
#   smtp-source -> relaygate (one module)    -> smtp-sink
#   smtp-source -> relaygate (three modules) -> smtp-sink
# The three modules are Rust components (the embedded Apple relay policy,
# three times under different names, each with its own config table, as a
# site stacking three rules would run them): every hook of every message is
# asked of each. Runs are interleaved so a noisy machine affects both alike;
# CPU per message is the proxy's own (utime + stime from /proc), and the
# report gives the three-module chain's CPU per message over the lone
# module's. The target: a chain of three costs at most 2x one module.
#
# Environment knobs (defaults in brackets):
#   SESSIONS   ["20"]   concurrent sessions, one load per value
#   MESSAGES   [2000]   messages per run
#   SIZE       [1024]   message size in bytes
#   PERSISTENT [1]      1: all messages of a session over one connection
#   REPEATS    [5]      interleaved repeats per load
# Needs: postfix (smtp-sink, smtp-source). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-"20"}
MESSAGES=${MESSAGES:-2000}
SIZE=${SIZE:-1024}
PERSISTENT=${PERSISTENT:-1}
REPEATS=${REPEATS:-5}


cargo build --release --quiet -p relaygate --bin relaygate
RELAYGATE=target/release/relaygate

# shellcheck source=bench/lib.sh
. bench/lib.sh
need_postfix_tools

sink_port=$(free_port)
start_smtp_sink "$sink_port"

# The Apple relay rules as one chain module named $1.
relay_module() {
    cat <<TOML

[[chain.module]]
name = "$1"
module = "builtin:apple-relay"
[chain.module.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.1"]
local_domains = ["example.com"]
TOML
}

# Start relaygate with one listener, on a free port, asking a chain of the
# modules named in "$@"; sets $port and $pid.
start_proxy() {
    port=$(free_port)
    {
        cat <<TOML
[proxy]
upstream = "127.0.0.1:$sink_port"
hostname = "bench.relaygate.test"
max_connections = 2000
max_connections_per_client = 2000

[[listener]]
name = "bench"
address = "127.0.0.1:$port"
chain = "bench"

[[chain]]
name = "bench"
TOML
        for name in "$@"; do relay_module "$name"; done
    } > "$work/relaygate-$#.toml"
    "$RELAYGATE" check --config "$work/relaygate-$#.toml" >/dev/null
    RUST_LOG=warn "$RELAYGATE" --config "$work/relaygate-$#.toml" 2>"$work/relaygate-$#.log" &
    pid=$!
    pids+=("$pid")
    wait_port "$port"
}

start_proxy relay
one_pid=$pid; one_port=$port
start_proxy relay relay-again relay-third
three_pid=$pid; three_port=$port

# Seconds (float) for one smtp-source run against a port.
run_load() {
    local port=$1 sessions=$2 start end
    start=$(date +%s.%N)
    local keep=(); [ "$PERSISTENT" = 1 ] && keep=(-d)
    smtp-source "${keep[@]}" -s "$sessions" -m "$MESSAGES" -l "$SIZE" \
        -f bench@example.com -t sink@example.com -M client.bench.test \
        127.0.0.1:"$port" >/dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}


printf '%s\n' "machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "messages/run $MESSAGES, size $SIZE B, persistent $PERSISTENT, repeats $REPEATS"
printf '%-9s %14s %14s %16s %16s %12s\n' sessions "1 module msg/s" "3 modules msg/s" "1 module CPU/msg" "3 modules CPU/msg" "CPU 3 / 1"
for sessions in $SESSIONS; do
    : > "$work/one"; : > "$work/three"; one_cpu=0; three_cpu=0
    for _ in $(seq "$REPEATS"); do
        before=$(cpu_ticks "$one_pid")
        run_load "$one_port" "$sessions" >> "$work/one"
        one_cpu=$(( one_cpu + $(cpu_ticks "$one_pid") - before ))
        before=$(cpu_ticks "$three_pid")
        run_load "$three_port" "$sessions" >> "$work/three"
        three_cpu=$(( three_cpu + $(cpu_ticks "$three_pid") - before ))
    done
    one_rate=$(echo "$MESSAGES / $(median < "$work/one")" | bc -l)
    three_rate=$(echo "$MESSAGES / $(median < "$work/three")" | bc -l)
    per_message() { echo "$1 * 1000000 / $ticks_per_second / ($MESSAGES * $REPEATS)" | bc -l; }
    one_us=$(per_message "$one_cpu"); three_us=$(per_message "$three_cpu")
    printf '%-9s %14.0f %14.0f %13.0f us %13.0f us %11.2fx\n' "$sessions" "$one_rate" "$three_rate" \
        "$one_us" "$three_us" "$(echo "$three_us / $one_us" | bc -l)"
done
