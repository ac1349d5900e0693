//! Plans checked against the real agent CLIs, offline: the plan's files are
//! written under a temporary directory standing in for `/run/airlock`, its
//! environment is given to `claude auth status`, `codex login status` and
//! `gemini -p`, and each must report the login the plan meant to deliver.
//!
//! Needs `AIRLOCK_TEST_AGENTS=1` and the agents' `node_modules/.bin` in
//! `AIRLOCK_AGENT_BIN_DIR` (Claude Code 2.1.x, Codex 0.169, Gemini 0.61).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airlock::Secret;
use airlock::agents::inject::{InjectOptions, Rotation};
use airlock::agents::{claude, codex, gemini};
use airlock::plan::{STATE_DIR, SandboxPlan, Value};
use airlock::vault::{CredentialId, Metadata, Method, Record};
use common::{CANARY, require_real};
use serde_json::json;

fn bin_dir() -> Option<PathBuf> {
    if !require_real("AIRLOCK_TEST_AGENTS") {
        return None;
    }
    let dir = std::env::var_os("AIRLOCK_AGENT_BIN_DIR")
        .map(PathBuf::from)
        .expect("AIRLOCK_AGENT_BIN_DIR must point at the agents' node_modules/.bin");
    Some(dir)
}

fn rec(agent: &str, method: Method, secret: &str) -> Record {
    Record {
        id: CredentialId::new(agent, "default").unwrap(),
        method,
        secret: Secret::from(secret),
        meta: Metadata::new("test"),
    }
}

/// Writes the plan's files under `root` (for `/run/airlock`) and returns
/// its environment with paths moved the same way.
fn materialize(plan: &SandboxPlan, root: &Path) -> Vec<(String, String)> {
    let moved = |p: &str| p.replacen(STATE_DIR, &root.display().to_string(), 1);
    for f in &plan.files {
        let path = PathBuf::from(moved(&f.path));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = match &f.content {
            Value::Plain(s) => s.as_str(),
            Value::Secret(s) => s.expose(),
        };
        std::fs::write(&path, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode)).unwrap();
    }
    plan.env
        .iter()
        .map(|e| {
            let v = match &e.value {
                Value::Plain(s) => moved(s),
                Value::Secret(s) => s.expose().to_owned(),
            };
            (e.name.clone(), v)
        })
        .collect()
}

fn run(bin: &Path, args: &[&str], env: &[(String, String)], secs: u32) -> Output {
    let t = tempfile::Builder::new()
        .prefix("home-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let mut c = Command::new("timeout");
    c.arg(secs.to_string())
        .arg(bin)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", t.path())
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .current_dir(t.path());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    drop(t);
    out
}

/// Past auth validation Gemini goes to the network, which is absent here:
/// it fails to fetch (and retries until the timeout).
fn assert_reached_network(what: &str, out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(124) || err.contains("fetch failed"),
        "{what}: exit {:?}: {err}",
        out.status.code()
    );
}

fn state_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("state-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn claude_status(bin: &Path, plan: &SandboxPlan) -> serde_json::Value {
    let root = state_root();
    let env = materialize(plan, root.path());
    // `.bin/claude` is a JS launcher that needs the postinstall step; the
    // platform package holds the real binary.
    let native = bin.join("../@anthropic-ai/claude-code-linux-x64/claude");
    let exe = if native.is_file() {
        native
    } else {
        bin.join("claude")
    };
    let out = run(&exe, &["auth", "status"], &env, 60);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "claude auth status: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn claude_accepts_every_method() {
    let Some(bin) = bin_dir() else { return };
    let o = InjectOptions::default();

    let p = claude::inject::plan(
        &rec(
            "claude",
            Method::SetupToken,
            &format!("sk-ant-oat01-{CANARY}"),
        ),
        &o,
    )
    .unwrap();
    let s = claude_status(&bin, &p);
    assert_eq!(s["loggedIn"], true, "{s}");
    assert_eq!(s["authMethod"], "oauth_token", "{s}");

    let p = claude::inject::plan(
        &rec(
            "claude",
            Method::ApiKey,
            &format!("sk-ant-api03-{CANARY}-abcdefghijklmnopqrst"),
        ),
        &o,
    )
    .unwrap();
    let s = claude_status(&bin, &p);
    assert_eq!(s["authMethod"], "api_key", "{s}");

    // an access-only session copy still counts as a claude.ai login
    let far = jiff::Timestamp::now().as_millisecond() + 3_600_000;
    let session = json!({"claudeAiOauth": {
        "accessToken": format!("sk-ant-oat01-{CANARY}"),
        "refreshToken": "sk-ant-ort01-x",
        "expiresAt": far,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max"
    }});
    let p =
        claude::inject::plan(&rec("claude", Method::Session, &session.to_string()), &o).unwrap();
    let s = claude_status(&bin, &p);
    assert_eq!(s["authMethod"], "claude.ai", "{s}");
    assert_eq!(s["subscriptionType"], "max", "{s}");

    // onboarding only: not logged in
    let s = claude_status(&bin, &claude::inject::onboarding(&o).unwrap());
    assert_eq!(s["loggedIn"], false, "{s}");
}

