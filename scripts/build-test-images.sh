#!/usr/bin/env bash
# build-test-images.sh — build the container images airlock's engine tests run, with no registry.
#
# Why this exists: tests must check that credentials injected by airlock are accepted by the
# *genuine* agent CLIs inside a real container, but no container registry is reachable from
# these machines. So the images are assembled from parts we can get: the agent CLIs from npm
# (pinned versions below, `npm install --ignore-scripts` into a cache dir outside the repo), the
# host's busybox-static as the userland, the host's glibc (found with ldd) for the claude binary
# and for node (gemini-cli is a node bundle), and codex's static musl binary. The rootfs is
# `docker import`ed / `podman import`ed with `--change` lines giving the image config.
#
# Images (each engine that answers `info` gets all three):
#   localhost/airlock-test/agents:root   root, HOME=/root, ENTRYPOINT test-entrypoint (prints the
#       marker line `airlock-test-entrypoint` to stderr, then execs "$@"),
#       CMD ["sh","-c","echo default-cmd"] — to check that a wrapper keeps the image's own
#       entrypoint and command.
#   localhost/airlock-test/agents:user   same rootfs and entrypoint/cmd; USER 1000:1000 (`agent`),
#       HOME=/home/agent, WORKDIR /workspace (owned by 1000).
#   localhost/airlock-test/busybox:latest  busybox + /etc/passwd only, CMD ["sh"], for fast tests.
# Both agent images contain: claude, codex, gemini, node, busybox applets (sh, env, id, ...).
# The same CLIs are made runnable on the host too ($STATE/npm/.../node_modules/.bin, its path
# written to $STATE/agent-bin-dir) for tests that run them without a container; this part runs
# even with no engine.
#
# Each image carries the label org.airlock.test.stamp = a hash of this script, the pinned
# versions and the host packages copied in (libc6, libstdc++6, busybox-static, nodejs). An image
# whose label matches is not rebuilt, so a second run takes about a second. After a (re)build,
# each image is verified offline (--network none): claude --version, claude auth status
# (logged out: exit 1; with a fake CLAUDE_CODE_OAUTH_TOKEN: loggedIn true), codex login status
# (exit 1, "Not logged in"), gemini --version, uid/HOME/workdir, entrypoint marker, default CMD.
#
# Usage: scripts/build-test-images.sh [docker] [podman]   (default: AIRLOCK_TEST_ENGINES="docker
#   podman" if set — empty means host agents only — else every engine whose `info` answers).
#   AIRLOCK_TEST_REBUILD=1 forces a rebuild.
# State and logs: $AIRLOCK_TEST_STATE (default ~/.cache/airlock-test): npm/, build/, logs/build.log.
set -euo pipefail

CLAUDE_VERSION=2.1.197
CODEX_VERSION=0.169.0
GEMINI_VERSION=0.61.0

IMAGE_ROOT="localhost/airlock-test/agents:root"
IMAGE_USER="localhost/airlock-test/agents:user"
IMAGE_BUSYBOX="localhost/airlock-test/busybox:latest"
LABEL=org.airlock.test.stamp

STATE="${AIRLOCK_TEST_STATE:-$HOME/.cache/airlock-test}"
LOG_DIR="$STATE/logs"
LOG="$LOG_DIR/build.log"
mkdir -p "$LOG_DIR"
# Podman on these VMs needs the containers.conf that start-engines.sh writes.
if [ -z "${CONTAINERS_CONF:-}" ] && [ -f "$STATE/containers.conf" ]; then
  export CONTAINERS_CONF="$STATE/containers.conf"
fi
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

say() { echo "build-test-images: $*" >&2; }
die() { say "$*"; exit 1; }
# run CMD...: append its output to the build log; on failure show the log's tail and stop.
run() {
  local t0=$SECONDS
  echo "+ $*" >>"$LOG"
  "$@" >>"$LOG" 2>&1 || { local rc=$?; tail -n 30 "$LOG" >&2; die "failed ($rc): $* (log: $LOG)"; }
  echo "  ($((SECONDS - t0)) s)" >>"$LOG"
}

# One build at a time per state dir (several engineers or terminals may share a machine).
exec 9>"$STATE/build.lock"
flock 9

# ------------------------------------------------------------------ which engines
# Arguments, else $AIRLOCK_TEST_ENGINES (set but empty = no engine: host agents only), else every
# engine whose `info` answers.
engines=("$@")
if [ "${#engines[@]}" -eq 0 ]; then
  if [ -n "${AIRLOCK_TEST_ENGINES+x}" ]; then
    read -r -a engines <<<"$AIRLOCK_TEST_ENGINES" || true
  else
    for e in docker podman; do
      command -v "$e" >/dev/null 2>&1 && "$e" info >/dev/null 2>&1 && engines+=("$e")
    done
  fi
