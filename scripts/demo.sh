#!/usr/bin/env bash
# Sets up, builds and runs the embedded demo in the foreground: `canopy up` (a root, a local
# provider adapter registered with it, a credential named "local"; the CLI is logged in as admin).
# Needs root (the local provider makes network namespaces). Ctrl-C stops everything; instances the
# local provider made stay until terminated. DATA_DIR (default ./canopy-data) and LISTEN
# (127.0.0.1:8080) can be set.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
[ "$(id -u)" = 0 ] || { echo "the local provider needs root: run with sudo" >&2; exit 1; }
exec build/bin/canopy up --data-dir "${DATA_DIR:-$PWD/canopy-data}" --listen "${LISTEN:-127.0.0.1:8080}"
