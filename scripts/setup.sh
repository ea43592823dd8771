#!/usr/bin/env bash
# Installs every Debian package Canopy needs to build, test and run. Idempotent; run as root on
# Debian 12. Skips apt entirely when everything is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libboost-dev libssl-dev libsqlite3-dev sqlite3 libcurl4-openssl-dev libssh-dev libargon2-dev
  nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  iproute2 nftables openssh-server openssh-client procps curl wrk python3
  ccache clang-format debootstrap
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]}; run as root (or with sudo) to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup: all packages present"

# Test peers from PyPI: moto (the AWS emulator the AWS provider's tests run against).
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
  echo "setup: installing moto[server] from PyPI"
  python3 -m pip install --quiet 'moto[server]>=5.0,<6' 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages 'moto[server]>=5.0,<6' ||
    { apt-get install -y -qq --no-install-recommends python3-pip &&
      python3 -m pip install --quiet --break-system-packages 'moto[server]>=5.0,<6'; }
fi
python3 -c 'import moto.server' || { echo "setup: moto is required for the AWS provider tests" >&2; exit 1; }
echo "setup: moto present"

# schemathesis fuzzes the root's API from its OpenAPI document (tests/fuzz/api_fuzz.py). Pinned:
# schemathesis 3.39 breaks with hypothesis 6.131+ ("'many' object has no attribute 'more'").
st_spec=('schemathesis>=3.39,<3.40' 'hypothesis>=6.108,<6.125')
if ! python3 -c 'import schemathesis, hypothesis, sys; v = tuple(int(x) for x in hypothesis.__version__.split(".")[:2]); sys.exit(0 if schemathesis.__version__.startswith("3.39") and v < (6, 125) else 1)' >/dev/null 2>&1; then
  echo "setup: installing ${st_spec[*]} from PyPI"
  python3 -m pip install --quiet "${st_spec[@]}" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages "${st_spec[@]}"
fi
command -v st >/dev/null 2>&1 || command -v schemathesis >/dev/null 2>&1 ||
  { echo "setup: schemathesis (st) is required for the API fuzz test" >&2; exit 1; }
echo "setup: schemathesis present"

# Blank images for the local provider (cached in /var/cache/canopy/images; skipped when built).
if [ "$(id -u)" -eq 0 ]; then
  "$(dirname "$0")/local-images.sh"
  echo "setup: local provider images present"
else
  echo "setup: not root: the local provider's blank images are not built (scripts/local-images.sh)"
fi
