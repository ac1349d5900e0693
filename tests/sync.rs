//! Rotation sync (issue 5) through the library API, on temporary
//! directories standing in for sandbox mounts: no container needed.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use airlock::sync::watch::{Daemon, Options};
use airlock::sync::{
    AccountSpec, Layout, Outcome, Registration, Rejection, Syncer, Truth, list_sandboxes,
    register_sandbox, unregister,
};
use airlock::vault::{CredentialId, Metadata, Method, Record, Vault};
use airlock::{Secret, fsutil};
use serde_json::{Value, json};

const CANARY: &str = "CANARYx7Q2zV9";

fn claude_doc(rt: &str, exp_ms: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({"claudeAiOauth": {
        "accessToken": format!("sk-ant-oat01-{CANARY}-{rt}"), "refreshToken": rt, "expiresAt": exp_ms,
        "scopes": ["user:inference", "user:profile"], "subscriptionType": "max"}}))
    .unwrap()
}

fn host_doc(rt: &str, exp_ms: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "claudeAiOauth": {"accessToken": format!("sk-ant-oat01-{CANARY}-{rt}"), "refreshToken": rt,
            "expiresAt": exp_ms, "scopes": ["user:inference"]},
        "mcpOAuth": {"srv": {"accessToken": "mcp-secret"}},
        "zzFutureKey": [1, 2, 3]}))
    .unwrap()
}

