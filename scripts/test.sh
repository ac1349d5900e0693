#!/usr/bin/env bash
# test.sh — THE test command for airlock (README and .ci/run call exactly this).
#
# Why this exists: airlock's tests run against real components — Docker, Podman, the Secret
# Service (gnome-keyring over D-Bus) and the Linux kernel keyring — which a fresh machine or CI
# does not have running. This script brings them all up, then runs the Rust suite:
#   1. deps     scripts/install-test-deps.sh   (apt packages; instant when installed)
#   2. engines  scripts/start-engines.sh       (dockerd, podman containers.conf, run probes)
#   3. images   scripts/build-test-images.sh   (agent CLIs from npm, checked on the host and
#                                               imported as images; cached)
#      user     scripts/setup-test-user.sh     (an unprivileged user: docker group, rootless
#                                               Podman, the images in its store; cached)
#   4. session  a private D-Bus session with an unlocked, throwaway gnome-keyring, inside a new
#               kernel session keyring (`keyctl session -`); both are probed with a real
#               store/read/delete
#   5. cargo    cargo test --workspace --no-fail-fast --all-targets "$@"; then cargo test --workspace --doc "$@"
# and prints a timing summary per phase.
#
# The Rust tests see (each AIRLOCK_TEST_<COMPONENT>=1 only if that component was verified):
#   AIRLOCK_TEST_DOCKER=1  AIRLOCK_TEST_PODMAN=1  AIRLOCK_TEST_SECRET_SERVICE=1
#   AIRLOCK_TEST_KEYUTILS=1  AIRLOCK_TEST_AGENTS=1 with AIRLOCK_AGENT_BIN_DIR=<node_modules/.bin
#   holding claude, codex, gemini for the host>  CONTAINERS_CONF=<file podman needs on these VMs>
#   AIRLOCK_TEST_IMAGE_ROOT / _USER / _BUSYBOX = image names (present in every enabled engine)
#   AIRLOCK_TEST_USER=<name> an unprivileged user in the docker group with working rootless
#   Podman and the images in its store (scripts/setup-test-user.sh; tests/user_real.rs)
# With CI=true (or AIRLOCK_TEST_STRICT=1) a component that does not come up fails the run loudly;
# otherwise it is reported and its variable left unset, so its tests skip.
#
# Usage: scripts/test.sh [extra cargo test args...]   e.g. scripts/test.sh --test engines -- --nocapture
#        scripts/test.sh --shell    set everything up, then open an interactive shell inside the
#                                   D-Bus + keyring session with all the variables set (debugging).
# Logs: $AIRLOCK_TEST_STATE (default ~/.cache/airlock-test)/logs/. See docs/testing.md.
set -euo pipefail

STATE="${AIRLOCK_TEST_STATE:-$HOME/.cache/airlock-test}"
export AIRLOCK_TEST_STATE="$STATE"
LOG_DIR="$STATE/logs"
STRICT=0
if [ "${CI:-}" = true ] || [ "${AIRLOCK_TEST_STRICT:-0}" = 1 ]; then STRICT=1; fi

say() { echo "test.sh: $*" >&2; }
# component_failed NAME MESSAGE: fatal in strict mode, a warning otherwise.
component_failed() {
  if [ "$STRICT" = 1 ]; then
    say "FAILED: $1 is not working: $2 (CI=true/AIRLOCK_TEST_STRICT=1: not skipping)"
    exit 1
  fi
  say "WARNING: $1 is not working, its tests will be skipped: $2"
}
# timing NAME SECONDS: record one phase's duration for the summary.
timing() { echo "$1 $2" >>"$AIRLOCK_TEST_TIMINGS"; }

