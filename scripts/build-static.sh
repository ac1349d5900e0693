#!/usr/bin/env bash
# Builds a fully static musl airlock binary (docs/install.md, "Static builds"):
#   scripts/build-static.sh            # build, then run tests/static_build.rs on it
#   scripts/build-static.sh --no-test  # build only
# Output: target/x86_64-unknown-linux-musl/release/airlock (with line-table debug info,
# as the release profile says) and airlock.stripped beside it; prints the stripped path last.
#
# rustup cannot download the musl standard library on machines without access to
# static.rust-lang.org, so this builds it from source instead, with Debian's own toolchain:
#   rustc-web + cargo-web  Debian 12's Rust (1.96, bookworm-security), sysroot /usr
#   rust-web-src           the standard library's source of exactly that rustc, which Debian
#                          installs at /usr/lib/rustlib/src/rust: where -Zbuild-std looks
#   musl-tools, musl-dev   musl-gcc, musl's crt objects and libc.a (the linker, and ring's C)
#   libunwind-14-dev       LLVM's libunwind.a, the unwinder std links on musl (rustup's rust-std
#                          ships one); only downloaded and unpacked into target/static-build,
#                          not installed, plus a 10-line shim for the one glibc-only symbol
#                          it uses (__fprintf_chk, _FORTIFY_SOURCE's fprintf)
# and `cargo -Zbuild-std=std,panic_abort`, a nightly-only cargo feature enabled on this stable
# compiler with RUSTC_BOOTSTRAP=1. std's own dependencies come from crates.io (library/Cargo.lock).
# The rustup toolchains are not touched: Debian's rustc and cargo are called by full path.
# Installs the packages with apt when missing (root, or sudo); note that rustc-web/cargo-web
# put rustc and cargo in /usr/bin (rustup's ~/.cargo/bin stays first on PATH where it is).
# A cold build takes about 11 minutes of CPU (21-37 min wall clock on a shared 2-core machine):
# too slow for CI, which is why tests/static_build.rs only runs from here.
set -euo pipefail
cd "$(dirname "$0")/.."
run_test=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-test) run_test=0; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "build-static.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
say() { printf 'build-static.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

TARGET=x86_64-unknown-linux-musl
PKGS=(rustc-web cargo-web rust-web-src musl-tools musl-dev binutils file)
missing=()
for p in "${PKGS[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  as_root=(); [ "$(id -u)" = 0 ] || as_root=(sudo -n)
  say "installing ${missing[*]} (apt)"
  "${as_root[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
fi

RUSTC=/usr/bin/rustc
CARGO=/usr/bin/cargo
[ -x "$RUSTC" ] && [ -x "$CARGO" ] || die "Debian's rustc/cargo (rustc-web, cargo-web) are missing"
sysroot=$("$RUSTC" --print sysroot)
lib="$sysroot/lib/rustlib/src/rust/library"
[ -f "$lib/Cargo.lock" ] || die "$lib/Cargo.lock is missing: install rust-web-src"
# build-std needs the source of exactly this compiler: rust-web-src's directory is versioned
version=$("$RUSTC" --version | awk '{print $2}')
src=$(readlink -f "$sysroot/lib/rustlib/src/rust")
[ "$(basename "$src")" = "rustc-$version" ] ||
  die "std source $src does not match rustc $version: install rust-web-src and rustc-web of one version"
say "rustc $version (Debian, $RUSTC), std source $src"

# std's unwind crate links -lunwind (static) on musl: LLVM's libunwind from Debian
work="$PWD/target/static-build"
mkdir -p "$work"
if [ ! -f "$work/libunwind.a" ]; then
  rm -rf "$work/deb" && mkdir -p "$work/deb"
  (cd "$work/deb" && { apt-get download -q libunwind-14-dev >&2 2>/dev/null ||
    { apt-get update -qq >&2 && apt-get download -q libunwind-14-dev >&2; }; }) ||
    die "could not download libunwind-14-dev"
  dpkg-deb -x "$work"/deb/libunwind-14-dev_*.deb "$work/deb/root"
  cat > "$work/fortify.c" <<'C'
/* Debian builds libunwind.a with _FORTIFY_SOURCE: its log lines call glibc's
   __fprintf_chk, which musl lacks. The same call without the check. */
#include <stdarg.h>
#include <stdio.h>
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...) {
  (void)flag;
  va_list ap;
  va_start(ap, fmt);
  int n = vfprintf(f, fmt, ap);
  va_end(ap);
  return n;
}
C
  musl-gcc -O2 -fPIC -c "$work/fortify.c" -o "$work/fortify.o"
  cp "$work/deb/root/usr/lib/llvm-14/lib/libunwind.a" "$work/libunwind.a.tmp"
  ar rs "$work/libunwind.a.tmp" "$work/fortify.o"
  mv "$work/libunwind.a.tmp" "$work/libunwind.a"
