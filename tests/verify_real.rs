//! `airlock verify` against the real engines and the genuine agent CLIs in
//! the test images (docs/testing.md). Credentials are stored through the
//! CLI (`airlock auth … --stdin`) from the fake fixtures, which all contain
//! the canary: it must never show up in verify's output.

mod common;

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

use common::{CANARY, TestContext};
use serde_json::Value;

fn fixture(rel: &str) -> String {
    let p = format!("{}/tests/fixtures/agents/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn store(ctx: &TestContext, agent: &str, method: &str, fixture_path: &str) {
    let mut c = ctx.cmd();
    c.args(["auth", agent, "--method", method, "--stdin"]);
    let out = common::output_with_stdin(&mut c, &fixture(fixture_path));
    assert!(
        out.status.success(),
        "auth {agent} {method}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Verified {
    code: i32,
    json: Value,
    stderr: String,
}

impl Verified {
    fn agent(&self, name: &str) -> &Value {
        self.json["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {}", self.json))
    }

    fn expect(&self, agent: &str, state: &str, cli_method: &str) {
        let a = self.agent(agent);
        assert_eq!(a["state"], state, "{agent}: {a}\nstderr: {}", self.stderr);
        assert_eq!(a["cli_method"], cli_method, "{agent}: {a}");
    }
}

fn verify(ctx: &TestContext, engine: &str, image: &str, extra: &[&str]) -> Verified {
    let out = ctx
        .cmd()
        .args(["verify", "--json", "--engine", engine, "--image", image])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for s in [&stdout, &stderr] {
        assert!(!s.contains(CANARY), "secret leaked:\n{s}");
    }
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));
    // Nothing left behind on the host's tmpfs.
    let sandboxes = ctx.runtime_dir.join("sandboxes");
    if let Ok(rd) = std::fs::read_dir(&sandboxes) {
        assert_eq!(rd.count(), 0, "sandbox directory left behind");
    }
    Verified {
        code: out.status.code().unwrap_or(-1),
        json,
        stderr,
    }
}

/// Tokens and API keys for all three agents: one container.
fn tokens_and_keys(engine: &str, image: &str) {
    let ctx = TestContext::new();
    store(&ctx, "claude", "token", "claude/setup-token.txt");
    store(&ctx, "codex", "api-key", "codex/api-key.txt");
    store(&ctx, "gemini", "api-key", "gemini/api-key.txt");
    // At the highest verbosity too: verify() checks both streams for the canary.
    let v = verify(&ctx, engine, image, &["-vvv"]);
    assert!(
        v.stderr.contains("verify container"),
        "no debug log: {}",
        v.stderr
    );
    assert_eq!(v.code, 0, "{}\n{}", v.json, v.stderr);
    v.expect("claude", "logged-in", "oauth_token");
    v.expect("codex", "logged-in", "api-key");
    v.expect("gemini", "configured", "gemini-api-key");
    assert_eq!(v.json["engine"], engine);
}

/// Sessions (credential files) and Claude's API key.
fn sessions(engine: &str, image: &str) {
    let ctx = TestContext::new();
    store(&ctx, "claude", "session", "claude/credentials-max.json");
    store(&ctx, "codex", "session", "codex/auth-chatgpt.json");
    store(&ctx, "gemini", "session", "gemini/oauth_creds.json");
    let v = verify(&ctx, engine, image, &[]);
    assert_eq!(v.code, 0, "{}\n{}", v.json, v.stderr);
    v.expect("claude", "logged-in", "claude.ai");
    v.expect("codex", "logged-in", "chatgpt");
    // Offline, Google cannot confirm the login: configured is a pass.
    v.expect("gemini", "configured", "oauth-personal");
    // `airlock run`'s choices apply: the whole session, refresh token included.
    let v = verify(
        &ctx,
        engine,
        image,
        &["--agent", "claude", "--rotation", "copy"],
    );
    assert_eq!(v.code, 0, "{}\n{}", v.json, v.stderr);
    v.expect("claude", "logged-in", "claude.ai");
    assert_eq!(v.json["agents"][0]["rotation"], "copy");
    // broker mode: the access token only; verify says so
    let v = verify(
        &ctx,
        engine,
        image,
        &[
            "--agent",
            "claude",
            "--agent",
            "codex",
            "--rotation",
            "broker",
        ],
    );
    assert_eq!(v.code, 0, "{}\n{}", v.json, v.stderr);
    v.expect("claude", "logged-in", "claude.ai");
    v.expect("codex", "logged-in", "chatgpt");
    for a in 0..2 {
        assert_eq!(v.json["agents"][a]["rotation"], "broker", "{}", v.json);
    }
    // a Gemini login in broker mode: verify says what a running gemini
    // cannot do (docs/broker.md)
    let v = verify(
        &ctx,
        engine,
        image,
        &["--agent", "gemini", "--rotation", "broker"],
    );
    assert_eq!(v.code, 0, "{}\n{}", v.json, v.stderr);
    v.expect("gemini", "configured", "oauth-personal");
    assert_eq!(v.agent("gemini")["rotation"], "broker", "{}", v.json);
    assert!(v.stderr.contains("--rotation proxy"), "{}", v.stderr);

    let ctx = TestContext::new();
    store(&ctx, "claude", "api-key", "claude/api-key.txt");
    let v = verify(&ctx, engine, image, &["--agent", "claude"]);
    assert_eq!(v.code, 0, "{}\n{}", v.json, v.stderr);
    v.expect("claude", "logged-in", "api_key");
}

