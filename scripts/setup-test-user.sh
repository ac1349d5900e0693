#!/usr/bin/env bash
# setup-test-user.sh — an ordinary, unprivileged user for tests/user_real.rs.
#
# Why this exists: most people run airlock as themselves, not as root: in the `docker` group, or
# with rootless Podman, against images whose user is not their uid. tests/user_real.rs runs the
# built airlock as such a user. This script (called by scripts/start-engines.sh, as root) makes
# one on a fresh machine:
#   * user $AIRLOCK_TEST_USER (default airlock-tester, uid/gid $AIRLOCK_TEST_USER_UID, default
#     4100), home /home/<user>, a user-private group, member of `docker` (Docker via the group);
#   * subordinate uid/gid ranges (/etc/subuid, /etc/subgid: 65536 ids from 4100000 + 65536·k)
#     for rootless Podman's user namespace (newuidmap/newgidmap from Debian's uidmap);
#   * its XDG_RUNTIME_DIR /run/user/<uid> (a tmpfs, 0700, its own): without systemd-logind
#     nobody else mounts it;
#   * rootless Podman configuration ~/.config/containers/containers.conf: the settings these VMs
#     need (FIELD-NOTES §5: ulimits, runc) plus cgroup_manager = cgroupfs (no systemd user
#     session) and events_logger = file (no journald); storage.conf: the native overlay driver;
#   * the test images (agents:root, agents:user, busybox) copied into its rootless Podman store
#     (`podman save` as root | `podman load` as the user), only when its copy's image id differs.
# Then it proves the user can run a container with rootless Podman and with Docker.
#
# AIRLOCK_TEST_ENGINES (default "docker podman") names the engines to set up and check.
# Output: `export` lines on stdout (diagnostics on stderr) — AIRLOCK_TEST_USER=<name> when the
# user works with both engines that are up. Idempotent: a second run checks and copies nothing
# (about 1 s). Needs root (or sudo); without it the variable stays unset and the tests skip.
set -euo pipefail

STATE="${AIRLOCK_TEST_STATE:-$HOME/.cache/airlock-test}"
LOG_DIR="$STATE/logs"
LOG="$LOG_DIR/test-user.log"
NAME="${AIRLOCK_TEST_USER:-airlock-tester}"
UID_WANT="${AIRLOCK_TEST_USER_UID:-4100}"
IMAGES=(localhost/airlock-test/agents:root localhost/airlock-test/agents:user
  localhost/airlock-test/busybox:latest)
mkdir -p "$LOG_DIR"

