//! `airlock run` with rotating sessions (`--rotation sync`, the default):
//! a refresh inside the sandbox (temp file + rename, as Claude writes) goes
//! back to the vault record or the host's file, unknown keys kept; two
//! detached sandboxes of one account see each other's refresh; `status
//! --json` lists them while they run; the watcher exits after the last one.
//!
//! Gated by AIRLOCK_TEST_DOCKER=1 / AIRLOCK_TEST_PODMAN=1.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    CANARY, TestContext, busybox, ok, require_real, root_image, store_session, user_image,
    wait_until,
};

fn context(engine: &str) -> TestContext {
    common::tmpfs_context(engine, "sync")
}
use serde_json::{Value, json};

/// A Claude session document; `rt` tells generations apart.
fn session(rt: &str, expires_ms: i64) -> String {
    json!({
        "claudeAiOauth": {
            "accessToken": format!("sk-ant-oat01-{CANARY}-{rt}"),
            "refreshToken": format!("sk-ant-ort01-{CANARY}-{rt}"),
            "expiresAt": expires_ms,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max"
        },
        "mcpOAuth": { "kept": true }
    })
    .to_string()
}

const LATER: i64 = 4_102_444_800_000; // 2100-01-01
const LATER2: i64 = LATER + 3_600_000;

fn store(ctx: &TestContext, doc: &str) {
    store_session(ctx, "claude", doc);
}

/// A shell line that rewrites the shared credential file the way Claude
/// does: a temp file in the same directory, then rename.
fn refresh_script(doc: &str) -> String {
    format!(
        "d=${{CLAUDE_SECURESTORAGE_CONFIG_DIR:?}}; printf '%s' '{doc}' > \"$d/.credentials.json.tmp.1\" && mv \"$d/.credentials.json.tmp.1\" \"$d/.credentials.json\""
    )
}

/// What the vault holds now, seen from a `--rotation copy` sandbox (which
/// gets the whole stored document).
fn stored(ctx: &TestContext, image: &str) -> Value {
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "claude",
            "--rotation",
            "copy",
            "--",
            "--rm",
            "--network",
            "none",
            image,
            "sh",
            "-c",
            "cat \"$CLAUDE_CONFIG_DIR/.credentials.json\"",
        ])
        .output()
        .unwrap();
    serde_json::from_str(&ok(&out)).unwrap()
}

fn status_sync(ctx: &TestContext) -> Value {
    let out = ctx.cmd().args(["status", "--json"]).output().unwrap();
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    v["sync"].clone()
}

fn shared_dirs(rt: &Path) -> usize {
    std::fs::read_dir(rt.join("sync"))
        .map(|r| r.flatten().filter(|e| e.path().is_dir()).count())
        .unwrap_or(0)
}