fn codex_status(bin: &Path, plan: &SandboxPlan) -> (bool, String) {
    let root = state_root();
    let env = materialize(plan, root.path());
    let out = run(&bin.join("codex"), &["login", "status"], &env, 60);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn codex_accepts_api_keys_and_access_only_sessions() {
    let Some(bin) = bin_dir() else { return };
    let o = InjectOptions {
        host_config: Some(
            "# host\nmodel = \"gpt-5\"\ncli_auth_credentials_store = \"keyring\"\n[projects.\"/home/u\"]\ntrust_level = \"trusted\"\n"
                .into(),
        ),
        ..InjectOptions::default()
    };
    let p = codex::inject::plan(
        &rec("codex", Method::ApiKey, &format!("sk-proj-{CANARY}E1234")),
        &o,
    )
    .unwrap();
    let (ok, err) = codex_status(&bin, &p);
    assert!(ok, "{err}");
    assert!(err.contains("API key configured"), "{err}");
    assert!(!err.contains(CANARY), "codex printed the key: {err}");

    use base64::Engine as _;
    let b = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let jwt = |claims: &str| format!("{}.{}.{}", b("{\"alg\":\"none\"}"), b(claims), b("sig"));
    let session = json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": jwt("{\"email\":\"dev@example.com\"}"),
            "access_token": jwt("{\"exp\":4102444800}"),
            "refresh_token": "rt_x",
            "account_id": "acc"
        },
        "last_refresh": "2026-11-22T10:00:00Z"
    });
    for rotation in [Rotation::AccessOnly, Rotation::Copy] {
        let o = InjectOptions {
            rotation,
            ..o.clone()
        };
        let p =
            codex::inject::plan(&rec("codex", Method::Session, &session.to_string()), &o).unwrap();
        let (ok, err) = codex_status(&bin, &p);
        assert!(ok, "{rotation:?}: {err}");
        assert!(err.contains("Logged in using ChatGPT"), "{err}");
    }
}

#[test]
fn gemini_passes_auth_with_a_key_and_trust() {
    let Some(bin) = bin_dir() else { return };
    let root = state_root();
    let p = gemini::inject::plan(
        &rec("gemini", Method::ApiKey, &format!("AIza{CANARY}")),
        &InjectOptions::default(),
    )
    .unwrap();
    let env = materialize(&p, root.path());
    let out = run(
        &bin.join("gemini"),
        &["-p", "hi", "--output-format", "json"],
        &env,
        25,
    );
    // not 41 (no auth method) nor 55 (untrusted folder)
    assert_reached_network("gemini api-key", &out);

    // Vertex AI with an express-mode key passes auth validation too
    let root = state_root();
    let mut r = rec("gemini", Method::ApiKey, &format!("AIza{CANARY}"));
    r.meta.settings.insert("project".into(), "my-proj-1".into());
    r.meta
        .settings
        .insert("location".into(), "us-central1".into());
    let p = gemini::inject::plan(&r, &InjectOptions::default()).unwrap();
    let env = materialize(&p, root.path());
    let out = run(
        &bin.join("gemini"),
        &["-p", "hi", "--output-format", "json"],
        &env,
        25,
    );
    assert_reached_network("gemini vertex", &out);

    // onboarding only: trusted, but no auth method
    let root = state_root();
    let env = materialize(
        &gemini::inject::onboarding(&InjectOptions::default()).unwrap(),
        root.path(),
    );
    let out = run(
        &bin.join("gemini"),
        &["-p", "hi", "--output-format", "json"],
        &env,
        25,
    );
    assert_eq!(
        out.status.code(),
        Some(41),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