fn rt_of(path: &Path) -> String {
    let v: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    v["claudeAiOauth"]["refreshToken"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// What Claude does: temp file + rename.
fn agent_write_rename(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(".credentials.json.tmp.{}", std::process::id()));
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// What older agents do: truncate + write in place.
fn agent_write_in_place(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Env {
    _root: tempfile::TempDir,
    layout: Layout,
    host_file: PathBuf,
}

fn env() -> Env {
    let root = tempfile::tempdir().unwrap();
    let layout = Layout {
        state: root.path().join("state/sync"),
        runtime: root.path().join("run/sync"),
    };
    let claude_dir = root.path().join("home/.claude");
    fs::create_dir_all(&claude_dir).unwrap();
    let host_file = claude_dir.join(".credentials.json");
    fs::write(&host_file, host_doc("rt-host-1", 1_000_000)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&host_file, fs::Permissions::from_mode(0o640)).unwrap();
    if fsutil::euid() == 0 {
        std::os::unix::fs::chown(&host_file, Some(1234), Some(2345)).unwrap();
    }
    Env {
        _root: root,
        layout,
        host_file,
    }
}

fn reg(e: &Env, sandbox: &str) -> Registration {
    Registration {
        sandbox: sandbox.into(),
        agent: "claude".into(),
        account: "work".into(),
        truth: Truth::HostFile {
            path: e.host_file.clone(),
        },
        pid: None,
        owner: None,
    }
}

fn spec(e: &Env) -> AccountSpec {
    AccountSpec {
        agent: "claude".into(),
        account: "work".into(),
        truth: Truth::HostFile {
            path: e.host_file.clone(),
        },
        shared_dir: e.layout.shared_dir("claude", "work"),
        broker: false,
    }
}

fn assert_host_kept_its_shape(e: &Env) {
    let md = fs::metadata(&e.host_file).unwrap();
    assert_eq!(md.mode() & 0o777, 0o640, "mode kept");
    if fsutil::euid() == 0 {
        assert_eq!((md.uid(), md.gid()), (1234, 2345), "owner kept");
    }
    let v: Value = serde_json::from_slice(&fs::read(&e.host_file).unwrap()).unwrap();
    assert_eq!(v["zzFutureKey"], json!([1, 2, 3]), "unknown key kept");
    assert_eq!(v["mcpOAuth"]["srv"]["accessToken"], "mcp-secret");
}

#[test]
fn sandbox_refresh_reaches_the_host_file_keeping_mode_owner_and_keys() {
    let e = env();
    let dir = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    let shared = dir.join(".credentials.json");
    // seeded with the session only: the host's other secrets stay on the host
    let seeded: Value = serde_json::from_slice(&fs::read(&shared).unwrap()).unwrap();
    assert_eq!(seeded["claudeAiOauth"]["refreshToken"], "rt-host-1");
    assert!(seeded.get("mcpOAuth").is_none());
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);

    let ino = fs::metadata(&e.host_file).unwrap().ino();
    agent_write_rename(&shared, &claude_doc("rt-sb-2", 2_000_000));
    let mut s = Syncer::new(None, None);
    let k = s.add(spec(&e)).unwrap();
    let o = s.sync(&k).unwrap();
    assert!(matches!(o, Outcome::ToTruth { .. }), "{o:?}");
    assert_eq!(rt_of(&e.host_file), "rt-sb-2");
    assert_host_kept_its_shape(&e);
    // documented decision (docs/rotation.md §4): atomic rename, new inode
    assert_ne!(fs::metadata(&e.host_file).unwrap().ino(), ino);
    // the second pass writes nothing
    let again = s.sync(&k).unwrap();
    assert!(
        matches!(again, Outcome::Unchanged | Outcome::OwnWrite),
        "{again:?}"
    );
    // outcome text never has a secret
    assert!(!format!("{o} {o:?}").contains(CANARY));
}

#[test]
fn stale_and_corrupt_writes_are_rejected() {
    let e = env();
    let dir = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    let shared = dir.join(".credentials.json");
    let mut s = Syncer::new(None, None);
    let k = s.add(spec(&e)).unwrap();
    let before = fs::read(&e.host_file).unwrap();

    // older expiry: stale; the newer truth goes back to the sandbox
    agent_write_rename(&shared, &claude_doc("rt-old", 500_000));
    assert!(matches!(s.sync(&k).unwrap(), Outcome::ToShared { .. }));
    assert_eq!(fs::read(&e.host_file).unwrap(), before);
    assert_eq!(rt_of(&shared), "rt-host-1");

    for (bytes, why) in [
        (b"".to_vec(), Rejection::Empty),
        (
            b"{\"claudeAiOauth\":{\"accessTok".to_vec(),
            Rejection::NotJson,
        ),
        (claude_doc("", 9_000_000), Rejection::NoRefreshToken),
        (b"[1,2]".to_vec(), Rejection::NotAnObject),
    ] {
        agent_write_in_place(&shared, &bytes);
        assert_eq!(s.sync(&k).unwrap(), Outcome::IgnoredShared(why));
        assert_eq!(fs::read(&e.host_file).unwrap(), before, "{why}");
        // and the sandbox's file is left alone (it may be a write in progress)
        assert_eq!(fs::read(&shared).unwrap(), bytes);
    }
}

#[test]
fn host_relogin_reaches_the_sandboxes() {
    let e = env();
    let dir = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    let shared = dir.join(".credentials.json");
    let mut s = Syncer::new(None, None);
    let k = s.add(spec(&e)).unwrap();
    agent_write_rename(&e.host_file, &host_doc("rt-relogin", 3_000_000));
    assert!(matches!(s.sync(&k).unwrap(), Outcome::ToShared { .. }));
    assert_eq!(rt_of(&shared), "rt-relogin");
    let v: Value = serde_json::from_slice(&fs::read(&shared).unwrap()).unwrap();
    assert!(v.get("zzFutureKey").is_none());
}

#[test]
fn vault_truth_is_compare_and_set_on_expiry() {
    let root = tempfile::tempdir().unwrap();
    let layout = Layout {
        state: root.path().join("state"),
        runtime: root.path().join("run"),
    };
    let vault = Vault::in_memory();
    let id = CredentialId::new("claude", "work").unwrap();
    let doc = String::from_utf8(host_doc("rt-v1", 1_000_000)).unwrap();
    vault
        .put(Record {
            id: id.clone(),
            method: Method::Session,
            secret: Secret::new(doc),
            meta: Metadata::new("host:/x"),
        })
        .unwrap();
    let r = Registration {
        sandbox: "sb1".into(),
        agent: "claude".into(),
        account: "work".into(),
        truth: Truth::Vault { id: id.clone() },
        pid: None,
        owner: None,
    };
    let dir = register_sandbox(&layout, Some(vault.backend()), r).unwrap();
    let shared = dir.join(".credentials.json");
    assert_eq!(rt_of(&shared), "rt-v1");

    agent_write_rename(&shared, &claude_doc("rt-v2", 2_000_000));
    let out = unregister(&layout, Some(vault.backend()), "sb1").unwrap();
    assert!(matches!(out, Some(Outcome::ToTruth { .. })), "{out:?}");
    let rec = vault.get(&id).unwrap().unwrap();
    let v: Value = serde_json::from_str(rec.secret.expose()).unwrap();
    assert_eq!(v["claudeAiOauth"]["refreshToken"], "rt-v2");
    assert_eq!(v["zzFutureKey"], json!([1, 2, 3]));
    assert_eq!(
        rec.meta.expires_at.map(|t| t.as_millisecond()),
        Some(2_000_000)
    );
    assert!(!dir.exists(), "last sandbox gone: shared dir removed");
}

#[test]
fn unregister_hands_back_and_removes_the_dir_after_the_last_sandbox() {
    let e = env();
    let d1 = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    let d2 = register_sandbox(&e.layout, None, reg(&e, "sb2")).unwrap();
    assert_eq!(d1, d2, "one shared directory per account");
    assert_eq!(list_sandboxes(&e.layout).unwrap().len(), 2);
    agent_write_rename(
        &d1.join(".credentials.json"),
        &claude_doc("rt-exit", 5_000_000),
    );
    let o = unregister(&e.layout, None, "sb1").unwrap();
    assert!(matches!(o, Some(Outcome::ToTruth { .. })), "{o:?}");
    assert_eq!(rt_of(&e.host_file), "rt-exit");
    assert!(d1.exists(), "sb2 still uses it");
    unregister(&e.layout, None, "sb2").unwrap();
    assert!(!d1.exists());
    assert_eq!(unregister(&e.layout, None, "sb2").unwrap(), None);
    assert_host_kept_its_shape(&e);
}

#[test]
fn registering_without_a_valid_session_fails_clearly() {
    let e = env();
    fs::write(&e.host_file, b"").unwrap();
    let err = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap_err();
    assert!(err.to_string().contains("no valid claude session"), "{err}");
}

fn start_daemon(
    layout: &Layout,
    linger: Option<Duration>,
) -> (
    airlock::sync::watch::StopHandle,
    std::thread::JoinHandle<airlock::Result<()>>,
) {
    let d = Daemon::new(
        layout.clone(),
        None,
        Options {
            linger,
            ..Options::default()
        },
    )
    .unwrap();
    let h = d.stop_handle();
    (h, std::thread::spawn(move || d.run()))
}

#[test]
fn watcher_syncs_both_ways_and_never_ping_pongs() {
    let e = env();
    let dir = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    register_sandbox(&e.layout, None, reg(&e, "sb2")).unwrap();
    let shared = dir.join(".credentials.json");
    let (stop, th) = start_daemon(&e.layout, None);
    let t = Duration::from_secs(20);

    // sandbox refresh, temp + rename
    agent_write_rename(&shared, &claude_doc("rt-a", 2_000_000));
    wait_until("rename write to reach host", t, || {
        rt_of(&e.host_file) == "rt-a"
    });
    // sandbox refresh, in place
    agent_write_in_place(&shared, &claude_doc("rt-b", 3_000_000));
    wait_until("in-place write to reach host", t, || {
        rt_of(&e.host_file) == "rt-b"
    });
    assert_host_kept_its_shape(&e);

    // host re-login reaches the sandboxes
    agent_write_rename(&e.host_file, &host_doc("rt-host-2", 4_000_000));
    wait_until("host login to reach sandboxes", t, || {
        rt_of(&shared) == "rt-host-2"
    });

    // stale and corrupt writes never reach the host
    agent_write_rename(&shared, &claude_doc("rt-stale", 100));
    agent_write_in_place(&dir.join(".credentials.json"), b"{\"claudeAiOauth\":");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rt_of(&e.host_file), "rt-host-2");

    // quiet: after the last write nothing moves any more
    agent_write_rename(&shared, &claude_doc("rt-c", 6_000_000));
    wait_until("last write", t, || rt_of(&e.host_file) == "rt-c");
    std::thread::sleep(Duration::from_millis(100));
    let snap = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        (m.ino(), m.mtime_nsec(), fs::read(p).unwrap())
    };
    let (h1, s1) = (snap(&e.host_file), snap(&shared));
    std::thread::sleep(Duration::from_millis(500));
    assert!(snap(&e.host_file) == h1, "host file rewritten: ping-pong");
    assert!(snap(&shared) == s1, "shared file rewritten: ping-pong");

    // status records the last sync without secrets
    let status = fs::read_to_string(e.layout.accounts_dir().join("claude-work.json")).unwrap();
    assert!(status.contains("to-truth"), "{status}");
    assert!(!status.contains(CANARY) && !status.contains("rt-c"));

    stop.stop();
    th.join().unwrap().unwrap();
}

