//! Proxy mode for a Gemini Google login (docs/proxy.md): the sandbox holds
//! a `ya29.` placeholder in `GOOGLE_CLOUD_ACCESS_TOKEN` and points Code
//! Assist (`CODE_ASSIST_ENDPOINT`) at `airlock proxy`, which sends the
//! session's current access token to the TLS mock of Code Assist; airlock's
//! watcher, the single refresher, refreshes the session at a mock of
//! Google's token endpoint (form-encoded, refresh tokens not rotated) and
//! writes it back; a refresh token Google refuses marks the credential dead.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

#[path = "support/mock_oauth.rs"]
mod mock_oauth;

#[path = "support/proxy_harness.rs"]
mod proxy_harness;

mod common;

use std::path::PathBuf;
use std::time::Instant;

use airlock::proxy::placeholder;
use airlock::proxy::registry::{self, Grant};
use airlock::sync::Truth;
use airlock::vault::Method;
use common::{CANARY, TestContext, ok, require_real};
use mock_oauth::{MockOAuth, Style};
use mock_upstream::{MockUpstream, REPLY};
use proxy_harness::{
    Detached, Proxy, layout, response, scan_line, send, start_proxy, start_watcher,
};
use serde_json::{Value, json};

/// Points `ctx`'s proxy at the mock (Code Assist) and its watcher at the
/// mock token server.
fn behind_mocks(ctx: &mut TestContext, mock: &MockUpstream, oauth: &MockOAuth) {
    let ca = ctx.root.path().join("ca.pem");
    std::fs::write(&ca, &mock.ca_pem).unwrap();
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_GEMINI_SESSION", &mock.origin());
    ctx.set_env("AIRLOCK_PROXY_CA_FILE", ca.to_str().unwrap());
    ctx.set_env("AIRLOCK_GEMINI_TOKEN_URL", &oauth.url());
}

/// A Gemini login in the host's own `~/.gemini/oauth_creds.json` (with a
/// key of its own), behind a proxy grant and held by the watcher as
/// `airlock run --rotation proxy` does; the watcher and the proxy running.
struct Setup {
    ctx: TestContext,
    host_file: PathBuf,
    placeholder: String,
    port: u16,
    _procs: (Proxy, Proxy),
}

fn gemini_login_behind_the_proxy(
    mock: &MockUpstream,
    oauth: &MockOAuth,
    access_token: &str,
    refresh_token: &str,
) -> Setup {
    let mut ctx = TestContext::new();
    behind_mocks(&mut ctx, mock, oauth);
    let dir = ctx.home.join(".gemini");
    std::fs::create_dir_all(&dir).unwrap();
    let host_file = dir.join("oauth_creds.json");
    let doc = json!({"access_token": access_token, "refresh_token": refresh_token,
        "scope": "openid", "token_type": "Bearer", "id_token": "h.p.s",
        "expiry_date": mock_oauth::now_ms() + 3600 * 1000, "zz_unknown": "kept"});
    std::fs::write(&host_file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let truth = Truth::HostFile {
        path: host_file.clone(),
    };
    let sync = airlock::sync::Layout {
        state: ctx.state_dir.join("sync"),
        runtime: ctx.runtime_dir.join("sync"),
    };
    airlock::sync::register_sandbox_mode(
        &sync,
        None,
        airlock::sync::Registration {
            sandbox: "sb-gemini-gemini".into(),
            agent: "gemini".into(),
            account: "default".into(),
            truth: truth.clone(),
            pid: Some(std::process::id()),
            owner: None,
        },
        true,
    )
    .unwrap();
    let placeholder = format!("ya29.airlock-{}", "p".repeat(32));
    registry::add(
        &layout(&ctx),
        &Grant {
            sandbox: "sb-gemini".into(),
            agent: "gemini".into(),
            account: "default".into(),
            method: Method::Session,
            placeholder_sha256: placeholder::hash(&placeholder),
            truth,
            container: None,
            engine: None,
            created: jiff::Timestamp::now(),
            revoked_at: None,
            reference: None,
            expires_at: None,
        },
    )
    .unwrap();
    let watcher = start_watcher(&ctx);
    let proxy = start_proxy(&ctx, &[]);
    let port = proxy.port;
    Setup {
        ctx,
        host_file,
        placeholder,
        port,
        _procs: (watcher, proxy),
    }
}

/// One Code Assist call through the proxy: the whole answer.
fn code_assist(s: &Setup, method: &str) -> String {
    response(send(
        s.port,
        "POST",
        &format!("/v1internal:{method}"),
        &s.placeholder,
    ))
}

fn host_doc(s: &Setup) -> Value {
    serde_json::from_slice(&std::fs::read(&s.host_file).unwrap()).unwrap()
}

fn audit_refresh(ctx: &TestContext) -> Vec<String> {
    ok(&ctx.cmd().args(["audit", "--json"]).output().unwrap())
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["refresh"].as_str().unwrap_or("-").to_owned()
        })
        .collect()
}

