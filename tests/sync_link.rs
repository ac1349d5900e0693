//! Issue 10: a vault record that shares the host login's refresh-token
//! family is linked to the host file, so refreshes by a sandbox and by the
//! host's own agent land in one place and never spend a token twice.
//!
//! A session stored as a pasted copy of the host file (linked by
//! fingerprint), then rounds in a seeded random order (the seed is printed;
//! `AIRLOCK_TEST_SEED` repeats one) of: a sandbox refreshes in the shared
//! directory, the host's agent refreshes its own file, airlock resolves the
//! record again, airlock's watcher pre-refreshes. After every round: no
//! refresh token was presented twice (mock OAuth server), the host file
//! holds a live session, the genuine CLI on the host (`claude auth status`,
//! `codex login status` against the host files) says logged in, and the
//! vault record equals the host file's session. At the end, airlock
//! refreshed exactly in its pre-refresh rounds (never behind the host's
//! back).
//!
//! Offline, `claude auth status` reports `loggedIn` from the file alone
//! (an expired or spent session still says true): the mock's record of
//! live refresh tokens is the judge that the host was not logged out; the
//! CLI checks that the file the host's agent reads stayed whole.

#[path = "support/mock_oauth.rs"]
mod mock_oauth;

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use airlock::Secret;
use airlock::agents::HostEnv;
use airlock::agents::inject::Rotation;
use airlock::config::Config;
use airlock::resolve::{AgentRequest, Request, resolve};
use airlock::sync::refresh::Policy;
use airlock::sync::watch::{Daemon, Options, StopHandle};
use airlock::sync::{Layout, Registration, Truth, register_sandbox, unregister};
use airlock::vault::{CredentialId, Metadata, Method, Record, Vault};
use jiff::Timestamp;
use mock_oauth::{MockOAuth, Style, now_ms, post_json};
use serde_json::{Value, json};

const CLAUDE_CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap_or_default()).unwrap_or(Value::Null)
}

