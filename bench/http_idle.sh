#!/usr/bin/env bash
# HTTP server load figures for docs/decisions/http.md, on 127.0.0.1 only, bounded in time (~1 min):
#   wrk with 50 and 1000 connections against GET /healthz, then 2000 idle keep-alive connections
#   while new clients are timed, with the server's RSS at each stage.
# Usage: bench/http_idle.sh [path/to/http_server_bench] [seconds per wrk run]
# Needs wrk (apt-get install -y wrk). Build: ninja -C <build> http_server_bench
set -euo pipefail

BIN=${1:-build/bin/http_server_bench}
DUR=${2:-10}
IDLE=${IDLE_CONNS:-2000}
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid"; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

"$BIN" serve 0 2 8 >"$tmp/server.out" 2>&1 &
server_pid=$!
for _ in $(seq 50); do grep -q '^PORT' "$tmp/server.out" && break; sleep 0.1; done
port=$(awk '/^PORT/ {print $2}' "$tmp/server.out")
url="http://127.0.0.1:$port/healthz"
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$server_pid/status"; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: pid $server_pid port $port, 2 io threads, 8 workers; RSS at start $(rss)"
echo "idle: opening $IDLE keep-alive connections, then 200 new connect+GET probes"
"$BIN" idle "$port" "$IDLE" 200 3 >"$tmp/idle.out" 2>&1 &
idle_pid=$!
for _ in $(seq 300); do grep -q '^IDLE_RECHECK' "$tmp/idle.out" && break; sleep 0.1; done
open_fds=$(ls "/proc/$server_pid/fd" | wc -l)
echo "  server RSS with $IDLE idle connections: $(rss), open fds $open_fds"
wait "$idle_pid" || echo "  idle client failed" >&2
sed 's/^/  /' "$tmp/idle.out"
sleep 0.5
echo "  RSS after idle clients left: $(rss)"


wrk -t2 -c50 -d3s "$url" >/dev/null  # warm-up

summarize() {  # wrk --latency output -> one line
  awk '/Requests\/sec/ {rps=$2} / 99%/ {p99=$2} / 50%/ {p50=$2}
       /Socket errors/ {err=$0} /Non-2xx/ {non2xx=$0}
       END {printf "req/s %s  p50 %s  p99 %s  %s %s\n", rps, p50, p99, err, non2xx}'
}
for c in 50 1000; do
  for run in 1 2; do
    printf 'wrk -c%-4s run %s: ' "$c" "$run"
    wrk -t2 -c"$c" -d"${DUR}s" --timeout 5s --latency "$url" | summarize
  done
  echo "  RSS after -c$c: $(rss)"
done

kill -TERM "$server_pid"
wait "$server_pid" || true
sed -n 's/^STOPPED/server stopped/p' "$tmp/server.out"
