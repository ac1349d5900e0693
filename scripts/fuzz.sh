#!/usr/bin/env bash
# fuzz.sh — long property-based fuzzing of every parser of outside input
# (tests/fuzz.rs; docs/testing.md, "Fuzzing"). Not part of CI, which runs the
# same test with 256 cases per parser inside scripts/test.sh.
#
# Usage: scripts/fuzz.sh [cases-per-parser]   (default 100000)
#        scripts/fuzz.sh 1000000 -- claude    (extra args go to the test binary: a filter)
# Prints, per parser, the cases run and the failures found; a failure is
# shrunk, its seed saved in tests/fixtures/fuzz/ and the script exits 1.
# Needs no engine or keyring: the parsers are fuzzed in-process.
set -euo pipefail
cd "$(dirname "$0")/.."
CASES="${1:-100000}"
shift || true
[ "${1:-}" = -- ] && shift
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
start=$(date +%s)
status=0
AIRLOCK_FUZZ_CASES="$CASES" cargo test --quiet --test fuzz -- --nocapture --test-threads="$(nproc)" "$@" >"$LOG" 2>&1 || status=$?
echo "fuzz.sh: $CASES cases per parser, $(( $(date +%s) - start )) s"
grep -oE 'fuzz [^:]+: [0-9]+ cases, [0-9]+ failures' "$LOG" | sed 's/^fuzz /  /' | sort
if [ "$status" != 0 ]; then
  echo "fuzz.sh: FAILURES (the full output follows)" >&2
  cat "$LOG" >&2
fi
exit "$status"
