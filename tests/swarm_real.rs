//! `airlock swarm` against the test machine's Docker as a single-node swarm
//! (`scripts/start-engines.sh` runs `docker swarm init`): a service with two
//! replicas of the agents test image whose genuine `claude auth status` and
//! `codex login status` report logged in, a rotation (`airlock swarm
//! update`) that reaches both replicas, `airlock swarm rm`, and a leak check
//! (the canary absent from every process's command line, `docker service
//! inspect`, `docker inspect` of the tasks, the service logs, airlock's
//! output at -vvv and the engine's log).
//!
//! Gated by AIRLOCK_TEST_DOCKER=1.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

mod common;

use std::process::Command;
use std::time::Duration;

use common::{CANARY, TestContext, cmdline_watcher, ok, require_real, user_image, wait_until};

/// The tests of this file one at a time: the second one looks for
/// secrets left behind, which the first one's would look like.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

fn text(args: &[&str]) -> String {
    let o = docker(args);
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ensure_swarm() {
    let state = text(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    if state.trim() != "active" {
        // idempotent with scripts/start-engines.sh; never `swarm leave`
        let _ = docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    }
}

/// Removes the test's service and secrets, whatever happened.
struct Cleanup {
    service: String,
    secrets: std::cell::RefCell<Vec<String>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = docker(&["service", "rm", &self.service]);
        for _ in 0..20 {
            let left: Vec<String> = self
                .secrets
                .borrow()
                .iter()
                .filter(|s| !docker(&["secret", "rm", s]).status.success())
                .filter(|s| docker(&["secret", "inspect", s]).status.success())
                .cloned()
                .collect();
            if left.is_empty() {
                break;
            }
            *self.secrets.borrow_mut() = left;
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn secret_names(service: &str) -> Vec<String> {
    text(&[
        "service",
        "inspect",
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}} {{end}}",
        service,
    ])
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

/// The running task containers of `service` on this node.
fn tasks(service: &str) -> Vec<String> {
    text(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
        "--filter",
        "status=running",
    ])
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

fn sha256(s: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// In a task: the logins the genuine CLIs report, and the SHA-256 of the
/// Claude token the shim exported and of the Codex key in `auth.json` (never
/// the values).
const PROBE: &str = r#". /run/airlock/env
claude auth status; echo "claude_rc=$?"
codex login status 2>&1; echo "codex_rc=$?"
printf %s "$CLAUDE_CODE_OAUTH_TOKEN" | sha256sum
sed -n 's/.*"OPENAI_API_KEY": *"\([^"]*\)".*/\1/p' "$CODEX_HOME/auth.json" | tr -d '\n' | sha256sum
"#;

fn write_secret(ctx: &TestContext, claude: &str, codex: &str) {
    use std::os::unix::fs::PermissionsExt;
    let mut cfg = String::new();
    for (agent, v) in [("claude", claude), ("codex", codex)] {
        let p = ctx.root.path().join(format!("{agent}-secret"));
        std::fs::write(&p, v).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        cfg.push_str(&format!("[agents.{agent}]\nsecret_file = {p:?}\n\n"));
    }
    std::fs::create_dir_all(&ctx.config_dir).unwrap();
    std::fs::write(ctx.config_dir.join("config.toml"), cfg).unwrap();
}

fn check_replicas(service: &str, claude: &str, codex: &str) {
    let mut ids = Vec::new();
    wait_until("two running tasks", Duration::from_secs(60), || {
        ids = tasks(service);
        ids.len() == 2
    });
    for id in &ids {
        let out = text(&["exec", id, "sh", "-c", PROBE]);
        assert!(out.contains("claude_rc=0"), "{id}: {out}");
        assert!(out.contains("\"loggedIn\": true"), "{id}: {out}");
        assert!(out.contains("oauth_token"), "{id}: {out}");
        assert!(out.contains("codex_rc=0"), "{id}: {out}");
        assert!(out.contains("API key"), "{id}: {out}");
        assert!(
            out.contains(&sha256(claude)),
            "{id}: stale Claude token: {out}"
        );
        assert!(out.contains(&sha256(codex)), "{id}: stale Codex key: {out}");
    }
}

#[test]
fn swarm_service_replicas_are_logged_in_and_rotate() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_swarm();
    let tag = format!("{}{}", std::process::id(), rand_suffix());
    let c = format!("{CANARY}{tag}");
    let service = format!("airlock-test-swarm-{tag}");
    let cleanup = Cleanup {
        service: service.clone(),
        secrets: Default::default(),
    };
    let log_path = std::env::var_os("AIRLOCK_TEST_STATE")
        .map(|s| std::path::PathBuf::from(s).join("logs/dockerd.log"));
    let log_start = log_path
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());

    let mut ctx = TestContext::new();
    ctx.set_env("AIRLOCK_KEYRING_BACKEND", "memory");
    // a configured default of proxy does not pin a service to this node:
    // without --rotation proxy, swarm keeps its own default
    ctx.set_env("AIRLOCK_ROTATION", "proxy");
    let claude = format!("sk-ant-oat01-{c}-AAAAAAAAAAAAAAAAAAAAAAAA");
    let codex = format!("sk-proj-{c}-1234-{}", "x".repeat(24));
    write_secret(&ctx, &claude, &codex);

    // no process's command line (ours, docker's) ever holds the canary
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = cmdline_watcher(c.clone(), stop.clone());
    let t = std::time::Instant::now();
    let out = ctx
        .cmd()
        // airlock's flags mixed with the service's (no `--`)
        .args(["-vvv", "swarm", "--require-auth", "--agent", "claude"])
        .args(["--replicas", "2", "--no-resolve-image", "-d"])
        .args(["--agent", "codex", "--name", &service])
        // tini stops `sleep` at once; a short monitor keeps the rolling update quick
        .args([
            "--init",
            "--update-monitor",
            "1s",
            "--stop-grace-period",
            "2s",
        ])
        .args([&user_image(), "sleep", "600"])
        .output()
        .unwrap();
    let create_ms = t.elapsed().as_millis();
    let mut airlock_output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&out);
    let first = secret_names(&service);
    *cleanup.secrets.borrow_mut() = first.clone();
    assert!(
        first
            .iter()
            .any(|n| n.starts_with("airlock-claude-default-"))
            && first
                .iter()
                .any(|n| n.starts_with("airlock-codex-default-"))
            && first.iter().any(|n| n.starts_with("airlock-shim-")),
        "{first:?}"
    );
    check_replicas(&service, &claude, &codex);
    eprintln!("airlock swarm: {create_ms} ms");
    let spec = text(&["service", "inspect", &service]);
    assert!(
        !spec.contains("node.id==") && !spec.contains("airlock.sandbox"),
        "{spec}"
    );

    // status --swarm lists the secrets and the service using them
    let out = ctx
        .cmd()
        .args(["status", "--swarm", "--json", "--agent", "codex"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let listed = v["swarm"]["secrets"].as_array().unwrap();
    let codex_secret = first
        .iter()
        .find(|n| n.starts_with("airlock-codex-"))
        .unwrap();
    let e = listed
        .iter()
        .find(|e| e["name"] == codex_secret.as_str())
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(e["agent"], "codex", "{v}");
    assert_eq!(e["services"], serde_json::json!([service]), "{v}");
    assert!(listed.iter().all(|e| e["agent"] == "codex"), "{v}");
    let table = ok(&ctx.cmd().args(["status", "--swarm"]).output().unwrap());
    assert!(table.contains(&format!("used by {service}")), "{table}");

    // rotation: new values, a rolling update, both replicas follow
    let claude2 = format!("sk-ant-oat01-{c}-BBBBBBBBBBBBBBBBBBBBBBBB");
    let codex2 = format!("sk-proj-{c}-5678-{}", "x".repeat(24));
    write_secret(&ctx, &claude2, &codex2);
    let t = std::time::Instant::now();
    let out = ctx
        .cmd()
        .args(["-vvv", "swarm", "update", &service])
        .output()
        .unwrap();
    eprintln!("airlock swarm update: {} ms", t.elapsed().as_millis());
    airlock_output.push_str(&String::from_utf8_lossy(&out.stdout));
    airlock_output.push_str(&String::from_utf8_lossy(&out.stderr));
    ok(&out);
    let second = secret_names(&service);
    cleanup.secrets.borrow_mut().extend(second.iter().cloned());
    assert_ne!(first, second);
    wait_until("the update to finish", Duration::from_secs(90), || {
        text(&[
            "service",
            "inspect",
            "--format",
            "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
            &service,
        ])
        .trim()
            == "completed"
    });
    check_replicas(&service, &claude2, &codex2);
    // nothing changed since: nothing to do
    let out = ctx
        .cmd()
        .args(["swarm", "update", &service])
        .output()
        .unwrap();
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already has the current credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(secret_names(&service), second);
    // the old versions are gone (the shim did not change: kept)
    for old in first.iter().filter(|n| !second.contains(n)) {
        assert!(
            !docker(&["secret", "inspect", old]).status.success(),
            "{old} was not removed"
        );
    }

    // leak check
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let argv_hits = watcher.join().unwrap();
    assert!(
        argv_hits.is_empty(),
        "the canary is in a command line: {argv_hits:?}"
    );
    let mut places = vec![
        (
            "docker service inspect",
            text(&["service", "inspect", &service]),
        ),
        (
            "the service's logs",
            text(&["service", "logs", "--raw", &service]),
        ),
        ("airlock's output (-vvv)", airlock_output.clone()),
    ];
    let all_tasks = text(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
    ]);
    for id in all_tasks.split_whitespace() {
        places.push(("docker inspect of a task", text(&["inspect", id])));
    }
    for s in &second {
        places.push(("docker secret inspect", text(&["secret", "inspect", s])));
    }
    if let Some(p) = &log_path {
        let log = std::fs::read(p).unwrap_or_default();
        let from = (log_start as usize).min(log.len());
        places.push((
            "the engine's log",
            String::from_utf8_lossy(&log[from..]).into(),
        ));
    }
    assert!(
        airlock_output.contains("swarm secret created"),
        "-vvv logs the secrets' names"
    );
    for (what, s) in &places {
        assert!(!s.contains(&c), "the canary is in {what}");
    }

    // rm: the service and its secrets, nothing else
    let out = ctx.cmd().args(["swarm", "rm", &service]).output().unwrap();
    ok(&out);
    assert!(!docker(&["service", "inspect", &service]).status.success());
    for s in second.iter().filter(|n| !n.starts_with("airlock-shim-")) {
        assert!(
            !docker(&["secret", "inspect", s]).status.success(),
            "{s} left behind"
        );
    }
    drop(cleanup);
}

#[test]
fn login_sessions_and_foreign_services_are_refused() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_swarm();
    let mut ctx = TestContext::new();
    ctx.set_env("AIRLOCK_KEYRING_BACKEND", "memory");
    let p = ctx.root.path().join("claude-session");
    let session = serde_json::json!({"claudeAiOauth": {
        "accessToken": format!("sk-ant-oat01-{CANARY}-access"),
        "refreshToken": format!("sk-ant-ort01-{CANARY}-refresh"),
        "expiresAt": 4_102_444_800_000u64,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }});
    std::fs::write(&p, session.to_string()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(&ctx.config_dir).unwrap();
    std::fs::write(
        ctx.config_dir.join("config.toml"),
        format!("[agents.claude]\nsecret_file = {p:?}\n"),
    )
    .unwrap();
    let name = format!("airlock-test-swarm-refused-{}", rand_suffix());
    let out = ctx
        .cmd()
        .args([
            "swarm",
            "--agent",
            "claude",
            "--",
            "--name",
            &name,
            &user_image(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("proxy mode (docs/proxy.md)") && err.contains("setup-token"),
        "{err}"
    );
    assert!(!err.contains(CANARY), "{err}");
    assert!(!docker(&["service", "inspect", &name]).status.success());

    // a failed `docker service create` leaves no secret behind (busybox:
    // a shim of its own, not shared with the other test)
    let key = format!(
        "sk-proj-{CANARY}-failed-{}-{}",
        rand_suffix(),
        "x".repeat(24)
    );
    let k = ctx.root.path().join("codex-key");
    std::fs::write(&k, &key).unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        ctx.config_dir.join("config.toml"),
        format!("[agents.codex]\nsecret_file = {k:?}\n"),
    )
    .unwrap();
    let before = text(&["secret", "ls", "--format", "{{.Name}}"]);
    let out = ctx
        .cmd()
        .args(["swarm", "--require-auth", "--agent", "codex", "--"])
        .args(["--replicas", "not-a-number", "--name", &name])
        .args([&common::busybox(), "sleep", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(
        err.contains("secrets airlock had created were removed"),
        "{err}"
    );
    let after = text(&["secret", "ls", "--format", "{{.Name}}"]);
    let new: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("airlock-codex-") && !before.contains(l))
        .collect();
    assert!(new.is_empty(), "left behind: {new:?}");

    // an image without /bin/sh: refused before anything is created
    let noshell = format!("localhost/airlock-test/noshell-swarm:t{}", rand_suffix());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("root/etc")).unwrap();
    std::fs::write(dir.path().join("root/etc/hello"), "hello\n").unwrap();
    let tar = dir.path().join("root.tar");
    assert!(
        Command::new("tar")
            .arg("-C")
            .arg(dir.path().join("root"))
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    ok(&Command::new("docker")
        .args(["import", "-c", "CMD [\"/hello\"]"])
        .arg(&tar)
        .arg(&noshell)
        .output()
        .unwrap());
    let before = text(&["secret", "ls", "--format", "{{.Name}}"]);
    let out = ctx
        .cmd()
        .args(["swarm", "--agent", "codex", "--", "--name", &name, &noshell])
        .output()
        .unwrap();
    let _ = docker(&["rmi", "-f", &noshell]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(err.contains("has no usable /bin/sh"), "{err}");
    assert_eq!(before, text(&["secret", "ls", "--format", "{{.Name}}"]));
    assert!(!docker(&["service", "inspect", &name]).status.success());

    // proxy mode with a constraint to another node: refused, nothing made
    let out = ctx
        .cmd()
        .args(["swarm", "--rotation", "proxy", "--agent", "codex", "--"])
        .args(["--constraint", "node.hostname==elsewhere", "--name", &name])
        .arg(common::busybox())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("in proxy mode the service runs on this node"),
        "{err}"
    );
    assert!(!docker(&["service", "inspect", &name]).status.success());

    // a service airlock did not make is left alone
    let out = ctx.cmd().args(["swarm", "rm", &name]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // a service airlock did not make: neither updated nor removed
    ok(&Command::new("docker")
        .args([
            "service",
            "create",
            "-q",
            "-d",
            "--no-resolve-image",
            "--name",
            &name,
        ])
        .args([&common::busybox(), "sleep", "600"])
        .output()
        .unwrap());
    let foreign = Cleanup {
        service: name.clone(),
        secrets: Default::default(),
    };
    for cmd in [&["swarm", "rm", &name][..], &["swarm", "update", &name][..]] {
        let out = ctx.cmd().args(cmd).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(err.contains("was not made by `airlock swarm`"), "{err}");
    }
    assert!(docker(&["service", "inspect", &name]).status.success());
    drop(foreign);
}

fn rand_suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{t:08x}")
}

/// `--rotation proxy`: the service's tasks hold a placeholder (a Swarm
/// secret) and reach the host's proxy through Docker's host-gateway; the
/// genuine `claude -p` in a task answers from a TLS mock through the proxy,
/// which alone sent the real token; the service is pinned to this node, its
/// grant is registered before it exists and forgotten by `airlock swarm rm`.
#[test]
fn swarm_service_in_proxy_mode_answers_through_the_proxy() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_swarm();
    let tag = format!("{}{}", std::process::id(), rand_suffix());
    let service = format!("airlock-test-swarm-proxy-{tag}");
    let cleanup = Cleanup {
        service: service.clone(),
        secrets: Default::default(),
    };
    let mock = mock_upstream::MockUpstream::start();
    let token = format!(
        "sk-ant-oat01-{CANARY}{tag}-swarm-{}",
        "0123456789".repeat(6)
    );
    let mut ctx = common::tmpfs_context("docker", "swarmproxy");
    common::claude_token_behind_proxy(&mut ctx, &mock.origin(), &mock.ca_pem, &token);
    // for the Codex session below (read by the proxy when it starts)
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_CODEX", &mock.origin());
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_GEMINI_SESSION", &mock.origin());
    let out = ctx
        .cmd()
        .args(["swarm", "--rotation", "proxy", "--agent", "claude"])
        .args([
            "--replicas",
            "2",
            "--no-resolve-image",
            "-d",
            "--name",
            &service,
        ])
        .args(["--init", "--stop-grace-period", "2s"])
        .args([&user_image(), "sleep", "600"])
        .output()
        .unwrap();
    *cleanup.secrets.borrow_mut() = secret_names(&service);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    ok(&out);
    assert!(err.contains("constrained to this node"), "{err}");
    let layout = airlock::proxy::registry::Layout {
        dir: ctx.state_dir.join("proxy"),
    };
    let grants = airlock::proxy::registry::load(&layout).unwrap();
    assert_eq!(grants.len(), 1, "{grants:?}");
    let id = grants[0].sandbox.clone();
    assert!(id.starts_with("swarm-"), "{id}");
    let spec = text(&["service", "inspect", &service]);
    assert!(
        spec.contains(&format!("\"airlock.sandbox\": \"{id}\"")),
        "{spec}"
    );
    assert!(spec.contains("node.id=="), "{spec}");
    assert!(spec.contains("host.docker.internal"), "{spec}");
    assert!(!spec.contains(CANARY) && !spec.contains("sk-ant-oat01-airlock-"));

    let mut ids = Vec::new();
    wait_until("two running tasks", Duration::from_secs(60), || {
        ids = tasks(&service);
        ids.len() == 2
    });
    for t in &ids {
        let out = docker(&[
            "exec",
            t,
            "sh",
            "-c",
            ". /run/airlock/env; env | grep -c sk-ant-oat01-airlock- ; claude -p hi",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{t}: {stdout}\n{stderr}");
        assert!(stdout.starts_with("1\n"), "{t}: the placeholder: {stdout}");
        assert!(
            stdout.contains(mock_upstream::REPLY),
            "{t}: {stdout}\n{stderr}"
        );
        assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY));
        let inspect = text(&["inspect", t]);
        assert!(!inspect.contains(CANARY) && !inspect.contains("sk-ant-oat01-airlock-"));
    }
    mock.assert_messages_carried(&token);
    // both tasks used the one grant
    let seen = mock.seen();
    assert!(
        seen.iter()
            .filter(|r| r.path.starts_with("/v1/messages"))
            .count()
            >= 2
    );

    // `airlock revoke SERVICE` cuts the service off at once
    ok(&ctx.cmd().args(["revoke", &service]).output().unwrap());
    let out = docker(&[
        "exec",
        &ids[0],
        "sh",
        "-c",
        ". /run/airlock/env; claude -p hi",
    ]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(mock_upstream::REPLY),
        "revoked, yet answered"
    );
    assert!(
        airlock::proxy::registry::load(&layout).unwrap()[0]
            .revoked_at
            .is_some()
    );

    // nothing to rotate: the proxy sends the current credential
    let out = ctx
        .cmd()
        .args(["swarm", "update", &service])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ok_err(&out)).contains("nothing to rotate"),
        "{out:?}"
    );
    ok(&ctx.cmd().args(["swarm", "rm", &service]).output().unwrap());
    assert!(
        airlock::proxy::registry::load(&layout).unwrap().is_empty(),
        "swarm rm forgets the service's grant"
    );
    drop(cleanup);

    // login sessions (Claude's, Codex's ChatGPT one over TLS to the proxy,
    // Gemini's Google one) stay on this host: the task holds placeholder sessions, the
    // proxy sends the sessions' access tokens, the watcher keeps them fresh
    // while the service exists, and hands them back after
    let access = format!("sk-ant-oat01-{CANARY}{tag}-access");
    common::store_session(
        &ctx,
        "claude",
        &common::claude_session(&access, &format!("sk-ant-ort01-{CANARY}{tag}-refresh")),
    );
    let codex_access = format!("{CANARY}{tag}-codexaccess");
    common::store_session(
        &ctx,
        "codex",
        &common::codex_session(&codex_access, "acc-swarm"),
    );
    // a name of its own: the first service's tasks may still be stopping
    let service2 = format!("{service}-s");
    let cleanup = Cleanup {
        service: service2.clone(),
        secrets: Default::default(),
    };
    let gemini_access = format!("ya29.{CANARY}{tag}-geminiaccess");
    common::store_session(&ctx, "gemini", &common::gemini_session(&gemini_access));
    ok(&proxy_service(
        &ctx,
        &["claude", "codex", "gemini"],
        &cleanup,
    ));
    let sync = airlock::sync::Layout {
        state: ctx.state_dir.join("sync"),
        runtime: ctx.runtime_dir.join("sync"),
    };
    let regs = airlock::sync::list_sandboxes(&sync).unwrap();
    assert_eq!(
        regs.len(),
        3,
        "the watcher refreshes the sessions: {regs:?}"
    );
    for (r, agent) in regs.iter().zip(["claude", "codex", "gemini"]) {
        assert!(
            r.sandbox.starts_with("swarm-") && r.sandbox.ends_with(&format!("-{agent}")),
            "{regs:?}"
        );
    }
    wait_until("a running task", Duration::from_secs(60), || {
        ids = tasks(&service2);
        ids.len() == 1
    });
    let before = mock.seen().len();
    let script = format!(". /run/airlock/env; {}", common::three_agents_script());
    let out = docker(&["exec", &ids[0], "sh", "-c", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(mock_upstream::REPLY), "{stdout}\n{stderr}");
    common::assert_line_answered(&out, "codex", mock_upstream::REPLY);
    mock.assert_codex_session_carried(&codex_access, "acc-swarm");
    common::assert_line_answered(&out, "gemini", mock_upstream::REPLY);
    mock.assert_gemini_session_carried(&gemini_access);
    mock.assert_messages_since(before, &access);
    let inspect = text(&["service", "inspect", &service2]);
    assert!(!inspect.contains(CANARY) && !inspect.contains("sk-ant-oat01-airlock-"));
    ok(&ctx.cmd().args(["swarm", "rm", &service2]).output().unwrap());
    wait_until(
        "the session handed back after swarm rm",
        Duration::from_secs(20),
        || airlock::sync::list_sandboxes(&sync).unwrap().is_empty(),
    );
    drop(cleanup);
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// `--rotation proxy` for Codex and Gemini (API keys): one task of one
/// service, where the genuine `codex exec` and `gemini -p` answer from the
/// TLS mock through the host's proxy; the mock saw the real keys, the
/// service and the task hold placeholders only.
#[test]
fn swarm_service_in_proxy_mode_serves_codex_and_gemini() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    ensure_swarm();
    let tag = format!("{}{}", std::process::id(), rand_suffix());
    let service = format!("airlock-test-swarm-cg-{tag}");
    let cleanup = Cleanup {
        service: service.clone(),
        secrets: Default::default(),
    };
    let mock = mock_upstream::MockUpstream::start();
    let mut ctx = common::tmpfs_context("docker", "swarmcg");
    let (codex, gemini) = common::codex_and_gemini_keys_behind_proxy(
        &mut ctx,
        "swarm",
        (&mock.origin(), &mock.ca_pem),
    );
    ok(&proxy_service(&ctx, &["codex", "gemini"], &cleanup));
    let mut ids = Vec::new();
    wait_until("a running task", Duration::from_secs(60), || {
        ids = tasks(&service);
        ids.len() == 1
    });
    let script = format!(". /run/airlock/env; {}", common::codex_and_gemini_script());
    let answered = docker(&["exec", &ids[0], "sh", "-c", &script]);
    let inspect = format!(
        "{}{}",
        text(&["service", "inspect", &service]),
        text(&["inspect", &ids[0]])
    );
    ok(&ctx.cmd().args(["swarm", "rm", &service]).output().unwrap());
    drop(cleanup);
    common::assert_codex_and_gemini_answered(&answered, mock_upstream::REPLY);
    assert!(!inspect.contains(CANARY), "a key in docker inspect");
    mock.assert_codex_and_gemini_carried(&codex, &gemini);
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// `airlock swarm --rotation proxy` of a one-task service (the user test
/// image, sleeping) named after `cleanup`, for `agents`; the secrets it
/// made are left to `cleanup`.
fn proxy_service(ctx: &TestContext, agents: &[&str], cleanup: &Cleanup) -> std::process::Output {
    let mut cmd = ctx.cmd();
    cmd.args(["swarm", "--rotation", "proxy"]);
    for a in agents {
        cmd.args(["--agent", a]);
    }
    let out = cmd
        .args(["--", "-d", "--no-resolve-image", "--name", &cleanup.service])
        .args(["--init", "--stop-grace-period", "2s"])
        .args([&user_image(), "sleep", "600"])
        .output()
        .unwrap();
    *cleanup.secrets.borrow_mut() = secret_names(&cleanup.service);
    out
}

/// stderr of a command that must succeed.
fn ok_err(out: &std::process::Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stderr.clone()
}