#[test]
fn a_restarted_watcher_loses_no_update() {
    let e = env();
    let dir = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    let shared = dir.join(".credentials.json");
    let (stop, th) = start_daemon(&e.layout, None);
    agent_write_rename(&shared, &claude_doc("rt-1", 2_000_000));
    wait_until("first", Duration::from_secs(20), || {
        rt_of(&e.host_file) == "rt-1"
    });
    stop.stop();
    th.join().unwrap().unwrap();
    // written while no watcher runs
    agent_write_rename(&shared, &claude_doc("rt-2", 3_000_000));
    let (stop, th) = start_daemon(&e.layout, None);
    wait_until("update made while down", Duration::from_secs(20), || {
        rt_of(&e.host_file) == "rt-2"
    });
    // only one watcher at a time
    let second = Daemon::new(e.layout.clone(), None, Options::default());
    assert!(second.unwrap_err().to_string().contains("already running"));
    stop.stop();
    th.join().unwrap().unwrap();
}

#[test]
fn the_watcher_exits_after_the_last_sandbox() {
    let e = env();
    register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    let (_stop, th) = start_daemon(&e.layout, Some(Duration::from_millis(200)));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!th.is_finished(), "a sandbox is registered");
    unregister(&e.layout, None, "sb1").unwrap();
    wait_until("watcher exit", Duration::from_secs(20), || th.is_finished());
    th.join().unwrap().unwrap();
}