# ====================================================================== inner part
# Runs inside dbus-run-session and `keyctl session -` (see the end of this file).
if [ "${1:-}" = __inner ]; then
  shift
  # stdout/stderr back from the session log, where dbus-daemon and the services it starts write.
  exec 1>&4 2>&3 3>&- 4>&-
  t0=$SECONDS

  # --- Secret Service: unlock gnome-keyring, whose keyrings live in a throwaway XDG_DATA_HOME
  # (set by the outer part for this bus, so a daemon D-Bus activates uses it too).
  if printf '%s' airlock-test | gnome-keyring-daemon --unlock --components=secrets \
    >/dev/null 2>>"$LOG_DIR/session.log"; then
    # The daemon claims org.freedesktop.secrets shortly after --unlock returns; wait for it so
    # the first client does not D-Bus-activate a second daemon.
    for _ in $(seq 1 50); do
      dbus-send --session --print-reply --dest=org.freedesktop.DBus / \
        org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null |
        grep -q 'boolean true' && break
      sleep 0.1
    done
    probe_attr="probe-$$-$RANDOM"
    got=""
    for _ in 1 2 3 4 5; do
      if printf '%s' s3cret | secret-tool store --label=airlock-test-probe airlock-test "$probe_attr" \
        2>>"$LOG_DIR/session.log"; then
        got="$(secret-tool lookup airlock-test "$probe_attr" 2>>"$LOG_DIR/session.log" || true)"
        secret-tool clear airlock-test "$probe_attr" 2>>"$LOG_DIR/session.log" || true
        break
      fi
      sleep 0.2
    done
    if [ "$got" = s3cret ]; then
      export AIRLOCK_TEST_SECRET_SERVICE=1
    else
      unset AIRLOCK_TEST_SECRET_SERVICE
      component_failed "Secret Service" "store/lookup through secret-tool failed (log: $LOG_DIR/session.log)"
    fi
  else
    unset AIRLOCK_TEST_SECRET_SERVICE
    component_failed "Secret Service" "gnome-keyring-daemon --unlock failed (log: $LOG_DIR/session.log)"
  fi
  # The tests get the caller's XDG_DATA_HOME back; only the keyring daemon uses the throwaway one.
  if [ -n "${AIRLOCK_ORIG_XDG_DATA_HOME+x}" ]; then
    export XDG_DATA_HOME="$AIRLOCK_ORIG_XDG_DATA_HOME"
  else
    unset XDG_DATA_HOME
  fi
  unset AIRLOCK_ORIG_XDG_DATA_HOME

  # --- kernel keyring: we are in a fresh session keyring; add, read and remove a user key.
  if key="$(keyctl add user airlock-test-probe v @s 2>>"$LOG_DIR/session.log")" &&
    [ "$(keyctl pipe "$key" 2>>"$LOG_DIR/session.log")" = v ] &&
    keyctl unlink "$key" @s >/dev/null 2>>"$LOG_DIR/session.log"; then
    export AIRLOCK_TEST_KEYUTILS=1
  else
    unset AIRLOCK_TEST_KEYUTILS
    component_failed "kernel keyring" "keyctl add/pipe/unlink in a session keyring failed (log: $LOG_DIR/session.log)"
  fi
  timing session $((SECONDS - t0))

  enabled=""
  for v in DOCKER PODMAN SECRET_SERVICE KEYUTILS AGENTS; do
    n="AIRLOCK_TEST_$v"
    [ "${!n:-}" = 1 ] && enabled="$enabled ${v,,}"
  done
  say "components:${enabled:- none}"

  if [ "${1:-}" = --shell ]; then
    say "shell with the test environment (exit to leave); e.g. cargo test --test NAME"
    env | grep -E '^(AIRLOCK_TEST_|CONTAINERS_CONF=)' | grep -v TIMINGS | sort >&2
    exec bash -i </dev/tty
  fi

  # --- the Rust suite
  if [ ! -f Cargo.toml ]; then
    say "no Cargo.toml yet: skipping cargo test"
    exit 0
  fi
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  # A target selection (--test X, --lib, ...) replaces --all-targets, which would otherwise
  # still select every target; doc tests cannot be combined with one, so they are skipped then.
  run_doc=1
  targets=(--all-targets)
  for a in "$@"; do
    [ "$a" = -- ] && break
    case "$a" in
      --test | --test=* | --tests | --lib | --bin | --bin=* | --bins | --example* | --bench* | --all-targets | --doc)
        run_doc=0
        targets=() ;;
    esac
  done
  t0=$SECONDS
  rc=0
  cargo test --workspace --no-fail-fast "${targets[@]}" "$@" || rc=$?
  timing "cargo-test" $((SECONDS - t0))
  [ "$rc" = 0 ] || exit "$rc"
  if [ "$run_doc" = 1 ]; then
    t0=$SECONDS
    cargo test --workspace --doc "$@" || rc=$?
    timing "cargo-test-doc" $((SECONDS - t0))
  else
    say "target selection given: skipping cargo test --doc"
  fi
  exit "$rc"