/// Vault truth: a foreground sandbox's refresh reaches the vault, unknown
/// keys kept, and the shared directory is gone after the exit.
fn foreground_refresh_reaches_the_vault(engine: &str, image: &str) {
    let ctx = context(engine);
    store(&ctx, &session("v1", LATER));
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "claude",
            "--",
            "--rm",
            "--network",
            "none",
        ])
        .arg(image)
        .args([
            "sh",
            "-c",
            &format!(
                "test -z \"$(ls /run/airlock/claude/.credentials.json 2>/dev/null)\" && {}",
                refresh_script(&session("v2", LATER2))
            ),
        ])
        .output()
        .unwrap();
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(CANARY), "{stderr}");
    assert_eq!(shared_dirs(&ctx.runtime_dir), 0, "shared dir removed");
    let v = stored(&ctx, image);
    assert_eq!(
        v["claudeAiOauth"]["refreshToken"],
        format!("sk-ant-ort01-{CANARY}-v2")
    );
    assert_eq!(v["claudeAiOauth"]["expiresAt"], LATER2);
    assert_eq!(v["mcpOAuth"]["kept"], true, "unknown keys kept: {v}");
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// Host-file truth: the refresh lands in the host's own file.
fn foreground_refresh_reaches_the_host_file(engine: &str) {
    let ctx = context(engine);
    let host = ctx.home.join(".claude/.credentials.json");
    std::fs::create_dir_all(host.parent().unwrap()).unwrap();
    std::fs::write(&host, session("h1", LATER)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "claude",
            "--",
            "--rm",
            "--network",
            "none",
        ])
        .arg(busybox())
        .args(["sh", "-c", &refresh_script(&session("h2", LATER2))])
        .output()
        .unwrap();
    ok(&out);
    let v: Value = serde_json::from_slice(&std::fs::read(&host).unwrap()).unwrap();
    assert_eq!(
        v["claudeAiOauth"]["refreshToken"],
        format!("sk-ant-ort01-{CANARY}-h2")
    );
    assert_eq!(v["mcpOAuth"]["kept"], true, "unknown keys kept: {v}");
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// Two detached sandboxes of one account: A refreshes, B sees it; status
/// lists both while they run; after both exit the vault holds the refresh
/// and the watcher is gone.
fn two_detached_sandboxes_share_a_refresh(engine: &str) {
    let ctx = context(engine);
    store(&ctx, &session("d1", LATER));
    let start = |script: &str, rm: bool| {
        let out = ctx
            .cmd()
            .args(["run", "--agent", "claude", "--", "-d", "--network", "none"])
            .args(rm.then_some("--rm"))
            .arg(busybox())
            .args(["sh", "-c", script])
            .output()
            .unwrap();
        ok(&out).trim().to_owned()
    };
    // B waits (up to 20 s) until it sees A's refresh, then exits 0 (3 if
    // it never does); its exit code is read through the engine.
    let want = format!("sk-ant-ort01-{CANARY}-d2");
    let b = start(
        &format!(
            "i=0; until grep -q {want} \"$CLAUDE_SECURESTORAGE_CONFIG_DIR/.credentials.json\"; do i=$((i+1)); [ $i -gt 100 ] && exit 3; sleep 0.2; done; sleep 2"
        ),
        false,
    );
    start(
        &format!(
            "sleep 1; {}; sleep 4",
            refresh_script(&session("d2", LATER2))
        ),
        true,
    );
    let s = status_sync(&ctx);
    assert_eq!(s["sandboxes"].as_array().unwrap().len(), 2, "{s}");
    assert_eq!(s["sandboxes"][0]["account"], "default", "{s}");
    assert_eq!(s["watcher_running"], true, "{s}");
    assert_eq!(s["accounts"][0]["agent"], "claude", "{s}");
    let wait = std::process::Command::new(engine)
        .args(["wait", &b])
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&wait.stdout).trim().to_owned();
    let _ = std::process::Command::new(engine)
        .args(["rm", "-f", &b])
        .output();
    assert_eq!(code, "0", "B did not see A's refresh");
    wait_until(
        "both sandboxes to unregister",
        Duration::from_secs(60),
        || {
            status_sync(&ctx)["sandboxes"]
                .as_array()
                .is_some_and(Vec::is_empty)
        },
    );
    wait_until("the watcher to exit", Duration::from_secs(30), || {
        status_sync(&ctx)["watcher_running"] == false
    });
    assert_eq!(shared_dirs(&ctx.runtime_dir), 0, "shared dir removed");
    let v = stored(&ctx, &busybox());
    assert_eq!(v["claudeAiOauth"]["refreshToken"], want);
    assert_eq!(v["mcpOAuth"]["kept"], true, "{v}");
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

#[test]
fn docker_run_syncs_a_refresh_to_the_vault() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        foreground_refresh_reaches_the_vault("docker", &busybox());
        foreground_refresh_reaches_the_vault("docker", &user_image());
    }
}

#[test]
fn docker_run_syncs_a_refresh_to_the_host_file() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        foreground_refresh_reaches_the_host_file("docker");
    }
}