#[test]
fn dead_sandboxes_are_reaped_and_handed_back() {
    let e = env();
    let mut r = reg(&e, "sb1");
    // a pid that cannot exist
    r.pid = Some(u32::try_from(i32::MAX).unwrap());
    let dir = register_sandbox(&e.layout, None, r).unwrap();
    agent_write_rename(
        &dir.join(".credentials.json"),
        &claude_doc("rt-dead", 7_000_000),
    );
    let (_stop, th) = start_daemon(&e.layout, Some(Duration::from_millis(100)));
    wait_until("watcher exit", Duration::from_secs(20), || th.is_finished());
    th.join().unwrap().unwrap();
    assert_eq!(rt_of(&e.host_file), "rt-dead");
    assert!(!dir.exists());
}

#[test]
fn a_logged_out_sandbox_gets_the_next_host_login_but_not_the_old_one() {
    let e = env();
    let dir = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    let shared = dir.join(".credentials.json");
    let mut s = Syncer::new(None, None);
    let k = s.add(spec(&e)).unwrap();
    assert!(matches!(s.sync(&k).unwrap(), Outcome::Unchanged));
    // Claude wiped its login after an invalid_grant
    agent_write_rename(&shared, &claude_doc("", 0));
    assert_eq!(
        s.sync(&k).unwrap(),
        Outcome::IgnoredShared(Rejection::NoRefreshToken)
    );
    // the same (dead) host session is not pushed again
    assert_eq!(rt_of(&shared), "");
    // a new login on the host is
    agent_write_rename(&e.host_file, &host_doc("rt-new-login", 500));
    assert!(matches!(s.sync(&k).unwrap(), Outcome::ToShared { .. }));
    assert_eq!(rt_of(&shared), "rt-new-login");
}

#[test]
fn claude_refresh_lock_is_mirrored_between_host_and_sandboxes() {
    let e = env();
    let dir = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    let (stop, th) = start_daemon(&e.layout, None);
    let t = Duration::from_secs(20);
    let in_sandbox = dir.join(".oauth_refresh.lock");
    let on_host = e.host_file.parent().unwrap().join(".oauth_refresh.lock");
    std::thread::sleep(Duration::from_millis(100));

    // a sandbox's Claude starts refreshing: the host's Claude must wait
    fs::create_dir(&in_sandbox).unwrap();
    wait_until("host lock", t, || on_host.is_dir());
    fs::remove_dir(&in_sandbox).unwrap();
    wait_until("host lock released", t, || !on_host.exists());

    // the host's Claude starts refreshing: the sandboxes must wait
    fs::create_dir(&on_host).unwrap();
    wait_until("sandbox lock", t, || in_sandbox.is_dir());
    // an agent's own lock is never removed by airlock
    std::thread::sleep(Duration::from_millis(100));
    assert!(on_host.is_dir());
    fs::remove_dir(&on_host).unwrap();
    wait_until("sandbox lock released", t, || !in_sandbox.exists());

    // a mirror still held when the watcher stops is cleaned up
    fs::create_dir(&in_sandbox).unwrap();
    wait_until("host lock again", t, || on_host.is_dir());
    stop.stop();
    th.join().unwrap().unwrap();
    assert!(!on_host.exists());
    assert!(in_sandbox.is_dir(), "the agent's own lock stays");
}