#[test]
fn docker_user_image_tokens_and_keys() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    tokens_and_keys("docker", &std::env::var("AIRLOCK_TEST_IMAGE_USER").unwrap());
}

#[test]
fn docker_user_image_sessions() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    sessions("docker", &std::env::var("AIRLOCK_TEST_IMAGE_USER").unwrap());
}

#[test]
fn docker_root_image_sessions() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    sessions("docker", &std::env::var("AIRLOCK_TEST_IMAGE_ROOT").unwrap());
}

#[test]
fn podman_user_image_tokens_and_keys() {
    if !common::require_real("AIRLOCK_TEST_PODMAN") {
        return;
    }
    tokens_and_keys("podman", &std::env::var("AIRLOCK_TEST_IMAGE_USER").unwrap());
}

#[test]
fn podman_root_image_sessions() {
    if !common::require_real("AIRLOCK_TEST_PODMAN") {
        return;
    }
    sessions("podman", &std::env::var("AIRLOCK_TEST_IMAGE_ROOT").unwrap());
}

/// Failures: an agent named without a credential, and an image without the
/// CLIs. Exit 11, a fix for each, and nothing secret.
#[test]
fn docker_failures_are_reported_with_a_fix() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let ctx = TestContext::new();
    store(&ctx, "claude", "token", "claude/setup-token.txt");
    let image = std::env::var("AIRLOCK_TEST_IMAGE_USER").unwrap();
    let v = verify(
        &ctx,
        "docker",
        &image,
        &["--agent", "claude", "--agent", "codex"],
    );
    assert_eq!(v.code, 11, "{}", v.json);
    assert_eq!(v.agent("claude")["state"], "logged-in");
    let codex = v.agent("codex");
    assert_eq!(codex["state"], "no-credential", "{codex}");
    assert!(
        codex["fix"]
            .as_str()
            .unwrap()
            .contains("airlock auth codex"),
        "{codex}"
    );
    assert!(v.stderr.contains("codex not logged in"), "{}", v.stderr);

    // Nothing stored at all: nothing to vouch for.
    let empty = TestContext::new();
    let v = verify(&empty, "docker", &image, &[]);
    assert_eq!(v.code, 11, "{}", v.json);
    assert!(v.stderr.contains("nothing to check"), "{}", v.stderr);

    let busybox = std::env::var("AIRLOCK_TEST_IMAGE_BUSYBOX").unwrap();
    let v = verify(&ctx, "docker", &busybox, &["--agent", "claude"]);
    assert_eq!(v.code, 11, "{}", v.json);
    let claude = v.agent("claude");
    assert_eq!(claude["state"], "error", "{claude}");
    assert!(
        claude["problem"]
            .as_str()
            .unwrap()
            .contains("no `claude` on PATH"),
        "{claude}"
    );
}