fi

# ====================================================================== outer part
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p "$LOG_DIR"
AIRLOCK_TEST_TIMINGS="$(mktemp "$STATE/timings.XXXXXX")"
export AIRLOCK_TEST_TIMINGS
KEYRING_HOME=""
T_START=$SECONDS

summary() {
  local rc=$? name secs line=""
  while read -r name secs; do line="$line  $name ${secs}s"; done <"$AIRLOCK_TEST_TIMINGS"
  echo "test.sh timing:$line  | total $((SECONDS - T_START))s$([ "$rc" = 0 ] || echo "  (exit $rc)")" >&2
  rm -f "$AIRLOCK_TEST_TIMINGS"
  [ -z "$KEYRING_HOME" ] || rm -rf "$KEYRING_HOME"
}
trap summary EXIT

t0=$SECONDS
bash scripts/install-test-deps.sh
timing deps $((SECONDS - t0))

t0=$SECONDS
# start-engines.sh itself fails in strict mode when an engine is down; otherwise it only leaves
# that engine's variable unset.
exports="$(bash scripts/start-engines.sh)"
eval "$exports"
timing engines $((SECONDS - t0))

t0=$SECONDS
engines=()
[ "${AIRLOCK_TEST_DOCKER:-}" = 1 ] && engines+=(docker)
[ "${AIRLOCK_TEST_PODMAN:-}" = 1 ] && engines+=(podman)
# Also with no engine: the script then only installs and checks the agent CLIs for the host.
if AIRLOCK_TEST_ENGINES="${engines[*]}" bash scripts/build-test-images.sh; then
  if [ "${#engines[@]}" -gt 0 ]; then
    export AIRLOCK_TEST_IMAGE_ROOT="localhost/airlock-test/agents:root"
    export AIRLOCK_TEST_IMAGE_USER="localhost/airlock-test/agents:user"
    export AIRLOCK_TEST_IMAGE_BUSYBOX="localhost/airlock-test/busybox:latest"
  fi
  if [ -s "$STATE/agent-bin-dir" ]; then
    AIRLOCK_AGENT_BIN_DIR="$(cat "$STATE/agent-bin-dir")"
    export AIRLOCK_AGENT_BIN_DIR AIRLOCK_TEST_AGENTS=1
  fi
else
  component_failed "agent CLIs / test images" "scripts/build-test-images.sh failed (log: $LOG_DIR/build*.log)"
  # Engine tests need the images: without them, skip those tests too.
  unset AIRLOCK_TEST_DOCKER AIRLOCK_TEST_PODMAN
fi
timing images $((SECONDS - t0))

t0=$SECONDS
# An unprivileged user in the docker group with rootless Podman and the test images in its own
# store, for tests/user_real.rs (needs the images above, and root).
if [ -n "${AIRLOCK_TEST_IMAGE_ROOT:-}" ]; then
  if user_exports="$(AIRLOCK_TEST_ENGINES="${engines[*]}" bash scripts/setup-test-user.sh)"; then
    eval "$user_exports"
  else
    eval "$user_exports"
    component_failed "test user" "scripts/setup-test-user.sh failed (log: $LOG_DIR/test-user.log)"
  fi
fi
timing user $((SECONDS - t0))

# A throwaway keyring directory per run, so the unlock password always matches and no secret
# from an earlier run survives. XDG_DATA_HOME is set for the whole bus (a D-Bus-activated
# gnome-keyring-daemon inherits dbus-daemon's environment); the inner part restores the caller's
# value before running cargo.
KEYRING_HOME="$(mktemp -d "$STATE/keyring.XXXXXX")"
if [ -n "${XDG_DATA_HOME+x}" ]; then export AIRLOCK_ORIG_XDG_DATA_HOME="$XDG_DATA_HOME"; fi
: >>"$LOG_DIR/session.log"
# Tests get no stdin (as in CI), except for --shell.
STDIN=/dev/null
[ "${1:-}" = --shell ] && STDIN=/dev/tty
rc=0
XDG_DATA_HOME="$KEYRING_HOME" dbus-run-session -- \
  keyctl session - bash "${BASH_SOURCE[0]}" __inner "$@" \
  3>&2 4>&1 >>"$LOG_DIR/session.log" 2>&1 <"$STDIN" || rc=$?
exit "$rc"
