//! `airlock login` through a pseudo-terminal, against stand-in agent CLIs
//! (tests/fixtures/standin/) in a small image built locally from the busybox
//! test image. The stand-ins write credential files the way the real CLIs
//! do, or abandon the login; airlock must store the first and refuse the
//! rest, and leave no login directory or container behind.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use common::{CANARY, TestContext};
use rexpect::process::WaitStatus;
use rexpect::session::PtySession;

const TAG: &str = "localhost/airlock-test/login-standin:latest";

static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The tests check that no login container is left on the engine, so they
/// run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn sh(engine: &str, args: &[&str]) -> String {
    let out = Command::new(engine).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{engine} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Builds the stand-in image once per engine and test process: busybox plus
/// /standin/bin/{claude,codex} and fake credentials, running as uid 1000.
fn standin_image(engine: &str) -> &'static str {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.iter().any(|e| e == engine) {
        return TAG;
    }
    let base = std::env::var("AIRLOCK_TEST_IMAGE_BUSYBOX").unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("standin");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    for s in ["claude", "codex", "gemini"] {
        std::fs::copy(src.join("standin").join(s), dir.join("bin").join(s)).unwrap();
    }
    let creds = std::fs::read_to_string(src.join("agents/claude/credentials-max.json")).unwrap();
    std::fs::write(dir.join("claude-credentials.json"), &creds).unwrap();
    std::fs::write(
        dir.join("claude-noscope.json"),
        creds.replace("\"user:inference\"", "\"user:profile\""),
    )
    .unwrap();
    std::fs::copy(
        src.join("agents/codex/auth-chatgpt.json"),
        dir.join("codex-auth.json"),
    )
    .unwrap();
    for f in ["oauth_creds.json", "google_accounts.json"] {
        std::fs::copy(
            src.join("agents/gemini").join(f),
            dir.join(format!("gemini-{f}")),
        )
        .unwrap();
    }
    std::fs::copy(
        src.join("agents/claude/setup-token.txt"),
        dir.join("setup-token.txt"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [dir.clone(), dir.join("bin")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let name = format!("airlock-standin-build-{}", std::process::id());
    let _ = Command::new(engine).args(["rm", "-f", &name]).output();
    sh(engine, &["create", "--name", &name, &base, "sh"]);
    sh(
        engine,
        &[
            "cp",
            &dir.display().to_string(),
            &format!("{name}:/standin"),
        ],
    );
    sh(
        engine,
        &[
            "commit",
            "--change",
            "ENV PATH=/standin/bin:/usr/local/bin:/usr/bin:/bin",
            "--change",
            "USER 1000:1000",
            &name,
            TAG,
        ],
    );
    sh(engine, &["rm", "-f", &name]);
    built.push(engine.to_owned());
    TAG
}

/// `airlock login <args>` on a pty.
fn spawn(ctx: &TestContext, args: &[&str]) -> PtySession {
    let base = ctx.cmd();
    let mut c = Command::new("sh");
    c.env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.env("TERM", "xterm");
    c.current_dir(&ctx.home);
    c.arg("-c")
        .arg("stty cols 120 rows 40 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_airlock"))
        .args(args);
    rexpect::session::spawn_command(c, Some(60_000)).unwrap()
}

fn expect(p: &mut PtySession, log: &mut String, needle: &str) {
    match p.exp_string(needle) {
        Ok(before) => {
            log.push_str(&before);
            log.push_str(needle);
        }
        Err(e) => panic!("waiting for {needle:?}: {e}\nseen so far:\n{log}"),
    }
}

fn send_line(p: &mut PtySession, s: &str) {
    p.send(s).unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
}

fn finish(mut p: PtySession, log: &mut String) -> i32 {
    log.push_str(&p.exp_eof().unwrap_or_default());
    match p.process_mut().wait().unwrap() {
        WaitStatus::Exited(_, code) => code,
        other => panic!("{other:?}"),
    }
}

/// The stored credentials, as `airlock status --json` lists them.
fn stored(ctx: &TestContext) -> Vec<(String, String, String)> {
    let out = ctx.cmd().args(["status", "--json"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(CANARY), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut found = Vec::new();
    for c in v["credentials"].as_array().into_iter().flatten() {
        if c["stored_in"] != "host" && c["method"].is_string() {
            found.push((
                c["agent"].as_str().unwrap_or_default().to_owned(),
                c["account"].as_str().unwrap_or_default().to_owned(),
                c["method"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    found
}

fn no_leftovers(ctx: &TestContext, engine: &str) {
    let logins = ctx.runtime_dir.join("logins");
    if let Ok(rd) = std::fs::read_dir(&logins) {
        let left: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        assert!(left.is_empty(), "login directories left behind: {left:?}");
    }
    let ps = sh(
        engine,
        &["ps", "-a", "-q", "--filter", "label=airlock.login=1"],
    );
    assert!(ps.is_empty(), "login containers left behind: {ps}");
}

fn login_claude_session(engine: &str) {
    let image = standin_image(engine);
    let ctx = TestContext::new();
    let mut log = String::new();
    let mut p = spawn(
        &ctx,
        &["login", "claude", "--image", image, "--engine", engine],
    );
    expect(&mut p, &mut log, "Paste code here if prompted");
    send_line(&mut p, "abc123");
    expect(&mut p, &mut log, "Login successful.");
    let code = finish(p, &mut log);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("stored claude:default (session)"), "{log}");
    assert!(!log.contains(CANARY), "secret on the terminal:\n{log}");
    assert_eq!(
        stored(&ctx),
        [("claude".into(), "default".into(), "session".into())]
    );
    no_leftovers(&ctx, engine);
}

#[test]
fn docker_claude_session_is_captured_and_stored() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let _serial = serial();
    login_claude_session("docker");
}

#[test]
fn podman_claude_session_is_captured_and_stored() {
    if !common::require_real("AIRLOCK_TEST_PODMAN") {
        return;
    }
    let _serial = serial();
    login_claude_session("podman");
}

/// Abandoned, interrupted and unusable logins: exit 7, a clear message,
/// nothing stored, nothing left behind.
#[test]
fn docker_interrupted_logins_store_nothing() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let _serial = serial();
    let image = standin_image("docker");
    for (answer, message) in [
        (
            "cancel",
            "without writing /run/airlock-login/claude/.credentials.json",
        ),
        ("empty", "is empty (0 bytes"),
        ("noscope", "user:inference"),
    ] {
        let ctx = TestContext::new();
        let mut log = String::new();
        let mut p = spawn(
            &ctx,
            &["login", "claude", "--image", image, "--engine", "docker"],
        );
        expect(&mut p, &mut log, "Paste code here if prompted");
        send_line(&mut p, answer);
        let code = finish(p, &mut log);
        assert_eq!(code, 7, "{answer}: {log}");
        assert!(log.contains(message), "{answer}: {log}");
        assert!(
            log.contains("airlock login claude"),
            "{answer}: no fix in {log}"
        );
        assert!(!log.contains(CANARY), "{answer}: {log}");
        assert!(stored(&ctx).is_empty(), "{answer}: something was stored");
        no_leftovers(&ctx, "docker");
    }
}

#[test]
fn docker_codex_device_login_to_an_account() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let _serial = serial();
    let image = standin_image("docker");
    let ctx = TestContext::new();
    let mut log = String::new();
    let mut p = spawn(
        &ctx,
        &[
            "login",
            "codex",
            "--account",
            "work",
            "--image",
            image,
            "--engine",
            "docker",
        ],
    );
    expect(&mut p, &mut log, "Enter this one-time code");
    send_line(&mut p, "");
    let code = finish(p, &mut log);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("stored codex:work (session)"), "{log}");
    assert!(!log.contains(CANARY), "{log}");
    assert_eq!(
        stored(&ctx),
        [("codex".into(), "work".into(), "session".into())]
    );
    no_leftovers(&ctx, "docker");
}

/// `--method token`: the token is pasted at airlock's hidden prompt after
/// the container exits; airlock never echoes it.
#[test]
fn docker_claude_setup_token_is_pasted_back() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let _serial = serial();
    let image = standin_image("docker");
    let token = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents/claude/setup-token.txt"),
    )
    .unwrap()
    .trim()
    .to_owned();
    let ctx = TestContext::new();
    let mut log = String::new();
    let mut p = spawn(
        &ctx,
        &[
            "login", "claude", "--method", "token", "--image", image, "--engine", "docker",
        ],
    );
    expect(&mut p, &mut log, "Paste code here if prompted");
    send_line(&mut p, "abc");
    expect(&mut p, &mut log, "Store this token securely");
    expect(&mut p, &mut log, "Paste the token");
    // Whatever the container printed, airlock's part must not echo it.
    let before = log.len();
    send_line(&mut p, &token);
    let code = finish(p, &mut log);
    assert_eq!(code, 0, "{log}");
    assert!(
        !log[before..].contains(CANARY),
        "token echoed:\n{}",
        &log[before..]
    );
    assert!(log.contains("stored claude:default (setup-token)"), "{log}");
    assert_eq!(
        stored(&ctx),
        [("claude".into(), "default".into(), "setup-token".into())]
    );
    no_leftovers(&ctx, "docker");
}

/// Gemini: Google login preselected, the callback port published on
/// 127.0.0.1, both files captured; the user leaves with /quit.
#[test]
fn docker_gemini_google_login() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let _serial = serial();
    let image = standin_image("docker");
    let ctx = TestContext::new();
    let mut log = String::new();
    let mut p = spawn(
        &ctx,
        &[
            "login",
            "gemini",
            "--image",
            image,
            "--engine",
            "docker",
            "--callback-port",
            "38123",
        ],
    );
    expect(&mut p, &mut log, "localhost:38123/oauth2callback");
    expect(&mut p, &mut log, "Enter the authorization code");
    send_line(&mut p, "4/0AbCd");
    expect(&mut p, &mut log, "Type /quit");
    send_line(&mut p, "/quit");
    let code = finish(p, &mut log);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("stored gemini:default (session)"), "{log}");
    assert!(log.contains("fake@example.com"), "account not read: {log}");
    assert!(!log.contains(CANARY), "{log}");
    assert_eq!(
        stored(&ctx),
        [("gemini".into(), "default".into(), "session".into())]
    );
    no_leftovers(&ctx, "docker");
}

/// Ctrl-C in the middle of the login: the terminal's interrupt reaches the
/// login in the container; airlock survives it, reports the interrupted
/// login, stores nothing and cleans up.
#[test]
fn docker_ctrl_c_during_login_stores_nothing() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let _serial = serial();
    let image = standin_image("docker");
    let ctx = TestContext::new();
    let mut log = String::new();
    let mut p = spawn(
        &ctx,
        &["login", "claude", "--image", image, "--engine", "docker"],
    );
    expect(&mut p, &mut log, "Paste code here if prompted");
    p.send_control('c').unwrap();
    let code = finish(p, &mut log);
    assert_eq!(code, 7, "{log}");
    assert!(log.contains("without writing"), "{log}");
    assert!(stored(&ctx).is_empty());
    no_leftovers(&ctx, "docker");
}
