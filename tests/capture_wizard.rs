//! The `airlock auth` wizard, driven through a pseudo-terminal: the real
//! binary, real key presses, hidden input that never echoes.

mod common;

use std::path::Path;
use std::process::Command;

use common::{CANARY, TestContext};
use rexpect::process::WaitStatus;
use rexpect::session::PtySession;

fn fixture(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agents")
            .join(rel),
    )
    .unwrap()
}

/// Spawns `airlock <args>` on a pty sized 120x40 (a fresh pty is 0x0),
/// with the in-memory vault.
fn spawn(ctx: &TestContext, args: &[&str]) -> PtySession {
    let mut ctx_env = ctx.cmd();
    ctx_env.env("AIRLOCK_KEYRING_BACKEND", "memory");
    spawn_cmd(ctx_env, args)
}

/// Spawns `airlock <args>` on a pty with the environment of `base`.
fn spawn_cmd(base: Command, args: &[&str]) -> PtySession {
    let mut c = Command::new("sh");
    c.env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.env("TERM", "xterm");
    if let Some(dir) = base.get_current_dir() {
        c.current_dir(dir);
    }
    c.arg("-c")
        .arg("stty cols 120 rows 40 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_airlock"))
        .args(args);
    rexpect::session::spawn_command(c, Some(15_000)).unwrap()
}

/// Waits for `needle`, keeping everything seen in `log`.
fn expect(p: &mut PtySession, log: &mut String, needle: &str) {
    match p.exp_string(needle) {
        Ok(before) => {
            log.push_str(&before);
            log.push_str(needle);
        }
        Err(e) => panic!("waiting for {needle:?}: {e}\nseen so far:\n{log}"),
    }
}

fn send(p: &mut PtySession, s: &str) {
    p.send(s).unwrap();
    p.flush().unwrap();
}

fn finish(mut p: PtySession, log: &mut String) -> i32 {
    log.push_str(&p.exp_eof().unwrap_or_default());
    match p.process_mut().wait().unwrap() {
        WaitStatus::Exited(_, code) => code,
        other => panic!("{other:?}"),
    }
}

#[test]
fn setup_token_is_typed_hidden_and_stored() {
    let ctx = TestContext::new();
    let token = fixture("claude/setup-token.txt").trim().to_owned();
    let mut log = String::new();
    let mut p = spawn(&ctx, &["auth", "claude"]);
    expect(
        &mut p,
        &mut log,
        "No Claude Code login found on this machine",
    );
    expect(&mut p, &mut log, "How should airlock authenticate?");
    expect(&mut p, &mut log, "claude setup-token");
    send(&mut p, "\r"); // the first entry: the setup-token
    expect(
        &mut p,
        &mut log,
        "Paste the token printed by `claude setup-token`",
    );
    send(&mut p, &format!("{token}\r"));
    expect(
        &mut p,
        &mut log,
        "stored claude:default (setup-token) in the memory vault",
    );
    expect(&mut p, &mut log, "env CLAUDE_CODE_OAUTH_TOKEN");
    let code = finish(p, &mut log);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(CANARY), "the hidden input was echoed:\n{log}");
}

#[test]
fn host_login_is_offered_first() {
    let ctx = TestContext::new();
    let dir = ctx.home.join(".codex");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("auth.json"), fixture("codex/auth-chatgpt.json")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("auth.json"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut log = String::new();
    let mut p = spawn(&ctx, &["auth", "codex", "--account", "work"]);
    expect(
        &mut p,
        &mut log,
        "Found your Codex CLI login on this machine",
    );
    expect(&mut p, &mut log, "fake@example.com (plus)");
    expect(&mut p, &mut log, "Store this login?");
    send(&mut p, "y\r");
    expect(&mut p, &mut log, "stored codex:work (session)");
    let code = finish(p, &mut log);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(CANARY), "{log}");
}

