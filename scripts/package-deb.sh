#!/usr/bin/env bash
# Builds airlock's Debian package with cargo-deb (docs/install.md):
#   scripts/package-deb.sh                 # release build → target/debian/airlock_<version>_amd64.deb
#   scripts/package-deb.sh --profile dev   # the debug binary (faster)
#   scripts/package-deb.sh --profile dev --no-build   # package target/debug/airlock as built (the tests)
# It installs cargo-deb from crates.io when missing, generates the man pages
# (`airlock man --dir`) and shell completions (`airlock completions`) into
# target/deb-assets/, then runs `cargo deb --no-build`. Prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs a name}"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "package-deb.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
say() { printf 'package-deb.sh: %s\n' "$*" >&2; }

if ! cargo deb --version >/dev/null 2>&1; then
  say "installing cargo-deb from crates.io (once)"
  cargo install --locked --quiet cargo-deb >&2
fi

if [ "$profile" = dev ]; then dir=debug; else dir="$profile"; fi
bin="target/$dir/airlock"
if [ "$build" = 1 ]; then
  say "building airlock ($profile profile)"
  cargo build --quiet --profile "$profile" --bin airlock >&2
fi
[ -x "$bin" ] || { say "$bin is missing: build it first (or drop --no-build)"; exit 1; }

assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$bin" man --dir "$assets/man"
"$bin" completions bash > "$assets/completions/airlock.bash"
"$bin" completions zsh > "$assets/completions/_airlock"
"$bin" completions fish > "$assets/completions/airlock.fish"

out=target/debian
mkdir -p "$out"
# cargo-deb takes the binary of the chosen profile in place of target/release/airlock
fast=(); [ "$profile" = dev ] && fast=(--fast)
cargo deb --no-build --quiet "${fast[@]}" --profile "$profile" --output "$out" >&2
deb=$(ls -t "$out"/airlock_*.deb | head -n 1)
say "built $deb ($(du -h "$deb" | cut -f1))"
echo "$deb"
