//! A background airlock process whose state directory is removed (by the
//! user, or a test that is done) exits, and does not make the directory
//! again: the sync watcher and the proxy daemon.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::TestContext;

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `airlock <args>` in `ctx`, waits for `ready` to exist, removes
/// the state and runtime directories, and asserts that the process exits
/// within a few seconds and that neither directory comes back.
fn exits_when_its_directory_goes(ctx: &TestContext, args: &[&str], ready: &Path, settle: Duration) {
    let log = std::fs::File::create(ctx.root.path().join("daemon.log")).unwrap();
    let mut child: Child = ctx
        .cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_until("the daemon starts", || {
        ready.exists() || child.try_wait().unwrap().is_some()
    });
    std::thread::sleep(settle);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon exited at start: {}",
        std::fs::read_to_string(ctx.root.path().join("daemon.log")).unwrap_or_default()
    );
    std::fs::remove_dir_all(&ctx.state_dir).unwrap();
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if t.elapsed() > Duration::from_secs(5) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = std::fs::read_to_string(ctx.root.path().join("daemon.log")).unwrap_or_default();
    assert!(
        status.is_some(),
        "the daemon still runs 5 s after its state directory was removed: {log}"
    );
    assert!(
        status.unwrap().success(),
        "the daemon failed rather than exit: {log}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !ctx.state_dir.exists(),
        "the state directory was made again"
    );
    assert!(
        !ctx.runtime_dir.exists(),
        "the runtime directory was made again"
    );
}

#[test]
fn the_watcher_exits_when_its_state_directory_is_removed() {
    let ctx = TestContext::new();
    let ready = ctx.state_dir.join("sync").join("daemon.refresh");
    exits_when_its_directory_goes(
        &ctx,
        &["sync", "--foreground", "--stay", "-v"],
        &ready,
        Duration::ZERO,
    );
}

#[test]
fn the_proxy_exits_when_its_state_directory_is_removed() {
    let ctx = TestContext::new();
    let ready = ctx.state_dir.join("proxy").join("port");
    exits_when_its_directory_goes(
        &ctx,
        &["proxy", "--listen", "127.0.0.1", "-v"],
        &ready,
        Duration::ZERO,
    );
}

/// A `__proxy-hold` (a Dev Container's or Swarm service's login sessions)
/// whose grants vanish with the state directory hands its sessions back
/// without making the sync registry again.
#[test]
fn a_proxy_hold_does_not_make_the_registry_again() {
    let ctx = TestContext::new();
    let layout = airlock::sync::registry::Layout {
        state: ctx.state_dir.join("sync"),
        runtime: ctx.runtime_dir.join("sync"),
    };
    layout.ensure().unwrap();
    // the hold starts with its sessions registered (by `airlock devcontainer`)
    let ready = ctx.state_dir.join("ready");
    std::fs::write(&ready, "").unwrap();
    exits_when_its_directory_goes(
        &ctx,
        &[
            "__proxy-hold",
            "--sandbox",
            "gone-sandbox",
            "--synced",
            "gone-sandbox-claude",
            "-v",
        ],
        &ready,
        // past its start (which makes the registry, as any start does)
        Duration::from_secs(1),
    );
}
