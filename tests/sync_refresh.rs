//! Pre-refresh (`docs/rotation.md` §5): the watcher refreshes each synced
//! rotating session itself, before any agent's refresh window, against the
//! mock token server with single-use refresh tokens
//! (`AIRLOCK_CLAUDE_TOKEN_URL` / `AIRLOCK_CODEX_TOKEN_URL` point at it).
//!
//! The token URL comes from the environment, which is process-global: the
//! tests take [`SERIAL`] and set it for their own mock. The whole binary
//! logs at TRACE into one buffer, and every test checks at its end that no
//! token the mock issued appears in it, in the status files or in the
//! registry.

#[path = "support/mock_oauth.rs"]
mod mock_oauth;

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use airlock::Secret;
use airlock::sync::engine::{RefreshOutcome, read_status};
use airlock::sync::refresh::{Failure, Policy};
use airlock::sync::watch::{Daemon, Options, StopHandle};
use airlock::sync::{
    AccountSpec, Layout, Registration, SyncStatus, Syncer, Truth, register_sandbox,
};
use airlock::vault::{Backend, CredentialId, Metadata, Method, Record, Vault};
use common::codex_binary;
use mock_oauth::{Issued, MockOAuth, RequestShape, Style, jwt, now_ms, post_json};
use serde_json::{Value, json};

const CLAUDE_CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
const CLAUDE_SCOPE: &str =
    "user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload";
const CODEX_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything logged by this test binary, at TRACE (dependencies included).
fn logs() -> &'static Buf {
    static LOGS: OnceLock<Buf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Buf::default();
        let w = buf.clone();
        // every crate at trace, but for ureq's body dumps, which airlock's
        // logging turns off whatever AIRLOCK_LOG says (src/cli/mod.rs)
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace,ureq_proto=off"))
            .with_writer(move || w.clone())
            .with_ansi(false)
            .try_init();
        buf
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

struct Fx {
    root: tempfile::TempDir,
    layout: Layout,
    _serial: MutexGuard<'static, ()>,
}

/// A sync layout in a fresh directory; the token URLs point at `mock`.
fn fixture(mock: &MockOAuth) -> Fx {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    logs();
    // SAFETY: every test of this binary holds SERIAL while it runs, and no
    // thread of a previous test is left running (daemons are joined), so
    // nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("AIRLOCK_CLAUDE_TOKEN_URL", mock.url());
        std::env::set_var("AIRLOCK_CODEX_TOKEN_URL", mock.url());
        std::env::set_var("AIRLOCK_GEMINI_TOKEN_URL", mock.url());
        std::env::remove_var("CODEX_REFRESH_TOKEN_URL_OVERRIDE");
    }
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    let root = tempfile::tempdir_in(&base).unwrap();
    let layout = Layout {
        state: root.path().join("state/sync"),
        runtime: root.path().join("run/sync"),
    };
    Fx {
        root,
        layout,
        _serial: serial,
    }
}

fn policy(lead: Duration, retry: Duration) -> Policy {
    Policy {
        enabled: true,
        lead,
        timeout: Duration::from_secs(5),
        retry,
    }
}

struct Running {
    stop: StopHandle,
    th: Option<JoinHandle<airlock::Result<()>>>,
}