/// A refresh already under way on the host when the watcher starts is
/// mirrored too: the sandboxes wait for it.
#[test]
fn a_refresh_lock_held_when_the_watcher_starts_is_mirrored() {
    let e = env();
    let dir = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    let in_sandbox = dir.join(".oauth_refresh.lock");
    let on_host = e.host_file.parent().unwrap().join(".oauth_refresh.lock");
    fs::create_dir(&on_host).unwrap();
    let (stop, th) = start_daemon(&e.layout, None);
    let t = Duration::from_secs(20);
    wait_until("sandbox lock", t, || in_sandbox.is_dir());
    fs::remove_dir(&on_host).unwrap();
    wait_until("sandbox lock released", t, || !in_sandbox.exists());
    stop.stop();
    th.join().unwrap().unwrap();
}

#[test]
fn a_changed_vault_record_reaches_running_sandboxes_after_a_kick() {
    let root = tempfile::tempdir().unwrap();
    let layout = Layout {
        state: root.path().join("state"),
        runtime: root.path().join("run"),
    };
    let vault = Vault::in_memory();
    let id = CredentialId::new("claude", "work").unwrap();
    let put = |rt: &str, exp: i64| {
        vault
            .put(Record {
                id: id.clone(),
                method: Method::Session,
                secret: Secret::new(String::from_utf8(claude_doc(rt, exp)).unwrap()),
                meta: Metadata::new("test"),
            })
            .unwrap()
    };
    put("rt-v1", 1_000);
    let backend = vault.backend();
    let r = Registration {
        sandbox: "sb1".into(),
        agent: "claude".into(),
        account: "work".into(),
        truth: Truth::Vault { id: id.clone() },
        pid: None,
        owner: None,
    };
    let dir = register_sandbox(&layout, Some(backend), r).unwrap();
    let shared = dir.join(".credentials.json");
    std::thread::scope(|s| {
        let opts = Options {
            linger: None,
            ..Options::default()
        };
        let d = Daemon::new(layout.clone(), Some(backend), opts).unwrap();
        let stop = d.stop_handle();
        let th = s.spawn(move || d.run());
        // `airlock add` stored a new login, then kicked the watcher
        put("rt-v2", 2_000);
        airlock::sync::kick(&layout, "claude", "work").unwrap();
        wait_until(
            "vault change reaches the sandbox",
            Duration::from_secs(20),
            || rt_of(&shared) == "rt-v2",
        );
        // and a sandbox refresh reaches the vault
        agent_write_rename(&shared, &claude_doc("rt-v3", 3_000));
        wait_until(
            "sandbox refresh reaches the vault",
            Duration::from_secs(20),
            || {
                let rec = backend.get(&id).unwrap().unwrap();
                rec.secret.expose().contains("rt-v3")
            },
        );
        stop.stop();
        th.join().unwrap().unwrap();
    });
}

fn jwt(payload: Value) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.sig",
        b.encode(br#"{"alg":"none"}"#),
        b.encode(payload.to_string())
    )
}

fn other_agent_env(
    agent: &str,
    file: &str,
    host: &Value,
) -> (tempfile::TempDir, Layout, PathBuf, AccountSpec) {
    let root = tempfile::tempdir().unwrap();
    let layout = Layout {
        state: root.path().join("state"),
        runtime: root.path().join("run"),
    };
    let host_dir = root.path().join("home/agent");
    fs::create_dir_all(&host_dir).unwrap();
    let host_file = host_dir.join(file);
    fs::write(&host_file, serde_json::to_vec_pretty(host).unwrap()).unwrap();
    let r = Registration {
        sandbox: "sb1".into(),
        agent: agent.into(),
        account: "default".into(),
        truth: Truth::HostFile {
            path: host_file.clone(),
        },
        pid: None,
        owner: None,
    };
    let dir = register_sandbox(&layout, None, r).unwrap();
    let spec = AccountSpec {
        agent: agent.into(),
        account: "default".into(),
        truth: Truth::HostFile {
            path: host_file.clone(),
        },
        shared_dir: dir,
        broker: false,
    };
    (root, layout, host_file, spec)
}

