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

/// What a genuine CLI sent to [`Recorder`]: method, path, headers
/// (lower-cased names).
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A plain-HTTP server on loopback standing where `airlock proxy` stands:
/// it records each request's head and answers 401, as the proxy does to an
/// unknown placeholder.
struct Recorder {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl Recorder {
    fn start() -> Recorder {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_owned();
                    let path = parts.next().unwrap_or("").to_owned();
                    let mut headers = Vec::new();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            let k = k.trim().to_ascii_lowercase();
                            if k == "content-length" {
                                len = v.trim().parse().unwrap_or(0);
                            }
                            headers.push((k, v.trim().to_owned()));
                        }
                    }
                    let mut body = vec![0; len.min(1 << 20)];
                    let _ = r.read_exact(&mut body);
                    s.lock().unwrap().push(Seen {
                        method,
                        path,
                        headers,
                    });
                    let body = br#"{"error":{"type":"authentication_error","message":"unknown placeholder"}}"#;
                    let mut w = conn;
                    let _ = write!(
                        w,
                        "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = w.write_all(body);
                });
            }
        });
        Recorder { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The proxy-mode plan for `record`, pointing at `url`.
fn proxy_plan(record: &Record, url: &str) -> (SandboxPlan, String) {
    let opts = InjectOptions {
        rotation: Rotation::Proxy,
        proxy_url: Some(url.to_owned()),
        ..InjectOptions::default()
    };
    let plan = airlock::proxy::sandbox::plan(record, &opts).unwrap();
    let Value::Secret(ph) = &plan.proxy[0].placeholder else {
        panic!("the placeholder is secret")
    };
    let ph = ph.expose().to_owned();
    (plan, ph)
}

/// Every request the CLI made carried the placeholder in `header` (with
/// `prefix`), under `path_prefix`, and no request carried the real secret.
fn assert_sent_placeholder(
    what: &str,
    rec: &Recorder,
    header: &str,
    prefix: &str,
    path_prefix: &str,
    ph: &str,
) {
    let seen = rec.seen();
    let authed: Vec<&Seen> = seen.iter().filter(|s| s.header(header).is_some()).collect();
    assert!(
        !authed.is_empty(),
        "{what}: no request reached the proxy's address: {seen:?}"
    );
    for s in &authed {
        assert_eq!(
            s.header(header),
            Some(format!("{prefix}{ph}").as_str()),
            "{what}: {} {}",
            s.method,
            s.path
        );
        assert!(s.path.starts_with(path_prefix), "{what}: {}", s.path);
    }
    let all = format!("{seen:?}");
    assert!(
        !all.contains(CANARY),
        "{what}: the real credential was sent"
    );
}

#[test]
fn proxy_mode_claude_sends_the_placeholder_to_the_proxy() {
    let Some(bin) = bin_dir() else { return };
    let native = bin.join("../@anthropic-ai/claude-code-linux-x64/claude");
    let exe = if native.is_file() {
        native
    } else {
        bin.join("claude")
    };
    let session = json!({"claudeAiOauth": {"accessToken": format!("sk-ant-oat01-{CANARY}"),
        "refreshToken": format!("sk-ant-ort01-{CANARY}"), "expiresAt": 4_102_444_800_000i64,
        "scopes": ["user:inference"], "subscriptionType": "max"}})
    .to_string();
    for (method, secret, header, prefix) in [
        (Method::Session, session, "authorization", "Bearer "),
        (
            Method::ApiKey,
            format!("sk-ant-api03-{CANARY}-{}", "k".repeat(60)),
            "x-api-key",
            "",
        ),
    ] {
        let rec_ = Recorder::start();
        let (plan, ph) = proxy_plan(&rec("claude", method, &secret), &rec_.url);
        let root = state_root();
        let env = materialize(&plan, root.path());
        let t = std::time::Instant::now();
        // with a key, Claude retries a 401 until the timeout
        let out = run(&exe, &["-p", "hi"], &env, 10);
        eprintln!(
            "claude {method:?}: exit {:?} after {:?}",
            out.status.code(),
            t.elapsed()
        );
        assert_ne!(out.status.code(), Some(0), "a 401 is a failure");
        assert_sent_placeholder(
            &format!("claude {method:?}"),
            &rec_,
            header,
            prefix,
            "/v1/messages",
            &ph,
        );
    }
}

#[test]
fn proxy_mode_codex_sends_the_placeholder_to_the_proxy() {
    let Some(bin) = bin_dir() else { return };
    let key = format!("sk-proj-{CANARY}-{}", "k".repeat(40));
    let r = Recorder::start();
    let (plan, ph) = proxy_plan(&rec("codex", Method::ApiKey, &key), &r.url);
    let root = state_root();
    let env = materialize(&plan, root.path());
    run(
        &bin.join("codex"),
        &["exec", "--skip-git-repo-check", "hi"],
        &env,
        12,
    );
    assert_sent_placeholder(
        "codex api key",
        &r,
        "authorization",
        "Bearer ",
        "/v1/responses",
        &ph,
    );

    // a ChatGPT session: the backend calls and their account header
    let claims = base64_url(
        &json!({"email": "dev@example.com", "https://api.openai.com/auth":
            {"chatgpt_plan_type": "pro", "chatgpt_account_id": "acc-1"}})
        .to_string(),
    );
    let session = json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null, "tokens": {
        "id_token": format!("eyJhbGciOiJSUzI1NiJ9.{claims}.{CANARY}"),
        "access_token": format!("{CANARY}-access"), "refresh_token": format!("{CANARY}-refresh"),
        "account_id": "acc-1"}, "last_refresh": "2026-11-01T00:00:00Z"})
    .to_string();
    let r = Recorder::start();
    let (plan, ph) = proxy_plan(&rec("codex", Method::Session, &session), &r.url);
    let env = materialize(&plan, root.path());
    let status = run(&bin.join("codex"), &["login", "status"], &env, 20);
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("Logged in using ChatGPT"),
        "{status:?}"
    );
    run(
        &bin.join("codex"),
        &["exec", "--skip-git-repo-check", "hi"],
        &env,
        12,
    );
    assert_sent_placeholder(
        "codex session",
        &r,
        "authorization",
        "Bearer ",
        "/backend-api/",
        &ph,
    );
    assert!(
        r.seen()
            .iter()
            .any(|s| s.header("chatgpt-account-id") == Some("acc-1")),
        "the account header goes along"
    );
}

#[test]
fn proxy_mode_gemini_sends_the_placeholder_to_the_proxy() {
    let Some(bin) = bin_dir() else { return };
    let r = Recorder::start();
    let key = format!("AIza{CANARY}{}", "g".repeat(20));
    let (plan, ph) = proxy_plan(&rec("gemini", Method::ApiKey, &key), &r.url);
    let root = state_root();
    let mut env = materialize(&plan, root.path());
    env.push(("GEMINI_CLI_TRUST_WORKSPACE".into(), "true".into()));
    run(
        &bin.join("gemini"),
        &["-p", "hi", "--output-format", "json"],
        &env,
        30,
    );
    assert_sent_placeholder("gemini", &r, "x-goog-api-key", "", "/v1beta/models/", &ph);
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.as_bytes())
}
