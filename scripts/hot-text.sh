#!/usr/bin/env bash
# scripts/hot-text.sh — regenerates link/proxy-hot-text.ld, the linker script that places the
# code `airlock proxy` runs from its start to its first requests together (build.rs passes it
# to the linker for release builds; why: bench/README.md, "Idle RSS, where it goes").
# Run it after changes that move a lot of the proxy's start-up or request path (a dependency
# update, a new rustc), then rebuild: a function it no longer names only stays where the
# linker puts it by default, which shows as a larger idle RSS in `cargo bench --bench proxy`.
# Profiles bench/proxy.sh's proxy under callgrind (start-up and 20 requests, a few seconds).
# Needs: valgrind, python3, nm, and what bench/proxy.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null 2>&1 || { echo "hot-text.sh: valgrind missing" >&2; exit 1; }
cargo build --release --quiet --bin airlock
bin="$PWD/target/release/airlock"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
AIRLOCK_BENCH_BIN="$bin" AIRLOCK_BENCH_HOT_TEXT="$work/profile" bench/proxy.sh >/dev/null
python3 scripts/hot-text.py "$work/profile.1" "$bin" > "$work/hot-text.ld"
mv "$work/hot-text.ld" link/proxy-hot-text.ld
echo "hot-text.sh: link/proxy-hot-text.ld written; \`cargo build --release\` links with it" >&2
