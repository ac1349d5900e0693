//! Codex with a ChatGPT session through proxy mode: the proxy also speaks
//! TLS to sandboxes (same port, first byte sniffed) with a certificate from
//! its per-user CA, and a Codex sandbox trusts that CA
//! (`CODEX_CA_CERTIFICATE`). Real parts: `airlock proxy` (the binary), the
//! TLS mock of the ChatGPT backend, the genuine `codex exec` in a Docker
//! (and Podman) sandbox started by `airlock run --rotation proxy`.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

mod common;

#[path = "support/proxy_harness.rs"]
mod proxy_harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::proxy::placeholder;
use airlock::proxy::registry::{self, Grant};
use airlock::sync::Truth;
use airlock::vault::Method;
use base64::Engine as _;
use common::{CANARY, TestContext, ok, require_real};
use mock_upstream::{MockUpstream, REPLY};
use proxy_harness::{Detached, layout, response, scan_line, send, start_proxy};

/// A setup-token grant whose API is `mock` (the plain TLS-path checks).
fn granted(mock: &MockUpstream, token: &str, ph: &str) -> TestContext {
    let mut ctx = TestContext::new();
    let ca = ctx.root.path().join("upstream-ca.pem");
    std::fs::write(&ca, &mock.ca_pem).unwrap();
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_CLAUDE", &mock.origin());
    ctx.set_env("AIRLOCK_PROXY_CA_FILE", ca.to_str().unwrap());
    let f = ctx.root.path().join("token");
    std::fs::write(&f, token).unwrap();
    ok(&ctx
        .cmd()
        .args(["auth", "claude", "--method", "token", "--from-file"])
        .arg(&f)
        .output()
        .unwrap());
    std::fs::remove_file(&f).unwrap();
    proxy_harness::grant_claude(&ctx, "sb-tls", ph);
    ctx
}

