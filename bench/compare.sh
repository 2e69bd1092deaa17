#!/usr/bin/env bash
# Throughput of relaygate against the same load sent directly, side by side:
#   smtp-source -> smtp-sink               (direct)
#   smtp-source -> relaygate -> smtp-sink  (proxy, embedded-style Apple policy)
# Runs are interleaved (direct, proxy, direct, proxy, ...) so that a noisy,
# shared machine affects both alike; the report gives medians and the ratio.
#
# Environment knobs (defaults in brackets):
#   SESSIONS ["1 20 100"]  concurrent sessions, one load per value
#   MESSAGES [2000]        messages per run
#   SIZE     [1024]        message size in bytes
#   PERSISTENT [0]         1: all messages of a session over one connection (smtp-source -d)
#   REPEATS  [5]           interleaved repeats per load
# Needs: postfix (smtp-sink, smtp-source). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-"1 20 100"}
MESSAGES=${MESSAGES:-2000}
SIZE=${SIZE:-1024}
PERSISTENT=${PERSISTENT:-0}
REPEATS=${REPEATS:-5}

for tool in smtp-sink smtp-source; do
    command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin"
    command -v "$tool" >/dev/null || { echo "need $tool: apt-get install postfix" >&2; exit 1; }
done

cargo build --release --quiet -p relaygate
RELAYGATE=target/release/relaygate

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

sink_port=$(free_port)
sink_user=(); [ "$(id -u)" = 0 ] && sink_user=(-u nobody)
smtp-sink "${sink_user[@]}" 127.0.0.1:"$sink_port" 1024 &
pids+=($!)
wait_port "$sink_port"

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

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$proxy_pid/stat"; }
ticks_per_second=$(getconf CLK_TCK)

printf '%s\n' "machine: $(nproc) cores, $(uname -r); messages/run $MESSAGES, size $SIZE B, persistent $PERSISTENT, repeats $REPEATS"
printf '%-9s %14s %14s %8s %16s\n' sessions "direct msg/s" "proxy msg/s" ratio "proxy CPU/msg"
for sessions in $SESSIONS; do
    : > "$work/direct"; : > "$work/proxy"; cpu_total=0
    for _ in $(seq "$REPEATS"); do
        run_load "$sink_port" "$sessions" >> "$work/direct"
        before=$(cpu_ticks)
        run_load "$proxy_port" "$sessions" >> "$work/proxy"
        cpu_total=$(( cpu_total + $(cpu_ticks) - before ))
    done
    d=$(median < "$work/direct"); p=$(median < "$work/proxy")
    d_rate=$(echo "$MESSAGES / $d" | bc -l); p_rate=$(echo "$MESSAGES / $p" | bc -l)
    cpu_us=$(echo "$cpu_total * 1000000 / $ticks_per_second / ($MESSAGES * $REPEATS)" | bc -l)
    printf '%-9s %14.0f %14.0f %7.2fx %13.0f us\n' "$sessions" "$d_rate" "$p_rate" "$(echo "$p_rate / $d_rate" | bc -l)" "$cpu_us"
done
