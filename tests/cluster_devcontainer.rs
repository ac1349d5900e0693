//! `airlock devcontainer`: merged into a real devcontainer.json, the Dev
//! Containers CLI (`@devcontainers/cli` from npm) starts a container of the
//! test image whose genuine Claude Code CLI is logged in through
//! `devcontainer exec`, with no secret in devcontainer.json or `docker
//! inspect`.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::CANARY;

/// The Dev Containers CLI: `AIRLOCK_TEST_DEVCONTAINER`, or the copy
/// scripts/install-test-deps.sh installs under the test state directory.
fn devcontainer_cli() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AIRLOCK_TEST_DEVCONTAINER") {
        return Some(PathBuf::from(p));
    }
    let state = std::env::var_os("AIRLOCK_TEST_STATE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/airlock-test"))
        })?;
    std::fs::read_dir(state.join("npm-devcontainers"))
        .ok()?
        .flatten()
        .map(|e| e.path().join("node_modules/.bin/devcontainer"))
        .find(|p| p.is_file())
}

/// Runs the Dev Containers CLI `args[0] --workspace-folder ws args[1..]`
/// with `ctx`'s environment and this build's airlock first on the PATH (its
/// initializeCommand runs airlock from there).
fn dc_cli(cli: &Path, ctx: &common::TestContext, ws: &Path, args: &[&str]) -> std::process::Output {
    let airlock = PathBuf::from(env!("CARGO_BIN_EXE_airlock"));
    let base = ctx.cmd();
    let mut c = Command::new(cli);
    c.env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    let path = format!(
        "{}:{}",
        airlock.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.env("PATH", path)
        .arg(args[0])
        .arg("--workspace-folder")
        .arg(ws)
        .args(&args[1..]);
    c.output().unwrap()
}

/// The Dev Containers CLI when real engines are required and it is
/// installed (in CI it must be); `None`: skip the test.
fn real_cli() -> Option<PathBuf> {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return None;
    }
    let cli = devcontainer_cli();
    if cli.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the Dev Containers CLI is missing in CI (scripts/install-test-deps.sh)"
        );
        eprintln!("skipping: @devcontainers/cli is not installed");
    }
    cli
}

/// A project folder `ws` under `ctx` whose devcontainer.json (returned)
/// names the user test image, without a UID update (no derived image).
fn workspace(ctx: &common::TestContext) -> (PathBuf, PathBuf) {
    workspace_with(ctx, "")
}

/// [`workspace`] with `more` (JSONC members, each line ending in a comma)
/// first in devcontainer.json.
fn workspace_with(ctx: &common::TestContext, more: &str) -> (PathBuf, PathBuf) {
    let ws = ctx.root.path().join("ws");
    std::fs::create_dir_all(ws.join(".devcontainer")).unwrap();
    let config = ws.join(".devcontainer/devcontainer.json");
    std::fs::write(
        &config,
        format!(
            "{{\n{more}  \"image\": \"{}\",\n  \"updateRemoteUserUID\": false\n}}\n",
            common::user_image()
        ),
    )
    .unwrap();
    (ws, config)
}

/// The container id `devcontainer up` reports.
fn container_id(up: &std::process::Output) -> Option<String> {
    String::from_utf8_lossy(&up.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["containerId"].as_str().map(str::to_owned))
}

