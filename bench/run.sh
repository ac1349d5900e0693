#!/usr/bin/env bash
# bench/run.sh — what does airlock add to starting a container?
#
# Measures, in the same run and on the same engine/image/command:
#   A  <engine> run --rm --network none IMAGE true
#   B  airlock run --agent claude -- --rm --network none IMAGE true
# and prints the ratio B/A (goal <= 1.10) and the added milliseconds (goal <= 50 ms), then the
# warm wall time of `airlock docker-flags --agent claude --image IMAGE` (goal <= 5 ms).
# A benchmark, not a test: it never fails on a number.
#
# The Claude credential is a fake setup token in a secret file (the resolution chain's
# secret-file step) with the in-memory vault, so vault costs (argon2 for the encrypted file,
# D-Bus for Secret Service) are left out: they are the vault's, measured by its own bench.
#
# Usage: bench/run.sh [docker|podman]   (env: AIRLOCK=path/to/airlock, IMAGE=…, RUNS=20)
# Uses hyperfine when installed (apt-get install hyperfine), else a timing loop.
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE="${1:-${AIRLOCK_ENGINE:-docker}}"
IMAGE="${IMAGE:-${AIRLOCK_TEST_IMAGE_BUSYBOX:-localhost/airlock-test/busybox:latest}}"
RUNS="${RUNS:-20}"
AIRLOCK="${AIRLOCK:-target/release/airlock}"
if [ ! -x "$AIRLOCK" ]; then
  echo "bench: building the release binary" >&2
  cargo build --release -q
fi
AIRLOCK="$(readlink -f "$AIRLOCK")"

work="$(mktemp -d /dev/shm/airlock-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/config" "$work/home" "$work/runtime"
chmod 700 "$work/runtime"
printf 'sk-ant-oat01-FAKE-bench-token-AAAAAAAAAAAAAAAAAAAA' >"$work/token"
chmod 600 "$work/token"
printf '[agents.claude]\nsecret_file = "%s"\n' "$work/token" >"$work/config/config.toml"
export HOME="$work/home" AIRLOCK_CONFIG_DIR="$work/config" AIRLOCK_DATA_DIR="$work/data" \
  AIRLOCK_STATE_DIR="$work/state" AIRLOCK_RUNTIME_DIR="$work/runtime" \
  AIRLOCK_KEYRING_BACKEND=memory AIRLOCK_ENGINE="$ENGINE"

plain=("$ENGINE" run --rm --network none "$IMAGE" true)
ours=("$AIRLOCK" run --agent claude -- --rm --network none "$IMAGE" true)
flags=("$AIRLOCK" docker-flags --agent claude --image "$IMAGE")

"${plain[@]}" >/dev/null # warm the image and the engine
"${ours[@]}" >/dev/null

ms_now() { date +%s%N; }
# mean_ms RUNS CMD…: mean wall time in ms (fallback when hyperfine is missing)
mean_ms() {
  local n="$1" t0 t1 i; shift
  t0="$(ms_now)"
  for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1; done
  t1="$(ms_now)"
  echo "scale=2; ($t1 - $t0) / 1000000 / $n" | bc
}

q() { printf '%q ' "$@"; }
if command -v hyperfine >/dev/null 2>&1; then
  hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$work/run.json" \
    -n "$ENGINE run" "$(q "${plain[@]}")" -n "airlock run" "$(q "${ours[@]}")" >&2
  a="$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(r[0]["mean"]*1000)' "$work/run.json")"
  b="$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(r[1]["mean"]*1000)' "$work/run.json")"
  # --prepare removes the previous call's directory, so its waiter exits
  # instead of piling up and loading the engine (and the CPU) during the run.
  # A waiter may be removing the same directory: a failed rm is retried and
  # never aborts the run.
  hyperfine -N --warmup 3 --runs 50 \
    --prepare "sh -c 'rm -rf $work/runtime/sandboxes || rm -rf $work/runtime/sandboxes; true'" \
    --export-json "$work/flags.json" -n "docker-flags" "$(q "${flags[@]}")" >&2
  f="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"]*1000)' "$work/flags.json")"
else
  # Interleave the two so drift in the engine affects both alike.
  a=0; b=0
  for _ in 1 2 3 4; do
    a="$(echo "$a + $(mean_ms $((RUNS / 4)) "${plain[@]}")" | bc)"
    b="$(echo "$b + $(mean_ms $((RUNS / 4)) "${ours[@]}")" | bc)"
  done
  a="$(echo "scale=2; $a / 4" | bc)"; b="$(echo "scale=2; $b / 4" | bc)"
  f=0
  for _ in $(seq 1 20); do
    rm -rf "$work/runtime/sandboxes"
    f="$(echo "$f + $(mean_ms 1 "${flags[@]}")" | bc)"
  done
  f="$(echo "scale=2; $f / 20" | bc)"
fi
# docker-flags leaves one directory (and a waiter) per call: clean them up.
rm -rf "$work/runtime/sandboxes"

python3 - "$a" "$b" "$f" "$ENGINE" "$IMAGE" <<'PY'
import sys
a, b, f = map(float, sys.argv[1:4])
print(f"engine {sys.argv[4]}, image {sys.argv[5]}")
print(f"plain run      {a:8.1f} ms")
print(f"airlock run    {b:8.1f} ms")
print(f"ratio          {b/a:8.3f}   (goal <= 1.10)")
print(f"added          {b-a:8.1f} ms (goal <= 50 ms)")
print(f"docker-flags   {f:8.1f} ms (warm; goal <= 5 ms)")
PY
