#!/usr/bin/env bash
# What upstream connection reuse saves: relaygate with `[upstream_pool]` on
# (the default) against relaygate with it off, side by side on the same
# load of one message per client connection (how MTAs deliver to an MX):
#   smtp-source -> relaygate (pool on)  -> smtp-sink
#   smtp-source -> relaygate (pool off) -> smtp-sink
# Without the pool each client connection opens its own upstream connection
# (connect, greeting, EHLO, then QUIT); with it, sessions take kept ones.
# Runs are interleaved; CPU per message is each proxy's own (utime + stime
# from /proc); the upstream connections each proxy opened come from its
# /metrics.
#
# Environment knobs (defaults in brackets):
#   SESSIONS   ["1 20"]  concurrent client connections, one load per value
#   MESSAGES   [2000]    messages (= client connections) per run
#   REPEATS    [5]       interleaved repeats per load
# Needs: postfix (smtp-sink, smtp-source). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-"1 20"}
MESSAGES=${MESSAGES:-2000}
REPEATS=${REPEATS:-5}


[ -n "${PREBUILT:-}" ] || cargo build --release --quiet -p relaygate --bin relaygate
RELAYGATE=target/release/relaygate

# shellcheck source=bench/lib.sh
. bench/lib.sh
need_postfix_tools

sink_port=$(free_port)
start_smtp_sink "$sink_port"

# Start relaygate with `[upstream_pool] enabled = $1`; sets $port, $admin
# and $pid.
start_proxy() {
    port=$(free_port); admin=$(free_port)
    cat > "$work/relaygate-$1.toml" <<TOML
[proxy]
listen = ["127.0.0.1:$port"]
upstream = "127.0.0.1:$sink_port"
hostname = "bench.relaygate.test"
max_connections = 2000
max_connections_per_client = 2000

[admin]
listen = "127.0.0.1:$admin"

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.1"]
local_domains = ["example.com"]

[upstream_pool]
enabled = $1
TOML
    RUST_LOG=warn "$RELAYGATE" --config "$work/relaygate-$1.toml" 2>"$work/relaygate-$1.log" &
    pid=$!
    pids+=("$pid")
    wait_port "$port"
}

start_proxy true
on_pid=$pid; on_port=$port; on_admin=$admin
start_proxy false
off_pid=$pid; off_port=$port; off_admin=$admin

# Seconds (float) for one smtp-source run, one message per connection.
run_load() {
    local port=$1 sessions=$2 start end
    start=$(date +%s.%N)
    smtp-source -s "$sessions" -m "$MESSAGES" -l 1024 \
        -f bench@example.com -t sink@example.com -M client.bench.test \
        127.0.0.1:"$port" >/dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

# Upstream connections the proxy behind admin port $1 opened so far.
opened() {
    python3 - "$1" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
print(sum(float(l.split()[-1]) for l in text.splitlines()
          if l.startswith('relaygate_upstream_connections_total{kind="opened"}')))
PY
}

printf '%s\n' "machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "messages (client connections)/run $MESSAGES, 1 KiB, repeats $REPEATS"
printf '%-9s %12s %12s %14s %14s %12s %16s\n' sessions "on msg/s" "off msg/s" "on CPU/msg" "off CPU/msg" "CPU on/off" "upstream conns on/off"
for sessions in $SESSIONS; do
    : > "$work/on"; : > "$work/off"; on_cpu=0; off_cpu=0
    on_before=$(opened "$on_admin"); off_before=$(opened "$off_admin")
    for _ in $(seq "$REPEATS"); do
        before=$(cpu_ticks "$on_pid")
        run_load "$on_port" "$sessions" >> "$work/on"
        on_cpu=$(( on_cpu + $(cpu_ticks "$on_pid") - before ))
        before=$(cpu_ticks "$off_pid")
        run_load "$off_port" "$sessions" >> "$work/off"
        off_cpu=$(( off_cpu + $(cpu_ticks "$off_pid") - before ))
    done
    on_rate=$(echo "$MESSAGES / $(median < "$work/on")" | bc -l)
    off_rate=$(echo "$MESSAGES / $(median < "$work/off")" | bc -l)
    per_message() { echo "$1 * 1000000 / $ticks_per_second / ($MESSAGES * $REPEATS)" | bc -l; }
    on_us=$(per_message "$on_cpu"); off_us=$(per_message "$off_cpu")
    on_conns=$(echo "$(opened "$on_admin") - $on_before" | bc -l)
    off_conns=$(echo "$(opened "$off_admin") - $off_before" | bc -l)
    printf '%-9s %12.0f %12.0f %11.0f us %11.0f us %11.2fx %9.0f/%.0f\n' "$sessions" "$on_rate" "$off_rate" \
        "$on_us" "$off_us" "$(echo "$on_us / $off_us" | bc -l)" "$on_conns" "$off_conns"
done