fn claude_rt(v: &Value) -> String {
    v["claudeAiOauth"]["refreshToken"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// The agent's own refresh: POST the file's refresh token, write the new
/// session (temp + rename, as Claude does).
fn claude_refresh(mock: &MockOAuth, file: &Path) -> String {
    let mut v = read_json(file);
    let (st, r) = post_json(
        mock.addr(),
        "/v1/oauth/token",
        &json!({"grant_type": "refresh_token", "refresh_token": claude_rt(&v), "client_id": CLAUDE_CLIENT_ID}),
    )
    .unwrap();
    assert_eq!(st, 200, "refresh refused: {r}");
    v["claudeAiOauth"]["accessToken"] = r["access_token"].clone();
    v["claudeAiOauth"]["refreshToken"] = r["refresh_token"].clone();
    v["claudeAiOauth"]["expiresAt"] = json!(now_ms() + 3_600_000);
    let tmp = file.with_extension("tmp-agent");
    fs::write(&tmp, serde_json::to_vec(&v).unwrap()).unwrap();
    fs::rename(&tmp, file).unwrap();
    claude_rt(&v)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn truth_of(agent: &str, vault: &Vault, host: &HostEnv) -> Option<Truth> {
    let req = Request {
        agents: vec![AgentRequest::parse(agent).unwrap()],
        rotation: Rotation::Sync,
        host_configs: false,
        ..Request::default()
    };
    let r = resolve(&req, vault, host, &Config::default(), Timestamp::now()).unwrap();
    r.plan.sync.first().and_then(|m| m.truth.clone())
}

fn codex_rt(v: &Value) -> String {
    v["tokens"]["refresh_token"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn codex_refresh(mock: &MockOAuth, file: &Path) -> String {
    // the mock's Codex access tokens expire in whole seconds: let the next
    // one be newer, as a real refresh's is
    std::thread::sleep(Duration::from_millis(1_050));
    let mut v = read_json(file);
    let (st, r) = post_json(
        mock.addr(),
        "/oauth/token",
        &json!({"grant_type": "refresh_token", "refresh_token": codex_rt(&v), "client_id": "app_EMoamEEZ73f0CkXaXp7hrann"}),
    )
    .unwrap();
    assert_eq!(st, 200, "refresh refused: {r}");
    v["tokens"]["access_token"] = r["access_token"].clone();
    v["tokens"]["refresh_token"] = r["refresh_token"].clone();
    let tmp = file.with_extension("tmp-agent");
    fs::write(&tmp, serde_json::to_vec(&v).unwrap()).unwrap();
    fs::rename(&tmp, file).unwrap();
    codex_rt(&v)
}

fn claude_doc(login: &mock_oauth::Issued) -> Value {
    json!({"claudeAiOauth": {"accessToken": login.access_token, "refreshToken": login.refresh_token,
        "expiresAt": login.expires_at_ms, "scopes": ["user:inference"], "subscriptionType": "max"},
        "zzHostKey": 1})
}

/// One agent's files and moves for [`linked_rounds`].
struct Kind {
    agent: &'static str,
    style: Style,
    dir: &'static str,
    file: &'static str,
    session: &'static str,
    doc: fn(&mock_oauth::Issued) -> Value,
    rt: fn(&Value) -> String,
    refresh: fn(&MockOAuth, &Path) -> String,
}

#[test]
fn a_copy_of_the_claude_host_login_is_linked_and_never_logs_the_host_out() {
    linked_rounds(&Kind {
        agent: "claude",
        style: Style::Claude,
        dir: ".claude",
        file: ".credentials.json",
        session: "claudeAiOauth",
        doc: claude_doc,
        rt: claude_rt,
        refresh: claude_refresh,
    });
}

#[test]
fn a_copy_of_the_codex_host_login_is_linked_and_never_logs_the_host_out() {
    linked_rounds(&Kind {
        agent: "codex",
        style: Style::Codex,
        dir: ".codex",
        file: "auth.json",
        session: "tokens",
        doc: |i| {
            let mut d = codex_doc(i, "acc");
            d["zzHostKey"] = json!(1);
            d
        },
        rt: codex_rt,
        refresh: codex_refresh,
    });
}

fn linked_rounds(k: &Kind) {
    let mock = MockOAuth::start(k.style, 3600);
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    let root = tempfile::tempdir_in(&base).unwrap();
    let home = root.path().join("home");
    fs::create_dir_all(home.join(k.dir)).unwrap();
    let host_file = home.join(k.dir).join(k.file);
    let login = mock.login();
    let doc = (k.doc)(&login);
    fs::write(&host_file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let host = HostEnv {
        home: home.clone(),
        vars: Default::default(),
    };

    // stored as a pasted file: not named as linked, same refresh token
    let vault = Vault::in_memory();
    let id = CredentialId::parse(k.agent).unwrap();
    vault
        .backend()
        .put(Record {
            id: id.clone(),
            method: Method::Session,
            secret: Secret::new(doc.to_string()),
            meta: Metadata::new("stdin"),
        })
        .unwrap();
    let truth = truth_of(k.agent, &vault, &host);
    assert_eq!(
        truth,
        Some(Truth::HostFile {
            path: host_file.clone()
        }),
        "a record sharing the host's refresh token syncs to the host file"
    );
    let rec = vault.backend().get(&id).unwrap().unwrap();
    assert_eq!(
        rec.meta.host_link.as_deref(),
        Some(host_file.to_str().unwrap()),
        "the link is stored"
    );

    let layout = Layout {
        state: root.path().join("state/sync"),
        runtime: root.path().join("run/sync"),
    };
    let dir = register_sandbox(
        &layout,
        None,
        Registration {
            sandbox: format!("{}-sb", k.agent),
            agent: k.agent.into(),
            account: "default".into(),
            truth: truth.unwrap(),
            pid: None,
            owner: None,
        },
    )
    .unwrap();
    let shared = dir.join(k.file);
    // airlock's own refreshes go to the mock (only this test's agent reads
    // this variable; std's environment functions are serialised)
    // SAFETY: no other test of this binary reads these variables, and no
    // C code in the process reads the environment concurrently.
    unsafe {
        std::env::set_var(
            format!("AIRLOCK_{}_TOKEN_URL", k.agent.to_uppercase()),
            mock.url(),
        )
    };
    let mut watcher = Some(watch(&layout, None));

    let mut seed: u64 = std::env::var("AIRLOCK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    eprintln!("sync_link seed: {seed} (AIRLOCK_TEST_SEED repeats it)");
    let mut prerefreshes = 0u64;
    for round in 0..12 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        match (seed >> 33) % 4 {
            0 => {
                let new = (k.refresh)(&mock, &shared);
                wait_for("the sandbox's refresh on the host", || {
                    (k.rt)(&read_json(&host_file)) == new
                });
            }
            1 => {
                let new = (k.refresh)(&mock, &host_file);
                wait_for("the host's refresh in the sandbox", || {
                    (k.rt)(&read_json(&shared)) == new
                });
            }
            2 => {
                assert!(matches!(
                    truth_of(k.agent, &vault, &host),
                    Some(Truth::HostFile { .. })
                ));
            }
            _ => {
                // airlock pre-refreshes: a watcher whose lead (2 h) exceeds
                // the session's remaining hour refreshes at once, then not
                // again before half the new session's lifetime
                if let Some((stop, th)) = watcher.take() {
                    stop.stop();
                    th.join().unwrap().unwrap();
                }
                if k.agent == "codex" {
                    // whole-second expiries: let the new one be newer
                    std::thread::sleep(Duration::from_millis(1_050));
                }
                let (before, old) = (mock.refreshes(), (k.rt)(&read_json(&host_file)));
                watcher = Some(watch(&layout, Some(Duration::from_secs(7_200))));
                wait_for(
                    "airlock's pre-refresh on the host and in the sandbox",
                    || {
                        let now = (k.rt)(&read_json(&host_file));
                        mock.refreshes() == before + 1
                            && now != old
                            && (k.rt)(&read_json(&shared)) == now
                    },
                );
                prerefreshes += 1;
            }
        }
        let host_doc = read_json(&host_file);
        if k.agent == "claude"
            && let Some(claude) = common::claude_binary()
        {
            // the genuine CLI, against the host's own file
            let out = std::process::Command::new(claude)
                .args(["auth", "status"])
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", root.path().join("home"))
                .output()
                .unwrap();
            let st: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            assert!(
                out.status.success() && st["loggedIn"] == true,
                "round {round}: claude auth status says the host is logged out"
            );
        }
        if k.agent == "codex"
            && let Some(codex) = common::codex_binary()
        {
            // the genuine CLI, against the host's own file
            let out = std::process::Command::new(codex)
                .args(["login", "status"])
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", root.path().join("home"))
                .env("CODEX_HOME", root.path().join("home").join(k.dir))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "round {round}: codex login status failed on the host"
            );
        }
        assert_eq!(
            mock.reuse_errors(),
            0,
            "round {round}: a refresh token was reused"
        );
        assert!(
            mock.is_live(&(k.rt)(&host_doc)),
            "round {round}: the host is logged out"
        );
        assert_eq!(host_doc["zzHostKey"], 1, "round {round}: unknown key lost");
        truth_of(k.agent, &vault, &host);
        let rec = vault.backend().get(&id).unwrap().unwrap();
        let stored: Value = serde_json::from_str(rec.secret.expose()).unwrap();
        assert_eq!(
            stored[k.session], host_doc[k.session],
            "round {round}: the vault record is the host's session"
        );
    }
    eprintln!(
        "{}: {prerefreshes} of 12 rounds were airlock pre-refreshes",
        k.agent
    );
    assert_eq!(
        mock.airlock_refreshes(),
        prerefreshes,
        "airlock refreshed when due and never behind the host's back"
    );
    assert_eq!(mock.unknown_errors(), 0);
    unregister(&layout, None, &format!("{}-sb", k.agent)).unwrap();
    assert!(mock.is_live(&(k.rt)(&read_json(&host_file))));
    if let Some((stop, th)) = watcher {
        stop.stop();
        th.join().unwrap().unwrap();
    }
}

/// A watcher over `layout`; with `lead`, it also pre-refreshes sessions
/// that expire within `lead` (the token URLs point at the test's mock).
fn watch(
    layout: &Layout,
    lead: Option<Duration>,
) -> (StopHandle, std::thread::JoinHandle<airlock::Result<()>>) {
    let mut d = Daemon::new(
        layout.clone(),
        None,
        Options {
            linger: None,
            ..Options::default()
        },
    )
    .unwrap();
    if let Some(lead) = lead {
        d = d.with_refresh(Policy {
            enabled: true,
            lead,
            timeout: Duration::from_secs(5),
            retry: Duration::from_secs(1),
        });
    }
    let stop = d.stop_handle();
    (stop, std::thread::spawn(move || d.run()))
}

fn codex_doc(i: &mock_oauth::Issued, account: &str) -> Value {
    let id_token = mock_oauth::jwt(&json!({"email": format!("{account}@example.com"),
        "https://api.openai.com/auth": {"chatgpt_plan_type": "pro", "chatgpt_account_id": account}}));
    json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
        "tokens": {"id_token": id_token, "access_token": i.access_token, "refresh_token": i.refresh_token, "account_id": account},
        "last_refresh": "2026-11-01T00:00:00Z"})
}

/// A host file rewritten to another account (a new token family) unlinks
/// the record, with a warning, and is never written with the old family.
#[test]
fn a_host_file_of_another_account_unlinks_and_is_left_alone() {
    let mock = MockOAuth::start(Style::Codex, 3600);
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    let root = tempfile::tempdir_in(&base).unwrap();
    let home = root.path().join("home");
    fs::create_dir_all(home.join(".codex")).unwrap();
    let host_file = home.join(".codex/auth.json");
    let other = codex_doc(&mock.login(), "other-account");
    let other_bytes = serde_json::to_vec(&other).unwrap();
    fs::write(&host_file, &other_bytes).unwrap();
    let host = HostEnv {
        home,
        vars: Default::default(),
    };
    let vault = Vault::in_memory();
    let id = CredentialId::parse("codex").unwrap();
    let mut meta = Metadata::new("host:~/.codex/auth.json");
    meta.host_link = Some(host_file.display().to_string());
    vault
        .backend()
        .put(Record {
            id: id.clone(),
            method: Method::Session,
            secret: Secret::new(codex_doc(&mock.login(), "acc").to_string()),
            meta,
        })
        .unwrap();
    let req = Request {
        agents: vec![AgentRequest::parse("codex").unwrap()],
        rotation: Rotation::Sync,
        host_configs: false,
        ..Request::default()
    };
    let r = resolve(&req, &vault, &host, &Config::default(), Timestamp::now()).unwrap();
    assert_eq!(
        r.plan.sync.first().and_then(|m| m.truth.clone()),
        Some(Truth::Vault { id: id.clone() }),
        "the old family syncs to its own record only"
    );
    assert!(
        r.plan
            .warnings
            .iter()
            .any(|w| w.contains("another account's login") && w.contains("no longer linked")),
        "{:?}",
        r.plan.warnings
    );
    let rec = vault.backend().get(&id).unwrap().unwrap();
    assert_eq!(rec.meta.host_link, None, "the link is dropped");
    let stored: Value = serde_json::from_str(rec.secret.expose()).unwrap();
    assert_eq!(
        stored["tokens"]["account_id"], "acc",
        "the record keeps its session"
    );
    assert_eq!(
        fs::read(&host_file).unwrap(),
        other_bytes,
        "host file untouched"
    );
}

/// `airlock doctor`'s check: an unlinked copy of the host login whose
/// family the host has moved on from is flagged, with what to do.
#[test]
fn doctor_flags_a_copy_the_host_has_moved_on_from() {
    let mock = MockOAuth::start(Style::Claude, 3600);
    let home = PathBuf::from("/home/u");
    let env = HostEnv {
        home,
        vars: Default::default(),
    };
    let doc = |i: &mock_oauth::Issued| {
        json!({"claudeAiOauth": {"accessToken": i.access_token, "refreshToken": i.refresh_token,
            "expiresAt": i.expires_at_ms, "scopes": ["user:inference"]}})
        .to_string()
    };
    let old = mock.login();
    std::thread::sleep(Duration::from_millis(5));
    let new = mock.login();
    let rec = |secret: String, link: Option<&str>| {
        let mut meta = Metadata::new("host:~/.claude/.credentials.json");
        meta.host_link = link.map(str::to_owned);
        Record {
            id: CredentialId::parse("claude").unwrap(),
            method: Method::Session,
            secret: Secret::new(secret),
            meta,
        }
    };
    let host = rec(doc(&new), None);
    let (problem, fix) =
        airlock::sync::link::moved_on(&rec(doc(&old), None), Some(&host), &env).unwrap();
    assert!(
        problem.contains("/home/u/.claude/.credentials.json"),
        "{problem}"
    );
    assert!(
        fix.contains("airlock auth claude --account default --from-host"),
        "{fix}"
    );
    // same family, or linked (it follows the host), or the vault is newer: fine
    assert!(airlock::sync::link::moved_on(&rec(doc(&new), None), Some(&host), &env).is_none());
    let linked = rec(doc(&old), Some("/home/u/.claude/.credentials.json"));
    assert!(airlock::sync::link::moved_on(&linked, Some(&host), &env).is_none());
    assert!(airlock::sync::link::moved_on(&host, Some(&rec(doc(&old), None)), &env).is_none());
}

/// Claude's credential file names no account: the link remembers the
/// account Claude's `.claude.json` names, so a host re-login to another
/// account (new family, other uuid) unlinks and is left alone, while a
/// re-login to the same account (new family, same uuid) is followed.
#[test]
fn a_claude_host_login_of_another_account_unlinks_the_same_account_is_followed() {
    let mock = MockOAuth::start(Style::Claude, 3600);
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    let root = tempfile::tempdir_in(&base).unwrap();
    let home = root.path().join("home");
    fs::create_dir_all(home.join(".claude")).unwrap();
    let host_file = home.join(".claude/.credentials.json");
    let claude_json = home.join(".claude.json");
    let account = |uuid: &str| {
        let v = json!({"hasCompletedOnboarding": true,
            "oauthAccount": {"accountUuid": uuid, "emailAddress": format!("{uuid}@example.com")}});
        fs::write(&claude_json, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    let first = claude_doc(&mock.login());
    fs::write(&host_file, serde_json::to_vec(&first).unwrap()).unwrap();
    account("uuid-a");
    let host = HostEnv {
        home,
        vars: Default::default(),
    };
    let vault = Vault::in_memory();
    let id = CredentialId::parse("claude").unwrap();
    vault
        .backend()
        .put(Record {
            id: id.clone(),
            method: Method::Session,
            secret: Secret::new(first.to_string()),
            meta: Metadata::new("stdin"),
        })
        .unwrap();
    let resolve_now = || {
        let req = Request {
            agents: vec![AgentRequest::parse("claude").unwrap()],
            rotation: Rotation::Sync,
            host_configs: false,
            ..Request::default()
        };
        resolve(&req, &vault, &host, &Config::default(), Timestamp::now()).unwrap()
    };
    let host_truth = Some(Truth::HostFile {
        path: host_file.clone(),
    });
    let r = resolve_now();
    assert_eq!(
        r.plan.sync.first().and_then(|m| m.truth.clone()),
        host_truth
    );
    let rec = vault.backend().get(&id).unwrap().unwrap();
    assert_eq!(
        rec.meta.host_account.as_deref(),
        Some("uuid-a"),
        "the link records the account .claude.json names"
    );

    // the same account, logged in again: a new family, followed
    let mut again = claude_doc(&mock.login());
    // a later login expires later (the mock issues both within a millisecond)
    again["claudeAiOauth"]["expiresAt"] = json!(now_ms() + 3_700_000);
    fs::write(&host_file, serde_json::to_vec(&again).unwrap()).unwrap();
    let r = resolve_now();
    assert_eq!(
        r.plan.sync.first().and_then(|m| m.truth.clone()),
        host_truth
    );
    let rec = vault.backend().get(&id).unwrap().unwrap();
    let stored: Value = serde_json::from_str(rec.secret.expose()).unwrap();
    assert_eq!(stored["claudeAiOauth"], again["claudeAiOauth"]);

    // another account: unlinked, the record keeps its session, the host
    // file and .claude.json are never written
    let other = claude_doc(&mock.login());
    let other_bytes = serde_json::to_vec(&other).unwrap();
    fs::write(&host_file, &other_bytes).unwrap();
    account("uuid-b");
    let cj = fs::read(&claude_json).unwrap();
    let r = resolve_now();
    assert_eq!(
        r.plan.sync.first().and_then(|m| m.truth.clone()),
        Some(Truth::Vault { id: id.clone() }),
        "the old family syncs to its own record only"
    );
    assert!(
        r.plan
            .warnings
            .iter()
            .any(|w| w.contains("another account's login") && w.contains("no longer linked")),
        "{:?}",
        r.plan.warnings
    );
    let rec = vault.backend().get(&id).unwrap().unwrap();
    assert_eq!(rec.meta.host_link, None, "the link is dropped");
    let stored: Value = serde_json::from_str(rec.secret.expose()).unwrap();
    assert_eq!(stored["claudeAiOauth"], again["claudeAiOauth"]);
    assert_eq!(fs::read(&host_file).unwrap(), other_bytes);
    assert_eq!(fs::read(&claude_json).unwrap(), cj);
    // and stays unlinked at the next resolution
    let r = resolve_now();
    assert_eq!(
        r.plan.sync.first().and_then(|m| m.truth.clone()),
        Some(Truth::Vault { id })
    );
}
