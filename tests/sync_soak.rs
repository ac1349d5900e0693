//! Soak test for rotation sync (issue 5): a mock OAuth server with
//! single-use refresh tokens, two accounts (one whose truth is the host
//! agent's file, one a vault record), three sandboxes per account whose
//! simulated agents refresh on a short expiry, the watcher killed and
//! restarted mid-run, and the host logging in again mid-run.
//!
//! Pass: zero reused (or unknown) refresh tokens, and both sources of truth
//! hold a live login at the end.
//!
//! Duration: `AIRLOCK_SOAK_SECS` (default 40; CI: 90; longer runs welcome).
//! The simulated agent follows Claude Code's protocol (agent-formats §4):
//! refresh when `now + window >= expiresAt`; take the mkdir lock
//! `<configDir>/.oauth_refresh.lock`; re-read the store and skip the
//! refresh when the token changed ("race_resolved"); write temp + rename.

#[path = "support/mock_oauth.rs"]
mod mock_oauth;

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use airlock::Secret;
use airlock::sync::refresh::Policy;
use airlock::sync::watch::{Daemon, Options};
use airlock::sync::{Layout, Registration, Truth, register_sandbox, unregister};
use airlock::vault::{Backend, CredentialId, Metadata, Method, Record, Vault};
use mock_oauth::{Issued, MockOAuth, Style, now_ms, post_json};
use serde_json::{Value, json};

/// Access tokens live this long…
const EXPIRES_IN_S: u64 = 6;
/// …and agents refresh this long before expiry (Claude: 5 min of 8 h).
const WINDOW_MS: i64 = 3_000;
const SANDBOXES_PER_ACCOUNT: usize = 3;

fn claude_file(i: &Issued, extra: &Value) -> Vec<u8> {
    let mut v = json!({"claudeAiOauth": {"accessToken": i.access_token, "refreshToken": i.refresh_token,
        "expiresAt": i.expires_at_ms, "scopes": ["user:inference"], "subscriptionType": "max"}});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    serde_json::to_vec(&v).unwrap()
}

fn session(bytes: &[u8]) -> Option<(String, String, i64)> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let o = v.get("claudeAiOauth")?;
    Some((
        o.get("accessToken")?.as_str()?.to_owned(),
        o.get("refreshToken")?.as_str()?.to_owned(),
        o.get("expiresAt")?.as_i64()?,
    ))
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo).max(1)
    }
}

#[derive(Default)]
struct Counters {
    refreshed: AtomicU64,
    race_resolved: AtomicU64,
    failures: AtomicU64,
}

