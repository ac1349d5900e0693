//! Proxy mode end to end, with real parts: `airlock proxy` (the binary) in
//! front of a TLS mock of the agents' API (its own CA, rcgen), grants in
//! the registry, requests from a plain client and from the genuine
//! `claude -p` in a Docker sandbox started by `airlock run --rotation proxy`.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

#[path = "support/mock_oauth.rs"]
mod mock_oauth;

mod common;
#[path = "support/proxy_harness.rs"]
mod proxy_harness;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock::proxy::placeholder;
use airlock::proxy::registry::{self, Grant};
use airlock::sync::Truth;
use airlock::vault::{CredentialId, Method};
use common::{CANARY, TestContext, ok, require_real};
use mock_upstream::{MockUpstream, REPLY};
use proxy_harness::{Detached, layout, read_until, response, scan_line, send, start_watcher};

fn token() -> String {
    format!("sk-ant-oat01-{CANARY}-proxy-{}", "0123456789".repeat(6))
}

/// A context holding a Claude setup-token, whose commands send Claude's
/// API traffic to `mock` (the proxy inherits the environment).
fn context(mock: &MockUpstream) -> TestContext {
    let mut ctx = TestContext::new();
    let ca = ctx.root.path().join("ca.pem");
    std::fs::write(&ca, &mock.ca_pem).unwrap();
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_CLAUDE", &mock.origin());
    ctx.set_env("AIRLOCK_PROXY_CA_FILE", ca.to_str().unwrap());
    let f = ctx.root.path().join("token");
    std::fs::write(&f, token()).unwrap();
    ok(&ctx
        .cmd()
        .args(["auth", "claude", "--method", "token", "--from-file"])
        .arg(&f)
        .output()
        .unwrap());
    std::fs::remove_file(&f).unwrap();
    ctx
}

fn grant(ctx: &TestContext, sandbox: &str, ph: &str) {
    grant_with(ctx, sandbox, ph, None);
}

/// [`grant`], for a credential the proxy resolves from a secret reference.
fn grant_with(
    ctx: &TestContext,
    sandbox: &str,
    ph: &str,
    reference: Option<airlock::plan::ProxyReference>,
) {
    registry::add(
        &layout(ctx),
        &Grant {
            sandbox: sandbox.into(),
            agent: "claude".into(),
            account: "default".into(),
            method: Method::SetupToken,
            placeholder_sha256: placeholder::hash(ph),
            truth: Truth::Vault {
                id: CredentialId::parse("claude").unwrap(),
            },
            container: None,
            engine: None,
            created: jiff::Timestamp::now(),
            revoked_at: None,
            reference,
            expires_at: None,
        },
    )
    .unwrap();
}

