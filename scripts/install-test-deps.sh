#!/usr/bin/env bash
# install-test-deps.sh — install the real system components airlock's test suite runs against.
#
# Why this exists: airlock injects credentials into Docker/Podman sandboxes and stores them in
# the Secret Service (gnome-keyring over D-Bus) or the kernel keyring. Its tests use the real
# engines and keyrings, and the machines (developers' and CI's) start without them: a fresh
# Debian 12 machine has only a Docker *client*. This script installs, from Debian's packages:
#   docker.io (dockerd, containerd, runc, tini)  podman + runc + netavark + catatonit + uidmap
#   + slirp4netns (rootless Podman for the unprivileged test user)
#   gnome-keyring + dbus + libsecret-tools (secret-tool, used to check the keyring works)
#   keyutils (keyctl)  busybox-static (the test images' userland)  nodejs/npm if missing
#
# Idempotent: every package is checked with dpkg first; `apt-get update` and `apt-get install`
# run only when something is missing, so a second run takes well under a second.
# Needs root for the install; uses sudo when not root (non-interactively without a terminal).
# Quiet unless something fails; apt's output goes to $AIRLOCK_TEST_STATE/logs/apt.log.
set -euo pipefail

STATE="${AIRLOCK_TEST_STATE:-$HOME/.cache/airlock-test}"
LOG_DIR="$STATE/logs"

# --no-install-recommends keeps the install small and non-interactive (docker.io recommends
# needrestart, gnome-keyring recommends PAM modules); everything the tests need is listed.
PKGS=(
  docker.io containerd runc iptables tini
  podman conmon netavark catatonit uidmap
  # rootless Podman as the test user (scripts/setup-test-user.sh): its default network on 4.3
  slirp4netns
  gnome-keyring dbus dbus-bin libsecret-tools
  keyutils
  # the compose test (tests/engine_cli.rs) runs the real docker-compose; bench/run.sh uses hyperfine
  docker-compose hyperfine
  busybox-static
  # build-test-images.sh: ldd (libc-bin), tar, sha256sum (coreutils), xz for npm tarballs
  libc-bin tar coreutils xz-utils ca-certificates
  # tests/package_deb.rs installs the .deb into a clean Debian container built with debootstrap
  debootstrap
  # bench/proxy.sh: nginx is the proxy baseline, wrk the load
  nginx wrk openssl curl
  # tests/secretref.rs: secret references resolved through real secret managers: pass (with
  # gnupg, a throwaway GNUPGHOME) and age for an encrypted-file flow (sops is not in bookworm)
  pass gnupg age
)

die() { echo "install-test-deps: $*" >&2; exit 1; }

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for p in "${PKGS[@]}"; do
  is_installed "$p" || missing+=("$p")
done
# Node.js (>= 20, for gemini-cli and npm) comes from the machine's own apt source (NodeSource
# here, which bundles npm). Debian's own nodejs is 18: too old, so only install it if absent.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs)
fi

# tests/cluster_k8s.rs checks the manifests with kubectl (offline: `kubectl label --local`).
# Any kubectl will do; Debian's is kubernetes-client (1.20).
if ! command -v kubectl >/dev/null 2>&1; then
  missing+=(kubernetes-client)
fi

if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing[*]}"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo; as root run: apt-get install ${missing[*]}"
    if [ -t 0 ]; then SUDO=(sudo); else SUDO=(sudo -n); fi
  fi
  mkdir -p "$LOG_DIR"
  log="$LOG_DIR/apt.log"
  echo "install-test-deps: installing ${missing[*]} (log: $log)" >&2
  {
    echo "=== $(date -u +%FT%TZ) apt-get update"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    echo "=== $(date -u +%FT%TZ) apt-get install ${missing[*]}"
    # docker.io's postinst tries to start the service; without an init system (or with a
    # policy-rc.d that denies it, as on these VMs) that only warns: start-engines.sh starts dockerd.
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "${missing[@]}"
  } >>"$log" 2>&1 || { tail -n 40 "$log" >&2; die "apt-get failed (full log: $log)"; }
  for p in "${missing[@]}"; do
    [ "$p" = nodejs ] && continue
    is_installed "$p" || die "package $p is still not installed (log: $log)"
  done
fi

# Version floor checks that a package name alone does not guarantee.
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
[ "$node_major" -ge 20 ] || die "Node.js >= 20 needed (gemini-cli), found $(node --version 2>/dev/null || echo none)"
command -v npm >/dev/null 2>&1 || die "npm not found"
for c in dockerd docker podman runc keyctl dbus-run-session gnome-keyring-daemon secret-tool busybox ldd; do
  command -v "$c" >/dev/null 2>&1 || die "$c not on PATH after install"
done

# cargo-deb (crates.io) builds the .deb that tests/package_deb.rs installs; once, ~2 min to compile.
if ! cargo deb --version >/dev/null 2>&1; then
  mkdir -p "$LOG_DIR"
  echo "install-test-deps: installing cargo-deb from crates.io (log: $LOG_DIR/cargo-deb.log)" >&2
  cargo install --locked cargo-deb >"$LOG_DIR/cargo-deb.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/cargo-deb.log" >&2; die "cargo install cargo-deb failed"; }
fi

# The Dev Containers CLI (npm) for tests/cluster_devcontainer.rs, into the test state dir
# (tests find it there, or through AIRLOCK_TEST_DEVCONTAINER).
DEVCONTAINER_CLI_VERSION=0.89.0
dc_dir="$STATE/npm-devcontainers/cli-$DEVCONTAINER_CLI_VERSION"
if [ ! -f "$dc_dir/.complete" ]; then
  mkdir -p "$LOG_DIR"
  rm -rf "$dc_dir.tmp" && mkdir -p "$dc_dir.tmp"
  npm install --prefix "$dc_dir.tmp" --ignore-scripts --no-save --loglevel=error \
    "@devcontainers/cli@$DEVCONTAINER_CLI_VERSION" >"$LOG_DIR/devcontainer-cli.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/devcontainer-cli.log" >&2; die "npm install @devcontainers/cli failed"; }
  rm -rf "$dc_dir" && mv "$dc_dir.tmp" "$dc_dir" && touch "$dc_dir/.complete"
fi