/// One sandbox's agent, Claude-style.
fn agent(
    dir: PathBuf,
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
    seed: u64,
) {
    let file = dir.join(".credentials.json");
    let lock = dir.join(".oauth_refresh.lock");
    let mut rng = Rng(seed | 1);
    // the in-memory copy, read at start like an agent process
    let mut mem = session(&fs::read(&file).unwrap()).expect("seeded session");
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(rng.next(20, 200)));
        if now_ms() + WINDOW_MS < mem.2 {
            continue;
        }
        // take the refresh lock (proper-lockfile: mkdir)
        let t = Instant::now();
        loop {
            match fs::create_dir(&lock) {
                Ok(()) => break,
                Err(_) if t.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(rng.next(10, 40)))
                }
                Err(e) => panic!("refresh lock stuck: {e}"),
            }
        }
        let on_disk = fs::read(&file).ok().and_then(|b| session(&b));
        match on_disk {
            Some(d) if d.0 != mem.0 && d.2 >= mem.2 => {
                // someone else refreshed (or the host logged in again)
                mem = d;
                c.race_resolved.fetch_add(1, Ordering::SeqCst);
            }
            _ => {
                let body = json!({"grant_type": "refresh_token", "refresh_token": mem.1,
                    "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e"});
                match post_json(addr, "/v1/oauth/token", &body) {
                    Ok((200, r)) => {
                        let issued = Issued {
                            access_token: r["access_token"].as_str().unwrap().to_owned(),
                            refresh_token: r["refresh_token"].as_str().unwrap().to_owned(),
                            id_token: String::new(),
                            expires_at_ms: now_ms() + r["expires_in"].as_i64().unwrap() * 1000,
                        };
                        // keep the file's other keys, write temp + rename
                        let cur: Value = fs::read(&file)
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or(json!({}));
                        let mut extra = cur.clone();
                        if let Some(o) = extra.as_object_mut() {
                            o.remove("claudeAiOauth");
                        }
                        let tmp = dir.join(format!(".credentials.json.tmp.{seed}"));
                        fs::write(&tmp, claude_file(&issued, &extra)).unwrap();
                        fs::rename(&tmp, &file).unwrap();
                        mem = (
                            issued.access_token,
                            issued.refresh_token,
                            issued.expires_at_ms,
                        );
                        c.refreshed.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        eprintln!("agent {seed}: refresh failed: {:?}", other.map(|x| x.0));
                        c.failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
        let _ = fs::remove_dir(&lock);
    }
}

fn soak_secs() -> u64 {
    std::env::var("AIRLOCK_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

fn refresh_works(mock: &MockOAuth, rt: &str) -> bool {
    let (st, _) = post_json(
        mock.addr(),
        "/v1/oauth/token",
        &json!({"grant_type":"refresh_token","refresh_token": rt}),
    )
    .unwrap();
    st == 200
}

/// A soak's setup.
#[derive(Clone)]
struct Setup {
    secs: u64,
    /// The host's own Claude refreshes the host file too.
    host_agent: bool,
    /// airlock pre-refreshes (`None`: only the agents refresh).
    refresh: Option<Policy>,
    /// Access-token lifetime.
    expires_in: u64,
}

impl Setup {
    fn new(secs: u64, host_agent: bool) -> Setup {
        Setup {
            secs,
            host_agent,
            refresh: None,
            expires_in: EXPIRES_IN_S,
        }
    }
}

/// The token URL is process-global: one pre-refreshing soak at a time.
static REFRESH_URL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pre_refresh(lead: Duration) -> Policy {
    Policy {
        enabled: true,
        lead,
        timeout: Duration::from_secs(5),
        retry: Duration::from_millis(500),
    }
}

#[test]
fn soak_single_use_refresh_tokens_are_never_reused() {
    let (mock, _, _) = soak(Setup::new(soak_secs(), false));
    assert_eq!(
        mock.reuse_errors(),
        0,
        "a refresh token was presented twice"
    );
}

/// The same with the host's own Claude refreshing the host file too: it
/// and the sandboxes are coordinated only through airlock's mirroring of
/// Claude's refresh lock (`docs/rotation.md` §5). Mirroring leaves a window
/// of about the watcher's wake-up latency, so this measures rather than
/// asserts zero: it fails above 5 % of refreshes (figures in the doc).
/// `cargo test --test sync_soak -- --ignored --nocapture`.
#[test]
#[ignore = "measures the documented host-agent residual; run by hand"]
fn soak_with_an_active_host_agent() {
    // AIRLOCK_SOAK_REFRESH_LEAD=<s>: with pre-refresh at that lead;
    // AIRLOCK_SOAK_EXPIRES=<s>: token lifetime (default 6)
    let mut setup = Setup::new(soak_secs(), true);
    if let Some(lead) = std::env::var("AIRLOCK_SOAK_REFRESH_LEAD")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        setup.refresh = Some(pre_refresh(Duration::from_secs_f64(lead)));
    }
    if let Some(e) = std::env::var("AIRLOCK_SOAK_EXPIRES")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        setup.expires_in = e;
    }
    let (mock, c, refreshed) = soak(setup);
    eprintln!(
        "with an active host agent: {} reuse errors in {refreshed} refreshes ({} by the agents)",
        mock.reuse_errors(),
        c.refreshed.load(Ordering::SeqCst)
    );
    assert!(
        mock.reuse_errors() * 20 <= refreshed,
        "more reuse than the documented residual"
    );
}

/// Pre-refresh with the host's own Claude active too: airlock refreshes
/// every session before any agent's window opens (lead 4.5 s > the agents'
/// 3 s window; 10 s tokens, since the effective lead is at most half the
/// lifetime), so nobody else refreshes and nothing can collide.
/// `AIRLOCK_SOAK_REFRESH_SECS` (default 20).
#[test]
fn soak_with_an_active_host_agent_and_pre_refresh() {
    let secs = std::env::var("AIRLOCK_SOAK_REFRESH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut setup = Setup::new(secs, true);
    setup.expires_in = 10;
    setup.refresh = Some(pre_refresh(Duration::from_millis(4500)));
    let (mock, c, refreshed) = soak(setup);
    let by_agents = c.refreshed.load(Ordering::SeqCst);
    eprintln!(
        "pre-refresh, active host agent: {refreshed} refreshes, {} by airlock, {by_agents} by the agents, {} reuse errors",
        mock.airlock_refreshes(),
        mock.reuse_errors()
    );
    assert_eq!(
        mock.reuse_errors(),
        0,
        "a refresh token was presented twice"
    );
    assert_eq!(by_agents, 0, "an agent had to refresh");
    assert_eq!(c.failures.load(Ordering::SeqCst), 0);
}

/// Runs the soak; returns the mock, the agents' counters and the number
/// of refreshes during the run (agents' and airlock's).
fn soak(setup: Setup) -> (MockOAuth, Arc<Counters>, u64) {
    let Setup {
        secs,
        host_agent,
        refresh,
        expires_in,
    } = setup;
    let mock = MockOAuth::start(Style::Claude, expires_in);
    let _url = refresh.as_ref().map(|_| {
        let g = REFRESH_URL.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: REFRESH_URL serialises the soaks that read it; the other
        // soaks of this binary never read the environment while running.
        unsafe { std::env::set_var("AIRLOCK_CLAUDE_TOKEN_URL", mock.url()) };
        g
    });
    let policy = refresh.clone().unwrap_or_else(Policy::disabled);
    let root = tempfile::tempdir().unwrap();
    let layout = Layout {
        state: root.path().join("state/sync"),
        runtime: root.path().join("run/sync"),
    };
    // account "host": truth is the host agent's file
    let host_dir = root.path().join("home/.claude");
    fs::create_dir_all(&host_dir).unwrap();
    let host_file = host_dir.join(".credentials.json");
    fs::write(
        &host_file,
        claude_file(&mock.login(), &json!({"keep": "me"})),
    )
    .unwrap();
    // account "vault": truth is a vault record
    let vault = Vault::in_memory();
    let vid = CredentialId::new("claude", "vault").unwrap();
    vault
        .put(Record {
            id: vid.clone(),
            method: Method::Session,
            secret: Secret::new(String::from_utf8(claude_file(&mock.login(), &json!({}))).unwrap()),
            meta: Metadata::new("test"),
        })
        .unwrap();
    let backend: &dyn Backend = vault.backend();

    let mut dirs = Vec::new();
    let mut sandboxes = Vec::new();
    for (account, truth) in [
        (
            "host",
            Truth::HostFile {
                path: host_file.clone(),
            },
        ),
        ("vault", Truth::Vault { id: vid.clone() }),
    ] {
        for n in 0..SANDBOXES_PER_ACCOUNT {
            let sb = format!("{account}-sb{n}");
            let d = register_sandbox(
                &layout,
                Some(backend),
                Registration {
                    sandbox: sb.clone(),
                    agent: "claude".into(),
                    account: account.into(),
                    truth: truth.clone(),
                    pid: None,
                    owner: None,
                },
            )
            .unwrap();
            dirs.push(d);
            sandboxes.push(sb);
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let c = Arc::new(Counters::default());
    let start = Instant::now();
    let total = Duration::from_secs(secs);
    std::thread::scope(|s| {
        let opts = Options {
            linger: None,
            ..Options::default()
        };
        let d = Daemon::new(layout.clone(), Some(backend), opts)
            .unwrap()
            .with_refresh(policy.clone());
        let mut stop_daemon = d.stop_handle();
        let mut watcher = s.spawn(move || d.run());

        let mut agent_dirs = dirs.clone();
        if host_agent {
            agent_dirs.push(host_dir.clone());
        }
        let agents: Vec<_> = agent_dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let (dir, stop, c) = (dir.clone(), stop.clone(), c.clone());
                let addr = mock.addr();
                std::thread::spawn(move || agent(dir, addr, stop, c, 0x9e37_79b9 * (i as u64 + 1)))
            })
            .collect();

        // a third in: kill the watcher, keep it down for two refresh periods, restart
        // (not with a host agent: nothing coordinates it with the sandboxes
        // while no watcher runs)
        std::thread::sleep(total / 3);
        if !host_agent {
            stop_daemon.stop();
            watcher.join().unwrap().unwrap();
            std::thread::sleep(Duration::from_millis(2 * WINDOW_MS as u64 + 500));
            let d = Daemon::new(layout.clone(), Some(backend), opts)
                .unwrap()
                .with_refresh(policy.clone());
            stop_daemon = d.stop_handle();
            watcher = s.spawn(move || d.run());
        }

        // two thirds in: the user logs in again on the host
        std::thread::sleep((total * 2 / 3).saturating_sub(start.elapsed()));
        let relogin = mock.login();
        let tmp = host_dir.join(".credentials.json.tmp.relogin");
        fs::write(&tmp, claude_file(&relogin, &json!({"keep": "me"}))).unwrap();
        fs::rename(&tmp, &host_file).unwrap();

        std::thread::sleep(total.saturating_sub(start.elapsed()));
        stop.store(true, Ordering::SeqCst);
        for a in agents {
            a.join().unwrap();
        }
        // sandboxes exit: hand back, then the watcher goes
        for sb in &sandboxes {
            unregister(&layout, Some(backend), sb).unwrap();
        }
        stop_daemon.stop();
        watcher.join().unwrap().unwrap();
    });

    let refreshed = c.refreshed.load(Ordering::SeqCst);
    let server_refreshes = mock.refreshes();
    eprintln!(
        "soak {secs}s (pre-refresh {}): agents: {refreshed} refreshes, {} race_resolved, {} failures; server: {server_refreshes} refreshes ({} by airlock), {} reuse errors, {} unknown",
        if refresh.is_some() { "on" } else { "off" },
        c.race_resolved.load(Ordering::SeqCst),
        c.failures.load(Ordering::SeqCst),
        mock.airlock_refreshes(),
        mock.reuse_errors(),
        mock.unknown_errors()
    );
    if !host_agent {
        assert_eq!(
            mock.reuse_errors(),
            0,
            "a refresh token was presented twice"
        );
        assert_eq!(c.failures.load(Ordering::SeqCst), 0);
    }
    assert_eq!(mock.unknown_errors(), 0);
    // each account refreshes about every EXPIRES_IN - WINDOW seconds (the
    // agents), or EXPIRES_IN - effective lead (airlock)
    let early_ms = match &refresh {
        None => WINDOW_MS as u64,
        Some(p) => (p.lead.as_millis() as u64).min(expires_in * 500),
    };
    let expected = 2 * secs * 1000 / (expires_in * 1000 - early_ms);
    assert!(
        server_refreshes * 2 >= expected,
        "only {server_refreshes} refreshes, expected ~{expected}"
    );

    // the host login is still valid, kept its other keys, and is the relogin's family
    let host = fs::read(&host_file).unwrap();
    let (_, host_rt, _) = session(&host).unwrap();
    let v: Value = serde_json::from_slice(&host).unwrap();
    assert_eq!(v["keep"], "me");
    assert!(
        mock.is_live(&host_rt),
        "host refresh token is not the live one"
    );
    let rec = backend.get(&vid).unwrap().unwrap();
    let (_, vault_rt, _) = session(rec.secret.expose().as_bytes()).unwrap();
    assert!(
        mock.is_live(&vault_rt),
        "vault refresh token is not the live one"
    );
    assert!(refresh_works(&mock, &host_rt) && refresh_works(&mock, &vault_rt));
    assert!(dirs.iter().all(|d| !d.exists()), "shared dirs removed");
    (mock, c, server_refreshes)
}

/// Control: the same agents on private copies (`--rotation copy`, or
/// per-sandbox directories without a shared lock) do reuse tokens. This
/// shows the soak above can fail.
#[test]
fn control_private_copies_reuse_refresh_tokens() {
    let mock = MockOAuth::start(Style::Claude, EXPIRES_IN_S);
    let root = tempfile::tempdir().unwrap();
    let login = claude_file(&mock.login(), &json!({}));
    let stop = Arc::new(AtomicBool::new(false));
    let c = Arc::new(Counters::default());
    let agents: Vec<_> = (0..SANDBOXES_PER_ACCOUNT)
        .map(|i| {
            let dir = root.path().join(format!("copy{i}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(".credentials.json"), &login).unwrap();
            let (stop, c, addr) = (stop.clone(), c.clone(), mock.addr());
            std::thread::spawn(move || agent(dir, addr, stop, c, 0x51ed_270b * (i as u64 + 1)))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(EXPIRES_IN_S + 2));
    stop.store(true, Ordering::SeqCst);
    for a in agents {
        a.join().unwrap();
    }
    assert!(
        mock.reuse_errors() >= 1,
        "private copies should collide (reuse errors: {})",
        mock.reuse_errors()
    );
}
