//! airlock's own flags wherever users put them among the engine's
//! (`src/cli/args.rs`), through the real binary: `airlock run -d --name web
//! --agent claude IMAGE` on real engines, and airlock's own errors (exit 2,
//! the corrected command line) where the order is ambiguous or the command
//! takes no engine flags.
//!
//! The engine parts are gated by AIRLOCK_TEST_DOCKER=1 / AIRLOCK_TEST_PODMAN=1.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TestContext, busybox, ok, require_real, root_image, tmpfs_context, wait_until};

fn context(engine: &str) -> TestContext {
    let mut ctx = tmpfs_context(engine, "args");
    common::claude_secret_file(&ctx, "args");
    ctx.set_env("AIRLOCK_KEYRING_BACKEND", "memory");
    ctx
}

fn mixed_order(engine: &str) {
    let ctx = context(engine);
    let name = format!("airlock-args-{}-{engine}", std::process::id());
    // The brief's example: docker flags first, airlock's after them.
    let out = ctx
        .cmd()
        .args(["run", "-d", "--name", &name, "--agent", "claude"])
        .args(["--network", "none", "-e", "FROM_ENGINE=yes"])
        .arg(root_image())
        .args([
            "sh",
            "-c",
            "claude auth status >/dev/null && echo \"$FROM_ENGINE\" >/tmp/ok; sleep 30",
        ])
        .output()
        .unwrap();
    let id = ok(&out).trim().to_owned();
    assert!(!id.is_empty());
    // The container got the engine flags (--name, -e) and the agent its
    // credential.
    wait_until("the check inside", Duration::from_secs(30), || {
        Command::new(engine)
            .args(["exec", &name, "cat", "/tmp/ok"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "yes")
    });
    let _ = Command::new(engine).args(["rm", "-f", &name]).output();

    // airlock's --require-auth and --agent after engine flags are airlock's:
    // no Codex credential → airlock's exit 9, not the engine's 125.
    let out = ctx
        .cmd()
        .args(["run", "--rm", "--network", "none", "--agent", "codex"])
        .args(["-e", "X=1", "--require-auth"])
        .arg(busybox())
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        "the waiter to remove the directory",
        Duration::from_secs(60),
        || {
            std::fs::read_dir(ctx.runtime_dir.join("sandboxes"))
                .map(|r| r.count() == 0)
                .unwrap_or(true)
        },
    );
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

#[test]
fn docker_flags_in_any_order() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        mixed_order("docker");
    }
}

#[test]
fn podman_flags_in_any_order() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        mixed_order("podman");
    }
}

/// Runs airlock (no engine is reached) and returns (exit code, stderr).
fn usage(args: &[&str]) -> (Option<i32>, String) {
    let ctx = TestContext::new();
    let out = ctx.cmd().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ambiguous_orders_stop_with_the_corrected_line() {
    let (code, err) = usage(&[
        "run",
        "--rm",
        "--workdir",
        "/src",
        "--agent",
        "claude",
        "img",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("airlock run --workdir /src --agent claude -- --rm -w /src img"),
        "{err}"
    );
    let (code, err) = usage(&["run", "--rm", "--frobnicate", "x", "img"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("airlock run -- --rm --frobnicate=x img"),
        "{err}"
    );
    assert!(!err.contains("unknown flag"), "{err}");

    let (code, err) = usage(&["docker-flags", "--rm", "-it", "--agent", "claude", "img"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("docker run --rm -it $(airlock docker-flags --agent claude --image img) img"),
        "{err}"
    );
    let (code, err) = usage(&["verify", "--network", "none", "--agent", "claude", "img"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("airlock verify --agent claude --image img"),
        "{err}"
    );
    // A misspelt airlock flag is still clap's, with its suggestion.
    let (code, err) = usage(&["compose", "--agnet", "claude"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--agent"), "{err}");
}
