//! How the release `airlock` binary is linked on Linux (glibc): the code
//! `airlock proxy` runs from its start to its first requests is placed
//! together, ahead of the rest (link/proxy-hot-text.ld, made by
//! scripts/hot-text.sh). The kernel maps a binary's pages 64 KiB at a time
//! around each one touched, so code spread over the whole text keeps most of
//! it resident in an idle proxy (bench/README.md, "Idle RSS, where it goes").
//! Only the placement changes: a function the script no longer names stays
//! where the linker puts it by default.

use std::env;
use std::path::Path;

fn main() {
    let script = Path::new("link/proxy-hot-text.ld");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", script.display());
    let var = |k: &str| env::var(k).unwrap_or_default();
    // release (and bench) builds for glibc Linux: what the .deb ships and
    // the benches measure (not tried with scripts/build-static.sh's musl)
    if var("PROFILE") != "release"
        || var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
    {
        return;
    }
    let path = Path::new(&var("CARGO_MANIFEST_DIR")).join(script);
    let path = path.to_string_lossy();
    // `-Wl,` splits at commas: a checkout whose path has one links without it
    if Path::new(path.as_ref()).is_file() && !path.contains(',') {
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{path}");
    }
}