fi

# ------------------------------------------------------------------ npm packages
NPM_DIR="$STATE/npm/claude-$CLAUDE_VERSION-codex-$CODEX_VERSION-gemini-$GEMINI_VERSION"
CLAUDE_BIN="$NPM_DIR/node_modules/@anthropic-ai/claude-code-linux-x64/claude"
CODEX_BIN="$NPM_DIR/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"
GEMINI_PKG="$NPM_DIR/node_modules/@google/gemini-cli"
AGENT_BIN_DIR="$NPM_DIR/node_modules/.bin"
if [ ! -f "$NPM_DIR/.complete" ]; then
  say "installing agent CLIs from npm (claude-code $CLAUDE_VERSION, codex $CODEX_VERSION, gemini-cli $GEMINI_VERSION)"
  rm -rf "$NPM_DIR.tmp"
  mkdir -p "$NPM_DIR.tmp"
  # --ignore-scripts: no postinstall downloads (nothing outside the registry is reachable); the
  # platform binaries come as ordinary optional dependencies.
  run npm install --prefix "$NPM_DIR.tmp" --ignore-scripts --no-save --loglevel=error \
    "@anthropic-ai/claude-code@$CLAUDE_VERSION" "@openai/codex@$CODEX_VERSION" \
    "@google/gemini-cli@$GEMINI_VERSION"
  for f in "${CLAUDE_BIN/#$NPM_DIR/$NPM_DIR.tmp}" "${CODEX_BIN/#$NPM_DIR/$NPM_DIR.tmp}" \
    "${GEMINI_PKG/#$NPM_DIR/$NPM_DIR.tmp}/bundle/gemini.js"; do
    [ -e "$f" ] || die "npm install did not produce $f (log: $LOG)"
  done
  rm -rf "$NPM_DIR"
  mv "$NPM_DIR.tmp" "$NPM_DIR"
  touch "$NPM_DIR/.complete"
  # Drop npm dirs of other (older) pinned versions.
  for d in "$STATE"/npm/*; do
    [ "$d" = "$NPM_DIR" ] || rm -rf "$d"
  done
fi

# ------------------------------------------------------------------ agents on the host
# Tests that run the CLIs directly (no container) use $AIRLOCK_AGENT_BIN_DIR = node_modules/.bin.
# Claude Code's `bin/claude.exe` is a stub that its postinstall (skipped by --ignore-scripts)
# replaces with the platform binary; run just that script: it only links a local file.
rm -f "$STATE/agent-bin-dir"
CLAUDE_PKG="$NPM_DIR/node_modules/@anthropic-ai/claude-code"
if [ "$(stat -c %s "$CLAUDE_PKG/bin/claude.exe")" -lt 100000 ]; then
  (cd "$CLAUDE_PKG" && run node install.cjs)
fi
# Checked once per node version (gemini --version alone takes ~3 s).
if [ "$(cat "$NPM_DIR/.host-verified" 2>/dev/null)" != "$(node --version)" ]; then
  vhome="$(mktemp -d)"
  for c in "claude:$CLAUDE_VERSION" "codex:$CODEX_VERSION" "gemini:$GEMINI_VERSION"; do
    out="$(cd "$vhome" && HOME="$vhome" "$AGENT_BIN_DIR/${c%%:*}" --version 2>&1)" || true
    case "$out" in
      *"${c#*:}"*) ;;
      *) rm -rf "$vhome"; die "$AGENT_BIN_DIR/${c%%:*} --version printed: $out" ;;
    esac
  done
  rm -rf "$vhome"
  node --version >"$NPM_DIR/.host-verified"
fi
echo "$AGENT_BIN_DIR" >"$STATE/agent-bin-dir"

[ "${#engines[@]}" -gt 0 ] || exit 0

# ------------------------------------------------------------------ stamp
host_pkgs="$(dpkg-query -W -f='${Package}=${Version}\n' libc6 libstdc++6 libgcc-s1 busybox-static nodejs 2>/dev/null || true)"
STAMP="$(
  {
    cat "${BASH_SOURCE[0]}"
    echo "$CLAUDE_VERSION $CODEX_VERSION $GEMINI_VERSION"
    echo "$host_pkgs"
    node --version 2>/dev/null || true
  } | sha256sum | cut -c1-16
)"

image_stamp() { # ENGINE IMAGE
  "$1" image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$2" 2>/dev/null || true
}

todo=() # "engine image" pairs to build
for e in "${engines[@]}"; do
  for img in "$IMAGE_BUSYBOX" "$IMAGE_ROOT" "$IMAGE_USER"; do
    if [ "${AIRLOCK_TEST_REBUILD:-0}" = 1 ] || [ "$(image_stamp "$e" "$img")" != "$STAMP" ]; then
      todo+=("$e $img")
    fi
  done
done
[ "${#todo[@]}" -eq 0 ] && exit 0
echo "=== $(date -u +%FT%TZ) build stamp $STAMP: ${todo[*]}" >>"$LOG"

need_agents=0
for t in "${todo[@]}"; do
  case "$t" in *agents:*) need_agents=1 ;; esac
done

BUILD="$STATE/build"
rm -rf "$BUILD"
mkdir -p "$BUILD"

# ------------------------------------------------------------------ rootfs
# base ROOTFS: busybox userland, users, standard dirs.
make_base() {
  local r="$1" a
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,usr/local/lib,etc,root,home/agent,workspace,tmp,var/tmp,proc,sys,dev,run}
  chmod 0700 "$r/root"
  chmod 1777 "$r/tmp" "$r/var/tmp"
  chown 1000:1000 "$r/home/agent" "$r/workspace"
  cp /bin/busybox "$r/bin/busybox"
  # Applet links (sh, env, id, ls, cat, grep, ...) at busybox's own paths, e.g. /usr/bin/env.
  while read -r a; do
    [ -e "$r/$a" ] || [ -L "$r/$a" ] || ln -s /bin/busybox "$r/$a"
  done < <(/bin/busybox --list-full)
  [ -x "$r/bin/sh" ] || die "busybox has no sh applet"
  cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
agent:x:1000:1000:agent:/home/agent:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
  cat >"$r/etc/group" <<'EOF'
root:x:0:
agent:x:1000:
nogroup:x:65534:
EOF
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$r/etc/nsswitch.conf"
}

# copy_with_libs ROOTFS BINARY: the ELF interpreter and shared libraries ldd finds, at the same
# paths (symlinks resolved), so the binary runs unchanged inside the image.
copy_libs() {
  local r="$1" bin="$2" lib
  while read -r lib; do
    [ -n "$lib" ] || continue
    mkdir -p "$r$(dirname "$lib")"
    [ -e "$r$lib" ] || cp -L "$lib" "$r$lib"
  done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

tar_rootfs() { # ROOTFS TARFILE — deterministic, so identical content gives identical layers
  tar -C "$1" --sort=name --mtime=@0 --numeric-owner -cf "$2" .
}

if printf '%s\n' "${todo[@]}" | grep -q busybox; then
  make_base "$BUILD/busybox"
  tar_rootfs "$BUILD/busybox" "$BUILD/busybox.tar"
fi

if [ "$need_agents" = 1 ]; then
  r="$BUILD/agents"
  make_base "$r"
  cp "$CLAUDE_BIN" "$r/usr/local/bin/claude"
  cp "$CODEX_BIN" "$r/usr/local/bin/codex"
  cp "$(readlink -f "$(command -v node)")" "$r/usr/local/bin/node"
  copy_libs "$r" "$CLAUDE_BIN"
  copy_libs "$r" "$(command -v node)"
  cp -a "$GEMINI_PKG" "$r/usr/local/lib/gemini-cli"
  cat >"$r/usr/local/bin/gemini" <<'EOF'
#!/bin/sh
exec /usr/local/bin/node /usr/local/lib/gemini-cli/bundle/gemini.js "$@"
EOF
  cat >"$r/usr/local/bin/test-entrypoint" <<'EOF'
#!/bin/sh
# airlock test image entrypoint: proves to tests that the image's own entrypoint still ran.
echo airlock-test-entrypoint >&2
exec "$@"
EOF
  chmod 0755 "$r/usr/local/bin/"*
  chown -R 0:0 "$r/usr/local"
  # Fail here, not in a container, if the copied libraries are incomplete. (Only node: claude is
  # a Bun executable that reads itself through /proc/self/exe, which a bare chroot lacks.)
  chroot "$r" /usr/local/bin/node --version >>"$LOG" 2>&1 || die "node does not start in the rootfs (log: $LOG)"
  tar_rootfs "$r" "$BUILD/agents.tar"
  rm -rf "$r" # the tar is all we need from here on
fi
rm -rf "$BUILD/busybox"

# ------------------------------------------------------------------ import
PATH_ENV='ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin'
import_image() { # ENGINE IMAGE
  local e="$1" img="$2" tarf ch=()
  ch+=(-c "$PATH_ENV" -c "LABEL $LABEL=$STAMP")
  case "$img" in
    "$IMAGE_BUSYBOX")
      tarf="$BUILD/busybox.tar"
      ch+=(-c 'CMD ["sh"]') ;; # no HOME: the engine sets it from /etc/passwd for any --user
    "$IMAGE_ROOT")
      tarf="$BUILD/agents.tar"
      ch+=(-c 'ENV HOME=/root'
        -c 'ENTRYPOINT ["/usr/local/bin/test-entrypoint"]' -c 'CMD ["sh","-c","echo default-cmd"]') ;;
    "$IMAGE_USER")
      tarf="$BUILD/agents.tar"
      ch+=(-c 'USER 1000:1000' -c 'ENV HOME=/home/agent' -c 'WORKDIR /workspace'
        -c 'ENTRYPOINT ["/usr/local/bin/test-entrypoint"]' -c 'CMD ["sh","-c","echo default-cmd"]') ;;
  esac
  "$e" import "${ch[@]}" "$tarf" "$img"
}

# ------------------------------------------------------------------ verify
# Runs inside the image (through its entrypoint). Prints one line per failed check; exit 0 = ok.
VERIFY_AGENTS='
fail=0
no() { echo "FAIL: $*"; fail=1; }
v=$(claude --version 2>&1) || no "claude --version exited $?: $v"
case "$v" in *'"$CLAUDE_VERSION"'*) ;; *) no "claude --version printed: $v" ;; esac
out=$(claude auth status 2>&1); rc=$?
[ $rc = 1 ] || no "claude auth status (logged out) exited $rc"
echo "$out" | grep -q "\"loggedIn\": *false" || no "claude auth status (logged out) printed: $out"
out=$(CLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat01-FAKE-airlock-test-token claude auth status 2>&1); rc=$?
[ $rc = 0 ] || no "claude auth status (env token) exited $rc"
echo "$out" | grep -q "\"loggedIn\": *true" || no "claude auth status (env token) printed: $out"
out=$(codex login status 2>&1); rc=$?
[ $rc = 1 ] || no "codex login status exited $rc"
echo "$out" | grep -q "Not logged in" || no "codex login status printed: $out"
v=$(gemini --version 2>&1) || no "gemini --version exited $?: $v"
case "$v" in *'"$GEMINI_VERSION"'*) ;; *) no "gemini --version printed: $v" ;; esac
echo "id=$(id -u):$(id -g) home=$HOME pwd=$(pwd)"
touch "$HOME/.airlock-write-test" && rm "$HOME/.airlock-write-test" || no "HOME $HOME not writable"
exit $fail
'

verify_image() { # ENGINE IMAGE
  local e="$1" img="$2" out err want
  err="$BUILD/verify-$e.err"
  case "$img" in
    "$IMAGE_BUSYBOX")
      out="$("$e" run --rm --network none "$img" sh -c 'id -u; echo ok' 2>"$err")" || true
      [ "$out" = "$(printf '0\nok')" ] || { cat "$err" >&2; die "$e $img: verification printed: $out"; }
      return 0 ;;
    "$IMAGE_ROOT") want="id=0:0 home=/root pwd=/" ;;
    "$IMAGE_USER") want="id=1000:1000 home=/home/agent pwd=/workspace" ;;
  esac
  out="$("$e" run --rm --network none "$img" sh -c "$VERIFY_AGENTS" 2>"$err")" || {
    cat "$err" >&2; die "$e $img: verification failed:
$out"; }
  [ "$out" = "$want" ] || die "$e $img: expected '$want', got: $out"
  grep -qx airlock-test-entrypoint "$err" || die "$e $img: entrypoint marker missing on stderr"
  # No arguments: the image's own ENTRYPOINT + CMD.
  out="$("$e" run --rm --network none "$img" 2>"$err")" || true
  [ "$out" = default-cmd ] && grep -qx airlock-test-entrypoint "$err" ||
    die "$e $img: default ENTRYPOINT/CMD printed '$out' / '$(cat "$err")'"
}

# The engines are independent: build them in parallel (imports are I/O-bound, checks CPU-bound).
build_engine() { # ENGINE — runs in a subshell with its own log
  local e="$1" t img
  for t in "${todo[@]}"; do
    [ "${t%% *}" = "$e" ] || continue
    img="${t#* }"
    run import_image "$e" "$img"
    verify_image "$e" "$img"
  done
}
say "building ${#todo[@]} image(s) for ${engines[*]} (stamp $STAMP; logs: $LOG_DIR/build*.log)"
pids=()
for e in "${engines[@]}"; do
  ( LOG="$LOG_DIR/build-$e.log"; : >"$LOG"; build_engine "$e" ) &
  pids+=("$!")
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
[ "$failed" = 0 ] || die "image build failed (logs: $LOG_DIR/build*.log)"
# Old untagged versions of our images would only take disk space.
for e in "${engines[@]}"; do
  "$e" image prune -f --filter "label=$LABEL" >>"$LOG" 2>&1 || true
done
rm -rf "$BUILD"
