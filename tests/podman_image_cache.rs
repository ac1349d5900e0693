//! `airlock run` on Podman caches image configurations per image ID and maps
//! the name to an ID through Podman's store index on every run
//! (src/engine/podman_store.rs): a re-tagged, removed or re-imported name is
//! seen by the very next run, and a known image costs no `podman` call
//! before `podman run`.
//!
//! Gated by AIRLOCK_TEST_PODMAN=1. Creates (and removes) images under
//! `localhost/airlock-test/podcache`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{CANARY, TestContext, busybox, ok, require_real};

const NAME: &str = "localhost/airlock-test/podcache:latest";

fn podman(args: &[&str]) -> String {
    ok(&Command::new("podman").args(args).output().unwrap())
        .trim()
        .to_owned()
}

/// Removes what the test created, whatever happened.
struct Cleanup {
    images: Vec<String>,
    dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for i in &self.images {
            let _ = Command::new("podman").args(["rmi", "-f", i]).output();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A context whose `podman` is a wrapper logging its arguments to `log`.
fn context(bin: &Path, log: &Path) -> TestContext {
    let mut ctx = TestContext::new();
    common::claude_secret_file(&ctx, "pc");
    use std::os::unix::fs::PermissionsExt;
    let real = String::from_utf8(Command::new("which").arg("podman").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned();
    std::fs::create_dir_all(bin).unwrap();
    let wrapper = bin.join("podman");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log:?}\nexec {real:?} \"$@\"\n",),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    ctx.set_env("PATH", &path);
    ctx.runtime_dir = PathBuf::from(format!(
        "/dev/shm/airlock-podcache-{}-{}",
        std::process::id(),
        ctx.root.path().file_name().unwrap().to_string_lossy()
    ));
    ctx.set_env("AIRLOCK_ENGINE", "podman");
    ctx.set_env("AIRLOCK_KEYRING_BACKEND", "memory");
    ctx
}

/// `airlock run` of NAME with the image's own command; returns its stdout
/// and the podman commands it ran (the log is emptied).
fn run(ctx: &TestContext, log: &Path) -> (String, Vec<String>) {
    // TestContext::cmd applies ctx.env (our PATH, wrapper first) last.
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "claude",
            "--",
            "--rm",
            "--network",
            "none",
            NAME,
        ])
        .output()
        .unwrap();
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY));
    let calls = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let _ = std::fs::remove_file(log);
    (stdout.trim().to_owned(), calls)
}

fn inspects(calls: &[String]) -> Vec<&String> {
    calls
        .iter()
        .filter(|c| c.starts_with("image inspect"))
        .collect()
}

#[test]
fn podman_run_sees_retagged_removed_and_reimported_images() {
    if !require_real("AIRLOCK_TEST_PODMAN") {
        return;
    }
    let tag = format!("t{}", std::process::id());
    let one = format!("localhost/airlock-test/podcache:one-{tag}");
    let two = format!("localhost/airlock-test/podcache:two-{tag}");
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("podman.log");
    let ctx = context(&tmp.path().join("bin"), &log);
    let mut clean = Cleanup {
        images: vec![NAME.into(), one.clone(), two.clone()],
        dirs: vec![ctx.runtime_dir.clone()],
    };

    // Two tiny images from the busybox test image's root filesystem.
    let tar = tmp.path().join("rootfs.tar");
    let c = podman(&["create", &busybox()]);
    let exported = Command::new("podman")
        .args(["export", "-o"])
        .arg(&tar)
        .arg(&c)
        .output()
        .unwrap();
    podman(&["rm", &c]);
    ok(&exported);
    let tar_s = tar.to_str().unwrap();
    let import = |word: &str, name: &str| {
        let id = podman(&[
            "import",
            "-q",
            "--change",
            &format!("CMD [\"echo\",\"{word}\"]"),
            tar_s,
            name,
        ]);
        id.trim_start_matches("sha256:").to_owned()
    };
    let id_one = import("one", &one);
    let id_two = import("two", &two);
    clean.images.extend([id_one.clone(), id_two.clone()]);
    assert_ne!(id_one, id_two);

    podman(&["tag", &one, NAME]);
    let (out, calls) = run(&ctx, &log);
    assert_eq!(out, "one");
    assert!(
        inspects(&calls).iter().all(|c| c.contains(&id_one)),
        "the first run inspects by ID: {calls:?}"
    );
    // Known image: no podman call but the run itself.
    let (out, calls) = run(&ctx, &log);
    assert_eq!(out, "one");
    assert!(
        calls.iter().all(|c| c.starts_with("run ")),
        "a known image costs no podman call: {calls:?}"
    );

    // The name now points to the other image: the next run uses its CMD.
    podman(&["tag", &two, NAME]);
    let (out, _) = run(&ctx, &log);
    assert_eq!(out, "two", "re-tagged name must not use the cached config");
    // Back again: both configurations cached, the index decides.
    podman(&["tag", &one, NAME]);
    assert_eq!(run(&ctx, &log).0, "one");

    // Removed and re-imported under the same name with a new command.
    podman(&["rmi", NAME]);
    let id_three = import("three", NAME);
    clean.images.push(id_three.clone());
    let (out, calls) = run(&ctx, &log);
    assert_eq!(
        out, "three",
        "re-imported name must not use the cached config"
    );
    assert!(
        inspects(&calls).iter().all(|c| c.contains(&id_three)),
        "{calls:?}"
    );

    // A name the store does not have: Podman is asked by name (and fails).
    podman(&["rmi", NAME]);
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "claude",
            "--",
            "--rm",
            "--network",
            "none",
            NAME,
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    drop(clean);
}
