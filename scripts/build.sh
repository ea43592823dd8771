#!/usr/bin/env bash
# Configures and builds Canopy into build/ (or $BUILD_DIR). Extra args go to cmake.
# Compiles through ccache when it is installed (scripts/setup.sh installs it). The cache lives in
# $CCACHE_DIR (default ~/.cache/ccache) and is keyed on paths relative to the checkout, so a fresh
# clone elsewhere on the same machine (CI) reuses what an earlier build compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
launcher=()
if command -v ccache >/dev/null 2>&1 && [ "${CANOPY_NO_CCACHE:-0}" != "1" ]; then
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
  export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-file_macro,time_macros,include_file_mtime,include_file_ctime}
  export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-20G}
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "${launcher[@]}" "$@" >/dev/null
ninja -C "$BUILD_DIR" -j "${JOBS:-$(nproc)}"