#[test]
fn gemini_key_with_vertex_settings() {
    let ctx = TestContext::new();
    let key = fixture("gemini/api-key.txt").trim().to_owned();
    let mut log = String::new();
    let mut p = spawn(&ctx, &["auth", "gemini"]);
    // No Google login on the host: the API key is the only choice, no menu.
    expect(&mut p, &mut log, "Use it with Vertex AI");
    send(&mut p, "y\r");
    expect(&mut p, &mut log, "Google Cloud project id:");
    send(&mut p, "my-proj-1\r");
    expect(&mut p, &mut log, "Location:");
    send(&mut p, "\r"); // default us-central1
    expect(&mut p, &mut log, "Paste your Gemini API key:");
    send(&mut p, &format!("{key}\r"));
    expect(&mut p, &mut log, "stored gemini:default (api-key)");
    expect(&mut p, &mut log, "Vertex AI");
    let code = finish(p, &mut log);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(CANARY), "{log}");
}

#[test]
fn a_rejected_secret_is_explained_and_cancel_stores_nothing() {
    let ctx = TestContext::new();
    let api_key = fixture("claude/api-key.txt").trim().to_owned();
    let mut log = String::new();
    let mut p = spawn(&ctx, &["auth", "claude"]);
    expect(&mut p, &mut log, "How should airlock authenticate?");
    send(&mut p, "\r");
    expect(&mut p, &mut log, "Paste the token printed by");
    // An API key where the setup-token was asked for: explained on the spot.
    send(&mut p, &format!("{api_key}\r"));
    expect(&mut p, &mut log, "is an Anthropic API key");
    send(&mut p, "\x1b"); // Esc
    expect(&mut p, &mut log, "cancelled: nothing was stored");
    let code = finish(p, &mut log);
    assert_eq!(code, 2, "{log}");
    assert!(!log.contains(CANARY), "{log}");
}

#[test]
fn a_broken_host_login_is_explained_and_other_methods_offered() {
    let ctx = TestContext::new();
    let dir = ctx.home.join(".claude");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".credentials.json"), "").unwrap(); // an interrupted login
    let key = fixture("claude/api-key.txt").trim().to_owned();
    let mut log = String::new();
    let mut p = spawn(&ctx, &["auth", "claude", "--account", "api"]);
    expect(&mut p, &mut log, "but it cannot be used");
    expect(&mut p, &mut log, "0 bytes");
    expect(&mut p, &mut log, "How should airlock authenticate?");
    send(&mut p, "\x1b[B\r"); // down: the API key
    expect(&mut p, &mut log, "Paste your Anthropic API key:");
    send(&mut p, &format!("{key}\r"));
    expect(&mut p, &mut log, "stored claude:api (api-key)");
    expect(&mut p, &mut log, "env ANTHROPIC_API_KEY");
    let code = finish(p, &mut log);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(CANARY), "{log}");
    assert!(!log.contains("No Claude Code login found"), "{log}");
}

#[test]
fn wizard_then_passphrase_then_status_with_the_file_vault() {
    let mut ctx = TestContext::new();
    ctx.unset_env("AIRLOCK_KEYRING_PASSWORD");
    let token = fixture("claude/setup-token.txt").trim().to_owned();
    let mut log = String::new();
    let mut p = spawn_cmd(ctx.cmd(), &["auth", "claude"]);
    expect(&mut p, &mut log, "How should airlock authenticate?");
    send(&mut p, "\r");
    expect(&mut p, &mut log, "Paste the token printed by");
    send(&mut p, &format!("{token}\r"));
    // A new vault: the file backend asks for a passphrase, twice, hidden.
    expect(&mut p, &mut log, "New passphrase for the airlock vault");
    send(&mut p, "wizard pass phrase\r");
    expect(&mut p, &mut log, "Type it again");
    send(&mut p, "wizard pass phrase\r");
    expect(
        &mut p,
        &mut log,
        "stored claude:default (setup-token) in the file vault",
    );
    let code = finish(p, &mut log);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(CANARY), "{log}");
    assert!(!log.contains("wizard pass phrase"), "{log}");

    ctx.set_env("AIRLOCK_KEYRING_PASSWORD", "wizard pass phrase");
    let out = ctx
        .cmd()
        .args(["status", "--agent", "claude", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &v["credentials"][0];
    assert_eq!(e["method"], "setup-token");
    assert_eq!(e["state"], "valid");
    assert_eq!(e["source"], "prompt");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(CANARY));
}
