# Shared by the benchmark scripts (source it): a scratch directory removed on
# exit, the background processes to stop on exit, loopback port helpers, and
# the median and CPU-time helpers every report uses.

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# A TCP port on 127.0.0.1 that is free right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Wait (at most 10 s) until something listens on 127.0.0.1:PORT.
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# The median of the numbers on standard input, one per line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# CPU time (utime + stime, in clock ticks) process PID has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# Exit unless Postfix's smtp-sink and smtp-source can be run (/usr/sbin is
# added to PATH where they live).
need_postfix_tools() {
    for tool in smtp-sink smtp-source; do
        command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin"
        command -v "$tool" >/dev/null || { echo "need $tool: apt-get install postfix" >&2; exit 1; }
    done
}

# Start smtp-sink on 127.0.0.1:PORT with a listen backlog of 1024 (as nobody
# when run as root: it refuses to run as root), stopped on exit.
start_smtp_sink() {
    local user=(); [ "$(id -u)" = 0 ] && user=(-u nobody)
    smtp-sink "${user[@]}" 127.0.0.1:"$1" 1024 &
    pids+=($!)
    wait_port "$1"
}