#[test]
fn docker_detached_sandboxes_share_refreshes() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        two_detached_sandboxes_share_a_refresh("docker");
    }
}

#[test]
fn podman_run_syncs_a_refresh_to_the_vault() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        foreground_refresh_reaches_the_vault("podman", &user_image());
    }
}

#[test]
fn podman_detached_sandboxes_share_refreshes() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        two_detached_sandboxes_share_a_refresh("podman");
    }
}

fn b64url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// A Codex ChatGPT `auth.json` whose access token expires at `exp` (s).
fn codex_session(rt: &str, exp: i64) -> String {
    let claims = json!({
        "email": "fake@example.com",
        "exp": exp,
        "https://api.openai.com/auth": {"chatgpt_plan_type": "plus", "chatgpt_account_id": "acct-fake"},
    });
    let jwt = format!(
        "{}.{}.{}",
        b64url(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64url(&claims.to_string()),
        b64url(CANARY)
    );
    json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {"id_token": jwt, "access_token": jwt,
                   "refresh_token": format!("rt-{CANARY}-{rt}"), "account_id": "acct-fake"},
        "last_refresh": "2026-11-22T00:00:00Z",
        "unknown_key": "kept",
    })
    .to_string()
}

/// Codex: the shared directory is `CODEX_HOME`; the genuine CLI is logged
/// in from it, the shim's `config.toml` is there, and a rewrite of
/// `auth.json` reaches the vault.
fn codex_session_is_synced(engine: &str) {
    let ctx = context(engine);
    let f = ctx.root.path().join("auth.json");
    std::fs::write(&f, codex_session("c1", LATER / 1000)).unwrap();
    ok(&ctx
        .cmd()
        .args(["auth", "codex", "--method", "session", "--from-file"])
        .arg(&f)
        .output()
        .unwrap());
    let newer = codex_session("c2", LATER2 / 1000);
    let out = ctx
        .cmd()
        .args(["run", "--agent", "codex", "--", "--rm", "--network", "none"])
        .arg(user_image())
        .args([
            "sh",
            "-c",
            &format!(
                "codex login status 2>&1; grep -q trusted \"$CODEX_HOME/config.toml\" && echo config-ok; printf '%s' '{newer}' > \"$CODEX_HOME/.auth-x\" && mv \"$CODEX_HOME/.auth-x\" \"$CODEX_HOME/auth.json\""
            ),
        ])
        .output()
        .unwrap();
    let stdout = ok(&out);
    assert!(stdout.contains("Logged in using ChatGPT"), "{stdout}");
    assert!(stdout.contains("config-ok"), "{stdout}");
    // What the vault holds now, seen through a copy-mode sandbox.
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "codex",
            "--rotation",
            "copy",
            "--",
            "--rm",
            "--network",
            "none",
        ])
        .arg(busybox())
        .args(["sh", "-c", "cat \"$CODEX_HOME/auth.json\""])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["tokens"]["refresh_token"], format!("rt-{CANARY}-c2"));
    assert_eq!(v["unknown_key"], "kept", "{v}");
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

#[test]
fn docker_codex_session_is_synced() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        codex_session_is_synced("docker");
    }
}

#[test]
fn podman_codex_session_is_synced() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        codex_session_is_synced("podman");
    }
}

