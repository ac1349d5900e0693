#!/usr/bin/env bash
# build-debian-image.sh — a clean Debian 12 image (debootstrap --variant=minbase, from Debian's
# own mirror; no container registry is reachable here) for tests that install airlock's .deb
# the way a user would (tests/package_deb.rs).
#
# Usage: scripts/build-debian-image.sh [docker|podman]   (default docker). Prints the image name.
# The rootfs tarball is cached in $AIRLOCK_TEST_STATE/debian/ (~60 MB); the image is imported
# only when the engine lacks it, so a second run takes a fraction of a second.
set -euo pipefail
engine="${1:-docker}"
STATE="${AIRLOCK_TEST_STATE:-$HOME/.cache/airlock-test}"
IMAGE="localhost/airlock-test/debian:bookworm"
MIRROR="${AIRLOCK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
say() { printf 'build-debian-image.sh: %s\n' "$*" >&2; }

if "$engine" image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE"
  exit 0
fi
dir="$STATE/debian"
tarball="$dir/bookworm-minbase.tar"
mkdir -p "$dir" "$STATE/logs"
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null 2>&1 || { say "debootstrap missing: run scripts/install-test-deps.sh"; exit 1; }
  root="$dir/root.tmp"
  rm -rf "$root"
  say "debootstrap bookworm (minbase) from $MIRROR (log: $STATE/logs/debootstrap.log)"
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$STATE/logs/debootstrap.log" 2>&1 \
    || { tail -n 20 "$STATE/logs/debootstrap.log" >&2; exit 1; }
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
  tar -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$root"
fi
say "importing $IMAGE into $engine"
"$engine" import --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$tarball" "$IMAGE" >/dev/null
echo "$IMAGE"
