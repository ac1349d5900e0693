//! `airlock status`, `accounts`, `remove`, `teardown` and `doctor` through
//! the real binary.
//!
//! Tests that store credentials across several commands need the
//! encrypted-file backend (the default in [`TestContext`]); the others use
//! the in-memory backend or need no vault at all.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::{CANARY, TestContext};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents")
        .join(rel)
}

fn put(ctx: &TestContext, rel: &str, fixture_rel: &str) -> PathBuf {
    let p = ctx.home.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::copy(fixture(fixture_rel), &p).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn run(ctx: &TestContext, args: &[&str]) -> Output {
    ctx.cmd().args(args).stdin(Stdio::null()).output().unwrap()
}

fn run_stdin(ctx: &TestContext, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = ctx
        .cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn no_leak(o: &Output) {
    assert!(
        !text(&o.stdout).contains(CANARY),
        "stdout leaks: {}",
        text(&o.stdout)
    );
    assert!(
        !text(&o.stderr).contains(CANARY),
        "stderr leaks: {}",
        text(&o.stderr)
    );
}

/// Filters for the table: the test's paths, then dates and relative times.
fn settings(ctx: &TestContext) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    for (re, rep) in ctx.filters() {
        s.add_filter(&re, &rep);
    }
    s.add_filter(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "[DATE]");
    s.add_filter(r"\((in )?\d+ (days|hours|minutes)( ago)?\)", "([RELATIVE])");
    s
}

fn memory(ctx: &mut TestContext) {
    ctx.set_env("AIRLOCK_KEYRING_BACKEND", "memory");
}

fn host_fixtures(ctx: &TestContext) {
    put(
        ctx,
        ".claude/.credentials.json",
        "claude/credentials-lapsed.json",
    );
    put(ctx, ".codex/auth.json", "codex/auth-chatgpt.json");
    let g = ctx.home.join(".gemini");
    std::fs::create_dir_all(&g).unwrap();
    std::fs::write(g.join("oauth_creds.json"), "").unwrap();
}

#[test]
fn status_lists_host_logins_not_stored() {
    let mut ctx = TestContext::new();
    memory(&mut ctx);
    host_fixtures(&ctx);
    let out = run(&ctx, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    no_leak(&out);
    settings(&ctx).bind(|| {
        insta::assert_snapshot!("cli_status_host_only", text(&out.stdout));
        insta::assert_snapshot!("cli_status_host_only_stderr", text(&out.stderr));
    });
    let out = run(&ctx, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    no_leak(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], 1);
    let states: Vec<(&str, &str, &str)> = v["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["agent"].as_str().unwrap(),
                e["stored_in"].as_str().unwrap(),
                e["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("claude", "host", "refreshable"),
            ("codex", "host", "valid"),
            ("gemini", "host", "invalid")
        ]
    );
    settings(&ctx).bind(|| insta::assert_snapshot!("cli_status_host_only_json", text(&out.stdout)));
}

#[test]
fn status_filters_by_agent_and_rejects_unknown_ones() {
    let mut ctx = TestContext::new();
    memory(&mut ctx);
    host_fixtures(&ctx);
    let out = run(&ctx, &["status", "--agent", "codex", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let agents: Vec<&str> = v["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["codex"]);
    let out = run(&ctx, &["status", "--agent", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown agent \"nope\""));
}

#[test]
fn status_shows_missing_agents_and_custom_ones() {
    let mut ctx = TestContext::new();
    memory(&mut ctx);
    std::fs::create_dir_all(&ctx.config_dir).unwrap();
    std::fs::write(
        ctx.config_dir.join("config.toml"),
        "[agents.custom.aider]\napi_key_env = \"AIDER_KEY\"\n",
    )
    .unwrap();
    let out = run(&ctx, &["status"]);
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    for a in ["claude", "codex", "gemini", "aider"] {
        assert!(
            s.lines()
                .any(|l| l.trim_start().starts_with(a) && l.contains("missing")),
            "{a}: {s}"
        );
    }
}

#[test]
fn auth_from_each_source_reports_what_a_sandbox_gets() {
    let mut ctx = TestContext::new();
    memory(&mut ctx);
    host_fixtures(&ctx);
    let token = std::fs::read(fixture("claude/setup-token.txt")).unwrap();
    let out = run_stdin(
        &ctx,
        &["-vvv", "auth", "claude", "--method", "token", "--stdin"],
        &token,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    no_leak(&out);
    let err = text(&out.stderr);
    assert!(
        err.contains("stored claude:default (setup-token) in the memory vault"),
        "{err}"
    );
    assert!(err.contains("env CLAUDE_CODE_OAUTH_TOKEN"), "{err}");
    assert!(err.contains("(in 365 days)"), "{err}");

    // From a file readable by others: stored, with a warning naming chmod.
    let loose = ctx.root.path().join("key.txt");
    std::fs::copy(fixture("gemini/api-key.txt"), &loose).unwrap();
    let out = run(
        &ctx,
        &[
            "auth",
            "gemini",
            "--method",
            "api-key",
            "--from-file",
            loose.to_str().unwrap(),
            "--project",
            "my-proj-1",
            "--location",
            "europe-west4",
        ],
    );
    no_leak(&out);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(err.contains("Vertex AI"), "{err}");

    // From the environment.
    let mut c2 = ctx.cmd();
    c2.env(
        "MY_OPENAI",
        std::fs::read_to_string(fixture("codex/api-key.txt"))
            .unwrap()
            .trim(),
    );
    let out = c2
        .args(["auth", "codex", "--from-env", "MY_OPENAI"])
        .output()
        .unwrap();
    no_leak(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("codex:default (api-key)"));

    // From the host: the file is read, never modified.
    let host = ctx.home.join(".codex/auth.json");
    let before = (
        std::fs::read(&host).unwrap(),
        std::fs::metadata(&host).unwrap().modified().unwrap(),
    );
    let out = run(&ctx, &["auth", "codex", "--account", "work", "--from-host"]);
    no_leak(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("codex:work (session)"), "{err}");
    assert!(err.contains("fake@example.com (plus)"), "{err}");
    assert!(err.contains("single-use"), "{err}");
    let after = (
        std::fs::read(&host).unwrap(),
        std::fs::metadata(&host).unwrap().modified().unwrap(),
    );
    assert_eq!(before, after);

    // A broken host file: exit 7 with the cause, and nothing else.
    let out = run(&ctx, &["auth", "gemini", "--from-host"]);
    assert_eq!(out.status.code(), Some(7));
    assert!(text(&out.stderr).contains("0 bytes"));
    // No host login at all: exit 6 naming where airlock looked.
    std::fs::remove_file(ctx.home.join(".gemini/oauth_creds.json")).unwrap();
    let out = run(&ctx, &["auth", "gemini", "--from-host"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(text(&out.stderr).contains("~/.gemini/oauth_creds.json"));
}

#[test]
fn doctor_prints_a_fix_for_each_problem_and_exits_11() {
    let mut ctx = TestContext::new();
    memory(&mut ctx);
    host_fixtures(&ctx);
    let out = run(&ctx, &["doctor"]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(11), "{s}");
    no_leak(&out);
    assert!(s.contains("FAIL  host login gemini"), "{s}");
    assert!(s.contains("fix: run `gemini`"), "{s}");
    assert!(s.contains("ok    host login codex"), "{s}");
    let out = run(&ctx, &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(11));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let gem = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "host login gemini")
        .unwrap();
    assert_eq!(gem["status"], "fail");
    // No engine on PATH is a failure with an install hint.
    let mut c = ctx.cmd();
    c.env("PATH", "/nonexistent");
    let out = c.arg("doctor").output().unwrap();
    assert_eq!(out.status.code(), Some(11));
    assert!(text(&out.stdout).contains("neither docker nor podman is on PATH"));
}

#[test]
fn teardown_refuses_symlinked_host_credentials_unless_forced() {
    let ctx = TestContext::new();
    // A leftover of a symlink-based tool: the host file points into airlock's state.
    std::fs::create_dir_all(&ctx.state_dir).unwrap();
    let inside = ctx.state_dir.join("claude-credentials.json");
    std::fs::copy(fixture("claude/credentials-max.json"), &inside).unwrap();
    std::fs::create_dir_all(ctx.home.join(".claude")).unwrap();
    let link = ctx.home.join(".claude/.credentials.json");
    std::os::unix::fs::symlink(&inside, &link).unwrap();
    put(&ctx, ".codex/auth.json", "codex/auth-chatgpt.json");

    let out = run(&ctx, &["teardown", "--yes"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("symbolic link into airlock's state"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(inside.exists(), "nothing removed when refusing");

    // Without a terminal and without --yes: a usage error, nothing removed.
    let out = run(&ctx, &["teardown", "--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(inside.exists());

    let codex_before = std::fs::read(ctx.home.join(".codex/auth.json")).unwrap();
    let out = run(&ctx, &["teardown", "--force", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!ctx.state_dir.exists());
    // The host files themselves are untouched (the link itself stays too).
    assert!(std::fs::symlink_metadata(&link).is_ok());
    assert_eq!(
        std::fs::read(ctx.home.join(".codex/auth.json")).unwrap(),
        codex_before
    );
}

#[test]
fn teardown_removes_airlock_state_only() {
    let ctx = TestContext::new();
    put(
        &ctx,
        ".claude/.credentials.json",
        "claude/credentials-max.json",
    );
    std::fs::create_dir_all(&ctx.data_dir).unwrap();
    std::fs::write(ctx.data_dir.join("vault.airlock"), b"pretend vault").unwrap();
    std::fs::create_dir_all(ctx.runtime_dir.join("sandbox-1")).unwrap();
    std::fs::create_dir_all(&ctx.config_dir).unwrap();
    std::fs::write(ctx.config_dir.join("config.toml"), "").unwrap();
    let out = run(&ctx, &["teardown", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!ctx.data_dir.join("vault.airlock").exists());
    assert!(!ctx.runtime_dir.exists());
    assert!(
        ctx.config_dir.join("config.toml").exists(),
        "the config is kept"
    );
    assert!(ctx.home.join(".claude/.credentials.json").exists());
}

/// Needs the encrypted-file backend: store, list, status, remove.
#[test]
fn lifecycle_with_the_file_vault() {
    let ctx = TestContext::new();
    let token = std::fs::read(fixture("claude/setup-token.txt")).unwrap();
    let out = run_stdin(
        &ctx,
        &["auth", "claude", "--account", "work", "--stdin"],
        &token,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run_stdin(
        &ctx,
        &["auth", "claude", "--account", "work", "--stdin"],
        &token,
    );
    assert!(
        text(&out.stderr).contains("replaced claude:work"),
        "{}",
        text(&out.stderr)
    );
    put(&ctx, ".codex/auth.json", "codex/auth-chatgpt.json");
    let out = run(&ctx, &["auth", "codex", "--from-host"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = run(&ctx, &["accounts", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    no_leak(&out);
    assert_eq!(
        common::account_ids(&out.stdout),
        ["claude:work", "codex:default"]
    );

    let out = run(&ctx, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    no_leak(&out);
    let table = text(&out.stdout);
    let row = |agent: &str| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(agent))
            .unwrap_or_else(|| panic!("no {agent} row in {table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("claude")[..6],
        ["claude", "work", "setup-token", "vault", "(file)", "valid"]
    );
    assert_eq!(
        row("codex")[..6],
        ["codex", "default", "session", "vault", "(file)", "valid"]
    );
    // The stored codex login is the host's: not listed twice.
    let codex_rows = text(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("codex"))
        .count();
    assert_eq!(codex_rows, 1, "{}", text(&out.stdout));
    // ... and linked to the host file (issue 10)
    assert!(
        text(&out.stdout).contains("note: codex:default is linked to ~/.codex/auth.json"),
        "{}",
        text(&out.stdout)
    );

    let out = run(&ctx, &["remove", "claude", "--account", "work"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(&ctx, &["remove", "claude", "--account", "work"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(text(&out.stderr).contains("airlock accounts"));
}

#[test]
fn status_with_a_locked_vault_lists_the_rest_then_exits_3() {
    let mut ctx = TestContext::new();
    let token = std::fs::read(fixture("claude/setup-token.txt")).unwrap();
    let out = run_stdin(&ctx, &["auth", "claude", "--stdin"], &token);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    put(&ctx, ".codex/auth.json", "codex/auth-chatgpt.json");
    // Locked, then no passphrase and no terminal: the file vault stays shut.
    let out = run(&ctx, &["lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    ctx.unset_env("AIRLOCK_KEYRING_PASSWORD");
    let out = run(&ctx, &["status"]);
    no_leak(&out);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    // Every agent's stored credentials are unavailable, none is "missing";
    // the host login is still listed.
    for a in ["claude", "codex", "gemini"] {
        assert!(
            rows.iter().any(|r| r[0] == a && r.contains(&"unavailable")),
            "{a}: {table}"
        );
    }
    assert!(!table.contains("missing"), "{table}");
    assert!(
        rows.iter()
            .any(|r| r[0] == "codex" && r.contains(&"host") && r.contains(&"valid")),
        "{table}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("airlock: error:") && err.contains("locked"),
        "{err}"
    );
    settings(&ctx).bind(|| {
        insta::assert_snapshot!("cli_status_locked", table);
        insta::assert_snapshot!("cli_status_locked_stderr", err);
    });

    let out = run(&ctx, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let claude = &v["credentials"][0];
    assert_eq!(claude["state"], "unavailable");
    assert!(
        claude["fix"]
            .as_str()
            .unwrap()
            .contains("AIRLOCK_KEYRING_PASSWORD"),
        "{claude}"
    );
}

#[test]
fn states_are_coloured_only_when_asked() {
    let mut ctx = TestContext::new();
    memory(&mut ctx);
    host_fixtures(&ctx);
    let plain = run(&ctx, &["status"]);
    assert!(!text(&plain.stdout).contains('\x1b'));
    let coloured = run(&ctx, &["--color", "always", "status"]);
    let s = text(&coloured.stdout);
    assert!(s.contains("\x1b[36mrefreshable\x1b[0m"), "{s:?}");
    assert!(s.contains("\x1b[1m\x1b[31minvalid\x1b[0m"), "{s:?}");
    assert!(s.contains("\x1b[32mvalid\x1b[0m"), "{s:?}");
    // Colour never moves a column.
    let strip = |t: &str| {
        let mut o = String::new();
        let mut esc = false;
        for c in t.chars() {
            match (esc, c) {
                (false, '\x1b') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => o.push(c),
            }
        }
        o
    };
    assert_eq!(strip(&s), text(&plain.stdout));
}

#[test]
fn from_file_reads_pipes_quietly() {
    // `--from-file <(sops -d …)` hands airlock a symlink to a pipe.
    let mut ctx = TestContext::new();
    memory(&mut ctx);
    let key = std::fs::read(fixture("gemini/api-key.txt")).unwrap();
    let out = run_stdin(&ctx, &["auth", "gemini", "--from-file", "/dev/stdin"], &key);
    no_leak(&out);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
    assert!(err.contains("stored gemini:default (api-key)"), "{err}");
}

#[test]
fn doctor_checks_custom_agent_definitions() {
    let mut ctx = TestContext::new();
    memory(&mut ctx);
    std::fs::create_dir_all(&ctx.config_dir).unwrap();
    std::fs::write(
        ctx.config_dir.join("config.toml"),
        "[agents.custom.aider]\napi_key_env = \"A-B\"\n",
    )
    .unwrap();
    let out = run(&ctx, &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(11));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "custom agent aider")
        .unwrap();
    assert_eq!(c["status"], "fail");
    assert!(c["fix"].as_str().unwrap().contains("config.toml"));
    // Using it is a usage error naming the problem.
    let out = run(&ctx, &["auth", "aider", "--stdin"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("api_key_env"));
}

#[test]
fn status_lists_configured_secret_files_in_chain_order() {
    let mut ctx = TestContext::new();
    memory(&mut ctx);
    let secrets = ctx.root.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::copy(fixture("claude/setup-token.txt"), secrets.join("claude")).unwrap();
    std::fs::copy(fixture("codex/api-key.txt"), secrets.join("codex")).unwrap();
    std::fs::write(secrets.join("gemini"), "").unwrap();
    for n in ["claude", "codex", "gemini"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(secrets.join(n), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // codex also has a host login, which comes first in the chain.
    put(&ctx, ".codex/auth.json", "codex/auth-chatgpt.json");
    std::fs::create_dir_all(&ctx.config_dir).unwrap();
    let s = secrets.display();
    std::fs::write(
        ctx.config_dir.join("config.toml"),
        format!(
            "[agents.claude]\nsecret_file = \"{s}/claude\"\n[agents.codex]\nsecret_file = \"{s}/codex\"\nmethod = \"api-key\"\n[agents.gemini]\nsecret_file = \"{s}/gemini\"\n"
        ),
    )
    .unwrap();
    let out = run(&ctx, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    no_leak(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<(String, String, String, String)> = v["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["agent"].as_str().unwrap().to_owned(),
                e["stored_in"].as_str().unwrap().to_owned(),
                e["state"].as_str().unwrap().to_owned(),
                e["delivery"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let row = |a: &str, s: &str| {
        rows.iter()
            .find(|r| r.0 == a && r.1 == s)
            .unwrap_or_else(|| panic!("no {a}/{s} in {rows:?}"))
            .clone()
    };
    assert_eq!(row("claude", "file").2, "valid");
    assert_eq!(
        row("claude", "file").3,
        "from the file: env CLAUDE_CODE_OAUTH_TOKEN"
    );
    assert_eq!(
        row("codex", "host").3,
        "from the host: file auth.json (synced by airlock run; access token only in docker-flags and compose)"
    );
    assert_eq!(
        row("codex", "file").3,
        "nothing: the host login comes first"
    );
    assert_eq!(row("gemini", "file").2, "invalid");
    let text_out = text(&out.stderr);
    assert!(text_out.contains("0 bytes"), "{text_out}");

    // doctor reports the broken one with a fix.
    let out = run(&ctx, &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(11));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |n: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("no {n}"))
            .clone()
    };
    assert_eq!(find("secret file claude")["status"], "ok");
    assert_eq!(find("secret file gemini")["status"], "fail");
    assert!(
        find("secret file gemini")["fix"]
            .as_str()
            .unwrap()
            .contains("regenerate")
    );
}

/// Runs `args` with stdin closed; fails the test if it has not exited
/// within 20 seconds (and kills it) instead of hanging.
fn run_within(ctx: &TestContext, args: &[&str]) -> Output {
    let mut child = ctx
        .cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "airlock {args:?} did not exit within 20 s: {}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn secret_file_that_is_a_fifo_or_device_is_refused_at_once() {
    // A FIFO with no writer would block every `run`; /dev/zero would never
    // end. Both are refused as they are: not regular files.
    let mut ctx = TestContext::new();
    memory(&mut ctx);
    let fifo = ctx.root.path().join("claude-fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::create_dir_all(&ctx.config_dir).unwrap();
    std::fs::write(
        ctx.config_dir.join("config.toml"),
        format!(
            "[agents.claude]\nsecret_file = \"{}\"\n[agents.gemini]\nsecret_file = \"/dev/zero\"\n",
            fifo.display()
        ),
    )
    .unwrap();

    let out = run_within(&ctx, &["status", "--json"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.contains("is a named pipe (FIFO), not a regular file"),
        "{all}"
    );
    assert!(
        all.contains("is a character device, not a regular file"),
        "{all}"
    );

    let out = run_within(&ctx, &["doctor"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(11), "{all}");
    assert!(all.contains("named pipe (FIFO)"), "{all}");

    // `run` skips it with the reason, and --require-auth fails with 9
    // before any container is started (no engine on PATH: none needed).
    ctx.set_env("PATH", "/nonexistent");
    let out = run_within(
        &ctx,
        &[
            "run",
            "--agent",
            "claude",
            "--require-auth",
            "--",
            "--rm",
            "localhost/airlock-test/no-such-image",
            "true",
        ],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{err}");
    assert!(err.contains("named pipe (FIFO)"), "{err}");
}

#[test]
fn from_file_refuses_endless_devices_and_directories() {
    let mut ctx = TestContext::new();
    memory(&mut ctx);
    let out = run_within(
        &ctx,
        &[
            "auth",
            "claude",
            "--method",
            "token",
            "--from-file",
            "/dev/zero",
        ],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("too large to be a credential"), "{err}");
    let dir = ctx.root.path().to_str().unwrap().to_owned();
    let out = run_within(
        &ctx,
        &["auth", "claude", "--method", "token", "--from-file", &dir],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("is a directory"), "{err}");
    let out = run(&ctx, &["accounts", "--json"]);
    assert!(!text(&out.stdout).contains("claude"), "nothing was stored");
}

/// A sandbox that puts a FIFO where its session file belongs (it would
/// block a naive reader forever): `airlock status` says why it was refused,
/// per account, in the table and in `--json`.
#[test]
fn status_says_why_a_hostile_shared_file_was_refused() {
    use airlock::sync::{AccountSpec, Layout, Registration, Syncer, Truth, register_sandbox};
    let ctx = TestContext::new();
    let host = put(
        &ctx,
        ".claude/.credentials.json",
        "claude/credentials-max.json",
    );
    let layout = Layout {
        state: ctx.state_dir.join("sync"),
        runtime: ctx.runtime_dir.join("sync"),
    };
    let truth = Truth::HostFile { path: host.clone() };
    let dir = register_sandbox(
        &layout,
        None,
        Registration {
            sandbox: "sb-hostile".into(),
            agent: "claude".into(),
            account: "default".into(),
            truth: truth.clone(),
            pid: None,
            owner: None,
        },
    )
    .unwrap();
    let shared = dir.join(".credentials.json");
    std::fs::remove_file(&shared).unwrap();
    let c = std::ffi::CString::new(shared.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let before = std::fs::read(&host).unwrap();
    let mut s = Syncer::new(None, Some(layout.accounts_dir()));
    let k = s
        .add(AccountSpec {
            agent: "claude".into(),
            account: "default".into(),
            truth,
            shared_dir: dir,
            broker: false,
        })
        .unwrap();
    s.sync(&k).unwrap();
    assert_eq!(std::fs::read(&host).unwrap(), before, "truth kept");

    let o = run(&ctx, &["status"]);
    no_leak(&o);
    assert!(
        text(&o.stdout).contains("refused: the shared file is a FIFO"),
        "{}",
        text(&o.stdout)
    );
    let o = run(&ctx, &["status", "--json"]);
    no_leak(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let acc = v["sync"]["accounts"]
        .as_array()
        .unwrap_or_else(|| panic!("no sync.accounts in {v}"))
        .clone();
    assert!(
        acc.iter()
            .any(|a| a["last_rejected"] == "refused: the shared file is a FIFO, not a regular file"),
        "{v}"
    );
}

#[test]
fn status_says_when_the_proxy_grants_cannot_be_read() {
    let ctx = TestContext::new();
    let dir = ctx.state_dir.join("proxy");
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for d in [&ctx.state_dir, &dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::write(dir.join("grants.json"), "{damaged").unwrap();
    let o = run(&ctx, &["status"]);
    let err = text(&o.stderr);
    assert!(
        err.contains("proxy-mode sandboxes cannot be listed")
            && err.contains("is not a grants file airlock can read"),
        "{err}"
    );
    let o = run(&ctx, &["status", "--json"]);
    let out = text(&o.stdout);
    assert!(
        out.contains("proxy-mode sandboxes cannot be listed"),
        "{out}"
    );
}

#[test]
fn accounts_with_a_locked_vault_lists_the_references_then_exits_3() {
    let mut ctx = TestContext::new();
    let token = std::fs::read(fixture("claude/setup-token.txt")).unwrap();
    let out = run_stdin(&ctx, &["auth", "claude", "--stdin"], &token);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::create_dir_all(&ctx.config_dir).unwrap();
    std::fs::write(
        ctx.config_dir.join("config.toml"),
        "[accounts.codex.ci]\nsecret_ref = \"env:OPENAI_CI_KEY\"\n",
    )
    .unwrap();
    let out = run(&ctx, &["lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    ctx.unset_env("AIRLOCK_KEYRING_PASSWORD");
    for args in [&["accounts"][..], &["accounts", "--json"]] {
        let out = run(&ctx, args);
        no_leak(&out);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        let listed = text(&out.stdout);
        assert!(
            listed.contains("env:OPENAI_CI_KEY") && !listed.contains("claude"),
            "{args:?}: {listed} / {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("locked"),
            "{}",
            text(&out.stderr)
        );
    }
    // without references: the vault's error alone, as before
    std::fs::remove_file(ctx.config_dir.join("config.toml")).unwrap();
    let out = run(&ctx, &["accounts"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
}