fn request(method: &str, path: &str, ph: &str) -> String {
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[]}"#;
    format!(
        "{method} {path} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {ph}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A TLS client configuration trusting `pem`'s certificates only.
fn trusting(pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// Sends `req` over TLS to the proxy as `name`; the whole answer, or the
/// TLS error.
fn over_tls(
    port: u16,
    cfg: Arc<rustls::ClientConfig>,
    name: &str,
    req: &str,
) -> Result<String, String> {
    let server = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(cfg, server).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => Ok(String::from_utf8_lossy(&out).into_owned()),
        // a cut response (the guard) ends without close_notify
        Err(_) if !out.is_empty() => Ok(String::from_utf8_lossy(&out).into_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Plain HTTP and TLS on one port: both are answered (the real token
/// swapped in, the fail-closed guard in force over TLS too); a client that
/// does not trust the proxy's CA, or asks for another name, gets no
/// connection; the CA file is private and holds the key, the bundle does
/// not.
#[test]
fn plain_http_and_tls_share_the_port() {
    let mock = MockUpstream::start();
    let token = format!("sk-ant-oat01-{CANARY}-tls-{}", "0123456789".repeat(6));
    let ph = format!("sk-ant-oat01-airlock-{}", "t".repeat(32));
    let ctx = granted(&mock, &token, &ph);
    let proxy = start_proxy(&ctx, &[]);

    let r = response(send(proxy.port, "POST", "/v1/messages", &ph));
    assert!(r.starts_with("HTTP/1.1 200") && r.contains(REPLY), "{r}");

    let ca = layout(&ctx).dir.join("ca");
    let bundle = std::fs::read_to_string(ca.join("ca.pem")).unwrap();
    assert!(!bundle.contains("PRIVATE KEY"));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ca), 0o700);
    assert_eq!(mode(&ca.join("ca.json")), 0o600);
    let cfg = trusting(&bundle);
    for name in [
        "host.docker.internal",
        "host.containers.internal",
        "localhost",
        "127.0.0.1",
    ] {
        let r = over_tls(
            proxy.port,
            cfg.clone(),
            name,
            &request("POST", "/v1/messages", &ph),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            r.starts_with("HTTP/1.1 200") && r.contains(REPLY),
            "{name}: {r}"
        );
    }
    mock.assert_messages_carried(&token);
    // an unknown placeholder over TLS: 401, nothing upstream
    let before = mock.seen().len();
    let r = over_tls(
        proxy.port,
        cfg.clone(),
        "localhost",
        &request("POST", "/v1/messages", "sk-ant-oat01-airlock-nope"),
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert_eq!(mock.seen().len(), before);
    // fail closed over TLS too: a response carrying the real token
    let r = over_tls(
        proxy.port,
        cfg.clone(),
        "localhost",
        &request("GET", "/echo-header", &ph),
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 502") && !r.contains(&token), "{r}");
    let r = over_tls(
        proxy.port,
        cfg.clone(),
        "localhost",
        &request("GET", "/echo-body", &ph),
    )
    .unwrap();
    assert!(
        !r.contains(&token[..token.len() / 2]) && !r.contains("data: end"),
        "{r}"
    );

    // not trusted: the public roots, or another CA
    let e = over_tls(
        proxy.port,
        trusting(&mock.ca_pem),
        "localhost",
        &request("GET", "/", &ph),
    );
    assert!(e.is_err(), "{e:?}");
    // a name the certificate does not cover
    let e = over_tls(proxy.port, cfg, "chatgpt.com", &request("GET", "/", &ph));
    assert!(e.is_err(), "{e:?}");
    // plain HTTP still answers on the same port afterwards
    let r = response(send(
        proxy.port,
        "POST",
        "/v1/messages",
        "sk-ant-oat01-airlock-nope",
    ));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let log = std::fs::read_to_string(ctx.root.path().join("proxy.log")).unwrap();
    assert!(!log.contains(&token) && !log.contains("PRIVATE KEY"));
    drop(proxy);
}

/// A Codex ChatGPT session behind a grant: the upstream gets the session's
/// access token and the account that token is for, whatever account the
/// sandbox names (over TLS, as Codex sends it).
#[test]
fn a_codex_session_request_carries_the_tokens_own_account() {
    let mock = MockUpstream::start();
    let mut ctx = TestContext::new();
    let ca = ctx.root.path().join("upstream-ca.pem");
    std::fs::write(&ca, &mock.ca_pem).unwrap();
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_CODEX", &mock.origin());
    ctx.set_env("AIRLOCK_PROXY_CA_FILE", ca.to_str().unwrap());
    let header = b64(&serde_json::json!({"alg": "RS256"}));
    let access = format!(
        "{header}.{}.{CANARY}sig",
        b64(&serde_json::json!({"exp": 4_102_444_800i64,
            "https://api.openai.com/auth": {"chatgpt_account_id": "acc-real"}}))
    );
    let host_file = ctx.root.path().join("auth.json");
    std::fs::write(
        &host_file,
        serde_json::json!({"auth_mode": "chatgpt", "tokens": {"access_token": access,
            "refresh_token": format!("rt_{CANARY}"), "account_id": "acc-real"}})
        .to_string(),
    )
    .unwrap();
    let ph = format!("{header}.e30.airlock{}", "p".repeat(32));
    registry::add(
        &layout(&ctx),
        &Grant {
            sandbox: "sb-codex".into(),
            agent: "codex".into(),
            account: "default".into(),
            method: Method::Session,
            placeholder_sha256: placeholder::hash(&ph),
            truth: Truth::HostFile { path: host_file },
            container: None,
            engine: None,
            created: jiff::Timestamp::now(),
            revoked_at: None,
            reference: None,
            expires_at: None,
        },
    )
    .unwrap();
    let proxy = start_proxy(&ctx, &[]);
    let cfg = trusting(&std::fs::read_to_string(layout(&ctx).dir.join("ca/ca.pem")).unwrap());
    let req = format!(
        "GET /backend-api/wham/accounts/check HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {ph}\r\nchatgpt-account-id: acc-other\r\nconnection: close\r\n\r\n"
    );
    let r = over_tls(proxy.port, cfg, "host.docker.internal", &req).unwrap();
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("NO_CONSTRAINT"),
        "{r}"
    );
    let path = "/backend-api/wham/accounts/check";
    mock.assert_carried(path, "authorization", &format!("Bearer {access}"));
    mock.assert_carried(path, "chatgpt-account-id", "acc-real");
    assert!(!r.contains(CANARY), "{r}");
    drop(proxy);
}

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A Codex ChatGPT session stored in a fresh context whose Codex upstream is
/// `mock`; every token carries [`CANARY`] (the placeholders never do).
struct Session {
    ctx: TestContext,
    mock: MockUpstream,
    access: String,
    refresh: String,
    account: &'static str,
}

fn codex_session(engine: &str) -> Session {
    let mock = MockUpstream::start();
    let mut ctx = common::tmpfs_context(engine, "codex-tls");
    let ca = ctx.root.path().join("upstream-ca.pem");
    std::fs::write(&ca, &mock.ca_pem).unwrap();
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_CODEX", &mock.origin());
    ctx.set_env("AIRLOCK_PROXY_CA_FILE", ca.to_str().unwrap());
    // no refresh ever leaves the host in this test
    ctx.set_env("AIRLOCK_CODEX_TOKEN_URL", "http://127.0.0.1:9/oauth/token");
    let account = "acc-tls-1234";
    let far = 4_102_444_800i64;
    let header = b64(&serde_json::json!({"alg": "RS256", "typ": "JWT"}));
    let auth_claims = serde_json::json!({"chatgpt_plan_type": "pro", "chatgpt_account_id": account,
        "chatgpt_user_id": "user-tls"});
    let id_token = format!(
        "{header}.{}.{CANARY}idsig",
        b64(&serde_json::json!({"email": "dev@example.com", "exp": far,
            "https://api.openai.com/auth": auth_claims}))
    );
    let access = format!(
        "{header}.{}.{CANARY}accesssig",
        b64(
            &serde_json::json!({"exp": far, "https://api.openai.com/auth": auth_claims,
            "n": CANARY})
        )
    );
    let refresh = format!("rt_{CANARY}_refresh_{}", "r".repeat(30));
    let doc = serde_json::json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
        "tokens": {"id_token": id_token, "access_token": access, "refresh_token": refresh,
            "account_id": account}, "last_refresh": "2026-12-01T00:00:00Z"});
    let f = ctx.root.path().join("auth.json");
    std::fs::write(&f, doc.to_string()).unwrap();
    ok(&ctx
        .cmd()
        .args(["auth", "codex", "--method", "session", "--from-file"])
        .arg(&f)
        .output()
        .unwrap());
    std::fs::remove_file(&f).unwrap();
    Session {
        ctx,
        mock,
        access,
        refresh,
        account,
    }
}

/// The genuine `codex exec` with a ChatGPT session, through `airlock run
/// --rotation proxy` in an `engine` sandbox: workspace routing discovery
/// and the Responses API go to the mock with the real access token and
/// account id; the container holds neither the access nor the refresh
/// token nor the CA's key (env, files, `/proc`, `inspect`).
///
/// With `renewed`, the proxy's CA ends tomorrow when the proxy starts: a
/// new one is made, the sandbox gets both CA certificates and the proxy's
/// certificate is signed by the second (Codex reads the whole bundle).
fn codex_session_through_the_proxy(engine: &str, image: &str, renewed: bool) {
    let Session {
        ctx,
        mock,
        access,
        refresh,
        account,
    } = codex_session(engine);
    if renewed {
        let l = layout(&ctx);
        airlock::proxy::ca::bundle_pem(&l).unwrap();
        let f = airlock::proxy::ca::file(&l);
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let soon = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .checked_add(jiff::Span::new().days(1))
            .unwrap();
        v["cas"][0]["not_after"] = soon.to_string().into();
        airlock::fsutil::write_atomic(&f, v.to_string().as_bytes(), 0o600).unwrap();
    }
    let name = format!("airlock-codex-tls-{engine}-{}", std::process::id());
    let sandbox = Detached::start(
        &ctx,
        engine,
        &["--rotation", "proxy", "--agent", "codex"],
        &name,
        image,
    );
    // the scan runs before the agent, in the same container: the tokens'
    // signatures (never in a placeholder), the refresh token, the CA key
    let (stdout, stderr, success) = sandbox.exec(&format!(
        "cd /tmp; {}; \
         echo CA-CERTS=$(grep -c 'BEGIN CERTIFICATE' \"$CODEX_CA_CERTIFICATE\"); \
         grep -h chatgpt_base_url \"$CODEX_HOME/config.toml\"; \
         codex exec --skip-git-repo-check hi </dev/null",
        scan_line(&[CANARY, "PRIVATE KEY"], "")
    ));
    sandbox.assert_nowhere(
        &[CANARY, access.as_str(), refresh.as_str(), "PRIVATE KEY"],
        &[&stdout, &stderr],
    );
    drop(sandbox);
    assert!(!stdout.contains("CREDENTIAL-IN-CONTAINER"), "{stdout}");
    let certs = if renewed { "CA-CERTS=2" } else { "CA-CERTS=1" };
    assert!(stdout.contains(certs), "{stdout}\n{stderr}");
    assert!(stdout.contains("chatgpt_base_url = \"https://"), "{stdout}");
    assert!(
        success && stdout.contains(REPLY),
        "{stdout}\n{stderr}\nupstream saw: {:?}",
        mock.seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect::<Vec<_>>()
    );
    let bearer = format!("Bearer {access}");
    mock.assert_carried("/backend-api/wham/accounts/check", "authorization", &bearer);
    mock.assert_carried(
        "/backend-api/wham/accounts/check",
        "chatgpt-account-id",
        account,
    );
    mock.assert_carried("/backend-api/codex/responses", "authorization", &bearer);
    mock.assert_carried(
        "/backend-api/codex/responses",
        "chatgpt-account-id",
        account,
    );
    let audit = std::fs::read_to_string(layout(&ctx).audit()).unwrap();
    assert!(audit.contains("/backend-api/codex/responses"), "{audit}");
    assert!(!audit.contains(CANARY));
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

#[test]
fn docker_codex_chatgpt_session_answers_through_the_proxy() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        codex_session_through_the_proxy("docker", &common::root_image(), true);
    }
}

#[test]
fn podman_codex_chatgpt_session_answers_through_the_proxy() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        // the unprivileged image: Codex runs as uid 1000 and reads the CA file
        codex_session_through_the_proxy("podman", &common::user_image(), false);
    }
}

