#!/usr/bin/env bash
# Time to create + install 1, 10 and 30 local instances in parallel, per phase (needs root).
# Usage (as root): [BOOT_DELAY_MS=5000] bench/local_provision.sh [BUILD_DIR] [N ...]   (default: build 1 10 30)
# BOOT_DELAY_MS models a cloud's boot time (the local provider's --boot-delay).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
shift || true
COUNTS=("$@")
[ ${#COUNTS[@]} -eq 0 ] && COUNTS=(1 10 30)
ninja -C "$BUILD" local_provision canopyd >/dev/null
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r), boot delay ${BOOT_DELAY_MS:-0} ms"
"$BUILD/bin/local_provision" "$BUILD/bin/canopyd-dist" "${COUNTS[@]}"
