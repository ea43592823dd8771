#!/usr/bin/env bash
# Sets up, builds and runs every test: the full suite (unit, integration, e2e) on a normal build,
# then unit + integration tests on an AddressSanitizer + UndefinedBehaviorSanitizer build.
# Set CANOPY_SKIP_SANITIZE=1 to skip the sanitizer pass during development.
# Tests run CANOPY_TEST_JOBS at a time (default 3 per core: most of an e2e test's time is spent
# waiting on daemons, instances and sshd, not on the CPU); suites that share host-global state hold
# a ctest RESOURCE_LOCK, and every test net is private to its test process.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=${CANOPY_TEST_JOBS:-$((3 * $(nproc)))}

echo "== format (clang-format)"
scripts/format.sh --check

echo "== build (RelWithDebInfo)"
BUILD_DIR=build scripts/build.sh
echo "== tests (all labels)"
ctest --test-dir build --output-on-failure --timeout 300 -j "$jobs"

if [ "${CANOPY_SKIP_SANITIZE:-0}" != "1" ]; then
  echo "== build (ASan + UBSan)"
  BUILD_DIR=build-asan BUILD_TYPE=Debug scripts/build.sh -DCANOPY_SANITIZE=ON -DCANOPY_BUILD_BENCH=OFF
  echo "== tests under sanitizers (unit, integration)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure --timeout 600 -j "$jobs" -L 'unit|integration'
  echo "== broker flows under sanitizers (the root, adapter, cluster and nodes all sanitized)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure --timeout 600 -j "$jobs" -R '^(BrokerE2E|Sweeper|ServicesE2E)\.'
fi
echo "== leftovers of the local provider tests (namespaces, test bridges, their address registries)"
left=$( (ip netns list 2>/dev/null | awk '{print $1}' | grep '^canopy-' || true; \
         ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^cb[tb][0-9a-f]+$' || true; \
         ls /run/canopy/local-addresses 2>/dev/null | grep -E '^cb[tb][0-9a-f]+$' | sed 's|^|/run/canopy/local-addresses/|' || true) )
if [ -n "$left" ]; then echo "tests left these behind:"; echo "$left"; exit 1; fi
echo "== all tests passed"