/// An unknown image is an engine error (exit 8), not a verdict.
#[test]
fn docker_missing_image_is_an_engine_error() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let ctx = TestContext::new();
    store(&ctx, "claude", "token", "claude/setup-token.txt");
    let out = ctx
        .cmd()
        .args([
            "verify",
            "--engine",
            "docker",
            "--image",
            "localhost/airlock-test/does-not-exist:1",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn docker_root_image_tokens_and_keys() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    tokens_and_keys("docker", &std::env::var("AIRLOCK_TEST_IMAGE_ROOT").unwrap());
}

#[test]
fn podman_user_image_sessions() {
    if !common::require_real("AIRLOCK_TEST_PODMAN") {
        return;
    }
    sessions("podman", &std::env::var("AIRLOCK_TEST_IMAGE_USER").unwrap());
}

#[test]
fn podman_root_image_tokens_and_keys() {
    if !common::require_real("AIRLOCK_TEST_PODMAN") {
        return;
    }
    tokens_and_keys("podman", &std::env::var("AIRLOCK_TEST_IMAGE_ROOT").unwrap());
}

/// `verify --rotation proxy`: offline, the genuine CLIs are logged in with
/// placeholders, the container holds no real credential and nothing goes
/// upstream; `--online`, each agent's request through the proxy reaches the
/// TLS mock with the real credential and is answered; a credential the
/// upstream refuses fails that agent (exit 11).
#[test]
fn docker_proxy_mode_is_verified_offline_and_online() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let engine = "docker";
    let image = common::root_image();
    let mock = mock_upstream::MockUpstream::start();
    let mut ctx = common::tmpfs_context(engine, "verify-proxy");
    let ca = ctx.root.path().join("ca.pem");
    std::fs::write(&ca, &mock.ca_pem).unwrap();
    for agent in ["CLAUDE", "CODEX", "GEMINI"] {
        ctx.set_env(&format!("AIRLOCK_PROXY_UPSTREAM_{agent}"), &mock.origin());
    }
    ctx.set_env("AIRLOCK_PROXY_CA_FILE", ca.to_str().unwrap());
    store(&ctx, "claude", "token", "claude/setup-token.txt");
    store(&ctx, "codex", "api-key", "codex/api-key.txt");
    store(&ctx, "gemini", "api-key", "gemini/api-key.txt");

    let v = verify(&ctx, engine, &image, &["--rotation", "proxy"]);
    assert_eq!(v.code, 0, "{}\n{}", v.json, v.stderr);
    v.expect("claude", "logged-in", "oauth_token");
    v.expect("codex", "logged-in", "api-key");
    v.expect("gemini", "configured", "gemini-api-key");
    let scan = v.json["proxy_scan"].as_str().unwrap();
    assert!(scan.contains("placeholders only"), "{scan}");
    for a in ["claude", "codex", "gemini"] {
        let p = v.agent(a)["proxy"].as_str().unwrap();
        assert!(p.contains("no request was sent upstream"), "{a}: {p}");
    }
    assert!(mock.seen().is_empty(), "offline: nothing upstream");

    let v = verify(&ctx, engine, &image, &["--rotation", "proxy", "--online"]);
    assert_eq!(v.code, 0, "{}\n{}", v.json, v.stderr);
    for a in ["claude", "codex", "gemini"] {
        let p = v.agent(a)["proxy"].as_str().unwrap();
        assert!(
            p.starts_with("answered through the proxy"),
            "{a}: {}",
            v.agent(a)
        );
        assert!(p.contains("HTTP 200"), "{a}: {p}");
    }
    let token = fixture("claude/setup-token.txt").trim().to_owned();
    let codex_key = fixture("codex/api-key.txt").trim().to_owned();
    let gemini_key = fixture("gemini/api-key.txt").trim().to_owned();
    mock.assert_carried("/v1/messages", "authorization", &format!("Bearer {token}"));
    mock.assert_carried(
        "/v1/responses",
        "authorization",
        &format!("Bearer {codex_key}"),
    );
    mock.assert_carried("/v1beta/models/", "x-goog-api-key", &gemini_key);

    // the upstream refuses Claude's token: claude fails with the status
    mock.reject(&token);
    let v = verify(
        &ctx,
        engine,
        &image,
        &["--rotation", "proxy", "--online", "--agent", "claude"],
    );
    assert_eq!(v.code, 11, "{}\n{}", v.json, v.stderr);
    let c = v.agent("claude");
    assert_eq!(c["state"], "error", "{c}");
    assert!(c["problem"].as_str().unwrap().contains("HTTP 401"), "{c}");
    // sessions: the CLIs are logged in with placeholder sessions, and the
    // scan finds none of the real tokens
    let sessions = TestContext::new();
    store(
        &sessions,
        "claude",
        "session",
        "claude/credentials-max.json",
    );
    store(&sessions, "codex", "session", "codex/auth-chatgpt.json");
    let v = verify(
        &sessions,
        engine,
        &image,
        &[
            "--rotation",
            "proxy",
            "--agent",
            "claude",
            "--agent",
            "codex",
        ],
    );
    assert_eq!(v.code, 0, "{}\n{}", v.json, v.stderr);
    v.expect("claude", "logged-in", "oauth_token");
    v.expect("codex", "logged-in", "chatgpt");
    let scan = v.json["proxy_scan"].as_str().unwrap();
    assert!(scan.contains("placeholders only"), "{scan}");

    // without --rotation proxy, --online is a usage error
    let out = ctx
        .cmd()
        .args(["verify", "--engine", engine, "--image", &image, "--online"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}