/// [`send`] with a body of one's own.
fn send_body(port: u16, method: &str, path: &str, auth: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {auth}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the proxy has forgotten every grant of `ctx`, for up to a
/// minute (on a loaded 2-core CI machine every `podman` call and the proxy's
/// poll take longer); on a timeout says what the engine, the registry and
/// the proxy's log show (the grants file holds hashes, never a secret).
fn wait_grants_gone(ctx: &TestContext, engine: &str, what: &str) {
    let t = Instant::now();
    let layout = layout(ctx);
    while !registry::load(&layout).unwrap().is_empty() {
        if t.elapsed() > Duration::from_secs(60) {
            let grants: Vec<String> = registry::load(&layout)
                .unwrap()
                .iter()
                .map(|g| {
                    format!(
                        "sandbox {} engine {:?} container {:?} created {} revoked {:?}",
                        g.sandbox, g.engine, g.container, g.created, g.revoked_at
                    )
                })
                .collect();
            let ps = Command::new(engine)
                .args(["ps", "-a", "--filter", "label=airlock.sandbox"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let log = std::fs::read_to_string(layout.log()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "timed out after {:?}: {what}\ngrants left: {grants:#?}\n{engine} ps -a:\n{ps}\nproxy running: {}\nproxy log (newest first):\n{}",
                t.elapsed(),
                airlock::proxy::daemon::running(&layout),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scan_for_secrets(what: &str, path: &Path, secrets: &[&str]) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for s in secrets {
        assert!(!text.contains(s), "{what} holds a secret");
    }
}

/// An on-demand proxy past its idle linger decides to exit under the
/// grants' lock: a grant registered while it waits for that lock (as
/// `airlock run` registers a sandbox's right after starting the proxy)
/// keeps it running on its port, serving the sandbox.
#[test]
fn an_idle_proxy_stays_for_a_grant_registered_as_it_would_exit() {
    let mock = MockUpstream::start();
    let ctx = context(&mock);
    let layout = layout(&ctx);
    let ph = format!("sk-ant-oat01-airlock-{}", "i".repeat(32));
    // the grants file with the grant, kept aside: the proxy starts idle
    grant(&ctx, "sb-late", &ph);
    let with_grant = std::fs::read(layout.grants()).unwrap();
    registry::remove(&layout, "sb-late").unwrap();
    let mut child = ctx
        .cmd()
        .args(["proxy", "--on-demand", "--listen", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the proxy listens", || {
        airlock::proxy::daemon::port(&layout).is_some()
    });
    let port = airlock::proxy::daemon::port(&layout).unwrap();
    let hold = registry::hold(&layout).unwrap();
    // past its 5 s linger: the proxy now waits for the lock to decide
    std::thread::sleep(Duration::from_millis(6500));
    assert!(airlock::proxy::daemon::running(&layout));
    // the sandbox's grant arrives, written as the lock's holder
    let tmp = layout.grants().with_extension("test-tmp");
    std::fs::write(&tmp, &with_grant).unwrap();
    std::fs::rename(&tmp, layout.grants()).unwrap();
    drop(hold);
    std::thread::sleep(Duration::from_millis(1500));
    let alive = child.try_wait().unwrap().is_none();
    assert!(
        alive && airlock::proxy::daemon::port(&layout) == Some(port),
        "the proxy exited with a grant just registered"
    );
    let r = response(send(port, "POST", "/v1/messages?beta=true", &ph));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    registry::remove(&layout, "sb-late").unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_proxy_swaps_streams_refuses_and_revokes() {
    let mock = MockUpstream::start();
    let ctx = context(&mock);
    let (ph1, ph2) = (
        format!("sk-ant-oat01-airlock-{}", "a".repeat(32)),
        format!("sk-ant-oat01-airlock-{}", "b".repeat(32)),
    );
    grant(&ctx, "sb-one", &ph1);
    grant(&ctx, "sb-two", &ph2);
    let proxy = proxy_harness::start_proxy(&ctx, &[]);
    // the proxy started itself again with glibc's allocator cache raised
    // (src/proxy/tune.rs): the same process, the tunable in its environment
    let environ = std::fs::read(format!("/proc/{}/environ", proxy.child.id())).unwrap();
    assert!(
        environ
            .split(|&b| b == 0)
            .any(|v| v == b"GLIBC_TUNABLES=glibc.malloc.tcache_count=512"),
        "{}",
        String::from_utf8_lossy(&environ).replace('\0', " ")
    );

    // a granted placeholder: the real token goes upstream, the reply comes back
    let r = response(send(proxy.port, "POST", "/v1/messages?beta=true", &ph1));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains(REPLY), "{r}");
    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/messages?beta=true");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {}", token()).as_str()),
        "the placeholder was swapped for the real token"
    );
    assert!(
        !format!("{seen:?}").contains("airlock-aaaa"),
        "never the placeholder upstream"
    );

    // unknown placeholders never reach the upstream
    let r = response(send(
        proxy.port,
        "POST",
        "/v1/messages",
        "sk-ant-oat01-airlock-unknown",
    ));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = response(send(proxy.port, "POST", "/v1/messages", &token()));
    assert!(
        r.starts_with("HTTP/1.1 401"),
        "the real token is no pass either: {r}"
    );
    assert_eq!(mock.seen().len(), 1);

    // streaming: the first event arrives while the upstream still holds the rest
    let mut s = send(proxy.port, "GET", "/slow", &ph2);
    let head = read_until(&mut s, "data: first");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    mock.release.notify_one();
    read_until(&mut s, "data: last");
    drop(s);
    // a client that goes away cancels the upstream request
    let mut s = send(proxy.port, "GET", "/slow", &ph2);
    read_until(&mut s, "data: first");
    drop(s);
    wait_until("the upstream sees the cancellation", || {
        mock.cancelled.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });

    // revoke one sandbox: refused at once, the other keeps working
    ok(&ctx.cmd().args(["revoke", "sb-one"]).output().unwrap());
    let r = response(send(proxy.port, "POST", "/v1/messages", &ph1));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(r.contains("revoked"), "{r}");
    let r = response(send(proxy.port, "POST", "/v1/messages", &ph2));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let out = ctx.cmd().args(["revoke", "sb-none"]).output().unwrap();
    assert_eq!(out.status.code(), Some(6), "{out:?}");

    // the audit log: every request, no secret
    let out = ok(&ctx
        .cmd()
        .args(["audit", "--json", "--sandbox", "sb-one"])
        .output()
        .unwrap());
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["upstream"], format!("localhost:{}", mock.port));
    assert_eq!(lines[0]["path"], "/v1/messages", "no query string");
    assert!(lines[0]["bytes_down"].as_u64().unwrap() > REPLY.len() as u64);
    assert_eq!(lines[1]["status"], 401);
    assert_eq!(lines[1]["refused"], "revoked");
    let all = ok(&ctx.cmd().args(["audit"]).output().unwrap());
    assert!(all.contains("unknown placeholder"), "{all}");
    // `airlock status`: the sandboxes and their requests
    let st: serde_json::Value =
        serde_json::from_str(&ok(&ctx.cmd().args(["status", "--json"]).output().unwrap())).unwrap();
    let p = &st["proxy"];
    assert_eq!(p["port"], proxy.port);
    let one = p["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sandbox"] == "sb-one")
        .unwrap();
    assert_eq!(
        (one["requests"].as_u64(), one["refused"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(one["revoked"], true);
    let table = ok(&ctx.cmd().args(["status"]).output().unwrap());
    assert!(
        table.contains("sb-one  claude:default  2 request(s), 1 refused  (revoked)"),
        "{table}"
    );
    let secrets = [CANARY, ph1.as_str(), ph2.as_str()];
    scan_for_secrets("the audit log", &layout(&ctx).audit(), &secrets);
    scan_for_secrets("the grants", &layout(&ctx).grants(), &secrets);
    drop(proxy);
    scan_for_secrets(
        "the proxy's log",
        &ctx.root.path().join("proxy.log"),
        &secrets,
    );
}

/// A secret reference served by the proxy itself: `file:` is re-read as
/// soon as the file changes (a sops or agenix rotation reaches the next
/// request), `cmd:` runs the command (here `cat`) and keeps its value for
/// the reference's cache time. The vault's own token is not used.
#[test]
fn the_proxy_resolves_secret_references() {
    let mock = MockUpstream::start();
    let ctx = context(&mock);
    let dir = ctx.root.path().join("secrets");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("anthropic");
    let from_file = |n: u32| format!("sk-ant-oat01-{CANARY}-file{n}-{}", "0123456789".repeat(5));
    std::fs::write(&file, format!("{}\n", from_file(1))).unwrap();
    let add = |sandbox: &str, ph: &str, text: String| {
        let r = airlock::plan::ProxyReference {
            text,
            timeout_ms: 5_000,
            cache_ms: 300_000,
        };
        grant_with(&ctx, sandbox, ph, Some(r));
    };
    let (ph_file, ph_cmd) = (
        format!("sk-ant-oat01-airlock-{}", "f".repeat(32)),
        format!("sk-ant-oat01-airlock-{}", "c".repeat(32)),
    );
    add("sb-file", &ph_file, format!("file:{}", file.display()));
    add("sb-cmd", &ph_cmd, format!("cmd:cat {}", file.display()));
    let proxy = proxy_harness::start_proxy(&ctx, &[]);
    let last_auth = || {
        mock.seen()
            .last()
            .and_then(|s| s.header("authorization").map(str::to_owned))
            .unwrap()
    };

    let r = response(send(proxy.port, "POST", "/v1/messages", &ph_file));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(last_auth(), format!("Bearer {}", from_file(1)));
    let r = response(send(proxy.port, "POST", "/v1/messages", &ph_cmd));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(last_auth(), format!("Bearer {}", from_file(1)));

    // rotated as sops-nix or agenix do it: a new file renamed into place
    let tmp = dir.join(".anthropic.tmp");
    std::fs::write(&tmp, format!("{}\n", from_file(2))).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let r = response(send(proxy.port, "POST", "/v1/messages", &ph_file));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(
        last_auth(),
        format!("Bearer {}", from_file(2)),
        "the next request"
    );
    // the command's value is kept for its cache time
    let r = response(send(proxy.port, "POST", "/v1/messages", &ph_cmd));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(last_auth(), format!("Bearer {}", from_file(1)));
    assert!(
        !mock
            .seen()
            .iter()
            .any(|s| s.header("authorization") == Some(format!("Bearer {}", token()).as_str())),
        "the vault's token was never used"
    );
    let log = std::fs::read_to_string(ctx.root.path().join("proxy.log")).unwrap();
    assert!(!log.contains(CANARY), "{log}");
    drop(proxy);
}

/// Fail closed: a response that carries the real credential (an API that
/// echoes it, in a header or in the body, even split across frames) never
/// reaches the sandbox; the audit log says so.
#[test]
fn a_response_carrying_the_real_token_is_not_forwarded() {
    let mock = MockUpstream::start();
    let ctx = context(&mock);
    let ph = format!("sk-ant-oat01-airlock-{}", "e".repeat(32));
    grant(&ctx, "sb-echo", &ph);
    let proxy = proxy_harness::start_proxy(&ctx, &[]);

    let r = response(send(proxy.port, "GET", "/echo-header", &ph));
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    assert!(!r.contains(&token()), "{r}");

    let r = response(send(proxy.port, "GET", "/echo-body", &ph));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.contains("data: first"),
        "what came before is delivered: {r}"
    );
    let half = &token()[..token().len() / 2];
    assert!(!r.contains(half), "not even the first half: {r}");
    assert!(!r.contains("data: end"), "the response was cut: {r}");
    // the mock did see the real token (it is the one echoing it)
    assert_eq!(mock.seen().len(), 2);

    let audit = std::fs::read_to_string(layout(&ctx).audit()).unwrap();
    let refused: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("carried the credential"))
        .collect();
    assert_eq!(refused.len(), 2, "{audit}");
    assert!(!audit.contains(&token()), "{audit}");
    drop(proxy);
}

/// `airlock run --rotation proxy`: the genuine Claude Code in a Docker
/// sandbox answers from the mock through the proxy, holding only a
/// placeholder; the real token is nowhere in the container.
#[test]
fn docker_claude_answers_through_the_proxy_holding_only_a_placeholder() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        claude_through_the_proxy("docker");
    }
}

