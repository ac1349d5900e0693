//! `airlock sync` as a process: foreground with logs, background start,
//! exit after the last sandbox, `--status`. Sandboxes are registered
//! through the library, as `airlock run` will.

mod common;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use airlock::paths::Paths;
use airlock::sync::{Layout, Registration, Truth, register_sandbox, unregister};
use common::{CANARY, TestContext};
use serde_json::{Value, json};

fn doc(rt: &str, exp: i64) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"claudeAiOauth": {"accessToken": format!("sk-ant-oat01-{CANARY}"),
        "refreshToken": format!("{CANARY}-{rt}"), "expiresAt": exp, "scopes": ["user:inference"]},
        "other": 1}),
    )
    .unwrap()
}

fn rt(p: &Path) -> String {
    let v: Value = serde_json::from_slice(&fs::read(p).unwrap_or_default()).unwrap_or_default();
    v["claudeAiOauth"]["refreshToken"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn setup() -> (TestContext, Layout, std::path::PathBuf) {
    let ctx = TestContext::new();
    let paths = Paths {
        config_dir: ctx.config_dir.clone(),
        data_dir: ctx.data_dir.clone(),
        state_dir: ctx.state_dir.clone(),
        runtime_dir: ctx.runtime_dir.clone(),
        home: ctx.home.clone(),
    };
    let layout = Layout::new(&paths);
    let host = ctx.home.join(".claude/.credentials.json");
    fs::create_dir_all(host.parent().unwrap()).unwrap();
    fs::write(&host, doc("host", 1_000)).unwrap();
    (ctx, layout, host)
}

fn registration(host: &Path, sandbox: &str) -> Registration {
    Registration {
        sandbox: sandbox.into(),
        agent: "claude".into(),
        account: "default".into(),
        truth: Truth::HostFile {
            path: host.to_path_buf(),
        },
        pid: None,
        owner: None,
    }
}

#[test]
fn foreground_watcher_syncs_logs_without_secrets_and_exits_after_the_last_sandbox() {
    let (ctx, layout, host) = setup();
    let dir = register_sandbox(&layout, None, registration(&host, "sb1")).unwrap();
    let mut child = ctx
        .cmd()
        .args(["sync", "--foreground", "--linger", "1", "-vv"])
        // the most verbose logging there is, dependencies included
        .env("AIRLOCK_LOG", "trace")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait("watcher up", || airlock::sync::daemon_running(&layout));
    let shared = dir.join(".credentials.json");
    fs::write(dir.join(".tmp"), doc("sandbox", 2_000)).unwrap();
    fs::rename(dir.join(".tmp"), &shared).unwrap();
    wait("host updated", || rt(&host) == format!("{CANARY}-sandbox"));
    // the status file is written right after the truth
    let status_file = layout.accounts_dir().join("claude-default.json");
    wait("status recorded", || {
        fs::read_to_string(&status_file).is_ok_and(|s| s.contains("to-truth"))
    });

    let st = ctx
        .cmd()
        .args(["sync", "--status", "--json"])
        .output()
        .unwrap();
    assert!(st.status.success());
    let v: Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["watcher_running"], true);
    assert_eq!(v["sandboxes"][0]["sandbox"], "sb1");
    assert_eq!(v["accounts"][0]["direction"], "to-truth");
    assert!(!String::from_utf8_lossy(&st.stdout).contains(CANARY));

    unregister(&layout, None, "sb1").unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "watcher did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("synced"), "{err}");
    assert!(!err.contains(CANARY), "secret in the log:\n{err}");
}

#[test]
fn background_start_is_idempotent() {
    let (ctx, layout, host) = setup();
    register_sandbox(&layout, None, registration(&host, "sb1")).unwrap();
    let out = ctx.cmd().arg("sync").output().unwrap();
    assert!(out.status.success());
    wait("background watcher up", || {
        airlock::sync::daemon_running(&layout)
    });
    let out = ctx.cmd().arg("sync").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    unregister(&layout, None, "sb1").unwrap();
    wait("background watcher gone", || {
        !airlock::sync::daemon_running(&layout)
    });
    let log = fs::read_to_string(layout.daemon_log()).unwrap();
    assert!(!log.contains(CANARY));
}

#[test]
fn a_watcher_killed_with_sigkill_and_restarted_loses_no_update() {
    let (ctx, layout, host) = setup();
    let dir = register_sandbox(&layout, None, registration(&host, "sb1")).unwrap();
    let shared = dir.join(".credentials.json");
    let start = || {
        let c = ctx
            .cmd()
            .args(["sync", "--foreground", "--stay"])
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait("watcher up", || airlock::sync::daemon_running(&layout));
        c
    };
    let write = |rt: &str, exp: i64| {
        fs::write(dir.join(".tmp"), doc(rt, exp)).unwrap();
        fs::rename(dir.join(".tmp"), &shared).unwrap();
    };
    let mut w = start();
    for (n, exp) in [(1, 2_000), (2, 3_000), (3, 4_000)] {
        write(&format!("a{n}"), exp);
        wait("update", || rt(&host) == format!("{CANARY}-a{n}"));
    }
    // SIGKILL mid-stream: no chance to clean up
    w.kill().unwrap();
    w.wait().unwrap();
    assert!(
        !airlock::sync::daemon_running(&layout),
        "the lock dies with the process"
    );
    write("while-down", 5_000);
    let mut w = start();
    wait("update written while the watcher was dead", || {
        rt(&host) == format!("{CANARY}-while-down")
    });
    write("after", 6_000);
    wait("after restart", || rt(&host) == format!("{CANARY}-after"));
    w.kill().unwrap();
    w.wait().unwrap();
    unregister(&layout, None, "sb1").unwrap();
}