#[test]
fn codex_sessions_compare_by_access_token_exp() {
    let id = jwt(json!({"email": "a@b"}));
    let host = json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
        "tokens": {"id_token": id, "access_token": jwt(json!({"exp": 1_000})), "refresh_token": "rt_1", "account_id": "acc"},
        "last_refresh": "2026-11-22T10:00:00Z", "zz_host": true});
    let (_root, _layout, host_file, spec) = other_agent_env("codex", "auth.json", &host);
    let shared = spec.shared_dir.join("auth.json");
    let mut s = Syncer::new(None, None);
    let k = s.add(spec).unwrap();
    // Codex itself drops unknown keys when it rewrites auth.json
    let refreshed = json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
        "tokens": {"id_token": id, "access_token": jwt(json!({"exp": 2_000})), "refresh_token": "rt_2", "account_id": "acc"},
        "last_refresh": "2026-11-22T11:00:00Z"});
    fs::write(&shared, serde_json::to_vec_pretty(&refreshed).unwrap()).unwrap();
    assert!(matches!(s.sync(&k).unwrap(), Outcome::ToTruth { .. }));
    let v: Value = serde_json::from_slice(&fs::read(&host_file).unwrap()).unwrap();
    assert_eq!(v["tokens"]["refresh_token"], "rt_2");
    assert_eq!(v["last_refresh"], "2026-11-22T11:00:00Z");
    assert_eq!(v["zz_host"], true);
    assert!(v["OPENAI_API_KEY"].is_null());
    // an older exp loses even with a later last_refresh
    let mut stale = refreshed.clone();
    stale["tokens"]["access_token"] = json!(jwt(json!({"exp": 1_500})));
    stale["tokens"]["refresh_token"] = json!("rt_old");
    stale["last_refresh"] = json!("2026-11-22T12:00:00Z");
    fs::write(&shared, serde_json::to_vec_pretty(&stale).unwrap()).unwrap();
    s.sync(&k).unwrap();
    let v: Value = serde_json::from_slice(&fs::read(&host_file).unwrap()).unwrap();
    assert_eq!(v["tokens"]["refresh_token"], "rt_2");
}