/// The same with Podman (`host.containers.internal`: the proxy listens on
/// Podman's bridge as soon as it appears).
#[test]
fn podman_claude_answers_through_the_proxy_holding_only_a_placeholder() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        claude_through_the_proxy("podman");
    }
}

fn claude_through_the_proxy(engine: &str) {
    let mock = MockUpstream::start();
    let mut ctx = context(&mock);
    ctx.runtime_dir = common::tmpfs_context(engine, "proxy").runtime_dir.clone();
    ctx.set_env("AIRLOCK_ENGINE", engine);
    let name = format!("airlock-proxy-e2e-{engine}-{}", std::process::id());
    let out = ctx
        .cmd()
        .args([
            "run",
            "--rotation",
            "proxy",
            "--agent",
            "claude",
            "--no-aliases",
            "--",
            "--rm",
            "--name",
            &name,
        ])
        .arg(common::root_image())
        .args([
            "sh",
            "-c",
            "env | grep -c sk-ant-oat01-airlock- ; claude -p hi",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(REPLY), "{stdout}\n{stderr}");
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY));
    mock.assert_messages_carried(&token());
    // the grant died with the container: the proxy forgets it
    wait_grants_gone(&ctx, engine, "the grant dies with the container");
    let audit = std::fs::read_to_string(layout(&ctx).audit()).unwrap();
    assert!(audit.contains("\"status\":200"), "{audit}");
    assert!(!audit.contains(CANARY));
    let _ = Command::new(engine).args(["rm", "-f", &name]).output();

    // detached: nothing secret in the container's configuration, and
    // `airlock revoke <container>` cuts it off at once
    let out = ctx
        .cmd()
        .args([
            "run",
            "--rotation",
            "proxy",
            "--agent",
            "claude",
            "--no-aliases",
            "--",
            "-d",
            "--name",
            &name,
        ])
        .arg(common::root_image())
        .args(["sleep", "60"])
        .output()
        .unwrap();
    let id = ok(&out).trim().to_owned();
    let inspect = Command::new(engine)
        .args(["inspect", &id])
        .output()
        .unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.contains(&name));
    assert!(
        !inspect.contains(CANARY) && !inspect.contains("sk-ant-oat01-airlock-"),
        "a credential in {engine} inspect"
    );
    let ask = || {
        let o = Command::new(engine)
            .args([
                "exec",
                &id,
                "sh",
                "/run/airlock-in/init.sh",
                "claude",
                "-p",
                "hi",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(ask().contains(REPLY), "granted before the revoke");
    ok(&ctx.cmd().args(["revoke", &name]).output().unwrap());
    assert!(!ask().contains(REPLY), "refused after the revoke");
    let audit = std::fs::read_to_string(layout(&ctx).audit()).unwrap();
    assert!(audit.contains("\"refused\":\"revoked\""), "{audit}");
    let t1 = Instant::now();
    let rm = Command::new(engine)
        .args(["rm", "-f", &id])
        .output()
        .unwrap();
    eprintln!(
        "{engine}: rm {:?} {} {}",
        t1.elapsed(),
        rm.status,
        String::from_utf8_lossy(&rm.stderr)
    );
    wait_grants_gone(
        &ctx,
        engine,
        "the proxy forgets the removed container's grant",
    );
    eprintln!("{engine}: gone 2 -> {:?}", t1.elapsed());
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// A Claude subscription session kept in the host's own credentials file
/// (a linked login), behind a proxy grant, registered with the watcher as
/// `airlock run --rotation proxy` does. Returns the host file and the grant's
/// placeholder.
struct SessionSetup {
    ctx: TestContext,
    host_file: std::path::PathBuf,
    placeholder: String,
    login: mock_oauth::Issued,
}

fn session_behind_the_proxy(mock: &MockUpstream, oauth: &mock_oauth::MockOAuth) -> SessionSetup {
    session_of("claude", mock, oauth)
}

/// [`session_behind_the_proxy`] for `agent` (`claude` or `codex`).
fn session_of(agent: &str, mock: &MockUpstream, oauth: &mock_oauth::MockOAuth) -> SessionSetup {
    let mut ctx = TestContext::new();
    let ca = ctx.root.path().join("ca.pem");
    std::fs::write(&ca, &mock.ca_pem).unwrap();
    let upper = agent.to_uppercase();
    ctx.set_env(&format!("AIRLOCK_PROXY_UPSTREAM_{upper}"), &mock.origin());
    ctx.set_env("AIRLOCK_PROXY_CA_FILE", ca.to_str().unwrap());
    ctx.set_env(&format!("AIRLOCK_{upper}_TOKEN_URL"), &oauth.url());
    let login = oauth.login();
    let (dir, file, doc) = if agent == "claude" {
        let doc = serde_json::json!({
            "claudeAiOauth": {"accessToken": login.access_token, "refreshToken": login.refresh_token,
                "expiresAt": mock_oauth::now_ms() + 8 * 3600 * 1000,
                "scopes": ["user:inference", "user:profile"], "subscriptionType": "max",
                "rateLimitTier": "tier-kept"},
            "mcpOAuth": {"unknown": "kept"}});
        (ctx.home.join(".claude"), ".credentials.json", doc)
    } else {
        let doc = serde_json::json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
            "tokens": {"id_token": login.id_token, "access_token": login.access_token,
                "refresh_token": login.refresh_token, "account_id": "acc-refresh"},
            "last_refresh": "2026-12-01T00:00:00Z", "mcpOAuth": {"unknown": "kept"}});
        (ctx.home.join(".codex"), "auth.json", doc)
    };
    std::fs::create_dir_all(&dir).unwrap();
    let host_file = dir.join(file);
    std::fs::write(&host_file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    if airlock::fsutil::euid() == 0 {
        std::os::unix::fs::chown(&host_file, Some(4242), Some(4243)).unwrap();
    }
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
            sandbox: format!("sb-session-{agent}"),
            agent: agent.into(),
            account: "default".into(),
            truth: truth.clone(),
            pid: Some(std::process::id()),
            owner: None,
        },
        true,
    )
    .unwrap();
    let placeholder = format!("sk-ant-oat01-airlock-{}", "s".repeat(32));
    registry::add(
        &layout(&ctx),
        &Grant {
            sandbox: "sb-session".into(),
            agent: agent.into(),
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
    SessionSetup {
        ctx,
        host_file,
        placeholder,
        login,
    }
}

fn access_token(host_file: &Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(host_file).unwrap()).unwrap();
    v["claudeAiOauth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The upstream refuses the session's access token before its expiry:
/// N requests refused together cause one refresh (the watcher's, under its
/// locks), the host file gets the rotated session with its mode, owner and
/// unknown keys kept, and every request is answered after one retry.
#[test]
fn a_refused_session_token_is_refreshed_once_for_concurrent_requests() {
    let mock = MockUpstream::start();
    let oauth = mock_oauth::MockOAuth::start(mock_oauth::Style::Claude, 8 * 3600);
    let setup = session_behind_the_proxy(&mock, &oauth);
    let ctx = &setup.ctx;
    let _watcher = start_watcher(ctx);
    let proxy = proxy_harness::start_proxy(ctx, &[]);
    let old = setup.login.access_token.clone();
    mock.reject(&old);

    const N: usize = 8;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(N));
    let answers: Vec<String> = (0..N)
        .map(|_| {
            let (b, ph, port) = (barrier.clone(), setup.placeholder.clone(), proxy.port);
            std::thread::spawn(move || {
                b.wait();
                response(send(port, "POST", "/v1/messages?beta=true", &ph))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for a in &answers {
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
        assert!(a.contains(REPLY), "{a}");
    }
    assert_eq!(oauth.refreshes(), 1, "one refresh for {N} refused requests");
    assert_eq!(oauth.airlock_refreshes(), 1);
    assert_eq!(oauth.reuse_errors(), 0);

    // the rotated session is in the host file, written the sync way
    let new = access_token(&setup.host_file);
    assert_ne!(new, old);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&setup.host_file).unwrap()).unwrap();
    let rt = v["claudeAiOauth"]["refreshToken"].as_str().unwrap();
    assert!(oauth.is_live(rt), "the host holds the live refresh token");
    assert_eq!(v["mcpOAuth"]["unknown"], "kept");
    assert_eq!(v["claudeAiOauth"]["rateLimitTier"], "tier-kept");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(&setup.host_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640, "mode kept");
    if airlock::fsutil::euid() == 0 {
        assert_eq!((meta.uid(), meta.gid()), (4242, 4243), "owner kept");
    }

    // upstream: the old token refused, every answer sent with the new one
    let seen = mock.seen();
    let with = |t: &str| {
        seen.iter()
            .filter(|s| s.header("authorization") == Some(format!("Bearer {t}").as_str()))
            .count()
    };
    assert!((1..=N).contains(&with(&old)), "{seen:?}");
    assert_eq!(with(&new), N);
    assert!(
        seen.iter().all(|s| s.body_len > 0),
        "retries carry the body"
    );

    // the audit log: one refresh, every refused request retried (a served
    // request's line is written just after its last byte went out)
    let read = || -> Vec<serde_json::Value> {
        ok(&ctx
            .cmd()
            .args(["audit", "--json", "--sandbox", "sb-session"])
            .output()
            .unwrap())
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
    };
    let mut entries = read();
    for _ in 0..40 {
        if entries.len() >= N {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        entries = read();
    }
    assert_eq!(entries.len(), N);
    assert!(entries.iter().all(|e| e["status"] == 200));
    let refreshed: Vec<_> = entries
        .iter()
        .filter(|e| e["refresh"] == "refreshed")
        .collect();
    assert_eq!(refreshed.len(), 1, "{entries:?}");
    assert!(
        entries
            .iter()
            .filter(|e| e.get("refresh").is_some())
            .all(|e| e["retried"] == true),
        "{entries:?}"
    );
    eprintln!(
        "refresh after 401: the request waited {} ms",
        refreshed[0]["refresh_ms"]
    );
    drop(proxy);
    let secrets = [
        old.as_str(),
        new.as_str(),
        rt,
        setup.login.refresh_token.as_str(),
    ];
    scan_for_secrets("the audit log", &layout(ctx).audit(), &secrets);
    scan_for_secrets(
        "the proxy's log",
        &ctx.root.path().join("proxy.log"),
        &secrets,
    );
    scan_for_secrets(
        "the watcher's log",
        &ctx.root.path().join("sync.log"),
        &secrets,
    );
}

/// A body larger than the replay limit is streamed and not kept: the 401
/// reaches the agent as it came, the session is refreshed all the same,
/// and the next request goes through with the new token.
#[test]
fn a_large_body_is_not_retried_but_the_session_is_refreshed() {
    let mock = MockUpstream::start();
    let oauth = mock_oauth::MockOAuth::start(mock_oauth::Style::Claude, 8 * 3600);
    let setup = session_behind_the_proxy(&mock, &oauth);
    let ctx = &setup.ctx;
    let _watcher = start_watcher(ctx);
    let proxy = proxy_harness::start_proxy(ctx, &[]);
    mock.reject(&setup.login.access_token);
    let big = format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[],"pad":"{}"}}"#,
        "x".repeat(airlock::proxy::refresh::REPLAY_LIMIT as usize + 10)
    );
    let r = response(send_body(
        proxy.port,
        "POST",
        "/v1/messages",
        &setup.placeholder,
        &big,
    ));
    assert!(r.starts_with("HTTP/1.1 401"), "{}", &r[..r.len().min(300)]);
    assert_eq!(oauth.refreshes(), 1);
    let r = response(send(proxy.port, "POST", "/v1/messages", &setup.placeholder));
    assert!(r.starts_with("HTTP/1.1 200") && r.contains(REPLY), "{r}");
    // a served request's line follows within the proxy's turn (batched)
    let entries = || -> Vec<serde_json::Value> {
        ok(&ctx.cmd().args(["audit", "--json"]).output().unwrap())
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    wait_until("both requests are audited", || entries().len() >= 2);
    let entries = entries();
    assert_eq!(entries[0]["status"], 401);
    assert_eq!(entries[0]["refresh"], "refreshed");
    assert!(entries[0].get("retried").is_none(), "{entries:?}");
    assert_eq!(entries[1]["status"], 200);
    assert!(entries[1].get("refresh").is_none());
}

/// The genuine `claude -p` in a Docker sandbox with a Claude subscription
/// session behind the proxy, whose access token the upstream refuses
/// before its expiry: the proxy has the watcher refresh it and retries, and
/// Claude gets its answer; the refreshed session is in the vault.
#[test]
fn docker_claude_session_answers_after_the_upstream_refused_its_token() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        claude_session_after_a_refused_token("docker");
    }
}

/// The same with Podman.
#[test]
fn podman_claude_session_answers_after_the_upstream_refused_its_token() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        claude_session_after_a_refused_token("podman");
    }
}

