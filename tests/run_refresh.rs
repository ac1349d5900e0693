//! `airlock run` with a synced session that is already due for a refresh
//! (pre-refresh, `docs/rotation.md` §5): the watcher refreshes it once,
//! against a mock token server on loopback, before the containers start, so
//! that sandboxes started together with an expired session do not all
//! present the same single-use refresh token. The containers have no
//! network: whatever they see was refreshed by airlock on the host.
//!
//! Gated by AIRLOCK_TEST_DOCKER=1 / AIRLOCK_TEST_PODMAN=1.

#[path = "support/mock_oauth.rs"]
mod mock_oauth;

mod common;

use std::process::Output;

use common::{TestContext, busybox, ok, require_real, root_image, store_session};

fn context(engine: &str, tag: &str) -> TestContext {
    common::tmpfs_context(engine, &format!("refresh-{tag}"))
}
use mock_oauth::{MockOAuth, Style, jwt, now_ms};
use serde_json::{Value, json};

fn store(ctx: &TestContext, agent: &str, doc: &Value) {
    store_session(ctx, agent, &doc.to_string());
}

/// Three Codex sandboxes started together with an expired access token:
/// one refresh at the server, every sandbox gets its result, no reuse.
fn parallel_codex_sandboxes(engine: &str) {
    let mock = MockOAuth::start(Style::Codex, 3600);
    let mut ctx = context(engine, "codex");
    ctx.set_env("AIRLOCK_CODEX_TOKEN_URL", &mock.url());
    let login = mock.login();
    let doc = json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
        "tokens": {"id_token": jwt(&json!({"email": "m@example.com",
                        "https://api.openai.com/auth": {"chatgpt_plan_type": "pro", "chatgpt_account_id": "acc"}})),
                   "access_token": jwt(&json!({"exp": now_ms() / 1000 - 60})),
                   "refresh_token": login.refresh_token, "account_id": "acc"},
        "last_refresh": "2026-11-01T00:00:00Z"});
    store(&ctx, "codex", &doc);
    let image = busybox();
    let children: Vec<_> = (0..3)
        .map(|_| {
            ctx.cmd()
                .args(["run", "--agent", "codex", "--", "--rm", "--network", "none"])
                .arg(&image)
                .args(["sh", "-c", "cat \"$CODEX_HOME/auth.json\""])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut seen = Vec::new();
    for o in &outs {
        let v: Value = serde_json::from_str(&ok(o)).unwrap();
        let rt = v["tokens"]["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(
            rt, login.refresh_token,
            "the sandbox started with the expired session"
        );
        seen.push(rt);
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "sandboxes got different sessions"
    );
    assert_eq!(mock.refreshes(), 1, "exactly one refresh, by airlock");
    assert_eq!(mock.reuse_errors(), 0);
    assert!(mock.is_live(&seen[0]));
    // The vault holds the refreshed session (a copy sandbox shows the record).
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "codex",
            "--rotation",
            "copy",
            "--",
            "--rm",
            "--network",
            "none",
        ])
        .arg(&image)
        .args(["sh", "-c", "cat \"$CODEX_HOME/auth.json\""])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["tokens"]["refresh_token"], seen[0].as_str());
    assert_ne!(v["last_refresh"], "2026-11-01T00:00:00Z");
}

/// A Claude session inside its refresh window: the genuine `claude auth
/// status` in the sandbox sees a logged-in session that airlock refreshed.
fn claude_due_session(engine: &str) {
    let mock = MockOAuth::start(Style::Claude, 8 * 3600);
    let mut ctx = context(engine, "claude");
    ctx.set_env("AIRLOCK_CLAUDE_TOKEN_URL", &mock.url());
    let login = mock.login();
    let doc = json!({"claudeAiOauth": {"accessToken": login.access_token, "refreshToken": login.refresh_token,
        "expiresAt": now_ms() + 120_000, "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max"}});
    store(&ctx, "claude", &doc);
    let out = ctx
        .cmd()
        .args(["run", "--agent", "claude", "--", "--rm", "--network", "none"])
        .arg(root_image())
        .args([
            "sh",
            "-c",
            "claude auth status >/dev/null && cat \"$CLAUDE_SECURESTORAGE_CONFIG_DIR/.credentials.json\"",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    let o = &v["claudeAiOauth"];
    assert_ne!(o["refreshToken"], login.refresh_token.as_str());
    assert!(o["expiresAt"].as_i64().unwrap() > now_ms() + 7 * 3600 * 1000);
    assert_eq!(
        o["subscriptionType"], "max",
        "keys the response lacks are kept"
    );
    assert_eq!(mock.refreshes(), 1);
    assert_eq!(mock.reuse_errors(), 0);
}

/// Pre-refresh off: the sandbox starts with the session as stored, and
/// nothing is sent to the server.
fn disabled(engine: &str) {
    let mock = MockOAuth::start(Style::Claude, 3600);
    let mut ctx = context(engine, "off");
    ctx.set_env("AIRLOCK_CLAUDE_TOKEN_URL", &mock.url());
    ctx.set_env("AIRLOCK_SYNC_REFRESH", "off");
    let login = mock.login();
    let doc = json!({"claudeAiOauth": {"accessToken": login.access_token, "refreshToken": login.refresh_token,
        "expiresAt": now_ms() + 120_000, "scopes": ["user:inference"]}});
    store(&ctx, "claude", &doc);
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
        ])
        .arg(busybox())
        .args([
            "sh",
            "-c",
            "cat \"$CLAUDE_SECURESTORAGE_CONFIG_DIR/.credentials.json\"",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(
        v["claudeAiOauth"]["refreshToken"],
        login.refresh_token.as_str()
    );
    assert_eq!(mock.refreshes(), 0);
}

#[test]
fn docker_parallel_codex_sandboxes_refresh_once() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        parallel_codex_sandboxes("docker");
    }
}

#[test]
fn podman_parallel_codex_sandboxes_refresh_once() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        parallel_codex_sandboxes("podman");
    }
}

#[test]
fn docker_claude_due_session_is_refreshed_before_the_start() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        claude_due_session("docker");
    }
}

#[test]
fn podman_claude_due_session_is_refreshed_before_the_start() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        claude_due_session("podman");
    }
}

#[test]
fn docker_pre_refresh_can_be_turned_off() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        disabled("docker");
    }
}