say() { echo "setup-test-user: $*" >&2; }
fail() { say "$*"; echo "unset AIRLOCK_TEST_USER"; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  # as the other scripts: sudo when not root (non-interactively without a terminal)
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    exec sudo -n --preserve-env=AIRLOCK_TEST_STATE,AIRLOCK_TEST_USER,AIRLOCK_TEST_USER_UID,AIRLOCK_TEST_ENGINES,CONTAINERS_CONF \
      AIRLOCK_TEST_STATE="$STATE" bash "${BASH_SOURCE[0]}" "$@"
  fi
  fail "needs root (or sudo) to create the test user; tests/user_real.rs will skip"
fi
for c in useradd usermod setpriv newuidmap newgidmap; do
  command -v "$c" >/dev/null 2>&1 || fail "$c not found (scripts/install-test-deps.sh installs uidmap)"
done

# ---------------------------------------------------------------- the user
if ! getent passwd "$NAME" >/dev/null; then
  groupadd -g "$UID_WANT" "$NAME" 2>>"$LOG" || groupadd "$NAME" 2>>"$LOG"
  useradd -u "$UID_WANT" -g "$NAME" -m -d "/home/$NAME" -s /bin/sh "$NAME" 2>>"$LOG" \
    || fail "useradd $NAME failed (log: $LOG)"
fi
uid="$(id -u "$NAME")"
gid="$(id -g "$NAME")"
home="$(getent passwd "$NAME" | cut -d: -f6)"
if getent group docker >/dev/null && ! id -nG "$NAME" | tr ' ' '\n' | grep -qx docker; then
  usermod -aG docker "$NAME"
fi
# Subordinate ids: one range of 65536 per user, past every range already given out.
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  if ! grep -q "^$NAME:" "$f"; then
    start=4100000
    while read -r line; do
      s="$(echo "$line" | cut -d: -f2)"; n="$(echo "$line" | cut -d: -f3)"
      [ -n "$s" ] && [ -n "$n" ] && [ $((s + n)) -gt "$start" ] && start=$((s + n))
    done <"$f"
    echo "$NAME:$start:65536" >>"$f"
  fi
done
# Rootless networking (slirp4netns) opens /dev/net/tun, which udev makes 0666 on a normal
# install (50-udev-default.rules); these VMs run no udev and leave it 0600 root.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then chmod 0666 /dev/net/tun; fi
# XDG_RUNTIME_DIR: a tmpfs of its own, as systemd-logind mounts it (airlock keeps sandbox
# secrets there and warns when it is not a tmpfs).
run_dir="/run/user/$uid"
mkdir -p "$run_dir"
if ! mountpoint -q "$run_dir"; then
  mount -t tmpfs -o "mode=0700,uid=$uid,gid=$gid,size=64m,nosuid,nodev" tmpfs "$run_dir" \
    || fail "could not mount a tmpfs on $run_dir"
fi
chown "$uid:$gid" "$run_dir"
chmod 0700 "$run_dir"

as_user() {
  setpriv --reuid "$uid" --regid "$gid" --init-groups -- \
    env -i HOME="$home" USER="$NAME" LOGNAME="$NAME" XDG_RUNTIME_DIR="$run_dir" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

# ---------------------------------------------------------------- rootless Podman
conf_dir="$home/.config/containers"
want='# Written by scripts/setup-test-user.sh; see docs/testing.md ("The test user").
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"'
if [ ! -f "$conf_dir/containers.conf" ] || [ "$(cat "$conf_dir/containers.conf")" != "$want" ]; then
  as_user mkdir -p "$conf_dir"
  printf '%s\n' "$want" | as_user sh -c "cat > '$conf_dir/containers.conf.tmp' && mv '$conf_dir/containers.conf.tmp' '$conf_dir/containers.conf'"
  # A changed configuration (or new subordinate ids) needs a fresh rootless namespace.
  as_user podman system migrate >>"$LOG" 2>&1 || true
fi
# Native overlay in the user namespace (kernel >= 5.13): without this Podman 4.3 falls back to
# vfs, which copies the whole 745 MB image for every container (seconds per start, GBs of disk).
want_storage='# Written by scripts/setup-test-user.sh.
[storage]
driver = "overlay"'
if [ ! -f "$conf_dir/storage.conf" ] || [ "$(cat "$conf_dir/storage.conf")" != "$want_storage" ]; then
  as_user mkdir -p "$conf_dir"
  printf '%s\n' "$want_storage" | as_user sh -c "cat > '$conf_dir/storage.conf.tmp' && mv '$conf_dir/storage.conf.tmp' '$conf_dir/storage.conf'"
  # A store of another driver cannot be opened with this one: start empty (images copied below).
  as_user podman system reset -f >>"$LOG" 2>&1 || true
fi

ok=1
ENGINES=" ${AIRLOCK_TEST_ENGINES-docker podman} "
if [[ "$ENGINES" == *" podman "* ]]; then
  for img in "${IMAGES[@]}"; do
    want_id="$(podman image inspect -f '{{.Id}}' "$img" 2>/dev/null)" || continue
    have_id="$(as_user podman image inspect -f '{{.Id}}' "$img" 2>/dev/null || true)"
    if [ "$want_id" != "$have_id" ]; then
      say "copying $img into $NAME's rootless Podman store"
      as_user podman rmi -f "$img" >>"$LOG" 2>&1 || true
      if ! podman save "$img" 2>>"$LOG" | as_user podman load >>"$LOG" 2>&1; then
        say "podman load of $img as $NAME failed (log: $LOG)"; ok=0
      fi
    fi
  done
  out="$(as_user podman run --rm localhost/airlock-test/busybox:latest id -u 2>&1)" || true
  if [ "$out" != 0 ]; then
    echo "$out" >>"$LOG"
    say "rootless Podman cannot run a container as $NAME (log: $LOG)"; ok=0
  fi
fi
if [[ "$ENGINES" == *" docker "* ]]; then
  out="$(as_user docker run --rm localhost/airlock-test/busybox:latest id -u 2>&1)" || true
  if [ "$out" != 0 ]; then
    echo "$out" >>"$LOG"
    say "$NAME cannot run a Docker container through the docker group (log: $LOG)"; ok=0
  fi
fi
[ "$ok" = 1 ] || fail "the test user $NAME is not usable"
printf 'export AIRLOCK_TEST_USER=%q\n' "$NAME"