/// `airlock verify --rotation proxy --online` with a Codex ChatGPT session:
/// the genuine `codex exec` in the check container answers through the
/// proxy over TLS, and the scan finds no real token in the container.
#[test]
fn docker_verify_online_passes_a_codex_session_through_the_proxy() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let Session {
        ctx,
        mock,
        access,
        account,
        ..
    } = codex_session("docker");
    let out = ctx
        .cmd()
        .args(["verify", "--json", "--engine", "docker", "--image"])
        .arg(common::root_image())
        .args(["--rotation", "proxy", "--online", "--agent", "codex"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let codex = v["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["agent"] == "codex"))
        .unwrap_or_else(|| panic!("{v}"));
    let p = codex["proxy"].as_str().unwrap_or_default();
    assert!(
        p.starts_with("answered through the proxy") && p.contains("HTTP 200"),
        "{codex}"
    );
    assert!(
        v["proxy_scan"]
            .as_str()
            .unwrap()
            .contains("placeholders only"),
        "{v}"
    );
    mock.assert_carried(
        "/backend-api/codex/responses",
        "authorization",
        &format!("Bearer {access}"),
    );
    mock.assert_carried(
        "/backend-api/wham/accounts/check",
        "chatgpt-account-id",
        account,
    );
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// A running proxy that does not answer TLS with airlock's CA (one started
/// by an older airlock, or whose CA was replaced) cannot serve a Codex
/// ChatGPT session: the credential is skipped with a message saying what
/// to do (with `--require-auth`: exit 9, nothing started); so is a CA file
/// airlock cannot use. Nothing secret is printed.
#[test]
fn a_codex_session_is_refused_when_the_proxy_cannot_speak_tls() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let Session { ctx, .. } = codex_session("docker");
    let proxy = start_proxy(&ctx, &[]);
    let run = || {
        ctx.cmd()
            .args([
                "run",
                "--rotation",
                "proxy",
                "--agent",
                "codex",
                "--require-auth",
                "--",
                "--rm",
            ])
            .arg(common::root_image())
            .arg("true")
            .output()
            .unwrap()
    };
    // the CA the proxy serves with is gone: the next run makes a new one,
    // which the running proxy does not use
    let ca = layout(&ctx).dir.join("ca");
    std::fs::remove_dir_all(&ca).unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("airlock-test-entrypoint"));
    assert!(
        stderr.contains("does not answer TLS with airlock's CA") && stderr.contains("stop it"),
        "{stderr}"
    );
    // a CA file airlock did not write
    std::fs::write(ca.join("ca.json"), "not json").unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{stderr}");
    assert!(stderr.contains("is not a proxy CA file"), "{stderr}");
    for o in [&out.stdout, &out.stderr] {
        assert!(!String::from_utf8_lossy(o).contains(CANARY));
    }
    assert!(registry::load(&layout(&ctx)).unwrap().is_empty());
    drop(proxy);
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// A client that starts a TLS handshake and stalls, or connects and says
/// nothing, is closed after the header timeout (slowloris on the TLS
/// path), while the port keeps answering others.
#[test]
fn a_stalled_tls_handshake_is_closed() {
    let mut ctx = TestContext::new();
    ctx.set_env("AIRLOCK_PROXY_HEADER_TIMEOUT_MS", "300");
    let proxy = start_proxy(&ctx, &[]);
    let closed_within = |first: &[u8]| {
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(first).unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 64];
        // EOF (or a reset) once the proxy gives up; never an answer
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{:?}", &buf[..n]);
        t.elapsed()
    };
    // a TLS record header announcing a ClientHello that never comes
    let waited = closed_within(&[0x16, 0x03, 0x01, 0x02, 0x00]);
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let waited = closed_within(&[]);
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let r = response(send(
        proxy.port,
        "GET",
        "/v1/messages",
        "sk-ant-oat01-airlock-nope",
    ));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    drop(proxy);
}