#[test]
fn devcontainer_up_and_exec_are_logged_in_without_a_secret_in_the_config() {
    let Some(cli) = real_cli() else {
        return;
    };
    let ctx = common::tmpfs_context("docker", "dc");
    common::claude_secret_file(&ctx, "dc");
    let (ws, config) = workspace_with(
        &ctx,
        "  // the project's own comment\n  \"runArgs\": [\"--network=none\"],\n",
    );
    common::ok(
        &ctx.cmd()
            .args([
                "devcontainer",
                "--agent",
                "claude",
                "--write",
                "--workspace",
            ])
            .arg(&ws)
            .output()
            .unwrap(),
    );
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(
        written.contains("// the project's own comment"),
        "{written}"
    );
    assert!(written.contains("\"--network=none\""), "{written}");
    assert!(
        !written.contains(CANARY) && !written.contains("sk-ant"),
        "{written}"
    );

    // (updateRemoteUserUID off: no derived image is built and left behind.)
    // The Dev Containers CLI runs airlock (initializeCommand) from PATH with
    // the same environment as `ctx.cmd()`.
    let dc = |args: &[&str]| dc_cli(&cli, &ctx, &ws, args);
    let up = dc(&["up"]);
    let up_out = String::from_utf8_lossy(&up.stdout).to_string();
    let id = container_id(&up);
    let exec = dc(&["exec", "claude", "auth", "status"]);
    // A new token, refreshed on the host (what the initializeCommand runs):
    // the running container's exec sessions get it at once.
    common::claude_secret_file(&ctx, "dc2");
    let refresh = ctx
        .cmd()
        .args([
            "devcontainer",
            "--refresh",
            "--agent",
            "claude",
            "--workspace",
        ])
        .arg(&ws)
        .output()
        .unwrap();
    let seen = dc(&[
        "exec",
        "sh",
        "-c",
        ". /run/airlock/env && printf %s \"$CLAUDE_CODE_OAUTH_TOKEN\" | sha256sum",
    ]);
    let inspect = id.as_ref().map(|id| {
        Command::new("docker")
            .args(["inspect", id])
            .output()
            .unwrap()
    });
    if let Some(id) = &id {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
    assert!(
        up.status.success() && id.is_some(),
        "{up_out}\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let out = String::from_utf8_lossy(&exec.stdout);
    assert!(
        exec.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["loggedIn"], true, "{out}");
    assert_eq!(status["authMethod"], "oauth_token", "{out}");
    let inspect = String::from_utf8_lossy(&inspect.unwrap().stdout).to_string();
    assert!(inspect.contains("/run/airlock-in"), "the mount is there");
    assert!(!inspect.contains(CANARY), "the canary is in docker inspect");
    for o in [&up, &exec] {
        assert!(!String::from_utf8_lossy(&o.stderr).contains(CANARY));
    }
    common::ok(&refresh);
    let want = {
        use sha2::Digest as _;
        let token = std::fs::read_to_string(ctx.root.path().join("claude-token")).unwrap();
        assert!(token.contains("-dc2-"));
        let h = sha2::Sha256::digest(token.as_bytes());
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let seen = String::from_utf8_lossy(&seen.stdout);
    assert!(
        seen.starts_with(&want),
        "the refreshed token did not reach the container: {seen}"
    );
    // Writing again changes nothing.
    common::ok(
        &ctx.cmd()
            .args([
                "devcontainer",
                "--agent",
                "claude",
                "--write",
                "--workspace",
            ])
            .arg(&ws)
            .output()
            .unwrap(),
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// Without --write the keys are printed (no secret among them); bad input
/// is refused with exit code 2 and leaves devcontainer.json as it was.
#[test]
fn printed_keys_hold_no_secret_and_conflicts_are_refused() {
    let ctx = common::TestContext::new();
    common::claude_secret_file(&ctx, "dcp");
    let ws = ctx.root.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let dc = |extra: &[&str]| {
        ctx.cmd()
            .args([
                "devcontainer",
                "--agent",
                "claude",
                "--engine",
                "docker",
                "--workspace",
            ])
            .arg(&ws)
            .args(extra)
            .output()
            .unwrap()
    };
    let printed = common::ok(&dc(&[]));
    let keys: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert!(
        !printed.contains(CANARY) && !printed.contains("sk-ant"),
        "{printed}"
    );
    assert_eq!(
        keys["remoteEnv"]["PATH"],
        "/run/airlock/exec:${containerEnv:PATH}"
    );
    assert_eq!(keys["initializeCommand"][2], "--refresh");
    let mount = keys["runArgs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .find(|a| a.starts_with("--mount="))
        .unwrap()
        .to_owned();
    assert!(mount.ends_with(",dst=/run/airlock-in,readonly"), "{mount}");
    // the mount's source is the stable per-project link, to a 0700 directory
    let src = mount
        .trim_start_matches("--mount=type=bind,src=")
        .split(",dst=")
        .next()
        .unwrap();
    let meta = std::fs::metadata(src).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert!(
        std::fs::symlink_metadata(src)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // --write without a devcontainer.json
    let out = dc(&["--write"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!ws.join(".devcontainer.json").exists());
    // --write with a postStartCommand of the project's own
    let f = ws.join(".devcontainer.json");
    let text = "{ \"image\": \"x\", \"postStartCommand\": \"npm ci\" }\n";
    std::fs::write(&f, text).unwrap();
    let out = dc(&["--write"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("postStartCommand"), "{err}");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), text);
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// The exec helper, without airlock's alias wrappers (`--no-aliases`):
/// the wrapper for an agent found on the PATH loads `/run/airlock/env` and
/// runs the real command, never itself (busybox image, no network).
#[test]
fn exec_helper_wraps_the_real_command() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let script = airlock::cluster::devcontainer::exec_helper(&["fakeagent".to_owned()]);
    let setup = "mkdir -p /tmp/bin /run/airlock/exec && \
        printf '#!/bin/sh\\necho real \"$@\" \"$FROM_ENV\"\\n' > /tmp/bin/fakeagent && chmod 755 /tmp/bin/fakeagent && \
        printf 'FROM_ENV=loaded; export FROM_ENV\\n' > /run/airlock/env && \
        printf '#!/bin/sh\\necho stale\\n' > /run/airlock/exec/fakeagent && chmod 700 /run/airlock/exec/fakeagent && \
        printf '%s' \"$HELPER\" > /tmp/h.sh && sh /tmp/h.sh && fakeagent hi";
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--tmpfs",
            "/run/airlock:exec",
        ])
        .args([
            "-e",
            "PATH=/run/airlock/exec:/tmp/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ])
        .arg("-e")
        .arg(format!("HELPER={script}"))
        .arg(common::busybox())
        .args(["sh", "-c", setup])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "real hi loaded\n");
}

/// `--rotation proxy`: the Dev Container holds a placeholder only; the
/// genuine `claude -p` run with `devcontainer exec` answers from a TLS mock
/// through the host's proxy, which alone sent the real token; the grant is
/// registered before the container exists and forgotten once it is gone.
#[test]
fn devcontainer_in_proxy_mode_answers_through_the_proxy() {
    let Some(cli) = real_cli() else {
        return;
    };
    let mock = mock_upstream::MockUpstream::start();
    let token = format!("sk-ant-oat01-{CANARY}-dcproxy-{}", "0123456789".repeat(6));
    let mut ctx = common::tmpfs_context("docker", "dcproxy");
    common::claude_token_behind_proxy(&mut ctx, &mock.origin(), &mock.ca_pem, &token);
    // for the Codex session below (read by the proxy when it starts)
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_CODEX", &mock.origin());
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_GEMINI_SESSION", &mock.origin());
    let (ws, config) = workspace(&ctx);
    let write = || {
        ctx.cmd()
            .args([
                "devcontainer",
                "--rotation",
                "proxy",
                "--agent",
                "claude",
                "--write",
                "--workspace",
            ])
            .arg(&ws)
            .output()
            .unwrap()
    };
    common::ok(&write());
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(
        written.contains("\"--add-host=host.docker.internal:host-gateway\"")
            && written.contains("\"--label=airlock.sandbox=dc-ws-"),
        "{written}"
    );
    assert!(
        !written.contains(CANARY)
            && !written.contains("sk-ant")
            && !written.contains("ANTHROPIC_BASE_URL"),
        "{written}"
    );
    let layout = airlock::proxy::registry::Layout {
        dir: ctx.state_dir.join("proxy"),
    };
    let grants = airlock::proxy::registry::load(&layout).unwrap();
    assert_eq!(grants.len(), 1, "registered before the container exists");
    assert!(grants[0].sandbox.starts_with("dc-ws-"));
    // Writing again changes nothing in devcontainer.json.
    common::ok(&write());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);

    let up = dc_cli(&cli, &ctx, &ws, &["up"]);
    let id = container_id(&up);
    let answer = dc_cli(
        &cli,
        &ctx,
        &ws,
        &[
            "exec",
            "sh",
            "-c",
            "(. /run/airlock/env; env | grep -c sk-ant-oat01-airlock-); claude -p hi",
        ],
    );
    let inspect = id.as_ref().map(|id| {
        Command::new("docker")
            .args(["inspect", id])
            .output()
            .unwrap()
    });
    if let Some(id) = &id {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
    let stdout = String::from_utf8_lossy(&answer.stdout).to_string();
    let stderr = String::from_utf8_lossy(&answer.stderr).to_string();
    assert!(
        up.status.success() && id.is_some(),
        "{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(answer.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(mock_upstream::REPLY), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("1\n"),
        "the exec session holds the placeholder: {stdout}"
    );
    for o in [&up, &answer] {
        assert!(!String::from_utf8_lossy(&o.stdout).contains(CANARY));
        assert!(!String::from_utf8_lossy(&o.stderr).contains(CANARY));
    }
    let inspect = String::from_utf8_lossy(&inspect.unwrap().stdout).to_string();
    assert!(inspect.contains("host.docker.internal:host-gateway"));
    assert!(!inspect.contains(CANARY) && !inspect.contains("sk-ant-oat01-airlock-"));
    mock.assert_messages_carried(&token);
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let start = std::time::Instant::now();
        while !f() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "{what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait("the proxy forgets the removed container's grant", &|| {
        airlock::proxy::registry::load(&layout).unwrap().is_empty()
    });

    // Login sessions (Claude's, Codex's ChatGPT one over TLS to the proxy,
    // Gemini's Google one) stay on the host: the next start (its initializeCommand)
    // registers them with the watcher, the proxy sends their access
    // tokens, and they are handed back once the container is gone.
    let access = format!("sk-ant-oat01-{CANARY}-dcproxy-access");
    common::store_session(
        &ctx,
        "claude",
        &common::claude_session(&access, &format!("sk-ant-ort01-{CANARY}-dcproxy-refresh")),
    );
    let codex_access = format!("{CANARY}-dcproxy-codexaccess");
    common::store_session(
        &ctx,
        "codex",
        &common::codex_session(&codex_access, "acc-dc"),
    );
    let gemini_access = format!("ya29.{CANARY}-dcproxy-geminiaccess");
    common::store_session(&ctx, "gemini", &common::gemini_session(&gemini_access));
    common::ok(
        &ctx.cmd()
            .args(["devcontainer", "--rotation", "proxy", "--agent", "claude"])
            .args([
                "--agent",
                "codex",
                "--agent",
                "gemini",
                "--write",
                "--workspace",
            ])
            .arg(&ws)
            .output()
            .unwrap(),
    );
    let before = mock.seen().len();
    let up = dc_cli(&cli, &ctx, &ws, &["up"]);
    let id = container_id(&up);
    let script = common::three_agents_script();
    let answer = dc_cli(&cli, &ctx, &ws, &["exec", "sh", "-c", &script]);
    let sync = airlock::sync::Layout {
        state: ctx.state_dir.join("sync"),
        runtime: ctx.runtime_dir.join("sync"),
    };
    let regs = airlock::sync::list_sandboxes(&sync).unwrap();
    if let Some(id) = &id {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
    let stdout = String::from_utf8_lossy(&answer.stdout).to_string();
    assert!(
        up.status.success() && id.is_some(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(
        stdout.contains(mock_upstream::REPLY),
        "{stdout}\n{}",
        String::from_utf8_lossy(&answer.stderr)
    );
    assert_eq!(regs.len(), 3, "{regs:?}");
    common::assert_line_answered(&answer, "codex", mock_upstream::REPLY);
    mock.assert_codex_session_carried(&codex_access, "acc-dc");
    common::assert_line_answered(&answer, "gemini", mock_upstream::REPLY);
    mock.assert_gemini_session_carried(&gemini_access);
    mock.assert_messages_since(before, &access);
    wait(
        "the session handed back once the container is gone",
        &|| airlock::sync::list_sandboxes(&sync).unwrap().is_empty(),
    );
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// `--rotation proxy` for Codex and Gemini (API keys): one Dev Container,
/// in which the genuine `codex exec` and `gemini -p`, run with `devcontainer
/// exec` (through airlock's exec wrappers), answer from the TLS mock through
/// the host's proxy; the mock saw the real keys, devcontainer.json and
/// `docker inspect` hold neither.
#[test]
fn devcontainer_in_proxy_mode_serves_codex_and_gemini() {
    let Some(cli) = real_cli() else {
        return;
    };
    let mock = mock_upstream::MockUpstream::start();
    let mut ctx = common::tmpfs_context("docker", "dccg");
    let (codex, gemini) =
        common::codex_and_gemini_keys_behind_proxy(&mut ctx, "dc", (&mock.origin(), &mock.ca_pem));
    let (ws, config) = workspace(&ctx);
    common::ok(
        &ctx.cmd()
            .args(["devcontainer", "--rotation", "proxy"])
            .args([
                "--agent",
                "codex",
                "--agent",
                "gemini",
                "--write",
                "--workspace",
            ])
            .arg(&ws)
            .output()
            .unwrap(),
    );
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(!written.contains(CANARY), "{written}");
    let up = dc_cli(&cli, &ctx, &ws, &["up"]);
    let id = container_id(&up);
    let script = common::codex_and_gemini_script();
    let answered = dc_cli(&cli, &ctx, &ws, &["exec", "sh", "-c", &script]);
    let inspect = id.as_ref().map(|id| {
        Command::new("docker")
            .args(["inspect", id])
            .output()
            .unwrap()
    });
    if let Some(id) = &id {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
    assert!(
        up.status.success() && id.is_some(),
        "{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    common::assert_codex_and_gemini_answered(&answered, mock_upstream::REPLY);
    let inspect = String::from_utf8_lossy(&inspect.unwrap().stdout).to_string();
    assert!(!inspect.contains(CANARY), "a key in docker inspect");
    mock.assert_codex_and_gemini_carried(&codex, &gemini);
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}
