#!/usr/bin/env bash
# Benchmark: authenticated list reads (GET /api/v1/credentials, a cluster-style list with 20 rows)
# with 100 concurrent keep-alive clients on loopback, using wrk. Two runs:
#  1. paced at ~2,000 req/s (each connection waits 50 ms between requests) — the target load;
#  2. unpaced — the saturation throughput.
# Reports req/s, p50/p99 latency and the root's RSS. Usage: bench/api_read.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
BIN=$BUILD/bin
DURATION=${DURATION:-15s}
command -v wrk >/dev/null || { echo "wrk is missing: scripts/setup.sh installs it" >&2; exit 1; }

TMP=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
CANOPY_ADMIN_PASSWORD=bench-admin-password "$BIN/canopyd" root --listen 127.0.0.1:$PORT --data-dir "$TMP/root" \
  --log-level warn 2>"$TMP/root.log" &
ROOT=$!
ADAPTER=""
trap 'kill $ROOT $ADAPTER 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 1 100); do curl -fsS "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

TOKEN=$(curl -fsS -X POST "$URL/api/v1/auth/login" -H 'Content-Type: application/json' \
  -d '{"username":"admin","password":"bench-admin-password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
PTOKEN=$(curl -fsS -X POST "$URL/api/v1/provider-tokens" -H "Authorization: Bearer $TOKEN" | \
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$BIN/canopyd" provider --type fake --root "$URL" --token "$PTOKEN" --listen 127.0.0.1:0 \
  --data-dir "$TMP/adapter" --log-level warn 2>"$TMP/adapter.log" &
ADAPTER=$!
for _ in $(seq 1 100); do
  curl -fsS "$URL/api/v1/providers" -H "Authorization: Bearer $TOKEN" | grep -q live && break; sleep 0.1
done
for i in $(seq 1 20); do
  curl -fsS -o /dev/null -X POST "$URL/api/v1/credentials" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "{\"name\":\"cred$i\",\"provider\":\"fake\",\"secret\":{\"api_key\":\"k$i\"}}"
done

cat > "$TMP/auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
local pace = tonumber(os.getenv("PACE_MS") or "0")
function delay() return pace end
LUA

rss() { awk '/VmRSS/ {print $2/1024 " MiB"}' /proc/$ROOT/status; }
echo "root RSS before: $(rss)"
echo "== paced: 100 connections, 50 ms between requests per connection (~2,000 req/s)"
PACE_MS=50 wrk -t2 -c100 -d"$DURATION" --latency -s "$TMP/auth.lua" "$URL/api/v1/credentials" | \
  grep -E 'Requests/sec|50%|90%|99%|Non-2xx|Socket errors'
echo "root RSS: $(rss)"
echo "== unpaced: 100 connections, as fast as possible"
PACE_MS=0 wrk -t2 -c100 -d"$DURATION" --latency -s "$TMP/auth.lua" "$URL/api/v1/credentials" | \
  grep -E 'Requests/sec|50%|90%|99%|Non-2xx|Socket errors'
echo "root RSS: $(rss)"
