//! The static musl release binary (issue 13, docs/install.md "Static builds").
//! `scripts/build-static.sh` builds it (std from source with Debian's rustc: about
//! ten minutes cold on 2 cores, too slow for CI's budget) and then runs this file
//! once with `AIRLOCK_STATIC_BIN` set to the binary. Without that variable (CI, a
//! plain `cargo test`) the test skips: there is no binary to check.
//!
//! What is checked: the ELF file asks for no program interpreter (nothing is
//! loaded at run time), and `airlock --version` and `airlock doctor` run in an
//! image holding nothing but the binary and an empty /tmp (a `docker import` of
//! such a tarball, no network). As a control, the tests' own glibc binary cannot
//! start in that same image.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::require_real;

/// `PT_INTERP` in an ELF program header: the dynamic loader a binary needs.
const PT_INTERP: u32 = 3;

/// Whether a 64-bit little-endian ELF executable names a program interpreter.
fn has_interpreter(elf: &[u8]) -> bool {
    assert!(
        elf.len() > 64 && elf.starts_with(b"\x7fELF") && elf[4] == 2 && elf[5] == 1,
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == PT_INTERP
    })
}

/// A Docker image imported from a tarball that holds only `/airlock` and `/tmp`.
struct BareImage(String);

impl BareImage {
    fn with(bin: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::copy(bin, root.join("airlock")).unwrap();
        let tar = dir.path().join("rootfs.tar");
        let out = Command::new("tar")
            .args(["--owner=0", "--group=0", "--mode=go-w", "-cf"])
            .arg(&tar)
            .arg("-C")
            .arg(&root)
            .arg(".")
            .output()
            .unwrap();
        common::ok(&out);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let tag = format!(
            "localhost/airlock-test/static-bare:{}-{nanos}",
            std::process::id()
        );
        let out = Command::new("docker")
            .arg("import")
            .arg(&tar)
            .arg(&tag)
            .output()
            .unwrap();
        common::ok(&out);
        BareImage(tag)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "-e",
                "HOME=/tmp",
                &self.0,
            ])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for BareImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

#[test]
fn the_static_binary_runs_in_an_empty_image() {
    let Some(bin) = std::env::var_os("AIRLOCK_STATIC_BIN").map(PathBuf::from) else {
        eprintln!(
            "skipping: AIRLOCK_STATIC_BIN is not set (scripts/build-static.sh builds the \
             static binary and runs this test)"
        );
        return;
    };
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let elf = std::fs::read(&bin).unwrap();
    assert!(
        !has_interpreter(&elf),
        "{} names a program interpreter: it is not static",
        bin.display()
    );
    let glibc = std::fs::read(env!("CARGO_BIN_EXE_airlock")).unwrap();
    assert!(
        has_interpreter(&glibc),
        "the check above must tell a dynamic binary apart"
    );

    let image = BareImage::with(&bin);
    let out = image.run(&["/airlock", "--version"]);
    assert_eq!(
        common::ok(&out).trim(),
        format!("airlock {}", env!("CARGO_PKG_VERSION"))
    );

    // no engine, no keyring, no D-Bus in the image: doctor says so and exits
    // 11 (a check found problems), with the encrypted file as the vault
    let out = image.run(&["/airlock", "doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(11), "{stdout}\n{stderr}");
    assert!(stdout.contains("vault backend: file"), "{stdout}");
    assert!(
        stdout.contains("FAIL  container engine: neither docker nor podman"),
        "{stdout}"
    );

    // the control: the tests' glibc binary needs /lib64/ld-linux-x86-64.so.2,
    // which the image does not have
    let control = BareImage::with(Path::new(env!("CARGO_BIN_EXE_airlock")));
    let out = control.run(&["/airlock", "--version"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a dynamic binary ran in the bare image"
    );
    assert!(out.stdout.is_empty());
}
