//! Real engines, real agent CLIs: a sandbox built from a plan (made by hand,
//! exactly as the per-agent injection code makes it) must make the genuine
//! `claude`, `codex` and `gemini` inside the test images report the expected
//! login, on Docker and Podman, for a root image and a uid-1000 image.
//!
//! Gated by AIRLOCK_TEST_DOCKER=1 / AIRLOCK_TEST_PODMAN=1 (scripts/test.sh).

mod common;

use airlock::Secret;
use airlock::engine::{EngineKind, ImageConfig};
use airlock::plan::{SandboxPlan, Value};
use airlock::render::RunRequest;
use airlock::sandbox::launch;

use common::{CANARY, require_real, root_image, user_image};

fn gate(kind: EngineKind) -> bool {
    match kind {
        EngineKind::Docker => require_real("AIRLOCK_TEST_DOCKER"),
        EngineKind::Podman => require_real("AIRLOCK_TEST_PODMAN"),
    }
}

fn secret(s: String) -> Value {
    Value::Secret(Secret::new(s))
}

fn plain(s: &str) -> Value {
    Value::Plain(s.to_owned())
}

// ---- plans, as the per-agent injection code builds them -------------------

fn claude_base(p: &mut SandboxPlan) {
    p.set_env("CLAUDE_CONFIG_DIR", plain("/run/airlock/claude"));
    p.set_env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", plain("1"));
    p.add_file(
        "/run/airlock/claude/.claude.json",
        plain(r#"{"hasCompletedOnboarding":true,"projects":{"/workspace":{"hasTrustDialogAccepted":true}}}"#),
        0o600,
    );
}

fn claude_token(p: &mut SandboxPlan) {
    claude_base(p);
    p.set_env(
        "CLAUDE_CODE_OAUTH_TOKEN",
        secret(format!("sk-ant-oat01-{CANARY}-token-AAAAAAAAAAAAAAAAAAAA")),
    );
}

fn claude_api_key(p: &mut SandboxPlan) {
    claude_base(p);
    p.set_env(
        "ANTHROPIC_API_KEY",
        secret(format!(
            "sk-ant-api03-{CANARY}-key-AAAAAAAAAAAAAAAAAAAAAAAA"
        )),
    );
}

fn far_future_ms() -> u64 {
    4_102_444_800_000 // 2100-01-01
}

fn claude_session(p: &mut SandboxPlan) {
    claude_base(p);
    let creds = serde_json::json!({"claudeAiOauth": {
        "accessToken": format!("sk-ant-oat01-{CANARY}-access"),
        "refreshToken": format!("sk-ant-ort01-{CANARY}-refresh"),
        "expiresAt": far_future_ms(),
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }});
    p.add_file(
        "/run/airlock/claude/.credentials.json",
        secret(creds.to_string()),
        0o600,
    );
}

fn codex_api_key(p: &mut SandboxPlan) {
    p.set_env("CODEX_HOME", plain("/run/airlock/codex"));
    let auth = serde_json::json!({"auth_mode": "apikey", "OPENAI_API_KEY": format!("sk-proj-{CANARY}-1234")});
    p.add_file(
        "/run/airlock/codex/auth.json",
        secret(auth.to_string()),
        0o600,
    );
}

fn b64url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn fake_jwt(payload: serde_json::Value) -> String {
    format!(
        "{}.{}.{}",
        b64url(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64url(&payload.to_string()),
        b64url(CANARY)
    )
}

fn codex_session(p: &mut SandboxPlan) {
    p.set_env("CODEX_HOME", plain("/run/airlock/codex"));
    let claims = serde_json::json!({
        "email": "fake@example.com",
        "exp": far_future_ms() / 1000,
        "https://api.openai.com/auth": {"chatgpt_plan_type": "plus", "chatgpt_account_id": "acct-fake"},
    });
    let auth = serde_json::json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": fake_jwt(claims.clone()),
            "access_token": fake_jwt(claims),
            "refresh_token": format!("rt-{CANARY}"),
            "account_id": "acct-fake",
        },
        "last_refresh": "2026-11-22T00:00:00Z",
    });
    p.add_file(
        "/run/airlock/codex/auth.json",
        secret(auth.to_string()),
        0o600,
    );
}

