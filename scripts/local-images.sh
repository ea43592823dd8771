#!/usr/bin/env bash
# Builds the blank images of the local provider (as root), like a cloud's stock images: Debian
# minbase with openssh-server and sudo, a login user `admin` with passwordless sudo, /etc/hosts,
# and no SSH host keys (each instance gets its own). Nothing Canopy needs is installed.
#   debian-11-minbase  Debian 11 (bullseye)      debian-12-minbase  Debian 12 (bookworm)
# Images live in CANOPY_IMAGES_DIR (default /var/cache/canopy/images/<name>/rootfs) and are kept:
# a built image is skipped (~35 s and ~230 MB each to build). Each instance is an overlay on top.
# Usage: scripts/local-images.sh [NAME...]   (default: both)
set -euo pipefail
dir=${CANOPY_IMAGES_DIR:-/var/cache/canopy/images}
mirror=${CANOPY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ "$(id -u)" != 0 ]; then echo "local-images: run as root (debootstrap)" >&2; exit 1; fi
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(debian-11-minbase debian-12-minbase)
mkdir -p "$dir"

# What makes a debootstrap root a cloud-like image: /etc/hosts, and the login user `admin` with
# passwordless sudo and no password at all ('*': sshd without PAM refuses keys of locked '!'
# accounts).
finish() {
  local root=$1
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
  if ! chroot "$root" id admin >/dev/null 2>&1; then
    chroot "$root" useradd --create-home --shell /bin/bash --groups sudo admin
  fi
  chroot "$root" usermod -p '*' admin
  echo 'admin ALL=(ALL) NOPASSWD:ALL' > "$root/etc/sudoers.d/90-canopy-admin"
  chmod 0440 "$root/etc/sudoers.d/90-canopy-admin"
}

for name in "${names[@]}"; do
  case "$name" in
    debian-11-minbase) suite=bullseye ;;
    debian-12-minbase) suite=bookworm ;;
    *) echo "local-images: unknown image '$name' (debian-11-minbase, debian-12-minbase)" >&2; exit 2 ;;
  esac
  if [ -f "$dir/$name/rootfs/etc/canopy-image" ]; then
    # Built earlier: bring it up to what this script makes now (each step is idempotent).
    finish "$dir/$name/rootfs"
    continue
  fi
  echo "local-images: building $name (debootstrap $suite minbase + openssh-server, sudo; ~35 s)"
  tmp=$(mktemp -d "$dir/.build-$name.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  start=$(date +%s)
  if ! debootstrap --variant=minbase --include=openssh-server,sudo "$suite" "$tmp/rootfs" "$mirror" \
      > "$tmp/debootstrap.log" 2>&1; then
    tail -20 "$tmp/debootstrap.log" >&2
    exit 1
  fi
  root=$tmp/rootfs
  rm -f "$root"/etc/ssh/ssh_host_*
  finish "$root"
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/*
  echo "$name built $(date -u +%Y-%m-%dT%H:%M:%SZ) from $suite" > "$root/etc/canopy-image"
  rm -rf "${dir:?}/$name"
  mkdir -p "$dir/$name"
  mv "$root" "$dir/$name/rootfs"
  rm -rf "$tmp"
  trap - EXIT
  echo "local-images: $name ready in $(( $(date +%s) - start )) s ($(du -sh "$dir/$name" | cut -f1))"
done