#[test]
fn gemini_write_that_lost_its_refresh_token_is_rejected() {
    let host = json!({"access_token": "ya29.a", "refresh_token": "1//keep", "scope": "s",
        "token_type": "Bearer", "expiry_date": 1_000});
    let (_root, _layout, host_file, spec) = other_agent_env("gemini", "oauth_creds.json", &host);
    let shared = spec.shared_dir.join("oauth_creds.json");
    let mut s = Syncer::new(None, None);
    let k = s.add(spec).unwrap();
    assert_eq!(s.sync(&k).unwrap(), Outcome::Unchanged);
    // gemini-cli#21691: a refresh written without refresh_token
    fs::write(
        &shared,
        br#"{"access_token":"ya29.b","expiry_date":2000,"token_type":"Bearer"}"#,
    )
    .unwrap();
    assert_eq!(
        s.sync(&k).unwrap(),
        Outcome::IgnoredShared(Rejection::NoRefreshToken)
    );
    let v: Value = serde_json::from_slice(&fs::read(&host_file).unwrap()).unwrap();
    assert_eq!(v["refresh_token"], "1//keep");
    // a complete one goes through
    fs::write(&shared, br#"{"access_token":"ya29.c","refresh_token":"1//keep","expiry_date":3000,"token_type":"Bearer"}"#).unwrap();
    assert!(matches!(s.sync(&k).unwrap(), Outcome::ToTruth { .. }));
    let v: Value = serde_json::from_slice(&fs::read(&host_file).unwrap()).unwrap();
    assert_eq!(v["access_token"], "ya29.c");
    assert_eq!(
        v["scope"], "s",
        "a field the sandbox's write lacked is kept"
    );
}

#[test]
fn the_watcher_notices_a_sandbox_process_exit_without_an_event() {
    let e = env();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let mut r = reg(&e, "sb1");
    r.pid = Some(child.id());
    let dir = register_sandbox(&e.layout, None, r).unwrap();
    let (_stop, th) = start_daemon(&e.layout, Some(Duration::from_millis(100)));
    std::thread::sleep(Duration::from_millis(200));
    // a refresh the sandbox made just before it died (the watcher syncs it)
    agent_write_rename(
        &dir.join(".credentials.json"),
        &claude_doc("rt-last", 8_000_000),
    );
    wait_until("synced", Duration::from_secs(20), || {
        rt_of(&e.host_file) == "rt-last"
    });
    assert!(!th.is_finished());
    // `airlock run` is killed: no unregister call
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("watcher exit", Duration::from_secs(20), || th.is_finished());
    th.join().unwrap().unwrap();
    assert!(!dir.exists(), "dead sandbox unregistered");
    assert!(list_sandboxes(&e.layout).unwrap().is_empty());
}

#[test]
fn a_guard_hands_back_on_drop() {
    let e = env();
    let dir = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    {
        let _g = airlock::sync::Guard::new(&e.layout, None, "sb1");
        agent_write_rename(
            &dir.join(".credentials.json"),
            &claude_doc("rt-guard", 9_000_000),
        );
        // `airlock run` fails here: the guard still hands back
    }
    assert_eq!(rt_of(&e.host_file), "rt-guard");
    assert!(!dir.exists());
}

#[test]
fn a_shared_dir_recreated_at_once_is_watched_again() {
    let e = env();
    register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    register_sandbox(&e.layout, None, reg(&e, "keep")).unwrap();
    let (stop, th) = start_daemon(&e.layout, None);
    std::thread::sleep(Duration::from_millis(100));
    unregister(&e.layout, None, "keep").unwrap();
    // the last sandbox leaves and a new one of the same account arrives
    // within one debounce period: the directory is a new one
    unregister(&e.layout, None, "sb1").unwrap();
    let dir = register_sandbox(&e.layout, None, reg(&e, "sb2")).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    agent_write_rename(
        &dir.join(".credentials.json"),
        &claude_doc("rt-new-dir", 9_000_000),
    );
    wait_until(
        "write in the new dir reaches host",
        Duration::from_secs(20),
        || rt_of(&e.host_file) == "rt-new-dir",
    );
    stop.stop();
    th.join().unwrap().unwrap();
}

/// Runs `f` on a thread and fails when it takes longer than `t` (a FIFO
/// opened for reading would block forever).
fn within<T: Send + 'static>(t: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(t)
        .expect("timed out: the shared file blocked the reader")
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn hostile_shared_files_are_refused_and_the_truth_is_kept() {
    let e = env();
    let dir = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    let shared = dir.join(".credentials.json");
    // A newer session the sandbox must not be able to smuggle in by a link.
    let elsewhere = e._root.path().join("root-only.json");
    fs::write(&elsewhere, claude_doc("rt-elsewhere", 9_000_000)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o600)).unwrap();
    let before = fs::read(&e.host_file).unwrap();

    type Make = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Make, Rejection)> = vec![
        (
            "garbage",
            Box::new(|p| fs::write(p, [0xff, 0x00, 0x7b, 0x13]).unwrap()),
            Rejection::NotJson,
        ),
        (
            "1 GiB sparse file",
            Box::new(|p| fs::File::create(p).unwrap().set_len(1 << 30).unwrap()),
            Rejection::TooLarge,
        ),
        (
            "just over 1 MiB of JSON",
            Box::new(|p| {
                let mut b = claude_doc("rt-big", 9_000_000);
                b.extend(std::iter::repeat_n(b' ', 1 << 20));
                fs::write(p, b).unwrap()
            }),
            Rejection::TooLarge,
        ),
        (
            "symlink to a root-only file",
            Box::new({
                let t = elsewhere.clone();
                move |p| std::os::unix::fs::symlink(&t, p).unwrap()
            }),
            Rejection::NotRegularFile("symbolic link"),
        ),
        (
            "symlink to /etc/shadow",
            Box::new(|p| std::os::unix::fs::symlink("/etc/shadow", p).unwrap()),
            Rejection::NotRegularFile("symbolic link"),
        ),
        ("FIFO", Box::new(mkfifo), Rejection::NotRegularFile("FIFO")),
        (
            "directory",
            Box::new(|p| fs::create_dir(p).unwrap()),
            Rejection::NotRegularFile("directory"),
        ),
    ];
    let status_dir = e.layout.accounts_dir();
    let spec = spec(&e);
    for (what, make, why) in cases {
        let mut s = Syncer::new(None, Some(status_dir.clone()));
        let k = s.add(spec.clone()).unwrap();
        // the truth first reached the sandbox: nothing new on the host side
        let _ = fs::remove_dir(&shared);
        let _ = fs::remove_file(&shared);
        s.sync(&k).unwrap();
        fs::remove_file(&shared).unwrap();
        make(&shared);
        let (s, out) = within(Duration::from_secs(20), move || {
            let o = s.sync(&k);
            (s, o)
        });
        assert_eq!(out.unwrap(), Outcome::IgnoredShared(why), "{what}");
        drop(s);
        assert_eq!(
            fs::read(&e.host_file).unwrap(),
            before,
            "{what}: truth kept"
        );
        assert!(
            fs::symlink_metadata(&shared).is_ok(),
            "{what}: the sandbox's file is left as it is"
        );
        let st = airlock::sync::engine::read_status(&status_dir, "claude-work").unwrap();
        let said = st.last_rejected.unwrap_or_default();
        if why.is_refusal() {
            assert_eq!(said, why.to_string(), "{what}");
            assert!(said.starts_with("refused: "), "{what}: {said}");
        }
        assert!(!said.contains(CANARY), "{what}");
    }
}