fn gemini_base(p: &mut SandboxPlan, selected: &str) {
    p.set_env("GEMINI_CLI_HOME", plain("/run/airlock/gemini"));
    p.set_env("GEMINI_CLI_TRUST_WORKSPACE", plain("true"));
    p.add_file(
        "/run/airlock/gemini/.gemini/settings.json",
        plain(&serde_json::json!({"security": {"auth": {"selectedType": selected}}}).to_string()),
        0o600,
    );
}

fn gemini_api_key(p: &mut SandboxPlan) {
    gemini_base(p, "gemini-api-key");
    p.set_env("GEMINI_API_KEY", secret(format!("AIza{CANARY}-gemini-key")));
}

fn gemini_session(p: &mut SandboxPlan) {
    gemini_base(p, "oauth-personal");
    let creds = serde_json::json!({
        "access_token": format!("ya29.{CANARY}"),
        "refresh_token": format!("1//{CANARY}"),
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "token_type": "Bearer",
        "expiry_date": far_future_ms(),
    });
    p.add_file(
        "/run/airlock/gemini/.gemini/oauth_creds.json",
        secret(creds.to_string()),
        0o600,
    );
    p.add_file(
        "/run/airlock/gemini/.gemini/google_accounts.json",
        plain(r#"{"active":"fake@example.com","old":[]}"#),
        0o600,
    );
}

// ---- running -----------------------------------------------------------

struct RunResult {
    code: i32,
    stdout: String,
    stderr: String,
}

impl RunResult {
    /// stdout with all whitespace removed, for matching pretty-printed JSON.
    fn compact(&self) -> String {
        self.stdout.chars().filter(|c| !c.is_whitespace()).collect()
    }
}

fn run_in(
    kind: EngineKind,
    image: &str,
    plan: &SandboxPlan,
    flags: &[&str],
    cmd: &[&str],
) -> RunResult {
    let engine = kind.engine();
    let cfg: ImageConfig = engine.image_config(image).expect("image present");
    let mut args: Vec<String> = vec!["--rm".into(), "--network".into(), "none".into()];
    args.extend(flags.iter().map(|s| s.to_string()));
    args.push(image.to_owned());
    args.extend(cmd.iter().map(|s| s.to_string()));
    let req = RunRequest::parse(&args).unwrap();
    let rt = runtime_dir();
    let prepared = launch::prepare(engine.as_ref(), &cfg, plan, req, rt.path()).unwrap();
    let dir = prepared.sandbox.dir().to_path_buf();
    assert!(dir.exists());
    let argv = prepared.argv.join(" ");
    assert!(
        !argv.contains(CANARY),
        "secret on the engine's command line: {argv}"
    );
    let out = launch::run_captured(engine.as_ref(), prepared).unwrap();
    assert!(
        !dir.exists(),
        "sandbox directory left behind: {}",
        dir.display()
    );
    RunResult {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A runtime directory on a tmpfs, as in production (the default is
/// $XDG_RUNTIME_DIR or /dev/shm), 0700, removed when dropped.
fn runtime_dir() -> tempfile::TempDir {
    let p = tempfile::Builder::new()
        .prefix(&format!("airlock-test-{}-", std::process::id()))
        .tempdir_in("/dev/shm")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    p
}

const STATUS_SCRIPT: &str = r#"
echo "uid=$(id -u) home=$HOME"
echo "== claude"; claude auth status; echo "claude_rc=$?"
echo "== codex"; codex login status 2>&1; echo "codex_rc=$?"
echo "== files"; ls -ln /run/airlock /run/airlock/claude /run/airlock/codex 2>&1
echo "== done"
"#;

fn assert_status(r: &RunResult, claude_method: &str, codex_line: &str, uid: &str) {
    let ctx = format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code, r.stdout, r.stderr
    );
    assert_eq!(r.code, 0, "{ctx}");
    assert!(
        r.stderr.lines().any(|l| l == "airlock-test-entrypoint"),
        "image entrypoint did not run: {ctx}"
    );
    assert!(r.stdout.contains(&format!("uid={uid} ")), "{ctx}");
    let c = r.compact();
    assert!(c.contains("\"loggedIn\":true"), "{ctx}");
    assert!(
        c.contains(&format!("\"authMethod\":\"{claude_method}\"")),
        "{ctx}"
    );
    assert!(r.stdout.contains("claude_rc=0"), "{ctx}");
    assert!(r.stdout.contains(codex_line), "{ctx}");
    assert!(r.stdout.contains("codex_rc=0"), "{ctx}");
    assert!(
        !r.stdout.contains(CANARY) && !r.stderr.contains(CANARY),
        "{ctx}"
    );
}

fn matrix(kind: EngineKind, image: &str, uid: &str) {
    // 1. Claude token + Codex API key.
    let mut p = SandboxPlan::default();
    claude_token(&mut p);
    codex_api_key(&mut p);
    let r = run_in(kind, image, &p, &[], &["sh", "-c", STATUS_SCRIPT]);
    assert_status(&r, "oauth_token", "API key configured", uid);
    // files are the container user's, 0600
    assert!(
        r.stdout.lines().any(|l| l.starts_with("-rw-------")
            && l.contains(&format!(" {uid} "))
            && l.ends_with("auth.json")),
        "{}",
        r.stdout
    );

    // 2. Claude API key + Codex ChatGPT session.
    let mut p = SandboxPlan::default();
    claude_api_key(&mut p);
    codex_session(&mut p);
    let r = run_in(kind, image, &p, &[], &["sh", "-c", STATUS_SCRIPT]);
    assert_status(&r, "api_key", "Logged in using ChatGPT", uid);

    // 3. Claude session (credentials file) + Codex API key.
    let mut p = SandboxPlan::default();
    claude_session(&mut p);
    codex_api_key(&mut p);
    let r = run_in(kind, image, &p, &[], &["sh", "-c", STATUS_SCRIPT]);
    assert_status(&r, "claude.ai", "API key configured", uid);
}

const GEMINI_SCRIPT: &str = r#"
echo "== settings"; cat "$GEMINI_CLI_HOME/.gemini/settings.json"; echo
# Gemini has no status command; with an auth method it goes for the network
# (offline: "fetch failed", retried for minutes), so it is killed after 20 s.
timeout -s KILL 20 gemini -p hi --output-format json >/dev/null 2>/tmp/gemini.err; echo "gemini_rc=$?"
grep -q 'fetch failed' /tmp/gemini.err && echo "gemini_reached_network"
grep -o 'Please set an Auth method' /tmp/gemini.err
grep -o 'Manual authorization is required' /tmp/gemini.err | head -n 1
"#;

fn gemini(kind: EngineKind, image: &str) {
    let mut p = SandboxPlan::default();
    gemini_api_key(&mut p);
    let r = run_in(kind, image, &p, &[], &["sh", "-c", GEMINI_SCRIPT]);
    let ctx = format!("stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("gemini-api-key"), "{ctx}");
    assert!(r.stdout.contains("gemini_rc="), "{ctx}");
    assert!(
        !r.stdout.contains("gemini_rc=41"),
        "no auth method selected: {ctx}"
    );
    assert!(
        !r.stdout.contains("gemini_rc=55"),
        "untrusted workspace: {ctx}"
    );
    assert!(!r.stdout.contains("Please set an Auth method"), "{ctx}");
    assert!(
        r.stdout.contains("gemini_reached_network"),
        "auth did not pass: {ctx}"
    );

    let mut p = SandboxPlan::default();
    gemini_session(&mut p);
    let r = run_in(kind, image, &p, &[], &["sh", "-c", GEMINI_SCRIPT]);
    let ctx = format!("stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let c = r.compact();
    assert!(c.contains("\"selectedType\":\"oauth-personal\""), "{ctx}");
    // Offline, OAuth cannot be confirmed; but the auth method is configured.
    assert!(!r.stdout.contains("Please set an Auth method"), "{ctx}");
}

#[test]
fn docker_root_image_all_agents() {
    if gate(EngineKind::Docker) {
        matrix(EngineKind::Docker, &root_image(), "0");
    }
}

#[test]
fn docker_user_image_all_agents() {
    if gate(EngineKind::Docker) {
        matrix(EngineKind::Docker, &user_image(), "1000");
    }
}

#[test]
fn podman_root_image_all_agents() {
    if gate(EngineKind::Podman) {
        matrix(EngineKind::Podman, &root_image(), "0");
    }
}

#[test]
fn podman_user_image_all_agents() {
    if gate(EngineKind::Podman) {
        matrix(EngineKind::Podman, &user_image(), "1000");
    }
}

#[test]
fn docker_gemini_both_images() {
    if gate(EngineKind::Docker) {
        gemini(EngineKind::Docker, &root_image());
        gemini(EngineKind::Docker, &user_image());
    }
}

#[test]
fn podman_gemini_both_images() {
    if gate(EngineKind::Podman) {
        gemini(EngineKind::Podman, &root_image());
        gemini(EngineKind::Podman, &user_image());
    }
}

/// `run_captured_within` (what `airlock verify` bounds its probe container
/// with): a container that outlives the limit is killed by name, its output
/// so far is kept and the sandbox directory is removed.
fn hanging_container_is_killed(kind: EngineKind) {
    let engine = kind.engine();
    let image = user_image();
    let cfg: ImageConfig = engine.image_config(&image).expect("image present");
    let name = format!("airlock-test-limit-{}", std::process::id());
    let args: Vec<String> = ["--rm", "--network", "none", "--name", &name, &image]
        .into_iter()
        .chain(["sh", "-c", "echo started; sleep 600"])
        .map(str::to_owned)
        .collect();
    let req = RunRequest::parse(&args).unwrap();
    let rt = runtime_dir();
    let prepared = launch::prepare(
        engine.as_ref(),
        &cfg,
        &SandboxPlan::default(),
        req,
        rt.path(),
    )
    .unwrap();
    let dir = prepared.sandbox.dir().to_path_buf();
    let start = std::time::Instant::now();
    let run = launch::run_captured_within(
        engine.as_ref(),
        prepared,
        &name,
        std::time::Duration::from_secs(3),
    )
    .unwrap();
    let took = start.elapsed();
    assert!(took >= std::time::Duration::from_secs(3), "{took:?}");
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
    assert!(String::from_utf8_lossy(&run.stdout).contains("started"));
    assert!(!run.status.expect("waited for").success());
    assert!(!dir.exists(), "sandbox directory left behind");
}

#[test]
fn docker_hanging_container_is_killed_at_the_limit() {
    if gate(EngineKind::Docker) {
        hanging_container_is_killed(EngineKind::Docker);
    }
}

#[test]
fn podman_hanging_container_is_killed_at_the_limit() {
    if gate(EngineKind::Podman) {
        hanging_container_is_killed(EngineKind::Podman);
    }
}

/// The waiter of `docker-flags`/`compose` sees a `--rm` container that
/// started and exited before its first look (gone from `ps`, but not from
/// the engine's events): it removes the sandbox directory at once instead
/// of waiting for its timeout.
fn waiter_sees_a_container_that_came_and_went(kind: EngineKind) {
    let engine = kind.engine();
    let id = format!("reaptest{}{}", std::process::id(), kind);
    let dir = tempfile::tempdir().unwrap();
    let sandbox_dir = dir.path().join("sb");
    std::fs::create_dir(&sandbox_dir).unwrap();
    let st = engine
        .command()
        .args(["run", "--rm", "--network", "none", "--label"])
        .arg(format!("{}={id}", airlock::sandbox::LABEL))
        .arg(common::busybox())
        .arg("true")
        .status()
        .unwrap();
    assert!(st.success());
    let t = std::time::Instant::now();
    launch::reap_by_label(
        engine.as_ref(),
        &id,
        &sandbox_dir,
        std::time::Duration::from_secs(20),
    )
    .unwrap();
    assert!(!sandbox_dir.exists(), "the sandbox directory was left");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "the waiter waited for its timeout ({:?})",
        t.elapsed()
    );
}

#[test]
fn docker_waiter_sees_a_container_that_came_and_went() {
    if gate(EngineKind::Docker) {
        waiter_sees_a_container_that_came_and_went(EngineKind::Docker);
    }
}

#[test]
fn podman_waiter_sees_a_container_that_came_and_went() {
    if gate(EngineKind::Podman) {
        waiter_sees_a_container_that_came_and_went(EngineKind::Podman);
    }
}