/// `docker-flags --mode env` refuses `--rotation sync`; `copy`
/// warns about the host login.
#[test]
fn sync_is_refused_without_a_waiter_and_copy_warns() {
    let ctx = TestContext::new();
    store(&ctx, &session("f1", LATER));
    let out = ctx
        .cmd()
        .args([
            "docker-flags",
            "--mode",
            "env",
            "--agent",
            "claude",
            "--rotation",
            "sync",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rotation sync needs"));
    let out = ctx
        .cmd()
        .args([
            "docker-flags",
            "--mode",
            "env",
            "--agent",
            "claude",
            "--rotation",
            "copy",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the host's login included"), "{stderr}");
}

/// The configured default rotation (`[sync] rotation`, `AIRLOCK_ROTATION`)
/// applies where no `--rotation` flag says and the command can deliver it;
/// a bad value stops with exit 2 naming where it came from.
#[test]
fn the_configured_rotation_is_the_default_where_it_can_be_delivered() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let ctx = context("docker");
    store(&ctx, &session("cfg1", LATER));
    std::fs::create_dir_all(&ctx.config_dir).unwrap();
    let flags = |mode: &str, env: Option<&str>, flag: Option<&str>| {
        let mut c = ctx.cmd();
        c.args(["docker-flags", "--mode", mode, "--agent", "claude"]);
        if mode == "files" {
            c.arg("--image").arg(busybox());
        }
        if let Some(f) = flag {
            c.args(["--rotation", f]);
        }
        if let Some(v) = env {
            c.env("AIRLOCK_ROTATION", v);
        }
        c.output().unwrap()
    };
    let copy_warning = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stderr).contains("the host's login included")
    };
    // the config file says copy: the whole session, with its warning
    std::fs::write(
        ctx.config_dir.join("config.toml"),
        "[sync]\nrotation = \"copy\"\n",
    )
    .unwrap();
    let out = flags("files", None, None);
    assert!(out.status.success(), "{out:?}");
    assert!(copy_warning(&out), "{out:?}");
    // the environment wins over the file
    let out = flags("files", Some("access-only"), None);
    assert!(out.status.success(), "{out:?}");
    assert!(!copy_warning(&out), "{out:?}");
    // the flag wins over both
    let out = flags("files", Some("copy"), Some("access-only"));
    assert!(out.status.success(), "{out:?}");
    assert!(!copy_warning(&out), "{out:?}");
    // a mode this command cannot deliver (env mode has no waiter) is no
    // error here: it keeps its own default, as `--rotation sync` would not
    let out = flags("env", Some("sync"), None);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("needs a process"),
        "{out:?}"
    );
    let out = flags("env", None, Some("sync"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a process"));
    // bad values say where they came from
    let out = flags("files", Some("sideways"), None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("AIRLOCK_ROTATION"));
    std::fs::write(
        ctx.config_dir.join("config.toml"),
        "[sync]\nrotation = \"sideways\"\n",
    )
    .unwrap();
    let out = flags("files", None, None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("[sync] rotation"));
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// `docker run $(airlock docker-flags --rotation sync …)`: the waiter holds
/// the registration and hands the refresh back after the exit.
fn docker_flags_sync(engine: &str) {
    let ctx = context(engine);
    store(&ctx, &session("g1", LATER));
    let out = ctx
        .cmd()
        .args([
            "docker-flags",
            "--agent",
            "claude",
            "--rotation",
            "sync",
            "--image",
        ])
        .arg(busybox())
        .output()
        .unwrap();
    let flags = ok(&out);
    assert!(flags.contains("/run/airlock/claude-session"), "{flags}");
    assert!(!flags.contains(CANARY), "{flags}");
    let words: Vec<String> = flags
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_owned())
        .collect();
    let run = std::process::Command::new(engine)
        .args(["run", "--rm", "--network", "none"])
        .args(&words)
        .arg(busybox())
        .args(["sh", "-c", &refresh_script(&session("g2", LATER2))])
        .env(
            "CONTAINERS_CONF",
            std::env::var_os("CONTAINERS_CONF").unwrap_or_default(),
        )
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    wait_until("the waiter to hand back", Duration::from_secs(60), || {
        status_sync(&ctx)["sandboxes"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    let v = stored(&ctx, &busybox());
    assert_eq!(
        v["claudeAiOauth"]["refreshToken"],
        format!("sk-ant-ort01-{CANARY}-g2")
    );
    assert_eq!(v["mcpOAuth"]["kept"], true, "{v}");
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

#[test]
fn docker_flags_sync_on_docker() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        docker_flags_sync("docker");
    }
}

/// `docker-compose -f compose.yml -f <(airlock compose --rotation sync …)
/// up`: a refresh written in the service's container reaches the vault after
/// the exit; `down` leaves no registration, shared or sandbox directory.
fn compose_sync() {
    let Some(compose) = common::compose_command() else {
        return;
    };
    let ctx = context("docker");
    store(&ctx, &session("c1", LATER));
    let dir = ctx.root.path();
    // Compose interpolates `$` in the file: the script's own go as `$$`.
    let command = serde_json::to_string(&[
        "sh".to_owned(),
        "-c".to_owned(),
        format!(
            "test ! -e /run/airlock/claude/.credentials.json && grep -q c1 \"$CLAUDE_SECURESTORAGE_CONFIG_DIR/.credentials.json\" && {}",
            refresh_script(&session("c2", LATER2))
        )
        .replace('$', "$$"),
    ])
    .unwrap();
    std::fs::write(
        dir.join("compose.yml"),
        format!(
            "services:\n  dev:\n    image: {:?}\n    network_mode: none\n    command: {command}\n",
            root_image()
        ),
    )
    .unwrap();
    let out = ctx
        .cmd()
        .args([
            "compose",
            "--service",
            "dev",
            "--agent",
            "claude",
            "--rotation",
            "sync",
            "--image",
        ])
        .arg(root_image())
        .output()
        .unwrap();
    let yaml = ok(&out);
    assert!(!yaml.contains(CANARY), "{yaml}");
    assert!(
        yaml.contains("target: \"/run/airlock/claude-session\"\n        read_only: false"),
        "{yaml}"
    );
    assert_eq!(shared_dirs(&ctx.runtime_dir), 1);
    let registered = status_sync(&ctx);
    assert_eq!(
        registered["sandboxes"].as_array().map(Vec::len),
        Some(1),
        "{registered}"
    );
    std::fs::write(dir.join("override.yml"), &yaml).unwrap();
    let project = format!("airlocksync{}", std::process::id());
    let base = |c: &mut std::process::Command| {
        c.args(&compose[1..])
            .args(["-p", &project, "-f"])
            .arg(dir.join("compose.yml"))
            .arg("-f")
            .arg(dir.join("override.yml"));
    };
    let mut up = std::process::Command::new(compose[0]);
    base(&mut up);
    let up = up
        .args([
            "up",
            "--abort-on-container-exit",
            "--exit-code-from",
            "dev",
            "--no-color",
        ])
        .output()
        .unwrap();
    let mut down = std::process::Command::new(compose[0]);
    base(&mut down);
    let down = down.arg("down").output().unwrap();
    for o in [&up, &down] {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!text.contains(CANARY), "{text}");
    }
    assert!(up.status.success(), "{yaml}\n{up:?}");
    wait_until("the waiter to hand back", Duration::from_secs(60), || {
        status_sync(&ctx)["sandboxes"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    assert_eq!(shared_dirs(&ctx.runtime_dir), 0);
    let sandboxes = std::fs::read_dir(ctx.runtime_dir.join("sandboxes"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(sandboxes, 0, "the sandbox directory is left");
    let v = stored(&ctx, &busybox());
    assert_eq!(
        v["claudeAiOauth"]["refreshToken"],
        format!("sk-ant-ort01-{CANARY}-c2")
    );
    assert_eq!(v["claudeAiOauth"]["expiresAt"], LATER2, "{v}");
    assert_eq!(v["mcpOAuth"]["kept"], true, "{v}");
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

#[test]
fn docker_compose_sync() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        compose_sync();
    }
}

/// `airlock auth` replacing a session while a sandbox of the account runs:
/// the watcher hands the new login to the sandbox (`sync::kick`).
#[test]
fn docker_a_new_login_reaches_a_running_sandbox() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let ctx = context("docker");
    store(&ctx, &session("k1", LATER));
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "claude",
            "--",
            "-d",
            "--rm",
            "--network",
            "none",
        ])
        .arg(busybox())
        .args(["sleep", "8"])
        .output()
        .unwrap();
    let c = ok(&out).trim().to_owned();
    store(&ctx, &session("k2", LATER2));
    let want = format!("sk-ant-ort01-{CANARY}-k2");
    wait_until(
        "the new login in the sandbox",
        Duration::from_secs(10),
        || {
            let o = std::process::Command::new("docker")
                .args([
                    "exec",
                    &c,
                    "cat",
                    "/run/airlock/claude-session/.credentials.json",
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).contains(&want)
        },
    );
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", &c])
        .output();
    wait_until("the waiter to hand back", Duration::from_secs(60), || {
        status_sync(&ctx)["sandboxes"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// `--rotation broker`: refused where nothing stays with the container
/// (`docker-flags --mode env`) and when airlock's own refresh is off (the
/// sandboxes could never get a new access token).
#[test]
fn broker_is_refused_without_a_waiter_or_without_pre_refresh() {
    let mut ctx = TestContext::new();
    store(&ctx, &session("b1", LATER));
    let out = ctx
        .cmd()
        .args(["docker-flags", "--mode", "env", "--agent", "claude"])
        .args(["--rotation", "broker"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rotation broker needs a process"));
    ctx.set_env("AIRLOCK_SYNC_REFRESH", "off");
    let out = ctx
        .cmd()
        .args(["run", "--agent", "claude", "--rotation", "broker", "--"])
        .arg(busybox())
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pre-refresh is off"), "{stderr}");
    assert!(!stderr.contains(CANARY), "{stderr}");
}

/// `docker run $(airlock docker-flags --rotation broker …)`: the container
/// gets the access token only; what it writes never reaches the vault, and
/// the waiter hands nothing back but what the vault already holds.
fn docker_flags_broker(engine: &str) {
    let ctx = context(engine);
    store(&ctx, &session("h1", LATER));
    let out = ctx
        .cmd()
        .args(["docker-flags", "--agent", "claude", "--rotation", "broker"])
        .args(["--image"])
        .arg(busybox())
        .output()
        .unwrap();
    let flags = ok(&out);
    assert!(flags.contains("/run/airlock/claude-session"), "{flags}");
    assert!(!flags.contains(CANARY), "{flags}");
    let words: Vec<String> = flags
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_owned())
        .collect();
    let script = format!(
        "cat \"$CLAUDE_SECURESTORAGE_CONFIG_DIR/.credentials.json\"; echo; {}",
        refresh_script(&session("h2", LATER2))
    );
    let run = std::process::Command::new(engine)
        .args(["run", "--rm", "--network", "none"])
        .args(&words)
        .arg(busybox())
        .args(["sh", "-c", &script])
        .env(
            "CONTAINERS_CONF",
            std::env::var_os("CONTAINERS_CONF").unwrap_or_default(),
        )
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let seen: Value =
        serde_json::from_str(String::from_utf8_lossy(&run.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(seen["claudeAiOauth"]["refreshToken"], Value::Null);
    assert_eq!(
        seen["claudeAiOauth"]["accessToken"],
        format!("sk-ant-oat01-{CANARY}-h1")
    );
    wait_until("the waiter to hand back", Duration::from_secs(60), || {
        status_sync(&ctx)["sandboxes"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    // the sandbox's own session (with a refresh token) did not reach the vault
    let v = stored(&ctx, &busybox());
    assert_eq!(
        v["claudeAiOauth"]["refreshToken"],
        format!("sk-ant-ort01-{CANARY}-h1")
    );
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

#[test]
fn docker_flags_broker_on_docker() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        docker_flags_broker("docker");
    }
}
