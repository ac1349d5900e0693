#!/usr/bin/env bash
# quickstart.sh — build airlock and run its main job on a fresh Debian machine.
#
# Why this exists: the README promises one command that shows airlock working end to end on a
# machine that has nothing yet. It:
#   1. installs Docker (Debian's docker.io, with the rest of the test dependencies) and starts
#      dockerd when `docker info` does not answer (scripts/install-test-deps.sh, start-engines.sh);
#   2. builds airlock (cargo build --release);
#   3. builds a local image with the genuine agent CLIs from npm (no registry needed:
#      scripts/build-test-images.sh), unless AIRLOCK_IMAGE names an image of yours;
#   4. stores a Claude credential in airlock's vault, first of: your host login
#      (~/.claude/.credentials.json), CLAUDE_CODE_OAUTH_TOKEN, ANTHROPIC_API_KEY, or the wizard
#      when a terminal is attached. Without an OS keyring the vault is the encrypted file; its
#      passphrase comes from AIRLOCK_KEYRING_PASSWORD or a prompt;
#      With none of these (no credential, no terminal) it runs a DEMO: a clearly fake token in a
#      throw-away vault under a temporary directory, removed at the end;
#   5. starts a sandbox: `airlock run --agent claude -- IMAGE claude auth status`, in which the
#      genuine Claude Code reports itself logged in; with a terminal, then offers an interactive
#      `claude` in the same kind of sandbox.
#
# Usage: scripts/quickstart.sh [--demo]     (--demo forces the throw-away fake-token run)
# Environment: AIRLOCK_IMAGE (your image with `claude` installed), AIRLOCK_KEYRING_PASSWORD.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "quickstart: $*" >&2; }
demo=0
[ "${1:-}" = --demo ] && demo=1

# 1. Docker
if ! docker info >/dev/null 2>&1; then
  say "installing and starting Docker (Debian packages; needs root or sudo)"
  bash scripts/install-test-deps.sh
  eval "$(AIRLOCK_TEST_ENGINES=docker bash scripts/start-engines.sh)"
fi

# 2. airlock
say "building airlock (cargo build --release)"
cargo build --release --quiet
airlock="$PWD/target/release/airlock"

# 3. an image with the agent CLIs
image="${AIRLOCK_IMAGE:-}"
if [ -z "$image" ]; then
  say "building a local image with the genuine agent CLIs (first time: about 2 minutes)"
  bash scripts/build-test-images.sh docker >&2
  image=localhost/airlock-test/agents:user
fi

# 4. a credential
interactive=0
[ -t 0 ] && [ -t 2 ] && interactive=1
claude_home="${CLAUDE_CONFIG_DIR:-$HOME/.claude}"
if [ "$demo" = 0 ]; then
  if "$airlock" status --agent claude --json 2>/dev/null | grep -q '"source": *"vault"'; then
    say "using the Claude credential already in airlock's vault"
  elif [ -s "$claude_home/.credentials.json" ]; then
    say "storing your host's Claude login (read, never modified)"
    "$airlock" auth claude --from-host
  elif [ -n "${CLAUDE_CODE_OAUTH_TOKEN:-}" ]; then
    say "storing CLAUDE_CODE_OAUTH_TOKEN"
    "$airlock" auth claude --method token --from-env CLAUDE_CODE_OAUTH_TOKEN
  elif [ -n "${ANTHROPIC_API_KEY:-}" ]; then
    say "storing ANTHROPIC_API_KEY"
    "$airlock" auth claude --method api-key --from-env ANTHROPIC_API_KEY
  elif [ "$interactive" = 1 ]; then
    say "no Claude login found: the wizard asks for one (run \`claude setup-token\` anywhere to get a token)"
    "$airlock" auth claude
  else
    say "no Claude credential and no terminal: running the DEMO with a fake token in a throw-away vault"
    demo=1
  fi
fi
if [ "$demo" = 1 ]; then
  scratch="$(mktemp -d "${TMPDIR:-/var/tmp}/airlock-demo.XXXXXX")"
  trap 'rm -rf "$scratch"' EXIT
  export AIRLOCK_CONFIG_DIR="$scratch/config" AIRLOCK_DATA_DIR="$scratch/data" \
    AIRLOCK_STATE_DIR="$scratch/state" AIRLOCK_KEYRING_BACKEND=file
  export AIRLOCK_KEYRING_PASSWORD="demo-passphrase-$RANDOM$RANDOM"
  # A fake setup token (the right shape; it opens nothing). It reaches airlock on stdin.
  printf 'sk-ant-oat01-DEMO%s' "$(head -c 60 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 76)AA" |
    "$airlock" auth claude --method token --stdin
fi

# 5. the sandbox
say "starting a sandbox: airlock run --agent claude -- --rm --network none $image claude auth status"
"$airlock" run --agent claude -- --rm --network none "$image" claude auth status
say "the agent inside the sandbox is logged in; no secret was on a command line or in docker inspect"
if [ "$demo" = 0 ] && [ "$interactive" = 1 ]; then
  say "next: $airlock run --agent claude -- --rm -it -v \"\$PWD:/workspace\" $image claude"
fi
