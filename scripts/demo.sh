#!/usr/bin/env bash
# Sets up, builds and runs the embedded demo in the foreground: `canopy up` (a root, a local
# provider adapter registered with it, a credential named "local"; the CLI is logged in as admin).
# Run it as root (a root shell, or `sudo scripts/demo.sh` from a user who has sudo): the local
# provider makes network namespaces. Ctrl-C stops everything; instances the local provider made
# stay until terminated. DATA_DIR (default ./canopy-data) and LISTEN (127.0.0.1:8080: the API
# stays on this machine; clusters on local instances reach the root on the bridge 198.18.0.1)
# can be set. CANOPY_BIN=DIR runs the binaries in DIR as they are (no setup, no build).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "demo: the local provider needs root: run this from a root shell (or: sudo $0)" >&2
  exit 1
fi
if [ -z "${CANOPY_BIN:-}" ]; then
  scripts/setup.sh
  scripts/build.sh
  CANOPY_BIN=build/bin
fi
exec "$CANOPY_BIN/canopy" up --data-dir "${DATA_DIR:-$PWD/canopy-data}" --listen "${LISTEN:-127.0.0.1:8080}"
