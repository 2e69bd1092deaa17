#!/usr/bin/env bash
# Peak resident memory of a running relaygate (release build) under an SMTP
# AUTH flood against the file backend with argon2id hashes (about 19 MiB of
# memory per verification): ATTEMPTS connections, each from its own
# 127.x.y.z address, all sending AUTH PLAIN at once (wrong password, a user
# of its own, so that neither the per-client nor the per-user brute-force
# control holds any of them back: only max_concurrent_checks does).
# Prints VmRSS before, VmHWM (the peak) after, and how the attempts were
# answered (535 checked and rejected, 454 no check slot within the timeout).
# Environment: ATTEMPTS [1000], CHECKS [unset: the default, one per core]
# sets [auth] max_concurrent_checks, TIMEOUT ["10s"] sets [auth] timeout,
# PROFILE [release] the cargo profile to build (dev for a quick look:
# argon2 is optimised in dev builds too).
# Needs a file-descriptor limit above 2 x ATTEMPTS (raised here if allowed).
set -euo pipefail
cd "$(dirname "$0")/.."
ATTEMPTS=${ATTEMPTS:-1000}
CHECKS=${CHECKS:-}
TIMEOUT=${TIMEOUT:-10s}
PROFILE=${PROFILE:-release}
ulimit -n $(( ATTEMPTS * 2 + 256 )) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --profile "$PROFILE" --quiet -p relaygate --bin relaygate
RELAYGATE=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/relaygate
# shellcheck source=bench/lib.sh
. bench/lib.sh

# A few real users with argon2id hashes (relaygate's own, default parameters);
# the flood's users are unknown, which costs the same hash (a dummy made
# like the file's first one).
for user in alice bob carol; do
  echo "$user:$(printf '%s\n' "password of $user" | "$RELAYGATE" auth hash)"
done > "$work/users"

# An upstream that is never reached (AUTH is refused before any mail).
upstream_port=$(free_port)
proxy_port=$(free_port)
checks_line=""
[ -n "$CHECKS" ] && checks_line="max_concurrent_checks = $CHECKS"
cat > "$work/relaygate.toml" <<TOML
[proxy]
listen = ["127.0.0.1:$proxy_port"]
upstream = "127.0.0.1:$upstream_port"
hostname = "bench.relaygate.test"
max_connections = $(( ATTEMPTS + 100 ))
max_connections_per_client = $(( ATTEMPTS + 100 ))

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = []
smtp_plain_login_flag = 1
local_domains = ["example.com"]

[auth]
backend = "file"
users_file = "$work/users"
require_tls = false
timeout = "$TIMEOUT"
$checks_line
TOML
RUST_LOG=error "$RELAYGATE" --config "$work/relaygate.toml" 2>"$work/relaygate.log" &
proxy_pid=$!
pids+=($proxy_pid)
wait_port "$proxy_port"

python3 - "$proxy_pid" "$proxy_port" "$ATTEMPTS" <<'PY'
import asyncio, base64, collections, os, sys, time
pid, port, attempts = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def status(key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

async def reply(reader):
    while True:
        line = await reader.readline()
        if not line:
            raise RuntimeError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3])

answers = collections.Counter()

async def attempt(n, ready, go):
    source = f"127.{1 + n // 62500}.{n // 250 % 250}.{n % 250 + 1}"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        assert await reply(reader) == 220
        writer.write(b"EHLO flood.bench.test\r\n")
        assert await reply(reader) == 250
        ready.release()
        await go.wait()
        token = base64.b64encode(f"\0flood{n}\0wrong-{n}".encode()).decode()
        writer.write(f"AUTH PLAIN {token}\r\n".encode())
        answers[await reply(reader)] += 1
        writer.close()
    except Exception as e:  # count it, never hang the measurement
        answers[f"error: {type(e).__name__}"] += 1
        ready.release()

async def main():
    await asyncio.sleep(0.5)
    before = status("VmRSS")
    ready, go = asyncio.Semaphore(0), asyncio.Event()
    tasks = []
    for n in range(attempts):
        tasks.append(asyncio.create_task(attempt(n, ready, go)))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.01)
    for _ in range(attempts):
        await ready.acquire()
    connected = status("VmRSS")
    started = time.monotonic()
    go.set()
    await asyncio.gather(*tasks)
    took = time.monotonic() - started
    peak = status("VmHWM")
    print(f"machine: {os.cpu_count()} cores; {attempts} concurrent AUTH PLAIN attempts, file backend, argon2id (m=19456 KiB)")
    print(f"VmRSS before {before / 1024:.1f} MiB, with {attempts} sessions connected {connected / 1024:.1f} MiB, "
          f"peak (VmHWM) {peak / 1024:.1f} MiB; all answered in {took:.1f} s")
    print("answers:", ", ".join(f"{code}: {count}" for code, count in sorted(answers.items(), key=str)))

asyncio.run(main())
PY
