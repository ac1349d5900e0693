#!/usr/bin/env bash
# start-engines.sh — make sure Docker and Podman can really run containers on this machine.
#
# Why this exists: the machines have no init system running dockerd, and Podman needs settings
# these VMs require (see shared/FIELD-NOTES.md §5). airlock's tests drive both engines through
# their CLIs, so before they run:
#   * dockerd is started in the background (detached, log in $STATE/logs/dockerd.log) unless
#     `docker info` already answers; we wait for it, bounded by $AIRLOCK_TEST_ENGINE_TIMEOUT s.
#   * a containers.conf is written to $STATE/containers.conf:
#       default_ulimits nofile/nproc=1024 — Podman otherwise asks runc for nofile=1048576, above
#         this VM's hard limit, and every run fails with "error setting rlimit type 7";
#       runtime = "runc" — crun fails on the hybrid cgroup v1 + v2 layout these VMs have.
#   * each engine must *run* a container (a 1 MB busybox probe image, default network), not just
#     answer `info`. If Docker's overlay2 cannot run containers, dockerd is restarted with the vfs
#     storage driver and the choice is remembered in $STATE/docker-storage-driver.
#
# Usage: the script prints `export` lines on stdout (all diagnostics go to stderr), so do
#     eval "$(scripts/start-engines.sh)"
# which sets CONTAINERS_CONF, AIRLOCK_TEST_STATE, and AIRLOCK_TEST_DOCKER=1 / AIRLOCK_TEST_PODMAN=1
# for each engine that passed its probe. It is not meant to be sourced (it uses set -e/exit).
#   scripts/start-engines.sh --stop   stops the dockerd this script started (by its pid file).
# Failing engine: with CI=true (or AIRLOCK_TEST_STRICT=1) the script exits non-zero; otherwise it
# warns and leaves that engine's AIRLOCK_TEST_* variable unset so its tests skip.
# Idempotent: a second run finds dockerd up and the probe image present (~1 s in all).
set -euo pipefail

STATE="${AIRLOCK_TEST_STATE:-$HOME/.cache/airlock-test}"
LOG_DIR="$STATE/logs"
TIMEOUT="${AIRLOCK_TEST_ENGINE_TIMEOUT:-60}"
PROBE_IMAGE="localhost/airlock-test/probe:latest"
DOCKERD_PID="$STATE/dockerd.pid"
mkdir -p "$LOG_DIR"

STRICT=0
if [ "${CI:-}" = true ] || [ "${AIRLOCK_TEST_STRICT:-0}" = 1 ]; then STRICT=1; fi