/// Code Assist refuses the access token (401): the proxy has the watcher
/// refresh the session once, at Google's token endpoint the way Gemini CLI
/// does it (form-encoded, its installed-app client), and retries with the
/// new token; the host file gets the new access token and expiry, keeps
/// the refresh token (Google does not rotate it), its unknown key and mode.
#[test]
fn a_refused_gemini_access_token_is_refreshed_once_and_written_back() {
    let mock = MockUpstream::start();
    let oauth = MockOAuth::start(Style::Google, 3599);
    let login = oauth.login();
    let s = gemini_login_behind_the_proxy(&mock, &oauth, &login.access_token, &login.refresh_token);
    mock.reject(&login.access_token);
    let r = code_assist(&s, "generateContent");
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("model_choice"),
        "{r}"
    );
    let r = code_assist(&s, "streamGenerateContent?alt=sse");
    assert!(r.starts_with("HTTP/1.1 200") && r.contains(REPLY), "{r}");
    assert_eq!(oauth.refreshes(), 1, "one refresh");
    let req = &oauth.requests()[0];
    assert_eq!(
        req.media_type().as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        req.client_id.as_deref(),
        Some(airlock::agents::gemini::refresh::CLIENT_ID)
    );
    assert!(req.keys.contains("client_secret") && req.sent_by_airlock());

    let v = host_doc(&s);
    let new = v["access_token"].as_str().unwrap().to_owned();
    assert_ne!(new, login.access_token);
    assert_eq!(v["refresh_token"], login.refresh_token.as_str(), "kept");
    assert_eq!(v["zz_unknown"], "kept");
    let exp = v["expiry_date"].as_i64().unwrap();
    assert!(
        (exp - (mock_oauth::now_ms() + 3_599_000)).abs() < 60_000,
        "{exp}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&s.host_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "mode kept");
    // upstream: the old token once, then only the new one; never the placeholder
    let sent: Vec<String> = mock
        .seen()
        .iter()
        .map(|x| x.header("authorization").unwrap_or("").to_owned())
        .collect();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0], format!("Bearer {}", login.access_token));
    assert!(sent[1..].iter().all(|a| *a == format!("Bearer {new}")));
    assert_eq!(audit_refresh(&s.ctx), ["refreshed", "-"]);
    for (what, f) in [("proxy", "proxy.log"), ("watcher", "sync.log")] {
        let log = std::fs::read_to_string(s.ctx.root.path().join(f)).unwrap();
        for t in [
            &new,
            &login.access_token,
            &login.refresh_token,
            &s.placeholder,
        ] {
            assert!(!log.contains(t.as_str()), "the {what}'s log holds a token");
        }
    }
}

/// Google refuses the refresh token (`invalid_grant`: revoked, or the
/// password changed): the credential is dead. The 401 reaches the agent,
/// `airlock status` says so, and later requests cause no other token
/// request (no retry storm).
#[test]
fn a_refused_gemini_refresh_token_marks_the_credential_dead() {
    let mock = MockUpstream::start();
    let oauth = MockOAuth::start(Style::Google, 3599);
    let access = format!("ya29.{CANARY}-revoked-session");
    let s = gemini_login_behind_the_proxy(&mock, &oauth, &access, "1//unknown-to-google");
    mock.reject(&access);
    for _ in 0..3 {
        let r = code_assist(&s, "generateContent");
        assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    }
    assert_eq!(oauth.requests().len(), 1, "one token request in all");
    assert_eq!(oauth.unknown_errors(), 1);
    let refresh = audit_refresh(&s.ctx);
    assert!(refresh[0].contains("invalid_grant"), "{refresh:?}");
    assert!(
        refresh[1..].iter().all(|r| r.starts_with("not refreshed")),
        "{refresh:?}"
    );
    let status: Value = serde_json::from_str(&ok(&s
        .ctx
        .cmd()
        .args(["status", "--json"])
        .output()
        .unwrap()))
    .unwrap();
    let acc = status["sync"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == "gemini")
        .unwrap_or_else(|| panic!("{status}"));
    assert!(acc["refused"].is_string(), "{acc}");
    assert!(
        acc["refresh_error"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"),
        "{acc}"
    );
    assert_eq!(host_doc(&s)["access_token"], access.as_str(), "untouched");
}

/// `airlock run --rotation proxy` with a Gemini login stored in the vault
/// whose access token has expired: the genuine `gemini -p` in a Docker
/// sandbox answers from the Code Assist mock; the session was refreshed
/// once (through the mock token server) and written back to the vault, the
/// mock saw the new real access token only, and the container (env,
/// `/proc`, files) and `docker inspect` never held a real token.
#[test]
fn docker_gemini_google_login_answers_through_the_proxy() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        gemini_google_login_through_the_proxy("docker");
    }
}

#[test]
fn podman_gemini_google_login_answers_through_the_proxy() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        gemini_google_login_through_the_proxy("podman");
    }
}