fn claude_session_after_a_refused_token(engine: &str) {
    let mock = MockUpstream::start();
    let oauth = mock_oauth::MockOAuth::start(mock_oauth::Style::Claude, 8 * 3600);
    let mut ctx = common::tmpfs_context(engine, "proxy-refresh");
    let ca = ctx.root.path().join("ca.pem");
    std::fs::write(&ca, &mock.ca_pem).unwrap();
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_CLAUDE", &mock.origin());
    ctx.set_env("AIRLOCK_PROXY_CA_FILE", ca.to_str().unwrap());
    ctx.set_env("AIRLOCK_CLAUDE_TOKEN_URL", &oauth.url());
    let login = oauth.login();
    let doc = serde_json::json!({"claudeAiOauth": {"accessToken": login.access_token,
        "refreshToken": login.refresh_token, "expiresAt": mock_oauth::now_ms() + 8 * 3600 * 1000,
        "scopes": ["user:inference", "user:profile"], "subscriptionType": "max"}});
    common::store_session(&ctx, "claude", &doc.to_string());
    mock.reject(&login.access_token);
    let name = format!("airlock-proxy-refresh-{engine}-{}", std::process::id());
    let out = ctx
        .cmd()
        .args([
            "run",
            "--rotation",
            "proxy",
            "--agent",
            "claude",
            "--no-aliases",
            "--",
            "--rm",
            "--name",
            &name,
        ])
        .arg(common::root_image())
        .args(["claude", "-p", "hi"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = Command::new(engine).args(["rm", "-f", &name]).output();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(REPLY), "{stdout}\n{stderr}");
    assert_eq!(oauth.refreshes(), 1, "one refresh, by airlock");
    for t in oauth.issued_secrets() {
        assert!(!stdout.contains(&t) && !stderr.contains(&t));
    }
    let audit = std::fs::read_to_string(layout(&ctx).audit()).unwrap();
    assert!(audit.contains("\"refresh\":\"refreshed\""), "{audit}");
    assert!(audit.contains("\"retried\":true"), "{audit}");
    // the proxy read the rotated access token back from the vault record
    let issued = oauth.issued_secrets();
    let sent: Vec<String> = mock
        .seen()
        .iter()
        .filter_map(|s| s.header("authorization").map(str::to_owned))
        .collect();
    assert!(sent.contains(&format!("Bearer {}", login.access_token)));
    assert!(
        sent.iter().any(|a| issued
            .iter()
            .any(|t| *t != login.access_token && a == &format!("Bearer {t}"))),
        "the retry carried the refreshed token"
    );
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// `airlock run --rotation proxy` of `agent` in a Docker sandbox, with the
/// credential `doc` (stored as `method`), running `cmd`: the genuine CLI's
/// output, after asserting that it succeeded with the mock's answer, that
/// the mock saw `header: value` (the real credential) on every request
/// under `path`, and that the real credential is nowhere in the container
/// (env, files, `/proc`) nor in `docker inspect`.
fn agent_through_the_proxy(
    agent: &str,
    method: &str,
    doc: &str,
    cmd: &str,
    (path, header, value): (&str, &str, &str),
    secrets: &[&str],
) {
    let engine = "docker";
    let mock = MockUpstream::start();
    let mut ctx = common::tmpfs_context(engine, &format!("proxy-{agent}"));
    common::credential_behind_proxy(&mut ctx, agent, method, (&mock.origin(), &mock.ca_pem), doc);
    let name = format!("airlock-proxy-{agent}-{method}-{}", std::process::id());
    let sandbox = Detached::start(
        &ctx,
        engine,
        &["--rotation", "proxy", "--agent", agent],
        &name,
        &common::root_image(),
    );
    // the canary scan runs before the agent, in the same container
    let (stdout, stderr, success) =
        sandbox.exec(&format!("cd /tmp; {}; {cmd}", scan_line(secrets, "")));
    sandbox.assert_nowhere(secrets, &[&stdout, &stderr]);
    drop(sandbox);
    assert!(!stdout.contains("CREDENTIAL-IN-CONTAINER"), "{stdout}");
    assert!(
        success && stdout.contains(REPLY),
        "{agent}: {stdout}\n{stderr}\nupstream saw: {:?}",
        mock.seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect::<Vec<_>>()
    );
    mock.assert_carried(path, header, value);
    // a served request's line follows within the proxy's turn (batched)
    wait_until("the request is audited", || {
        std::fs::read_to_string(layout(&ctx).audit()).is_ok_and(|a| a.contains("\"status\":200"))
    });
    let audit = std::fs::read_to_string(layout(&ctx).audit()).unwrap();
    for s in secrets {
        assert!(!audit.contains(s));
    }
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// The genuine `codex exec` with an OpenAI API key answers from the mock's
/// Responses API through the proxy.
#[test]
fn docker_codex_api_key_answers_through_the_proxy() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let key = format!("sk-proj-{CANARY}-codexkey-{}", "k".repeat(40));
    agent_through_the_proxy(
        "codex",
        "api-key",
        &key,
        common::CODEX_EXEC,
        ("/v1/responses", "authorization", &format!("Bearer {key}")),
        &[&key, CANARY],
    );
}

/// The genuine `gemini -p` with a Gemini API key answers from the mock's
/// `streamGenerateContent` through the proxy.
#[test]
fn docker_gemini_api_key_answers_through_the_proxy() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let key = format!("AIza{CANARY}gemini{}", "g".repeat(30));
    agent_through_the_proxy(
        "gemini",
        "api-key",
        &key,
        common::GEMINI_P,
        ("/v1beta/models/", "x-goog-api-key", &key),
        &[&key, CANARY],
    );
}

/// The same for a Codex ChatGPT session: the ChatGPT backend refuses the
/// access token, the watcher refreshes once (Codex's token endpoint), the
/// host's auth.json gets the rotated tokens with its unknown keys, and the
/// requests are answered.
#[test]
fn a_refused_codex_session_token_is_refreshed_once() {
    let mock = MockUpstream::start();
    let oauth = mock_oauth::MockOAuth::start(mock_oauth::Style::Codex, 8 * 3600);
    let setup = session_of("codex", &mock, &oauth);
    let ctx = &setup.ctx;
    let _watcher = start_watcher(ctx);
    let proxy = proxy_harness::start_proxy(ctx, &[]);
    let old = setup.login.access_token.clone();
    mock.reject(&old);
    let answers: Vec<String> = (0..4)
        .map(|_| {
            let (ph, port) = (setup.placeholder.clone(), proxy.port);
            std::thread::spawn(move || {
                response(send(port, "POST", "/backend-api/codex/responses", &ph))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for a in &answers {
        assert!(a.starts_with("HTTP/1.1 200") && a.contains(REPLY), "{a}");
    }
    assert_eq!(oauth.refreshes(), 1);
    assert_eq!(oauth.reuse_errors(), 0);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&setup.host_file).unwrap()).unwrap();
    let new = v["tokens"]["access_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert!(oauth.is_live(v["tokens"]["refresh_token"].as_str().unwrap()));
    assert_eq!(v["mcpOAuth"]["unknown"], "kept");
    assert_eq!(v["tokens"]["account_id"], "acc-refresh");
    let with_new = mock
        .seen()
        .iter()
        .filter(|s| s.header("authorization") == Some(format!("Bearer {new}").as_str()))
        .count();
    assert_eq!(with_new, 4, "every request answered with the new token");
}

/// No refresh storm: without a watcher the 401 goes back as it came (and
/// the audit says why); an upstream that refuses the refreshed token too
/// gets no second refresh right away.
#[test]
fn a_refused_token_never_causes_a_refresh_storm() {
    let mock = MockUpstream::start();
    let oauth = mock_oauth::MockOAuth::start(mock_oauth::Style::Claude, 8 * 3600);
    let setup = session_behind_the_proxy(&mock, &oauth);
    let ctx = &setup.ctx;
    let proxy = proxy_harness::start_proxy(ctx, &[]);
    mock.reject(&setup.login.access_token);
    let r = response(send(proxy.port, "POST", "/v1/messages", &setup.placeholder));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert_eq!(oauth.refreshes(), 0);

    let _watcher = start_watcher(ctx);
    let r = response(send(proxy.port, "POST", "/v1/messages", &setup.placeholder));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(oauth.refreshes(), 1);
    // the upstream refuses the new token as well: 401, no second refresh
    mock.reject(&access_token(&setup.host_file));
    for _ in 0..3 {
        let r = response(send(proxy.port, "POST", "/v1/messages", &setup.placeholder));
        assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    }
    assert_eq!(oauth.refreshes(), 1, "no refresh storm");
    let audited = || -> Vec<String> {
        ok(&ctx.cmd().args(["audit", "--json"]).output().unwrap())
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["refresh"].as_str().unwrap_or("-").to_owned()
            })
            .collect()
    };
    // a forwarded answer's line is written in a batch just after it ends
    wait_until("the five requests' audit lines", || audited().len() >= 5);
    let refresh = audited();
    assert_eq!(refresh.len(), 5, "{refresh:?}");
    assert_eq!(refresh[0], "not refreshed: the sync watcher is not running");
    assert_eq!(refresh[1], "refreshed");
    for r in &refresh[2..] {
        assert!(r.contains("again right after a refresh"), "{refresh:?}");
    }
}

/// A refresh demand written while no watcher ran is served when one starts.
#[test]
fn a_demand_written_before_the_watcher_starts_is_served() {
    let mock = MockUpstream::start();
    let oauth = mock_oauth::MockOAuth::start(mock_oauth::Style::Claude, 8 * 3600);
    let setup = session_behind_the_proxy(&mock, &oauth);
    let ctx = &setup.ctx;
    let sync = airlock::sync::Layout {
        state: ctx.state_dir.join("sync"),
        runtime: ctx.runtime_dir.join("sync"),
    };
    airlock::sync::demand::request(&sync, "claude", "default", &setup.login.access_token).unwrap();
    let _watcher = start_watcher(ctx);
    wait_until("the watcher refreshes on the old demand", || {
        access_token(&setup.host_file) != setup.login.access_token
    });
    assert_eq!(oauth.refreshes(), 1);
    wait_until("the demand is consumed", || {
        !airlock::sync::demand::path(&sync, "claude", "default").exists()
    });
    // a demand for a token the session no longer carries is dropped
    airlock::sync::demand::request(&sync, "claude", "default", &setup.login.access_token).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        oauth.refreshes(),
        1,
        "a stale token's demand refreshes nothing"
    );
}
