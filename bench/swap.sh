#!/usr/bin/env bash
# Hot-swap latency of a running relaygate, measured by the proxy itself
# (trigger to swap, as `relaygate reload` reports it):
#   cold   - a module this cache has never seen (compile + check + init)
#   memory - swapping back to a module this process compiled before
#   disk   - the first load after a restart with a warm cache_dir
# Environment: ROUNDS [20]. Uses the two fixture guests in tests/fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-20}

cargo build --release --quiet -p relaygate
RELAYGATE=$PWD/target/release/relaygate
# shellcheck source=bench/lib.sh
. bench/lib.sh
smtp=$(free_port); admin=$(free_port)
install() { cp "$1" "$work/.new.wasm"; mv "$work/.new.wasm" "$work/policy.wasm"; }
start() {
    RUST_LOG=warn "$RELAYGATE" --config "$work/relaygate.toml" 2>>"$work/log" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 200); do "$RELAYGATE" status --config "$work/relaygate.toml" >/dev/null 2>&1 && return; sleep 0.05; done
    echo "relaygate did not start" >&2; exit 1
}
reload_ms() { "$RELAYGATE" reload --config "$work/relaygate.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["swapped"]["micros"] / 1000)'; }

cat > "$work/relaygate.toml" <<TOML
[proxy]
listen = ["127.0.0.1:$smtp"]
upstream = "127.0.0.1:9"
[policy]
module = "$work/policy.wasm"
watch = false
cache_dir = "$work/cache"
[admin]
listen = "127.0.0.1:$admin"
TOML

a=tests/fixtures/misbehaving.wasm
b=tests/fixtures/misbehaving-reject.wasm
cold=(); memory=(); disk=()
for _ in $(seq "$ROUNDS"); do
    rm -rf "$work/cache"
    install "$a"; start
    install "$b"; cold+=("$(reload_ms)")
    install "$a"; memory+=("$(reload_ms)")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    start
    disk+=("$("$RELAYGATE" status --config "$work/relaygate.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["policy"]["load_us"] / 1000)')")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
echo "machine: $(nproc) cores; $ROUNDS rounds; Rust guest component $(stat -c %s "$a") bytes"
printf 'cold swap (compile+check+init):  median %s ms\n' "$(printf '%s\n' "${cold[@]}" | median)"
printf 'swap back (memory cache):        median %s ms\n' "$(printf '%s\n' "${memory[@]}" | median)"
printf 'load after restart (disk cache): median %s ms\n' "$(printf '%s\n' "${disk[@]}" | median)"