impl Running {
    fn finish(mut self) {
        self.stop.stop();
        if let Some(t) = self.th.take() {
            t.join().unwrap().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.th.take() {
            let _ = t.join();
        }
    }
}

fn start(layout: &Layout, vault: Option<&'static dyn Backend>, p: Policy) -> Running {
    let d = Daemon::new(
        layout.clone(),
        vault,
        Options {
            linger: None,
            ..Options::default()
        },
    )
    .unwrap()
    .with_refresh(p);
    let stop = d.stop_handle();
    Running {
        stop,
        th: Some(std::thread::spawn(move || d.run())),
    }
}

fn register(fx: &Fx, vault: Option<&dyn Backend>, agent: &str, truth: Truth) -> PathBuf {
    register_sandbox(
        &fx.layout,
        vault,
        Registration {
            sandbox: format!("{agent}-sb"),
            agent: agent.into(),
            account: "default".into(),
            truth,
            pid: None,
            owner: None,
        },
    )
    .unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        if t.elapsed() > timeout {
            // mock tokens only: nothing real to leak
            let logs = log_text();
            let tail: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains("airlock"))
                .rev()
                .take(30)
                .collect();
            panic!(
                "timed out waiting for {what}; last log lines (newest first):\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap_or_default()).unwrap_or(Value::Null)
}

fn claude_host(i: &Issued) -> Value {
    json!({"claudeAiOauth": {"accessToken": i.access_token, "refreshToken": i.refresh_token,
        "expiresAt": i.expires_at_ms, "scopes": ["user:inference"], "subscriptionType": "max",
        "zzInner": "kept"},
        "mcpOAuth": {"srv": {"accessToken": "mcp-not-ours"}}, "zzFutureKey": [1, 2, 3]})
}

fn claude_rt(p: &Path) -> String {
    read_json(p)["claudeAiOauth"]["refreshToken"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn status(fx: &Fx, key: &str) -> SyncStatus {
    read_status(&fx.layout.accounts_dir(), key).unwrap_or_default()
}

fn write_json(p: &Path, v: &Value) {
    fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// No token the mock issued is in the logs, the status files or the registry.
fn assert_no_secret_leaked(fx: &Fx, mock: &MockOAuth) {
    let logs = log_text();
    let mut files = String::new();
    for dir in [fx.layout.accounts_dir(), fx.layout.sandboxes_dir()] {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            files.push_str(&fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    for s in mock.issued_secrets() {
        assert!(!logs.contains(&s), "a token is in the logs");
        assert!(
            !files.contains(&s),
            "a token is in a status or registry file"
        );
    }
}

fn assert_claude_request(r: &RequestShape) {
    assert_eq!(r.path, "/oauth/token");
    assert_eq!(r.media_type().as_deref(), Some("application/json"));
    assert!(r.json);
    let keys: Vec<&str> = r.keys.iter().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["client_id", "grant_type", "refresh_token", "scope"],
        "reference §1.8"
    );
    assert_eq!(r.client_id.as_deref(), Some(CLAUDE_CLIENT_ID));
    assert_eq!(r.grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(r.scope.as_deref(), Some(CLAUDE_SCOPE));
    assert!(r.sent_by_airlock(), "{:?}", r.user_agent);
}

/// a. A host-file session within the lead is refreshed once by airlock; the
/// next refresh comes at expiry − min(lead, lifetime / 2), and no agent
/// ever needs to refresh (the session never enters an agent's window).
#[test]
fn claude_host_file_session_is_refreshed_once_then_again_when_due() {
    const LIFE_S: u64 = 6;
    let mock = MockOAuth::start(Style::Claude, LIFE_S);
    let fx = fixture(&mock);
    let host_dir = fx.root.path().join("home/.claude");
    fs::create_dir_all(&host_dir).unwrap();
    let host_file = host_dir.join(".credentials.json");
    let mut login = mock.login();
    // 3 s left: within the default 10-minute lead (and shorter than the
    // new session's lifetime: see the report on `newer_than`)
    login.expires_at_ms = now_ms() + 3_000;
    write_json(&host_file, &claude_host(&login));
    fs::set_permissions(&host_file, fs::Permissions::from_mode(0o640)).unwrap();
    let before = fs::metadata(&host_file).unwrap();
    let shared = register(
        &fx,
        None,
        "claude",
        Truth::HostFile {
            path: host_file.clone(),
        },
    )
    .join(".credentials.json");

    let d = start(
        &fx.layout,
        None,
        policy(Duration::from_secs(600), Duration::from_secs(1)),
    );
    wait_until("airlock's refresh", Duration::from_secs(5), || {
        claude_rt(&host_file) != login.refresh_token
            && status(&fx, "claude-default").next_refresh.is_some()
    });
    assert_eq!(mock.refreshes(), 1);
    assert_eq!(mock.reuse_errors() + mock.unknown_errors(), 0);
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_claude_request(&reqs[0]);

    // the host file: new session, everything else kept, same mode and owner
    let host = read_json(&host_file);
    let o = &host["claudeAiOauth"];
    let rt1 = o["refreshToken"].as_str().unwrap().to_owned();
    assert!(mock.is_live(&rt1));
    assert_ne!(o["accessToken"], json!(login.access_token));
    let exp1 = o["expiresAt"].as_i64().unwrap();
    assert!(
        (exp1 - (now_ms() + LIFE_S as i64 * 1000)).abs() < 1500,
        "{exp1}"
    );
    assert_eq!(o["subscriptionType"], "max");
    assert_eq!(o["zzInner"], "kept");
    assert_eq!(o["scopes"], json!(["user:inference", "user:profile"]));
    assert_eq!(host["mcpOAuth"]["srv"]["accessToken"], "mcp-not-ours");
    assert_eq!(host["zzFutureKey"], json!([1, 2, 3]));
    let after = fs::metadata(&host_file).unwrap();
    assert_eq!(after.mode() & 0o777, 0o640);
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    // the sandboxes have it too
    assert_eq!(claude_rt(&shared), rt1);
    // the status
    let st = status(&fx, "claude-default");
    assert!(st.refreshed_at.is_some());
    assert_eq!(st.direction.as_deref(), Some("refreshed"));
    assert_eq!(st.refresh_error, None);
    let next = st.next_refresh.unwrap().as_millisecond();
    // lead 600 s, but the session lives 6 s: half its lifetime
    let want = exp1 - (LIFE_S as i64 * 1000) / 2;
    assert!((next - want).abs() < 500, "next {next} vs {want}");

    // nothing until then; then exactly one more, by airlock, and the shared
    // session never comes within 1 s of expiring (no agent window reached)
    let mut min_left = i64::MAX;
    let mut second_at = None;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(LIFE_S) {
        let now = now_ms();
        let n = mock.refreshes();
        if n == 1 {
            assert!(now < next + 1500, "the second refresh is late");
        } else if second_at.is_none() {
            second_at = Some(now);
            assert!(now >= next - 100, "refreshed {} ms early", next - now);
        }
        let v = read_json(&shared);
        if let Some(e) = v["claudeAiOauth"]["expiresAt"].as_i64() {
            min_left = min_left.min(e - now);
        }
        if second_at.is_some_and(|s| now > s + 300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(second_at.is_some(), "no second refresh");
    assert_eq!(mock.refreshes(), 2);
    assert!(
        min_left >= 1000,
        "the session came within {min_left} ms of expiring"
    );
    assert!(mock.requests().iter().all(RequestShape::sent_by_airlock));
    assert_eq!(mock.reuse_errors(), 0);
    assert!(mock.is_live(&claude_rt(&host_file)));
    d.finish();
    assert_no_secret_leaked(&fx, &mock);
}

/// An agent's refresh lock in the shared directory, kept fresh like
/// `proper-lockfile` does, until dropped.
struct AgentLock {
    path: PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
    toucher: Option<JoinHandle<()>>,
}

impl AgentLock {
    fn take(dir: &Path) -> AgentLock {
        let path = dir.join(".oauth_refresh.lock");
        fs::create_dir(&path).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (path.clone(), stop.clone());
        let toucher = std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(f) = fs::File::open(&p) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        AgentLock {
            path,
            stop,
            toucher: Some(toucher),
        }
    }
}

impl Drop for AgentLock {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.toucher.take() {
            let _ = t.join();
        }
        let _ = fs::remove_dir(&self.path);
    }
}

/// A due Claude session in a host file with its sandbox registered; lead 3 s,
/// tokens from the mock live 10 s.
fn due_claude(fx: &Fx, mock: &MockOAuth) -> (Issued, PathBuf, PathBuf) {
    let host_dir = fx.root.path().join("home/.claude");
    fs::create_dir_all(&host_dir).unwrap();
    let host_file = host_dir.join(".credentials.json");
    let mut login = mock.login();
    login.expires_at_ms = now_ms() + 2_000;
    write_json(&host_file, &claude_host(&login));
    let dir = register(
        fx,
        None,
        "claude",
        Truth::HostFile {
            path: host_file.clone(),
        },
    );
    (login, host_file, dir)
}

/// b. While an agent holds its refresh lock, airlock does not refresh; once
/// it is gone, airlock does.
#[test]
fn an_agent_holding_its_refresh_lock_makes_airlock_wait() {
    let mock = MockOAuth::start(Style::Claude, 10);
    let fx = fixture(&mock);
    let (login, host_file, dir) = due_claude(&fx, &mock);
    let lock = AgentLock::take(&dir);
    let d = start(
        &fx.layout,
        None,
        policy(Duration::from_secs(3), Duration::from_millis(200)),
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        mock.requests().is_empty(),
        "refreshed under an agent's lock"
    );
    assert!(status(&fx, "claude-default").refreshed_at.is_none());
    assert_eq!(claude_rt(&host_file), login.refresh_token);

    drop(lock);
    wait_until("airlock's refresh", Duration::from_secs(4), || {
        claude_rt(&host_file) != login.refresh_token
    });
    assert_eq!(mock.refreshes(), 1);
    assert_eq!(mock.reuse_errors(), 0);
    assert!(mock.is_live(&claude_rt(&host_file)));
    assert_eq!(
        claude_rt(&dir.join(".credentials.json")),
        claude_rt(&host_file)
    );
    // (released right after the writes: give the watcher a moment)
    wait_until("the lock released", Duration::from_secs(2), || {
        !dir.join(".oauth_refresh.lock").exists()
    });
    d.finish();
    assert_no_secret_leaked(&fx, &mock);
}

/// b'. The agent holding the lock refreshes and writes its session before
/// releasing: airlock finds it, syncs it, and sends nothing.
#[test]
fn airlock_does_not_refresh_after_an_agent_just_did() {
    let mock = MockOAuth::start(Style::Claude, 10);
    let fx = fixture(&mock);
    let (login, host_file, dir) = due_claude(&fx, &mock);
    let shared = dir.join(".credentials.json");
    let lock = AgentLock::take(&dir);
    let d = start(
        &fx.layout,
        None,
        policy(Duration::from_secs(3), Duration::from_millis(200)),
    );
    std::thread::sleep(Duration::from_millis(1500));
    // the agent refreshes under its lock and writes temp + rename
    let (st, r) = post_json(
        mock.addr(),
        "/v1/oauth/token",
        &json!({"grant_type": "refresh_token", "refresh_token": login.refresh_token,
                "client_id": CLAUDE_CLIENT_ID}),
    )
    .unwrap();
    assert_eq!(st, 200);
    let mut v = read_json(&shared);
    v["claudeAiOauth"]["accessToken"] = r["access_token"].clone();
    v["claudeAiOauth"]["refreshToken"] = r["refresh_token"].clone();
    v["claudeAiOauth"]["expiresAt"] = json!(now_ms() + 10_000);
    let agent_rt = r["refresh_token"].as_str().unwrap().to_owned();
    let tmp = dir.join(".credentials.json.tmp.agent");
    write_json(&tmp, &v);
    fs::rename(&tmp, &shared).unwrap();
    drop(lock);

    wait_until(
        "the agent's session on the host",
        Duration::from_secs(3),
        || claude_rt(&host_file) == agent_rt,
    );
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(mock.refreshes(), 1, "airlock refreshed again");
    assert_eq!(mock.requests().len(), 1);
    assert!(!mock.requests()[0].sent_by_airlock());
    assert_eq!(claude_rt(&host_file), agent_rt);
    assert!(mock.is_live(&agent_rt));
    d.finish();
    assert_no_secret_leaked(&fx, &mock);
}

/// c. A server error is recorded in the status and retried after `retry`
/// (not sooner); the refresh succeeds once the server recovers.
#[test]
fn a_transient_failure_is_recorded_and_retried() {
    let mock = MockOAuth::start(Style::Claude, 10);
    let fx = fixture(&mock);
    let (login, host_file, _dir) = due_claude(&fx, &mock);
    mock.fail_with(Some(500));
    let retry = Duration::from_millis(1500);
    let d = start(&fx.layout, None, policy(Duration::from_secs(3), retry));
    wait_until("the failure in the status", Duration::from_secs(4), || {
        status(&fx, "claude-default").refresh_error.is_some()
    });
    let st = status(&fx, "claude-default");
    let err = st.refresh_error.unwrap();
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(st.refresh_failed_at.is_some());
    assert!(st.refreshed_at.is_none());
    // the retry time is announced, and honoured
    let failed = st.refresh_failed_at.unwrap().as_millisecond();
    let next = st.next_refresh.unwrap().as_millisecond();
    assert!((next - failed - retry.as_millis() as i64).abs() < 200);
    wait_until("a retry", Duration::from_secs(4), || {
        mock.requests().len() >= 2
    });
    let reqs = mock.requests();
    assert!(reqs.iter().all(|r| r.status == 500));
    let gap = reqs[1].at_ms - reqs[0].at_ms;
    assert!(
        gap >= retry.as_millis() as i64 - 100,
        "retried after {gap} ms"
    );
    assert_eq!(claude_rt(&host_file), login.refresh_token);

    mock.fail_with(None);
    wait_until("the refresh", Duration::from_secs(4), || {
        claude_rt(&host_file) != login.refresh_token
    });
    let n500 = mock.requests().iter().filter(|r| r.status == 500).count();
    assert!(n500 <= 4, "{n500} attempts in a few seconds");
    assert_eq!(mock.refreshes(), 1);
    assert!(mock.is_live(&claude_rt(&host_file)));
    wait_until("the status", Duration::from_secs(2), || {
        status(&fx, "claude-default").refreshed_at.is_some()
    });
    let st = status(&fx, "claude-default");
    assert_eq!(st.refresh_error, None);
    assert_eq!(st.refresh_failed_at, None);
    d.finish();
    assert_no_secret_leaked(&fx, &mock);
}

/// c'. A refresh token the server already used is `Failure::Spent`: said in
/// the status, and never presented again: not by that syncer, and not by a
/// watcher started later (the status file keeps a short fingerprint).
#[test]
fn a_spent_refresh_token_is_not_retried() {
    let mock = MockOAuth::start(Style::Claude, 10);
    let fx = fixture(&mock);
    let (login, host_file, dir) = due_claude(&fx, &mock);
    // someone else used it (a copy elsewhere)
    let (st, _) = post_json(
        mock.addr(),
        "/v1/oauth/token",
        &json!({"grant_type": "refresh_token", "refresh_token": login.refresh_token}),
    )
    .unwrap();
    assert_eq!(st, 200);

    let p = policy(Duration::from_secs(3), Duration::from_millis(100));
    let mut s = Syncer::new(None, Some(fx.layout.accounts_dir()));
    let key = s
        .add(AccountSpec {
            agent: "claude".into(),
            account: "default".into(),
            truth: Truth::HostFile {
                path: host_file.clone(),
            },
            shared_dir: dir.clone(),
            broker: false,
        })
        .unwrap();
    s.sync(&key).unwrap();
    match s.refresh(&key, &p).unwrap() {
        RefreshOutcome::Failed(Failure::Spent(code)) => assert_eq!(code, "invalid_grant"),
        other => panic!("expected a spent token, got {other:?}"),
    }
    assert_eq!(mock.reuse_errors(), 1);
    let st = status(&fx, &key);
    let err = st.refresh_error.unwrap();
    assert!(
        err.contains("refused") && err.contains("invalid_grant"),
        "{err}"
    );
    assert_eq!(st.next_refresh, None, "a spent token is not scheduled");
    assert_eq!(s.refresh_at(&key, &p), None);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.refresh(&key, &p).unwrap(), RefreshOutcome::NotDue);
    assert_eq!(mock.reuse_errors(), 1);
    drop(s);

    assert!(st.refused.is_some());
    // a watcher started later does not present it either
    let d = start(&fx.layout, None, p);
    std::thread::sleep(Duration::from_millis(3000));
    d.finish();
    assert_eq!(mock.reuse_errors(), 1, "a restarted watcher retried it");
    assert_eq!(mock.refreshes(), 1);
    assert_eq!(claude_rt(&host_file), login.refresh_token);
    assert_no_secret_leaked(&fx, &mock);
}

fn codex_doc(i: &Issued) -> Value {
    let expired = jwt(&json!({"exp": now_ms() / 1000 - 60}));
    let id_token = jwt(&json!({"email": "mock@example.com",
        "https://api.openai.com/auth": {"chatgpt_plan_type": "pro", "chatgpt_account_id": "acc"}}));
    json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
        "tokens": {"id_token": id_token, "access_token": expired, "refresh_token": i.refresh_token,
                   "account_id": "acc"},
        "last_refresh": "2026-11-01T00:00:00Z", "zz_host_only": "keep"})
}

fn assert_codex_refreshed(doc: &Value, login: &Issued, mock: &MockOAuth, started: i64) {
    let t = &doc["tokens"];
    let rt = t["refresh_token"].as_str().unwrap();
    assert_ne!(rt, login.refresh_token);
    assert!(mock.is_live(rt));
    // the access token is the mock's fresh JWT, the id token its too
    let at = t["access_token"].as_str().unwrap();
    assert!(mock.issued_secrets().iter().any(|s| s == at));
    let id = t["id_token"].as_str().unwrap();
    assert!(mock.issued_secrets().iter().any(|s| s == id));
    assert_eq!(t["account_id"], "acc");
    assert_eq!(doc["zz_host_only"], "keep");
    assert_eq!(doc["auth_mode"], "chatgpt");
    let lr: jiff::Timestamp = doc["last_refresh"].as_str().unwrap().parse().unwrap();
    assert!(
        lr.as_millisecond() >= started - 5,
        "last_refresh not updated"
    );
}

fn codex_request_ok(r: &RequestShape) {
    let keys: Vec<&str> = r.keys.iter().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["client_id", "grant_type", "refresh_reason", "refresh_token"]
    );
    assert_eq!(r.refresh_reason.as_deref(), Some("proactive_expiry"));
    assert_eq!(r.client_id.as_deref(), Some(CODEX_CLIENT_ID));
    assert_eq!(r.grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(r.media_type().as_deref(), Some("application/json"));
    assert!(r.sent_by_airlock());
}

/// d. A Codex host file with an expired access token: one refresh.
#[test]
fn codex_host_file_with_an_expired_access_token_is_refreshed_once() {
    let mock = MockOAuth::start(Style::Codex, 3600);
    let fx = fixture(&mock);
    let host_dir = fx.root.path().join("home/.codex");
    fs::create_dir_all(&host_dir).unwrap();
    let host_file = host_dir.join("auth.json");
    let login = mock.login();
    write_json(&host_file, &codex_doc(&login));
    let started = now_ms();
    let dir = register(
        &fx,
        None,
        "codex",
        Truth::HostFile {
            path: host_file.clone(),
        },
    );
    let d = start(
        &fx.layout,
        None,
        policy(Duration::from_secs(600), Duration::from_secs(1)),
    );
    let rt = |p: &Path| {
        read_json(p)["tokens"]["refresh_token"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    wait_until("airlock's refresh", Duration::from_secs(5), || {
        rt(&host_file) != login.refresh_token
    });
    std::thread::sleep(Duration::from_millis(1200));
    d.finish();
    assert_eq!(mock.refreshes(), 1);
    assert_eq!(mock.requests().len(), 1);
    codex_request_ok(&mock.requests()[0]);
    assert_codex_refreshed(&read_json(&host_file), &login, &mock, started);
    assert_eq!(rt(&dir.join("auth.json")), rt(&host_file));
    assert_no_secret_leaked(&fx, &mock);
}

/// d'. The same with the vault as the source of truth.
#[test]
fn codex_vault_session_with_an_expired_access_token_is_refreshed_once() {
    let mock = MockOAuth::start(Style::Codex, 3600);
    let fx = fixture(&mock);
    let vault: &'static Vault = Box::leak(Box::new(Vault::in_memory()));
    let backend: &'static dyn Backend = vault.backend();
    let id = CredentialId::new("codex", "default").unwrap();
    let login = mock.login();
    backend
        .put(Record {
            id: id.clone(),
            method: Method::Session,
            secret: Secret::new(codex_doc(&login).to_string()),
            meta: Metadata::new("test"),
        })
        .unwrap();
    let started = now_ms();
    let dir = register(&fx, Some(backend), "codex", Truth::Vault { id: id.clone() });
    let d = start(
        &fx.layout,
        Some(backend),
        policy(Duration::from_secs(600), Duration::from_secs(1)),
    );
    let vault_doc = || -> Value {
        let r = backend.get(&id).unwrap().unwrap();
        serde_json::from_str(r.secret.expose()).unwrap()
    };
    wait_until("airlock's refresh", Duration::from_secs(5), || {
        vault_doc()["tokens"]["refresh_token"] != json!(login.refresh_token)
    });
    std::thread::sleep(Duration::from_millis(1200));
    d.finish();
    assert_eq!(mock.refreshes(), 1);
    codex_request_ok(&mock.requests()[0]);
    assert_codex_refreshed(&vault_doc(), &login, &mock, started);
    assert_eq!(
        read_json(&dir.join("auth.json"))["tokens"]["refresh_token"],
        vault_doc()["tokens"]["refresh_token"]
    );
    assert_no_secret_leaked(&fx, &mock);
}

/// e. airlock's Codex refresh request has the genuine Codex CLI's shape:
/// same body keys, client_id, grant_type, content type and path.
#[test]
fn airlock_codex_request_matches_the_genuine_codex_cli() {
    let Some(codex) = codex_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "codex binary missing in CI"
        );
        eprintln!("skipping: no codex binary (set AIRLOCK_TEST_CODEX)");
        return;
    };
    // the genuine request
    let genuine_mock = MockOAuth::start(Style::Codex, 3600);
    let fx = fixture(&genuine_mock);
    let home = fx.root.path().join("codex-home");
    fs::create_dir_all(&home).unwrap();
    write_json(&home.join("auth.json"), &codex_doc(&genuine_mock.login()));
    let mut child = std::process::Command::new(&codex)
        .args(["exec", "--skip-git-repo-check", "hi"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", fx.root.path())
        .env("CODEX_HOME", &home)
        .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", genuine_mock.url())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while genuine_mock.requests().is_empty() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let genuine = genuine_mock
        .requests()
        .first()
        .cloned()
        .expect("codex sent no refresh request");
    assert_eq!(genuine_mock.refreshes(), 1, "{genuine:?}");

    // airlock's, to a mock of its own (the env points there)
    let mock = MockOAuth::start(Style::Codex, 3600);
    // SAFETY: as in `fixture`: this test holds SERIAL and runs no other thread.
    unsafe { std::env::set_var("AIRLOCK_CODEX_TOKEN_URL", mock.url()) };
    let host_file = fx.root.path().join("home/.codex/auth.json");
    fs::create_dir_all(host_file.parent().unwrap()).unwrap();
    write_json(&host_file, &codex_doc(&mock.login()));
    let dir = register(&fx, None, "codex", Truth::HostFile { path: host_file });
    let mut s = Syncer::new(None, Some(fx.layout.accounts_dir()));
    let key = s
        .add(AccountSpec {
            agent: "codex".into(),
            account: "default".into(),
            truth: Truth::HostFile {
                path: fx.root.path().join("home/.codex/auth.json"),
            },
            shared_dir: dir,
            broker: false,
        })
        .unwrap();
    s.sync(&key).unwrap();
    let p = policy(Duration::from_secs(600), Duration::from_secs(1));
    assert!(matches!(
        s.refresh(&key, &p).unwrap(),
        RefreshOutcome::Refreshed { .. }
    ));
    let ours = mock.requests().first().cloned().unwrap();
    eprintln!("genuine codex: {genuine:?}\nairlock:       {ours:?}");
    assert_eq!(ours.keys, genuine.keys);
    assert_eq!(ours.client_id, genuine.client_id);
    assert_eq!(ours.grant_type, genuine.grant_type);
    assert_eq!(ours.scope, genuine.scope);
    assert_eq!(ours.refresh_reason, genuine.refresh_reason);
    assert_eq!(ours.json, genuine.json);
    assert_eq!(ours.media_type(), genuine.media_type());
    assert_eq!(ours.path, genuine.path);
    codex_request_ok(&ours);
    assert_no_secret_leaked(&fx, &mock);
    assert_no_secret_leaked(&fx, &genuine_mock);
}

/// f. At TRACE, with a failure, a retry and a refresh on the way, no token
/// reaches the logs or the status file (and the logs are really captured).
#[test]
fn trace_logs_and_status_never_contain_a_token() {
    let mock = MockOAuth::start(Style::Claude, 10);
    let fx = fixture(&mock);
    let (login, host_file, _dir) = due_claude(&fx, &mock);
    mock.fail_with(Some(503));
    let d = start(
        &fx.layout,
        None,
        policy(Duration::from_secs(3), Duration::from_millis(100)),
    );
    wait_until("a failure", Duration::from_secs(4), || {
        !mock.requests().is_empty()
    });
    mock.fail_with(None);
    wait_until("the refresh", Duration::from_secs(4), || {
        claude_rt(&host_file) != login.refresh_token
    });
    d.finish();
    let logs = log_text();
    assert!(logs.contains("token request"), "debug lines not captured");
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"));
    assert!(logs.contains("refreshed"));
    assert!(!logs.contains(&login.access_token) && !logs.contains(&login.refresh_token));
    let st = fs::read_to_string(fx.layout.accounts_dir().join("claude-default.json")).unwrap();
    assert!(st.contains("refreshed_at"));
    assert_no_secret_leaked(&fx, &mock);
}

/// A refresh whose new session expires *earlier* than the one it replaced
/// (a lead longer than the session's lifetime, or a server that shortens
/// lifetimes) still replaces it on both sides: the old refresh token is
/// spent at the server, so keeping the "newer" old session would log the
/// user out. The spent session never wins again afterwards.
#[test]
fn a_refreshed_session_replaces_the_spent_one_even_if_it_expires_earlier() {
    // new sessions live 30 s; the stored one still has 60 s; lead 120 s
    let mock = MockOAuth::start(Style::Claude, 30);
    let fx = fixture(&mock);
    let host_dir = fx.root.path().join("home/.claude");
    fs::create_dir_all(&host_dir).unwrap();
    let host_file = host_dir.join(".credentials.json");
    let mut login = mock.login();
    login.expires_at_ms = now_ms() + 60_000;
    write_json(&host_file, &claude_host(&login));
    let dir = register(
        &fx,
        None,
        "claude",
        Truth::HostFile {
            path: host_file.clone(),
        },
    );
    let d = start(
        &fx.layout,
        None,
        policy(Duration::from_secs(120), Duration::from_secs(60)),
    );
    wait_until("airlock's refresh", Duration::from_secs(5), || {
        mock.refreshes() >= 1
    });
    let shared = dir.join(".credentials.json");
    wait_until(
        "the new session on both sides",
        Duration::from_secs(3),
        || {
            claude_rt(&host_file) != login.refresh_token
                && claude_rt(&shared) != login.refresh_token
        },
    );
    let new_rt = claude_rt(&host_file);
    assert!(mock.is_live(&new_rt));
    assert_eq!(claude_rt(&shared), new_rt);
    let exp = read_json(&host_file)["claudeAiOauth"]["expiresAt"]
        .as_i64()
        .unwrap();
    assert!(
        exp < login.expires_at_ms,
        "the test needs an earlier expiry"
    );
    // A slow process writes the old (spent, later-expiring) session back
    // into the shared directory: it must not reach the host.
    let mut old = claude_host(&login);
    old["mcpOAuth"] = json!({});
    write_json(&shared, &old);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(claude_rt(&host_file), new_rt, "the spent session won");
    // (the lifetime rule now schedules the next refresh at half of 30 s:
    // no second refresh within this test)
    assert_eq!(mock.refreshes(), 1);
    assert_eq!(mock.reuse_errors(), 0);
    d.finish();
    assert_no_secret_leaked(&fx, &mock);
}

/// A token server that accepts connections and never answers: the refresh
/// waits for its timeout on a worker thread, and syncs of other accounts go
/// on meanwhile (and of the same account: the shared file still flows).
#[test]
fn a_hanging_token_server_does_not_delay_syncs() {
    let mock = MockOAuth::start(Style::Claude, 60);
    let fx = fixture(&mock);
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/oauth/token", hang.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let h2 = held.clone();
    std::thread::spawn(move || {
        for c in hang.incoming().flatten() {
            h2.lock().unwrap().push(c);
        }
    });
    // SAFETY: SERIAL is held (see `fixture`).
    unsafe { std::env::set_var("AIRLOCK_CLAUDE_TOKEN_URL", &url) };

    // account "default": due now; its refresh hangs
    let (_login, _host_file, _dir) = due_claude(&fx, &mock);
    // account "other": not due; a sandbox writes a newer session
    let other_dir = fx.root.path().join("home2/.claude");
    fs::create_dir_all(&other_dir).unwrap();
    let other_host = other_dir.join(".credentials.json");
    let mut l2 = mock.login();
    l2.expires_at_ms = now_ms() + 3_600_000;
    write_json(&other_host, &claude_host(&l2));
    let other_shared = register_sandbox(
        &fx.layout,
        None,
        Registration {
            sandbox: "other-sb".into(),
            agent: "claude".into(),
            account: "other".into(),
            truth: Truth::HostFile {
                path: other_host.clone(),
            },
            pid: None,
            owner: None,
        },
    )
    .unwrap()
    .join(".credentials.json");
    let mut p = policy(Duration::from_secs(600), Duration::from_secs(60));
    p.timeout = Duration::from_secs(4);
    let d = start(&fx.layout, None, p);
    wait_until("the hanging request", Duration::from_secs(3), || {
        !held.lock().unwrap().is_empty()
    });
    let mut newer = claude_host(&l2);
    newer["claudeAiOauth"]["expiresAt"] = json!(now_ms() + 7_200_000);
    newer["claudeAiOauth"]["refreshToken"] = json!("rt-written-in-a-sandbox");
    let t = Instant::now();
    write_json(&other_shared, &newer);
    wait_until(
        "the sync of the other account",
        Duration::from_secs(2),
        || claude_rt(&other_host) == "rt-written-in-a-sandbox",
    );
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "a sync waited for the token server ({took:?})"
    );
    // the hanging refresh times out and is recorded, not lost
    wait_until("the timeout", Duration::from_secs(8), || {
        status(&fx, "claude-default").refresh_error.is_some()
    });
    d.finish();
    assert_no_secret_leaked(&fx, &mock);
}

/// A token URL override that is refused (plain http to another host) keeps
/// every attempt from starting: said once per retry period, not once a
/// second, and nothing is sent anywhere.
#[test]
fn a_refused_token_url_is_reported_once_per_retry() {
    let mock = MockOAuth::start(Style::Claude, 60);
    let fx = fixture(&mock);
    // SAFETY: SERIAL is held (see `fixture`).
    unsafe { std::env::set_var("AIRLOCK_CLAUDE_TOKEN_URL", "http://192.0.2.1/oauth/token") };
    let (_login, _host_file, _dir) = due_claude(&fx, &mock);
    let before = log_text()
        .matches("AIRLOCK_CLAUDE_TOKEN_URL is not usable")
        .count();
    let d = start(
        &fx.layout,
        None,
        policy(Duration::from_secs(600), Duration::from_secs(60)),
    );
    std::thread::sleep(Duration::from_millis(3500));
    d.finish();
    let said = log_text()
        .matches("AIRLOCK_CLAUDE_TOKEN_URL is not usable")
        .count()
        - before;
    assert_eq!(said, 1, "reported {said} times in 3.5 s");
    assert!(mock.requests().is_empty());
}

/// A token server that answers with a redirect: airlock does not follow
/// it (a 307 would re-send the refresh token to wherever it points); the
/// attempt fails and is recorded.
#[test]
fn a_redirect_is_not_followed() {
    let mock = MockOAuth::start(Style::Claude, 60);
    let fx = fixture(&mock);
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere_addr = elsewhere.local_addr().unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let redirector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/oauth/token", redirector.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut c in redirector.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{elsewhere_addr}/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    // SAFETY: SERIAL is held (see `fixture`).
    unsafe { std::env::set_var("AIRLOCK_CLAUDE_TOKEN_URL", &url) };
    let (login, host_file, _dir) = due_claude(&fx, &mock);
    let d = start(
        &fx.layout,
        None,
        policy(Duration::from_secs(600), Duration::from_secs(60)),
    );
    wait_until("the failure", Duration::from_secs(5), || {
        status(&fx, "claude-default").refresh_error.is_some()
    });
    d.finish();
    let err = status(&fx, "claude-default").refresh_error.unwrap();
    assert!(err.contains("307"), "{err}");
    assert!(
        elsewhere.accept().is_err(),
        "the redirect was followed: the refresh token went elsewhere"
    );
    assert_eq!(claude_rt(&host_file), login.refresh_token);
    assert_no_secret_leaked(&fx, &mock);
}

/// `airlock run` waits for a due session's refresh only when the running
/// watcher refreshes: one started with pre-refresh off says so, and the
/// wait ends at once instead of after its timeout.
#[test]
fn waiting_for_a_refresh_ends_at_once_when_the_watcher_does_not_refresh() {
    let mock = MockOAuth::start(Style::Claude, 60);
    let fx = fixture(&mock);
    let (_login, _host_file, _dir) = due_claude(&fx, &mock);
    let d = start(&fx.layout, None, Policy::disabled());
    let t = Instant::now();
    let got = airlock::sync::await_fresh(
        &fx.layout,
        &["claude-sb".to_owned()],
        &policy(Duration::from_secs(600), Duration::from_secs(60)),
        Duration::from_secs(20),
    );
    assert_eq!(
        got,
        vec![(
            "claude-default".to_owned(),
            airlock::sync::Freshness::NotRefreshing
        )]
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    d.finish();
    assert!(
        !fx.layout.daemon_refresh().exists(),
        "the watcher's refresh marker outlived it"
    );
    assert!(mock.requests().is_empty());
}

// ---- broker mode (`--rotation broker`, docs/broker.md) ----

fn register_broker(fx: &Fx, agent: &str, truth: Truth) -> PathBuf {
    airlock::sync::register_sandbox_mode(
        &fx.layout,
        None,
        Registration {
            sandbox: format!("{agent}-broker"),
            agent: agent.into(),
            account: "default".into(),
            truth,
            pid: None,
            owner: None,
        },
        true,
    )
    .unwrap()
}

/// Broker mode, Claude: the shared directory never holds a refresh token;
/// airlock refreshes (its lead lies beyond Claude's 5-minute window even
/// with a 1 s configured lead), the sandbox sees each new access token,
/// and whatever the sandbox writes (garbage, a session without refresh
/// token that expires later, a session with a refresh token of its own)
/// never reaches the truth and is replaced by the access-only session.
#[test]
fn broker_claude_sandbox_gets_new_access_tokens_and_never_a_refresh_token() {
    let mock = MockOAuth::start(Style::Claude, 3600);
    let fx = fixture(&mock);
    let host_dir = fx.root.path().join("home/.claude");
    fs::create_dir_all(&host_dir).unwrap();
    let host_file = host_dir.join(".credentials.json");
    let mut login = mock.login();
    // 4 min left: outside a 1 s lead, inside Claude's own 5-minute window
    login.expires_at_ms = now_ms() + 240_000;
    write_json(&host_file, &claude_host(&login));
    let dir = register_broker(
        &fx,
        "claude",
        Truth::HostFile {
            path: host_file.clone(),
        },
    );
    let shared = dir.join(".credentials.json");
    let seeded = read_json(&shared);
    assert_eq!(seeded["claudeAiOauth"]["refreshToken"], Value::Null);
    assert_eq!(
        seeded["claudeAiOauth"]["accessToken"],
        json!(login.access_token)
    );
    assert!(seeded.get("mcpOAuth").is_none(), "host-only keys stay home");

    let d = start(
        &fx.layout,
        None,
        policy(Duration::from_secs(1), Duration::from_secs(1)),
    );
    wait_until("airlock's refresh", Duration::from_secs(5), || {
        claude_rt(&host_file) != login.refresh_token
    });
    let rt1 = claude_rt(&host_file);
    assert!(mock.is_live(&rt1));
    let at1 = read_json(&host_file)["claudeAiOauth"]["accessToken"].clone();
    wait_until(
        "the new access token in the sandbox",
        Duration::from_secs(5),
        || read_json(&shared)["claudeAiOauth"]["accessToken"] == at1,
    );
    assert_eq!(
        read_json(&shared)["claudeAiOauth"]["refreshToken"],
        Value::Null
    );
    // the host-only copy: beside the shared directory, private
    let held = airlock::sync::broker::held_path(&airlock::sync::AccountSpec {
        agent: "claude".into(),
        account: "default".into(),
        truth: Truth::HostFile {
            path: host_file.clone(),
        },
        shared_dir: dir.clone(),
        broker: true,
    });
    assert!(!held.starts_with(&dir));
    assert_eq!(fs::metadata(&held).unwrap().mode() & 0o777, 0o600);

    // the sandbox writes: garbage, then a later-expiring session without
    // refresh token, then one with a refresh token of its own
    let far = now_ms() + 86_400_000;
    let docs = [
        b"{\"claudeAiOauth\":{\"acc".to_vec(),
        serde_json::to_vec(
            &json!({"claudeAiOauth": {"accessToken": "sbx-at", "refreshToken": null,
            "expiresAt": far, "scopes": ["user:inference"]}}),
        )
        .unwrap(),
        serde_json::to_vec(
            &json!({"claudeAiOauth": {"accessToken": "sbx-at", "refreshToken": "sbx-rt",
            "expiresAt": far, "scopes": ["user:inference"]}}),
        )
        .unwrap(),
    ];
    for doc in docs {
        let tmp = dir.join(".credentials.json.tmp");
        fs::write(&tmp, &doc).unwrap();
        fs::rename(&tmp, &shared).unwrap();
        wait_until(
            "the access-only session restored",
            Duration::from_secs(5),
            || read_json(&shared)["claudeAiOauth"]["accessToken"] == at1,
        );
        assert_eq!(claude_rt(&host_file), rt1, "the truth was touched");
        assert_eq!(
            read_json(&shared)["claudeAiOauth"]["refreshToken"],
            Value::Null
        );
    }
    // a link planted to a host file: replaced, its target never written
    let victim = fx.root.path().join("victim.txt");
    fs::write(&victim, "host file").unwrap();
    let tmp = dir.join("planted");
    std::os::unix::fs::symlink(&victim, &tmp).unwrap();
    fs::rename(&tmp, &shared).unwrap();
    wait_until("the planted link replaced", Duration::from_secs(5), || {
        fs::symlink_metadata(&shared).is_ok_and(|m| m.file_type().is_file())
            && read_json(&shared)["claudeAiOauth"]["accessToken"] == at1
    });
    assert_eq!(fs::read_to_string(&victim).unwrap(), "host file");
    assert!(status(&fx, "claude-default").last_rejected.is_some());
    d.finish();
    assert_eq!(mock.refreshes(), 1);
    assert_eq!(mock.reuse_errors() + mock.unknown_errors(), 0);
    assert!(mock.is_live(&rt1));
    let host = read_json(&host_file);
    assert_eq!(host["mcpOAuth"]["srv"]["accessToken"], "mcp-not-ours");
    // the last sandbox leaves: the truth has the session, the copy goes
    airlock::sync::unregister(&fx.layout, None, "claude-broker").unwrap();
    assert!(!dir.exists());
    assert!(!held.exists());
    assert_no_secret_leaked(&fx, &mock);
}

/// Broker mode, Codex: an expired session is refreshed by airlock; the
/// sandbox's auth.json gets the new access token with a blank refresh
/// token; a sync-mode sandbox of the same account is refused meanwhile.
#[test]
fn broker_codex_expired_session_is_refreshed_by_airlock_only() {
    let mock = MockOAuth::start(Style::Codex, 3600);
    let fx = fixture(&mock);
    let host_dir = fx.root.path().join("home/.codex");
    fs::create_dir_all(&host_dir).unwrap();
    let host_file = host_dir.join("auth.json");
    let login = mock.login();
    write_json(&host_file, &codex_doc(&login));
    let truth = Truth::HostFile {
        path: host_file.clone(),
    };
    let dir = register_broker(&fx, "codex", truth.clone());
    let shared = dir.join("auth.json");
    assert_eq!(read_json(&shared)["tokens"]["refresh_token"], "");
    // one mode per account
    let err = register_sandbox(
        &fx.layout,
        None,
        Registration {
            sandbox: "codex-sync".into(),
            agent: "codex".into(),
            account: "default".into(),
            truth,
            pid: None,
            owner: None,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("broker mode"), "{err}");

    let started = now_ms();
    let d = start(
        &fx.layout,
        None,
        policy(Duration::from_secs(600), Duration::from_secs(1)),
    );
    let at = |p: &Path| read_json(p)["tokens"]["access_token"].clone();
    wait_until(
        "the new access token in the sandbox",
        Duration::from_secs(5),
        || {
            at(&shared) != json!(codex_doc(&login)["tokens"]["access_token"])
                && at(&shared) == at(&host_file)
        },
    );
    d.finish();
    assert_eq!(mock.refreshes(), 1);
    codex_request_ok(&mock.requests()[0]);
    assert_codex_refreshed(&read_json(&host_file), &login, &mock, started);
    assert_eq!(read_json(&shared)["tokens"]["refresh_token"], "");
    airlock::sync::unregister(&fx.layout, None, "codex-broker").unwrap();
    assert_no_secret_leaked(&fx, &mock);
}

/// Broker mode, Gemini: the shared `oauth_creds.json` never holds the
/// refresh token; airlock refreshes ahead of Gemini's own 5-minute window
/// (google-auth-library's, where a CLI without refresh token gives up), and
/// the sandbox's file gets each new access token and expiry; the host's
/// login keeps its refresh token (Google does not rotate it).
#[test]
fn broker_gemini_sandbox_gets_new_access_tokens_and_never_the_refresh_token() {
    let mock = MockOAuth::start(Style::Google, 3600);
    let fx = fixture(&mock);
    let host_dir = fx.root.path().join("home/.gemini");
    fs::create_dir_all(&host_dir).unwrap();
    let host_file = host_dir.join("oauth_creds.json");
    let login = mock.login();
    // 4 min left: outside a 1 s lead, inside Gemini's own 5-minute window
    let expiry = now_ms() + 240_000;
    write_json(
        &host_file,
        &json!({"access_token": login.access_token, "refresh_token": login.refresh_token,
            "scope": "https://www.googleapis.com/auth/cloud-platform", "token_type": "Bearer",
            "id_token": login.id_token, "expiry_date": expiry}),
    );
    let dir = register_broker(
        &fx,
        "gemini",
        Truth::HostFile {
            path: host_file.clone(),
        },
    );
    let shared = dir.join("oauth_creds.json");
    let seeded = read_json(&shared);
    assert!(seeded.get("refresh_token").is_none(), "{seeded}");
    assert_eq!(seeded["access_token"], json!(login.access_token));
    let d = start(
        &fx.layout,
        None,
        policy(Duration::from_secs(1), Duration::from_secs(1)),
    );
    let at = |p: &Path| read_json(p)["access_token"].clone();
    wait_until(
        "the new access token in the sandbox",
        Duration::from_secs(5),
        || at(&shared) != json!(login.access_token) && at(&shared) == at(&host_file),
    );
    d.finish();
    assert_eq!(mock.refreshes(), 1);
    let sandbox = read_json(&shared);
    assert!(sandbox.get("refresh_token").is_none(), "{sandbox}");
    assert!(sandbox["expiry_date"].as_i64().unwrap() > expiry);
    assert_eq!(
        read_json(&host_file)["refresh_token"],
        json!(login.refresh_token)
    );
    assert!(
        !fs::read_to_string(&shared)
            .unwrap()
            .contains(&login.refresh_token)
    );
    airlock::sync::unregister(&fx.layout, None, "gemini-broker").unwrap();
    assert_no_secret_leaked(&fx, &mock);
}

/// A broker sandbox's write left behind in its shared directory (its
/// hand-back never happened) is never taken for the truth by the next
/// registration of the account, in broker or in sync mode; a sync-mode
/// leftover (a full session) is handed back before a broker registration.
#[test]
fn leftovers_of_a_broker_sandbox_never_reach_the_truth() {
    let mock = MockOAuth::start(Style::Claude, 3600);
    let fx = fixture(&mock);
    let host_dir = fx.root.path().join("home/.claude");
    fs::create_dir_all(&host_dir).unwrap();
    let host_file = host_dir.join(".credentials.json");
    let login = mock.login();
    write_json(&host_file, &claude_host(&login));
    let truth = Truth::HostFile {
        path: host_file.clone(),
    };
    let planted = json!({"claudeAiOauth": {"accessToken": "sbx-at", "refreshToken": "sbx-rt",
        "expiresAt": now_ms() + 86_400_000, "scopes": ["user:inference"]}});
    // a broker sandbox plants a full session, then vanishes without unregistering
    let dir = register_broker(&fx, "claude", truth.clone());
    write_json(&dir.join(".credentials.json"), &planted);
    fs::remove_file(fx.layout.sandboxes_dir().join("claude-broker.json")).unwrap();
    let dir = register_broker(&fx, "claude", truth.clone());
    assert_eq!(claude_rt(&host_file), login.refresh_token);
    assert_eq!(
        read_json(&dir.join(".credentials.json"))["claudeAiOauth"]["refreshToken"],
        Value::Null
    );
    // the same, then a sync-mode sandbox of the account
    write_json(&dir.join(".credentials.json"), &planted);
    fs::remove_file(fx.layout.sandboxes_dir().join("claude-broker.json")).unwrap();
    let dir = register(&fx, None, "claude", truth.clone());
    assert_eq!(claude_rt(&host_file), login.refresh_token);
    assert_eq!(
        claude_rt(&dir.join(".credentials.json")),
        login.refresh_token
    );
    // a sync-mode leftover with a newer session goes back before broker starts
    let mut newer = claude_host(&mock.login());
    newer["claudeAiOauth"]["expiresAt"] = json!(now_ms() + 7_200_000);
    write_json(&dir.join(".credentials.json"), &newer);
    fs::remove_file(fx.layout.sandboxes_dir().join("claude-sb.json")).unwrap();
    let dir = register_broker(&fx, "claude", truth);
    assert_eq!(
        claude_rt(&host_file),
        newer["claudeAiOauth"]["refreshToken"].as_str().unwrap()
    );
    assert_eq!(
        read_json(&dir.join(".credentials.json"))["claudeAiOauth"]["refreshToken"],
        Value::Null
    );
    airlock::sync::unregister(&fx.layout, None, "claude-broker").unwrap();
    assert!(!dir.exists());
    assert_eq!(fs::read_dir(&fx.layout.runtime).unwrap().count(), 0);
}
