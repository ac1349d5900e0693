//! The leak test: every credential flow through the real `airlock run`
//! binary at -vvv, on Docker and Podman, with a canary secret. Fails if the
//! canary appears in any process's command line during the run, in
//! `docker inspect` / `podman inspect`, in the engine's stored container
//! files, in airlock's output, or on disk outside the secret inputs (the
//! sandbox's tmpfs directory is gone by then). The same runs check that the
//! genuine agent CLIs report the expected logins.
//!
//! Gated by AIRLOCK_TEST_DOCKER=1 / AIRLOCK_TEST_PODMAN=1.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{CANARY, TestContext, cmdline_watcher, grep_dirs, require_real, user_image};

/// A canary unique to this run, so other tests on the machine cannot interfere.
/// Fixed width (zero-padded): the keys built from it must pass the agents'
/// minimum-length checks whatever the pid and the time.
fn canary() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{CANARY}{:010}x{:010}",
        std::process::id(),
        t % 1_000_000_007
    )
}

fn b64url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn fake_jwt(c: &str) -> String {
    let claims = serde_json::json!({
        "email": "fake@example.com", "exp": 4_102_444_800u64,
        "https://api.openai.com/auth": {"chatgpt_plan_type": "plus", "chatgpt_account_id": "acct-fake"},
    });
    format!(
        "{}.{}.{}",
        b64url(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64url(&claims.to_string()),
        b64url(c)
    )
}

/// One `airlock run` with three agents: (claude, codex, gemini) secrets.
struct Flow {
    name: &'static str,
    claude: String,
    codex: String,
    gemini: Option<String>,
    claude_method: &'static str,
    codex_line: &'static str,
    gemini_selected: Option<&'static str>,
    /// Claude's credential is stored in the (file) vault instead of a
    /// secret file: a session then goes through `--rotation sync` (the
    /// shared directory on the runtime tmpfs, the watcher, the hand-back).
    claude_in_vault: bool,
}

fn flows(c: &str) -> Vec<Flow> {
    let claude_session = serde_json::json!({"claudeAiOauth": {
        "accessToken": format!("sk-ant-oat01-{c}-access"),
        "refreshToken": format!("sk-ant-ort01-{c}-refresh"),
        "expiresAt": 4_102_444_800_000u64,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }})
    .to_string();
    let codex_session = serde_json::json!({
        "auth_mode": "chatgpt", "OPENAI_API_KEY": null,
        "tokens": {"id_token": fake_jwt(c), "access_token": fake_jwt(c),
                   "refresh_token": format!("rt-{c}"), "account_id": "acct-fake"},
        "last_refresh": "2026-11-22T00:00:00Z",
    })
    .to_string();
    let gemini_session = serde_json::json!({
        "access_token": format!("ya29.{c}"), "refresh_token": format!("1//{c}"),
        "scope": "https://www.googleapis.com/auth/cloud-platform", "token_type": "Bearer",
        "expiry_date": 4_102_444_800_000u64,
    })
    .to_string();
    vec![
        Flow {
            name: "token+apikey+apikey",
            claude: format!("sk-ant-oat01-{c}-AAAAAAAAAAAAAAAAAAAAAAAA"),
            codex: format!("sk-proj-{c}-1234"),
            // Padded: the canary's length varies with the pid and time, and a Gemini
            // key shorter than 39 characters is rejected as truncated.
            gemini: Some(format!("AIza{c}-gemini-{}", "x".repeat(24))),
            claude_method: "oauth_token",
            codex_line: "API key configured",
            gemini_selected: Some("gemini-api-key"),
            claude_in_vault: false,
        },
        Flow {
            name: "apikey+session+session",
            claude: format!("sk-ant-api03-{c}-AAAAAAAAAAAAAAAAAAAAAAAA"),
            codex: codex_session,
            gemini: Some(gemini_session),
            claude_method: "api_key",
            codex_line: "Logged in using ChatGPT",
            gemini_selected: Some("oauth-personal"),
            claude_in_vault: false,
        },
        Flow {
            name: "session+apikey",
            claude: claude_session.clone(),
            codex: format!("sk-proj-{c}-5678"),
            gemini: None,
            claude_method: "claude.ai",
            codex_line: "API key configured",
            gemini_selected: None,
            claude_in_vault: false,
        },
        Flow {
            name: "synced-session+apikey",
            claude: claude_session,
            codex: format!("sk-proj-{c}-9012"),
            gemini: None,
            claude_method: "claude.ai",
            codex_line: "API key configured",
            gemini_selected: None,
            claude_in_vault: true,
        },
    ]
}

const SCRIPT: &str = r#"
echo "uid=$(id -u)"
claude auth status; echo "claude_rc=$?"
codex login status 2>&1; echo "codex_rc=$?"
cat "$GEMINI_CLI_HOME/.gemini/settings.json" 2>/dev/null; echo
"#;

fn engine_text(engine: &str, args: &[&str]) -> String {
    let out = Command::new(engine).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn leak_check(engine: &str) {
    let c = canary();
    let mut ctx = TestContext::new();
    let secrets = ctx.root.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    // The sandbox host directory on a tmpfs, as in production.
    let rt = PathBuf::from(format!(
        "/dev/shm/airlock-leak-{}-{engine}",
        std::process::id()
    ));
    ctx.runtime_dir = rt.clone();
    let problems = Mutex::new(Vec::<String>::new());
    for (i, f) in flows(&c).into_iter().enumerate() {
        let write = |name: &str, v: &str| {
            let p = secrets.join(format!("{i}-{name}"));
            std::fs::write(&p, v).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            p
        };
        let mut cfg = format!(
            "[agents.codex]\nsecret_file = {:?}\n",
            write("codex", &f.codex)
        );
        if !f.claude_in_vault {
            cfg.push_str(&format!(
                "\n[agents.claude]\nsecret_file = {:?}\n",
                write("claude", &f.claude)
            ));
        }
        let mut agents = vec!["--agent", "claude", "--agent", "codex"];
        if let Some(g) = &f.gemini {
            cfg.push_str(&format!(
                "\n[agents.gemini]\nsecret_file = {:?}\n",
                write("gemini", g)
            ));
            agents.extend(["--agent", "gemini"]);
        }
        std::fs::create_dir_all(&ctx.config_dir).unwrap();
        std::fs::write(ctx.config_dir.join("config.toml"), cfg).unwrap();
        ctx.set_env("AIRLOCK_ENGINE", engine);
        // Credentials come from `secret_file`s (the resolution chain's third
        // step); the in-memory vault keeps this test independent of the vault.
        ctx.set_env("AIRLOCK_KEYRING_BACKEND", "memory");
        if f.claude_in_vault {
            // The file vault (encrypted at rest under the context's root):
            // the sync watcher is another process and reads it too.
            ctx.set_env("AIRLOCK_KEYRING_BACKEND", "file");
            let mut child = ctx
                .cmd()
                .args(["auth", "claude", "--method", "session", "--stdin"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(f.claude.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success(), "storing the session");
        }

        let name = format!("airlock-leak-{}-{i}-{}", std::process::id(), engine);
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = cmdline_watcher(c.clone(), stop.clone());
        let out = ctx
            .cmd()
            .arg("-vvv")
            .arg("run")
            .args(&agents)
            .args([
                "--",
                "--network",
                "none",
                "--name",
                &name,
                &user_image(),
                "sh",
                "-c",
                SCRIPT,
            ])
            .output()
            .unwrap();
        stop.store(true, Ordering::SeqCst);
        let hits = watcher.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let ctxmsg = format!(
            "[{engine} {}] exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            f.name,
            out.status.code()
        );
        let mut p = problems.lock().unwrap();

        // The agents are logged in.
        let compact: String = stdout.chars().filter(|c| !c.is_whitespace()).collect();
        assert_eq!(out.status.code(), Some(0), "{ctxmsg}");
        assert!(stdout.contains("uid=1000"), "{ctxmsg}");
        assert!(
            compact.contains(&format!("\"authMethod\":\"{}\"", f.claude_method)),
            "{ctxmsg}"
        );
        assert!(stdout.contains("claude_rc=0"), "{ctxmsg}");
        assert!(
            stdout.contains(f.codex_line) && stdout.contains("codex_rc=0"),
            "{ctxmsg}"
        );
        if let Some(sel) = f.gemini_selected {
            assert!(
                compact.contains(&format!("\"selectedType\":\"{sel}\"")),
                "{ctxmsg}"
            );
        }
        // -vvv logs really are verbose (the engine command is logged).
        assert!(stderr.contains("engine command"), "{ctxmsg}");

        if !hits.is_empty() {
            p.push(format!(
                "[{engine} {}] canary in command lines: {hits:?}",
                f.name
            ));
        }
        if stdout.contains(&c) || stderr.contains(&c) {
            p.push(format!(
                "[{engine} {}] canary in airlock's output: {ctxmsg}",
                f.name
            ));
        }
        let inspect = engine_text(engine, &["inspect", &name]);
        assert!(inspect.contains("airlock.sandbox"), "{inspect}");
        if inspect.contains(&c) {
            p.push(format!("[{engine} {}] canary in {engine} inspect", f.name));
        }
        let id = engine_text(engine, &["inspect", "-f", "{{.Id}}", &name]);
        let upper = engine_text(
            engine,
            &["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &name],
        );
        let mut dirs = vec![
            ctx.root.path().to_path_buf(),
            PathBuf::from("/tmp"),
            rt.clone(),
        ];
        if engine == "docker" {
            dirs.push(PathBuf::from(format!("/var/lib/docker/containers/{id}")));
        } else {
            dirs.push(PathBuf::from(format!(
                "/var/lib/containers/storage/overlay-containers/{id}"
            )));
            dirs.push(PathBuf::from("/var/lib/containers/storage/libpod"));
        }
        if upper.starts_with('/') {
            dirs.push(PathBuf::from(&upper));
        }
        let found = grep_dirs(&c, &dirs, std::slice::from_ref(&secrets));
        if !found.is_empty() {
            p.push(format!("[{engine} {}] canary on disk: {found:?}", f.name));
        }
        if f.claude_in_vault {
            assert!(stderr.contains("registered"), "not synced: {ctxmsg}");
            // The shared directory is gone too.
            let shared: Vec<_> = std::fs::read_dir(rt.join("sync"))
                .map(|r| r.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            if !shared.is_empty() {
                p.push(format!(
                    "[{engine} {}] shared directories left: {shared:?}",
                    f.name
                ));
            }
        }
        // The sandbox directory is gone.
        let left: Vec<_> = std::fs::read_dir(rt.join("sandboxes"))
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if !left.is_empty() {
            p.push(format!(
                "[{engine} {}] sandbox directories left: {left:?}",
                f.name
            ));
        }
        let _ = Command::new(engine).args(["rm", "-f", &name]).output();
    }
    let _ = std::fs::remove_dir_all(&rt);
    let p = problems.into_inner().unwrap();
    assert!(p.is_empty(), "leaks:\n{}", p.join("\n"));
}

#[test]
fn docker_every_flow_leaks_nothing() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        leak_check("docker");
    }
}

#[test]
fn podman_every_flow_leaks_nothing() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        leak_check("podman");
    }
}

/// The detectors themselves work (a leak test that sees nothing proves
/// nothing otherwise).
#[test]
fn detectors_catch_a_planted_canary() {
    let c = canary();
    let stop = Arc::new(AtomicBool::new(false));
    let w = cmdline_watcher(c.clone(), stop.clone());
    let mut child = Command::new("sh")
        .args(["-c", "sleep 0.3", &c])
        .spawn()
        .unwrap();
    child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    assert!(!w.join().unwrap().is_empty(), "cmdline watcher missed it");
    let ctx = TestContext::new();
    let keep = ctx.root.path().join("keep");
    std::fs::create_dir_all(&keep).unwrap();
    std::fs::write(ctx.home.join("x"), &c).unwrap();
    std::fs::write(keep.join("y"), &c).unwrap();
    let found = grep_dirs(&c, &[ctx.root.path().to_path_buf()], &[keep]);
    assert_eq!(found.len(), 1, "{found:?}");
}

#[path = "support/mock_oauth.rs"]
mod mock_oauth;

/// What the broker container prints: the genuine CLIs' logins before and
/// after airlock's refresh (without a restart), the access tokens it ends
/// with, and any refresh token of the mock (`rt_mock_…`) found in its
/// environment, its processes' environments or its files.
const BROKER_SCRIPT: &str = r#"
c="$CLAUDE_SECURESTORAGE_CONFIG_DIR/.credentials.json"; x="$CODEX_HOME/auth.json"
p=/dev/shm/airlock-needle; printf '%s\n' "rt""_mock_" > "$p"
claude auth status >/dev/null 2>&1; echo "claude1=$?"
codex login status 2>&1; echo "codex1=$?"
a0=$(cat "$c"); b0=$(cat "$x"); i=0
while [ $i -lt 200 ]; do
  [ "$(cat "$c")" != "$a0" ] && [ "$(cat "$x")" != "$b0" ] && break
  sleep 0.1; i=$((i+1))
done
echo "waited=$i"
claude auth status >/dev/null 2>&1; echo "claude2=$?"
codex login status 2>&1; echo "codex2=$?"
echo "CLAUDE=$(cat "$c" | tr -d '\n')"
echo "CODEX=$(cat "$x" | tr -d '\n')"
env | grep -qF -f "$p" && echo LEAK-env
for f in /proc/[0-9]*/environ; do tr '\0' '\n' < "$f" 2>/dev/null | grep -qF -f "$p" && echo "LEAK-$f"; done
grep -rlsaF -f "$p" /run /tmp /workspace "$HOME" 2>/dev/null | sed 's/^/LEAK-file /'
echo done
"#;

/// Broker mode with the genuine CLIs: the sandbox holds Claude's and
/// Codex's access tokens only; airlock refreshes on the host (mock token
/// server on loopback, container without network) and the running
/// container sees the new access tokens, still logged in. No refresh token
/// appears in the container (env, /proc/*/environ, files under the mounts
/// and its home), in `inspect`, in any command line, or in airlock's logs
/// at -vvv (the `airlock run` output and the watcher's log).
fn broker_canary(engine: &str) {
    use mock_oauth::{MockOAuth, Style, jwt, now_ms};
    use serde_json::{Value, json};
    let claude_mock = MockOAuth::start(Style::Claude, 8);
    let codex_mock = MockOAuth::start(Style::Codex, 8);
    let mut ctx = common::tmpfs_context(engine, "broker");
    ctx.set_env("AIRLOCK_CLAUDE_TOKEN_URL", &claude_mock.url());
    ctx.set_env("AIRLOCK_CODEX_TOKEN_URL", &codex_mock.url());
    let cl = claude_mock.login();
    common::store_session(
        &ctx,
        "claude",
        &json!({"claudeAiOauth": {"accessToken": cl.access_token, "refreshToken": cl.refresh_token,
            "expiresAt": now_ms() + 240_000, "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max"}})
        .to_string(),
    );
    let cx = codex_mock.login();
    common::store_session(
        &ctx,
        "codex",
        &json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
            "tokens": {"id_token": jwt(&json!({"email": "m@example.com",
                            "https://api.openai.com/auth": {"chatgpt_plan_type": "pro", "chatgpt_account_id": "acc"}})),
                       "access_token": jwt(&json!({"exp": now_ms() / 1000 - 60})),
                       "refresh_token": cx.refresh_token, "account_id": "acc"},
            "last_refresh": "2026-11-01T00:00:00Z"})
        .to_string(),
    );
    let name = format!("airlock-broker-{}-{engine}", std::process::id());
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = cmdline_watcher("rt_mock_".into(), stop.clone());
    let out = ctx
        .cmd()
        .args(["-vvv", "run", "--agent", "claude", "--agent", "codex"])
        .args(["--rotation", "broker", "--", "--network", "none", "--name"])
        .arg(&name)
        .args([&user_image(), "sh", "-c", BROKER_SCRIPT])
        .output()
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    let hits = watcher.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let inspect = engine_text(engine, &["inspect", &name]);
    let _ = Command::new(engine).args(["rm", "-f", &name]).output();
    let msg = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(0), "{msg}");
    for l in [
        "claude1=0",
        "claude2=0",
        "codex1=0",
        "codex2=0",
        "Logged in using ChatGPT",
        "done",
    ] {
        assert!(stdout.contains(l), "{l}: {msg}");
    }
    assert!(
        !stdout.contains("waited=200"),
        "no new token arrived: {msg}"
    );
    let doc = |k: &str| -> Value {
        let l = stdout.lines().find_map(|l| l.strip_prefix(k)).unwrap();
        serde_json::from_str(l).unwrap()
    };
    let c = doc("CLAUDE=");
    assert_eq!(c["claudeAiOauth"]["refreshToken"], Value::Null, "{msg}");
    let x = doc("CODEX=");
    assert_eq!(x["tokens"]["refresh_token"], "", "{msg}");
    // the tokens the container ends with are airlock's later refreshes
    for (mock, at, first) in [
        (
            &claude_mock,
            &c["claudeAiOauth"]["accessToken"],
            &cl.access_token,
        ),
        (&codex_mock, &x["tokens"]["access_token"], &cx.access_token),
    ] {
        let at = at.as_str().unwrap();
        assert_ne!(at, first);
        assert!(mock.issued_secrets().iter().any(|s| s == at));
        assert!(mock.refreshes() >= 2, "{msg}");
        assert_eq!(mock.reuse_errors() + mock.unknown_errors(), 0);
        assert!(mock.requests().iter().all(|r| r.sent_by_airlock()));
    }
    // the canary: no refresh token anywhere the sandbox or a log can see
    assert!(!stdout.contains("LEAK"), "{msg}");
    assert!(
        hits.is_empty(),
        "refresh token in a command line: {:?}",
        hits.first()
    );
    assert!(inspect.contains("airlock.sandbox"), "{inspect}");
    assert!(
        !inspect.contains("rt_mock_"),
        "refresh token in {engine} inspect"
    );
    let daemon_log =
        std::fs::read_to_string(ctx.state_dir.join("sync/daemon.log")).unwrap_or_default();
    assert!(daemon_log.contains("refreshed"), "{daemon_log}");
    for (what, text) in [
        ("airlock run -vvv", &stderr),
        ("the watcher's log", &daemon_log),
    ] {
        assert!(!text.contains("rt_mock_"), "refresh token in {what}");
        for s in claude_mock
            .issued_secrets()
            .into_iter()
            .chain(codex_mock.issued_secrets())
        {
            assert!(!text.contains(&s), "a token in {what}");
        }
    }
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

#[test]
fn docker_broker_mode_keeps_the_refresh_token_on_the_host() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        broker_canary("docker");
    }
}

#[test]
fn podman_broker_mode_keeps_the_refresh_token_on_the_host() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        broker_canary("podman");
    }
}
