//! Broker mode for a Gemini Google login (docs/broker.md), with the genuine
//! Gemini CLI in a container: `airlock run --rotation broker` refreshes the
//! expired login at a mock of Google's token endpoint before the container
//! starts, and the sandbox's `oauth_creds.json` holds the new access token
//! and no refresh token, which appears nowhere in the container.

#[path = "support/mock_oauth.rs"]
mod mock_oauth;

mod common;

use common::require_real;
use mock_oauth::{MockOAuth, Style};
use serde_json::json;

#[test]
fn docker_gemini_broker_sandbox_holds_no_refresh_token() {
    if require_real("AIRLOCK_TEST_DOCKER") && require_real("AIRLOCK_TEST_AGENTS") {
        // the unprivileged image: the shared directory is the agent's
        gemini_broker("docker", &common::user_image());
    }
}

#[test]
fn podman_gemini_broker_sandbox_holds_no_refresh_token() {
    if require_real("AIRLOCK_TEST_PODMAN") && require_real("AIRLOCK_TEST_AGENTS") {
        gemini_broker("podman", &common::root_image());
    }
}

fn gemini_broker(engine: &str, image: &str) {
    let oauth = MockOAuth::start(Style::Google, 3599);
    let mut ctx = common::tmpfs_context(engine, "broker-gemini");
    ctx.set_env("AIRLOCK_GEMINI_TOKEN_URL", &oauth.url());
    let login = oauth.login();
    // expired: airlock refreshes it before the container starts
    let doc = json!({"oauth_creds": {"access_token": login.access_token,
        "refresh_token": login.refresh_token, "scope": "openid", "token_type": "Bearer",
        "id_token": login.id_token, "expiry_date": mock_oauth::now_ms() - 60_000},
        "google_accounts": {"active": "mock@example.com", "old": []}});
    common::store_session(&ctx, "gemini", &doc.to_string());
    // the refresh tokens' tag only in the command (never a token itself:
    // `-vvv` shows the engine's command line)
    assert!(login.refresh_token.starts_with("rt_mock_"));
    let script = "cat \"$GEMINI_CLI_HOME/.gemini/oauth_creds.json\"; echo; \
         grep -rls -e 'rt_mock_' /proc/1/environ /proc/self/environ \"$HOME\" \"$GEMINI_CLI_HOME\" /run /tmp /etc 2>/dev/null | sed 's/^/REFRESH-TOKEN-IN: /'; \
         [ -w \"$GEMINI_CLI_HOME/.gemini\" ] && echo GEMINI-DIR-WRITABLE; \
         cd /tmp && gemini --debug -p hi 2>&1 | grep -i -e 'cached credentials' -e 'refresh token' | head -3; true";
    let out = ctx
        .cmd()
        .args([
            "-vvv",
            "run",
            "--rotation",
            "broker",
            "--agent",
            "gemini",
            "--no-aliases",
            "--",
            "--rm",
            "--network",
            "none",
        ])
        .arg(image)
        .args(["sh", "-c", script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(oauth.refreshes(), 1, "{stdout}\n{stderr}");
    let creds: serde_json::Value = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .next()
        .expect("the sandbox's oauth_creds.json")
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(creds.get("refresh_token").is_none(), "{stdout}");
    let at = creds["access_token"].as_str().unwrap_or_default();
    assert!(
        at.starts_with("ya29.mock-") && at != login.access_token,
        "the refreshed access token: {stdout}"
    );
    assert!(
        creds["expiry_date"].as_i64().unwrap_or(0) > mock_oauth::now_ms() + 30 * 60 * 1000,
        "{stdout}"
    );
    assert!(!stdout.contains("REFRESH-TOKEN-IN"), "{stdout}");
    assert!(stdout.contains("GEMINI-DIR-WRITABLE"), "{stdout}");
    assert!(!stdout.contains(&login.refresh_token) && !stderr.contains(&login.refresh_token));
    // the genuine CLI took the access-only file: not expiring (no "No
    // refresh token" from google-auth-library), it went on to Google's
    // tokeninfo check, which fails offline (--network none)
    assert!(stdout.contains("tokeninfo"), "{stdout}\n{stderr}");
    assert!(!stdout.contains("No refresh token"), "{stdout}");
    // and run says what broker mode means for a running gemini
    assert!(stderr.contains("broker mode"), "{stderr}");
    // no refresh token in airlock's -vvv output nor in the watcher's log,
    // which did refresh
    let daemon_log =
        std::fs::read_to_string(ctx.state_dir.join("sync/daemon.log")).unwrap_or_default();
    assert!(daemon_log.contains("refreshed"), "{daemon_log}");
    for (what, text) in [
        ("airlock run -vvv", &stderr),
        ("the watcher's log", &daemon_log),
    ] {
        for t in oauth.issued_secrets() {
            assert!(!text.contains(&t), "a token in {what}");
        }
    }
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// `docker-flags --rotation broker` (files mode) registers a Gemini login
/// like `run` does: the container started with the printed flags reads
/// the access token from the shared directory, with no refresh token.
#[test]
fn docker_flags_broker_gives_gemini_the_access_token_only() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let oauth = MockOAuth::start(Style::Google, 3599);
    let mut ctx = common::tmpfs_context("docker", "broker-gemini-flags");
    ctx.set_env("AIRLOCK_GEMINI_TOKEN_URL", &oauth.url());
    let login = oauth.login();
    let doc = json!({"oauth_creds": {"access_token": login.access_token,
        "refresh_token": login.refresh_token, "scope": "openid", "token_type": "Bearer",
        "id_token": login.id_token, "expiry_date": mock_oauth::now_ms() + 3_000_000},
        "google_accounts": {"active": "mock@example.com", "old": []}});
    common::store_session(&ctx, "gemini", &doc.to_string());
    let image = common::root_image();
    let out = ctx
        .cmd()
        .args(["docker-flags", "--rotation", "broker", "--agent", "gemini"])
        .args(["--no-aliases", "--image", &image])
        .output()
        .unwrap();
    let flags = common::ok(&out);
    assert!(!flags.contains(&login.refresh_token), "{flags}");
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let run = std::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none"])
        .args(&flags)
        .args([
            &image,
            "sh",
            "-c",
            "cat \"$GEMINI_CLI_HOME/.gemini/oauth_creds.json\"; echo; grep -rls rt_mock_ \"$GEMINI_CLI_HOME\" /run /tmp 2>/dev/null | sed 's/^/REFRESH-TOKEN-IN: /'; true",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&login.access_token), "{stdout}\n{stderr}");
    assert!(!stdout.contains(&login.refresh_token), "{stdout}");
    assert!(!stdout.contains("REFRESH-TOKEN-IN"), "{stdout}");
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}