say() { echo "start-engines: $*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  if [ -t 0 ]; then SUDO=(sudo); else SUDO=(sudo -n); fi
fi

# ---------------------------------------------------------------- --stop
if [ "${1:-}" = --stop ]; then
  if [ -f "$DOCKERD_PID" ] && pid="$(cat "$DOCKERD_PID")" && kill -0 "$pid" 2>/dev/null; then
    "${SUDO[@]}" kill "$pid"
    for _ in $(seq 1 "$TIMEOUT"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    say "stopped dockerd (pid $pid)"
  else
    say "no dockerd started by this script is running"
  fi
  rm -f "$DOCKERD_PID"
  exit 0
fi

# One start at a time per state dir (several terminals or engineers may share a machine).
exec 9>"$STATE/engines.lock"
flock 9

# ---------------------------------------------------------------- probe image
# A busybox-only rootfs, streamed into `docker import` / `podman import` when the image is missing.
probe_tar() {
  local d
  d="$(mktemp -d)"
  mkdir -p "$d/bin"
  cp /bin/busybox "$d/bin/busybox"
  ln -s busybox "$d/bin/sh"
  ln -s busybox "$d/bin/true"
  tar -C "$d" --numeric-owner -cf - .
  rm -rf "$d"
}

# probe ENGINE: import the probe image if needed, then run a container on the default network.
probe() {
  local eng="$1" out
  if ! "$eng" image inspect "$PROBE_IMAGE" >/dev/null 2>&1; then
    out="$(probe_tar | "$eng" import -c 'ENV PATH=/bin' - "$PROBE_IMAGE" 2>&1)" || {
      echo "$out" >&2; return 1; }
  fi
  out="$("$eng" run --rm "$PROBE_IMAGE" sh -c 'echo airlock-probe-ok' 2>&1)" || true
  if [ "$out" != airlock-probe-ok ]; then
    echo "$out" >&2
    return 1
  fi
}

# ---------------------------------------------------------------- docker
docker_up() { docker info >/dev/null 2>&1; }

wait_docker() {
  for _ in $(seq 1 "$TIMEOUT"); do
    docker_up && return 0
    # dockerd died: no point waiting for the rest of the timeout.
    if [ -f "$DOCKERD_PID" ] && ! kill -0 "$(cat "$DOCKERD_PID")" 2>/dev/null; then return 1; fi
    sleep 1
  done
  return 1
}

start_dockerd() {
  local driver="${1:-}" args=()
  [ -n "$driver" ] && args+=(--storage-driver "$driver")
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 && [ -z "$driver" ]; then
    "${SUDO[@]}" systemctl start docker >/dev/null 2>&1 && wait_docker && return 0
  fi
  command -v dockerd >/dev/null 2>&1 || { say "dockerd not installed (run scripts/install-test-deps.sh)"; return 1; }
  if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
    say "docker is not running and starting dockerd needs root (no sudo)"; return 1
  fi
  echo "=== $(date -u +%FT%TZ) starting dockerd ${args[*]}" >>"$LOG_DIR/dockerd.log"
  # setsid: detach from our process group so Ctrl-C on the test run does not kill the daemon.
  # 9>&-: the daemon must not inherit (and so hold forever) our lock file descriptor.
  "${SUDO[@]}" setsid dockerd "${args[@]}" </dev/null >>"$LOG_DIR/dockerd.log" 2>&1 9>&- &
  echo $! >"$DOCKERD_PID"
  wait_docker
}

stop_our_dockerd() {
  [ -f "$DOCKERD_PID" ] || return 0
  local pid
  pid="$(cat "$DOCKERD_PID")"
  if kill -0 "$pid" 2>/dev/null; then
    "${SUDO[@]}" kill "$pid" || true
    for _ in $(seq 1 "$TIMEOUT"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$DOCKERD_PID"
}

DOCKER_OK=0
docker_setup() {
  command -v docker >/dev/null 2>&1 || { say "docker CLI not found"; return 1; }
  local driver=""
  [ -f "$STATE/docker-storage-driver" ] && driver="$(cat "$STATE/docker-storage-driver")"
  driver="${AIRLOCK_TEST_DOCKER_STORAGE_DRIVER:-$driver}"
  if ! docker_up; then
    start_dockerd "$driver" || { say "dockerd did not come up within ${TIMEOUT}s (log: $LOG_DIR/dockerd.log)"; return 1; }
  fi
  probe docker 2>>"$LOG_DIR/docker-probe.log" && return 0
  # The run failed. If it is our daemon on overlay, retry once on vfs (slow but works everywhere).
  local cur
  cur="$(docker info -f '{{.Driver}}' 2>/dev/null || true)"
  if [ "$cur" != vfs ] && [ -f "$DOCKERD_PID" ]; then
    say "docker could not run a container on storage driver '$cur'; retrying with vfs (see $LOG_DIR/docker-probe.log)"
    stop_our_dockerd
    start_dockerd vfs || { say "dockerd (vfs) did not come up (log: $LOG_DIR/dockerd.log)"; return 1; }
    if probe docker 2>>"$LOG_DIR/docker-probe.log"; then
      echo vfs >"$STATE/docker-storage-driver"
      return 0
    fi
  fi
  say "docker cannot run a container (log: $LOG_DIR/docker-probe.log, $LOG_DIR/dockerd.log)"
  tail -n 5 "$LOG_DIR/docker-probe.log" >&2 || true
  return 1
}

# ---------------------------------------------------------------- podman
PODMAN_OK=0
CONF="$STATE/containers.conf"
podman_setup() {
  command -v podman >/dev/null 2>&1 || { say "podman not found"; return 1; }
  local want
  want='# Written by scripts/start-engines.sh; see docs/testing.md and FIELD-NOTES §5.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"'
  if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$want" ]; then
    printf '%s\n' "$want" >"$CONF.tmp" && mv "$CONF.tmp" "$CONF"
  fi
  export CONTAINERS_CONF="$CONF"
  podman info >/dev/null 2>>"$LOG_DIR/podman-probe.log" || {
    say "podman info failed (log: $LOG_DIR/podman-probe.log)"; return 1; }
  probe podman 2>>"$LOG_DIR/podman-probe.log" || {
    say "podman cannot run a container (log: $LOG_DIR/podman-probe.log)"
    tail -n 5 "$LOG_DIR/podman-probe.log" >&2 || true
    return 1; }
}

failed=()
if docker_setup; then DOCKER_OK=1; else failed+=(docker); fi
# A single-node swarm for tests/swarm_real.rs (`airlock swarm`). Idempotent; never `swarm leave`
# (other users of this daemon may have services). The join token it prints is dropped.
if [ "$DOCKER_OK" = 1 ] && [ "$(docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = inactive ]; then
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null 2>>"$LOG_DIR/docker-swarm.log" \
    || say "docker swarm init failed (log: $LOG_DIR/docker-swarm.log); tests/swarm_real.rs will try again"
fi
if podman_setup; then PODMAN_OK=1; else failed+=(podman); fi

printf 'export AIRLOCK_TEST_STATE=%q\n' "$STATE"
printf 'export CONTAINERS_CONF=%q\n' "$CONF"
if [ "$DOCKER_OK" = 1 ]; then echo "export AIRLOCK_TEST_DOCKER=1"; else echo "unset AIRLOCK_TEST_DOCKER"; fi
if [ "$PODMAN_OK" = 1 ]; then echo "export AIRLOCK_TEST_PODMAN=1"; else echo "unset AIRLOCK_TEST_PODMAN"; fi

if [ "${#failed[@]}" -gt 0 ]; then
  if [ "$STRICT" = 1 ]; then
    say "FAILED: ${failed[*]} not working (CI=true/AIRLOCK_TEST_STRICT=1: not skipping)"
    exit 1
  fi
  say "WARNING: ${failed[*]} not working; their tests will be skipped"
fi
