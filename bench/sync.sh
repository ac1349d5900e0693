#!/usr/bin/env bash
# bench/sync.sh — rotation sync benchmark (issue 5): write -> host-truth latency (p50/p99)
# and the idle watcher's RSS/CPU/wake-ups with 100 registered accounts.
# Uses the release build of airlock. Knobs: AIRLOCK_BENCH_SAMPLES (300), AIRLOCK_BENCH_IDLE_SECS (10).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release --test sync_bench -- --ignored --nocapture --test-threads=1