fn gemini_google_login_through_the_proxy(engine: &str) {
    let mock = MockUpstream::start();
    let oauth = MockOAuth::start(Style::Google, 3599);
    let mut ctx = common::tmpfs_context(engine, "proxy-gemini-session");
    behind_mocks(&mut ctx, &mock, &oauth);
    let login = oauth.login();
    let doc = json!({"oauth_creds": {"access_token": login.access_token,
        "refresh_token": login.refresh_token, "scope": "openid", "token_type": "Bearer",
        "id_token": login.id_token, "expiry_date": mock_oauth::now_ms() - 60_000},
        "google_accounts": {"active": "mock@example.com", "old": []}});
    common::store_session(&ctx, "gemini", &doc.to_string());
    mock.reject(&login.access_token);
    let name = format!(
        "airlock-proxy-gemini-session-{engine}-{}",
        std::process::id()
    );
    let sandbox = Detached::start(
        &ctx,
        engine,
        &["--rotation", "proxy", "--agent", "gemini", "--no-aliases"],
        &name,
        &common::root_image(),
    );
    let started = Instant::now();
    let (stdout, stderr, success) =
        sandbox.exec("cd /tmp && GEMINI_CLI_TRUST_WORKSPACE=true gemini -p hi");
    let took = started.elapsed();
    // every real token there is by now, and the stored session's canary:
    // after the agent ran, so that the refreshed token is looked for too
    let mut secrets = oauth.issued_secrets();
    secrets.push(CANARY.into());
    let secrets_ref: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let (scan_out, _, _) = sandbox.exec(&format!(
        "cat /proc/1/environ /proc/self/environ; env; {}",
        scan_line(&secrets_ref, "\"$GEMINI_CLI_HOME\"")
    ));
    assert!(
        success && stdout.contains(REPLY),
        "{stdout}\n{stderr}\nupstream saw: {:?}",
        mock.seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect::<Vec<_>>()
    );
    eprintln!("gemini -p through the proxy took {} ms", took.as_millis());
    assert!(
        scan_out.contains("GOOGLE_CLOUD_ACCESS_TOKEN=ya29.airlock-"),
        "{scan_out}"
    );
    assert!(
        !scan_out.contains("CREDENTIAL-IN-CONTAINER"),
        "a real token in the container"
    );
    sandbox.assert_nowhere(&secrets_ref, &[&scan_out, &stdout, &stderr]);
    let inspect = sandbox.inspect.clone();
    drop(sandbox);
    assert!(
        !inspect.contains("ya29.airlock-"),
        "the placeholder in inspect"
    );
    // one refresh, written back: the proxy read the new token from the vault
    assert_eq!(oauth.refreshes(), 1, "one refresh, by airlock");
    let new = oauth
        .issued_secrets()
        .into_iter()
        .find(|t| t.starts_with("ya29.") && *t != login.access_token)
        .unwrap();
    mock.assert_carried("/v1internal:", "authorization", &format!("Bearer {new}"));
    let audit = std::fs::read_to_string(layout(&ctx).audit()).unwrap();
    assert!(audit.contains("\"status\":200"), "{audit}");
    for t in &secrets {
        assert!(!audit.contains(t.as_str()));
    }
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// `airlock verify --rotation proxy` with a Gemini login: offline, Gemini
/// reports its Google login (placeholder only, nothing upstream); with
/// `--online`, `gemini -p` is answered through the proxy with the real
/// access token.
#[test]
fn docker_verify_proves_a_gemini_google_login_through_the_proxy() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let mock = MockUpstream::start();
    let oauth = MockOAuth::start(Style::Google, 3599);
    let mut ctx = common::tmpfs_context("docker", "verify-gemini-session");
    behind_mocks(&mut ctx, &mock, &oauth);
    let login = oauth.login();
    let doc = json!({"access_token": login.access_token, "refresh_token": login.refresh_token,
        "token_type": "Bearer", "expiry_date": login.expires_at_ms});
    common::store_session(&ctx, "gemini", &doc.to_string());
    let verify = |extra: &[&str]| {
        let out = ctx
            .cmd()
            .args([
                "verify", "--json", "--engine", "docker", "--agent", "gemini",
            ])
            .args(["--image", &common::root_image(), "--rotation", "proxy"])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        for t in oauth.issued_secrets() {
            assert!(!stdout.contains(&t) && !stderr.contains(&t));
        }
        let v: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
        (out.status.code(), v, stderr)
    };
    let (code, v, stderr) = verify(&[]);
    assert_eq!(code, Some(0), "{v}\n{stderr}");
    let g = &v["agents"][0];
    assert_eq!(
        (&g["state"], &g["cli_method"]),
        (&json!("configured"), &json!("oauth-personal")),
        "{v}"
    );
    assert!(
        v["proxy_scan"]
            .as_str()
            .unwrap()
            .contains("placeholders only"),
        "{v}"
    );
    assert!(mock.seen().is_empty(), "offline: nothing upstream");
    let (code, v, stderr) = verify(&["--online"]);
    assert_eq!(code, Some(0), "{v}\n{stderr}");
    let p = v["agents"][0]["proxy"].as_str().unwrap();
    assert!(
        p.starts_with("answered through the proxy") && p.contains("HTTP 200"),
        "{v}"
    );
    mock.assert_carried(
        "/v1internal:",
        "authorization",
        &format!("Bearer {}", login.access_token),
    );
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}
