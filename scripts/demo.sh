#!/usr/bin/env bash
# Sets up, builds and runs the embedded demo in the foreground: a root, a local provider adapter
# registered with it (real instances on this host: needs root), and a credential named "local".
# Prints the URL and the admin login. Ctrl-C stops everything (instances the local provider made
# stay until terminated). DATA_DIR (default ./canopy-data) and LISTEN (127.0.0.1:8080) can be set.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh

DATA_DIR=${DATA_DIR:-$PWD/canopy-data}
LISTEN=${LISTEN:-127.0.0.1:8080}
URL="http://$LISTEN"
BIN=$PWD/build/bin
export XDG_CONFIG_HOME=${XDG_CONFIG_HOME:-$DATA_DIR/config}
mkdir -p "$DATA_DIR"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$BIN/canopyd" root --listen "$LISTEN" --data-dir "$DATA_DIR/root" 2>>"$DATA_DIR/root.log" &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$URL/healthz" >/dev/null || { echo "root did not start; see $DATA_DIR/root.log" >&2; exit 1; }

if [ -n "${CANOPY_ADMIN_PASSWORD:-}" ]; then PASSWORD=$CANOPY_ADMIN_PASSWORD
elif [ -f "$DATA_DIR/root/admin-password" ]; then PASSWORD=$(cat "$DATA_DIR/root/admin-password")
else echo "admin password unknown: set CANOPY_ADMIN_PASSWORD (data dir was created with one)" >&2; exit 1; fi
"$BIN/canopy" login --root "$URL" --username admin --password "$PASSWORD" >/dev/null

[ "$(id -u)" = 0 ] || { echo "the local provider needs root: run with sudo" >&2; exit 1; }
TOKEN=""
if [ ! -f "$DATA_DIR/adapter-local/identity.json" ]; then
  TOKEN=$("$BIN/canopy" provider token -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
fi
"$BIN/canopyd" provider --type local --root "$URL" --listen 127.0.0.1:0 --data-dir "$DATA_DIR/adapter-local" \
  --state-dir "$DATA_DIR/local" ${TOKEN:+--token "$TOKEN"} 2>>"$DATA_DIR/adapter-local.log" &
pids+=($!)
for _ in $(seq 1 100); do
  "$BIN/canopy" provider list -o json | grep -q '"live"' && break; sleep 0.1
done
if ! "$BIN/canopy" credential list -o json | grep -q '"name": *"local"'; then
  echo '{"type":"local"}' | "$BIN/canopy" credential add local --provider local --secret-stdin >/dev/null
fi

cat <<MSG

Canopy root is running at $URL
  admin login:  canopy login --root $URL --username admin --password '$PASSWORD'
  CLI:          $BIN/canopy (config in $XDG_CONFIG_HOME/canopy)
  providers:    $("$BIN/canopy" provider list | tail -n +2 | wc -l) adapter(s) live; credential "local" stored
  logs:         $DATA_DIR/root.log, $DATA_DIR/adapter-local.log
Press Ctrl-C to stop.
MSG
wait "${pids[0]}"