fi
# the linker: musl-gcc's gcc with libunwind.a's directory on its search path and a copy of
# musl-gcc.specs taught -static-pie (what rustc asks for on musl): Debian's specs always
# start with Scrt1.o, name /lib/ld-musl-x86_64.so.1 as interpreter and drop gcc's own
# -static-pie link flags, which gives a dynamic PIE; a static PIE needs rcrt1.o (it
# relocates itself), -static -pie --no-dynamic-linker and no interpreter
musl=/usr/lib/x86_64-linux-musl
sed -e "s|%{!shared: $musl/Scrt1.o}|%{static-pie: $musl/rcrt1.o} %{!static-pie:%{!shared: $musl/Scrt1.o}}|" \
  -e "s|^-dynamic-linker /lib/ld-musl-x86_64.so.1 |%{!static-pie:-dynamic-linker /lib/ld-musl-x86_64.so.1} |" \
  -e "s|%{static:-static}|%{static:-static} %{static-pie:-static -pie --no-dynamic-linker -z text}|" \
  "$musl/musl-gcc.specs" > "$work/musl-gcc.specs"
grep -q rcrt1.o "$work/musl-gcc.specs" && grep -q '{!static-pie:-dynamic-linker' "$work/musl-gcc.specs" &&
  grep -q -- '--no-dynamic-linker' "$work/musl-gcc.specs" ||
  die "$musl/musl-gcc.specs is not laid out as expected (musl-tools changed?)"
printf '#!/bin/sh\nexec x86_64-linux-gnu-gcc -L "%s" "$@" -specs "%s"\n' "$work" "$work/musl-gcc.specs" \
  > "$work/musl-cc"
chmod +x "$work/musl-cc"

start=$(date +%s)
# link-self-contained=no: rustc has no musl crt objects of its own here (they come with
# rustup's rust-std); musl-gcc links musl-dev's Scrt1.o / libc.a instead
env RUSTC_BOOTSTRAP=1 RUSTC="$RUSTC" RUSTDOC=/usr/bin/rustdoc \
  CC_x86_64_unknown_linux_musl=musl-gcc \
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER="$work/musl-cc" \
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C link-self-contained=no" \
  "$CARGO" build --release --locked --bin airlock --target "$TARGET" \
  -Zbuild-std=std,panic_abort >&2
secs=$(( $(date +%s) - start ))

bin="target/$TARGET/release/airlock"
stripped="$bin.stripped"
strip -o "$stripped" "$bin"
say "built in ${secs}s: $(file -b "$bin" | cut -d, -f1-5)"
say "ldd: $(ldd "$stripped" 2>&1 | head -n 1 | sed 's/^[[:space:]]*//')"
say "size: $(du -h --apparent-size "$bin" | cut -f1) with debug line tables, $(du -h --apparent-size "$stripped" | cut -f1) stripped"

if [ "$run_test" = 1 ]; then
  say "running tests/static_build.rs on $stripped"
  AIRLOCK_STATIC_BIN="$PWD/$stripped" scripts/test.sh --test static_build >&2
fi
echo "$stripped"