#[test]
fn the_watcher_survives_a_fifo_and_replaces_it_with_the_next_login() {
    let e = env();
    let dir = register_sandbox(&e.layout, None, reg(&e, "sb1")).unwrap();
    let shared = dir.join(".credentials.json");
    let (stop, th) = start_daemon(&e.layout, None);
    let t = Duration::from_secs(20);
    wait_until("the first sync", t, || shared.is_file());
    // Swapped in at once (a removal first would let the watcher put the
    // truth back before the FIFO is made).
    let fifo = dir.join("fifo.tmp");
    mkfifo(&fifo);
    fs::rename(&fifo, &shared).unwrap();
    let status = e.layout.accounts_dir().join("claude-work.json");
    wait_until("the refusal in the status", t, || {
        fs::read_to_string(&status).is_ok_and(|s| s.contains("refused: the shared file is a FIFO"))
    });
    // still alive: a host login replaces the FIFO (rename, never opened)
    agent_write_rename(&e.host_file, &host_doc("rt-host-2", 4_000_000));
    wait_until("the login to replace the FIFO", t, || {
        shared.is_file() && rt_of(&shared) == "rt-host-2"
    });
    stop.stop();
    th.join().unwrap().unwrap();
}

#[test]
fn another_accounts_session_is_refused() {
    let id = jwt(json!({"email": "a@b", "sub": "user-a"}));
    let host = json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
        "tokens": {"id_token": id, "access_token": jwt(json!({"exp": 1_000})), "refresh_token": "rt_1", "account_id": "acc-a"},
        "last_refresh": "2026-11-22T10:00:00Z"});
    let (_root, layout, host_file, spec) = other_agent_env("codex", "auth.json", &host);
    let shared = spec.shared_dir.join("auth.json");
    let mut s = Syncer::new(None, Some(layout.accounts_dir()));
    let k = s.add(spec).unwrap();
    s.sync(&k).unwrap();
    let before = fs::read(&host_file).unwrap();
    let foreign = json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
        "tokens": {"id_token": jwt(json!({"sub": "user-b"})), "access_token": jwt(json!({"exp": 9_000})),
            "refresh_token": "rt_other", "account_id": "acc-b"},
        "last_refresh": "2026-11-22T11:00:00Z"});
    fs::write(&shared, serde_json::to_vec_pretty(&foreign).unwrap()).unwrap();
    assert_eq!(
        s.sync(&k).unwrap(),
        Outcome::IgnoredShared(Rejection::OtherAccount)
    );
    assert_eq!(fs::read(&host_file).unwrap(), before);
    let st = airlock::sync::engine::read_status(&layout.accounts_dir(), &k).unwrap();
    assert_eq!(
        st.last_rejected.as_deref(),
        Some("refused: the session belongs to another account")
    );
}
