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
fn exits_when_its_directory_goes(ctx: &TestContext, args: &[&str], ready: &Path) {
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
    exits_when_its_directory_goes(&ctx, &["sync", "--foreground", "--stay", "-v"], &ready);
}

#[test]
fn the_proxy_exits_when_its_state_directory_is_removed() {
    let ctx = TestContext::new();
    let ready = ctx.state_dir.join("proxy").join("port");
    exits_when_its_directory_goes(&ctx, &["proxy", "--listen", "127.0.0.1", "-v"], &ready);
}
