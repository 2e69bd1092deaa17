#!/usr/bin/env bash
# Resident memory per session of a running relaygate (release build, the
# bench policy, smtp-sink upstream), read from /proc/PID/status VmRSS:
#   idle      - SESSIONS connections that sent EHLO and wait
#   mid-DATA  - SESSIONS connections inside DATA, PARTIAL bytes of the
#               message sent, the end of data not yet
# Environment: SESSIONS [1000], PARTIAL [65536]. Needs postfix's smtp-sink
# and a file-descriptor limit above 2 x SESSIONS (raised here if allowed).
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-1000}
PARTIAL=${PARTIAL:-65536}
ulimit -n $(( SESSIONS * 2 + 256 )) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
command -v smtp-sink >/dev/null || PATH="$PATH:/usr/sbin"

cargo build --release --quiet -p relaygate --bin relaygate
RELAYGATE=target/release/relaygate
# shellcheck source=bench/lib.sh
. bench/lib.sh

sink_port=$(free_port)
sink_user=(); [ "$(id -u)" = 0 ] && sink_user=(-u nobody)
# -m: smtp-sink serves only 256 connections at once by default and leaves
# the rest unanswered in its listen queue; every mid-DATA session holds one.
smtp-sink -t 600 -m $(( SESSIONS + 100 )) "${sink_user[@]}" 127.0.0.1:"$sink_port" 4096 &
pids+=($!)
wait_port "$sink_port"
proxy_port=$(free_port)
cat > "$work/relaygate.toml" <<TOML
[proxy]
listen = ["127.0.0.1:$proxy_port"]
upstream = "127.0.0.1:$sink_port"
hostname = "bench.relaygate.test"
max_connections = $(( SESSIONS + 100 ))
max_connections_per_client = $(( SESSIONS + 100 ))

[policy.config]
open_relay_addr_flag = 1
open_relay_addr_list = ["127.0.0.1"]
local_domains = ["example.com"]
TOML
RUST_LOG=warn "$RELAYGATE" --config "$work/relaygate.toml" 2>"$work/relaygate.log" &
proxy_pid=$!
pids+=($proxy_pid)
wait_port "$proxy_port"

for phase in idle mid-data; do
python3 - "$proxy_pid" "$proxy_port" "$SESSIONS" "$PARTIAL" "$phase" <<'PY'
import asyncio, sys
pid, port, sessions, partial, phase = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

async def reply(reader, want):
    while True:
        line = await reader.readline()
        if not line:
            raise RuntimeError("connection closed")
        if line[3:4] != b"-":
            if int(line[:3]) != want:
                raise RuntimeError(f"wanted {want}, got {line!r}")
            return

failed = []

async def session(ready, release):
    try:
        await converse(release)
    except Exception as e:  # count it, never hang the measurement
        failed.append(e)
        ready.release()

async def converse(release):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reply(reader, 220)
    writer.write(b"EHLO memory.bench.test\r\n"); await reply(reader, 250)
    if phase == "mid-data":
        writer.write(b"MAIL FROM:<bench@example.com>\r\n"); await reply(reader, 250)
        writer.write(b"RCPT TO:<sink@remote.example.net>\r\n"); await reply(reader, 250)
        writer.write(b"DATA\r\n"); await reply(reader, 354)
        line = b"x" * 76 + b"\r\n"
        writer.write(b"Subject: memory\r\n\r\n" + line * (partial // len(line)))
        await writer.drain()
    ready_signal.release()
    await release.wait()
    writer.close()

async def main():
    global sessions
    await asyncio.sleep(0.5)
    before = rss_kib()
    global ready_signal
    ready, release = asyncio.Semaphore(0), asyncio.Event()
    ready_signal = ready
    tasks = []
    for _ in range(sessions):
        tasks.append(asyncio.create_task(session(ready, release)))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.01)
    for _ in range(sessions):
        await ready.acquire()
    await asyncio.sleep(1.0)  # let the proxy read and forward what was sent
    during = rss_kib()
    extra = during - before
    if failed:
        print(f"{phase}: {len(failed)} sessions failed, first: {failed[0]!r}")
        sessions -= len(failed)
    print(f"{phase:9} {sessions} sessions: VmRSS {before // 1024} -> {during // 1024} MiB, "
          f"+{extra / 1024:.1f} MiB, {extra / sessions:.1f} KiB per session")
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(1.0)

asyncio.run(main())
PY
done
