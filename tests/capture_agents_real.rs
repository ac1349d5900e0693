//! airlock's validation agrees with the real agents: every login file
//! airlock accepts, the agent reports as logged in, and the ones it rejects
//! for a reason the agent shares, the agent rejects too. Offline.
//!
//! Needs `AIRLOCK_TEST_AGENTS=1` and `AIRLOCK_AGENT_BIN_DIR` (the agents'
//! `node_modules/.bin`): see scripts/test.sh.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airlock::agents::Agent;
use airlock::agents::HostEnv;
use common::require_real;
use serde_json::{Value, json};

fn bin_dir() -> Option<PathBuf> {
    if !require_real("AIRLOCK_TEST_AGENTS") {
        return None;
    }
    Some(
        std::env::var_os("AIRLOCK_AGENT_BIN_DIR")
            .map(PathBuf::from)
            .expect("AIRLOCK_AGENT_BIN_DIR must point at the agents' node_modules/.bin"),
    )
}

fn fixture(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agents")
            .join(rel),
    )
    .unwrap()
}

fn tmp(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn run(exe: &Path, args: &[&str], vars: &[(&str, &Path)]) -> Output {
    let home = tmp("home-");
    let mut c = Command::new("timeout");
    c.arg("60")
        .arg(exe)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .current_dir(home.path());
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// airlock's verdict on the login in `dir`, read the way `--from-host` does.
fn airlock_accepts(agent: Agent<'_>, var: &str, dir: &Path) -> Result<(), String> {
    let env = HostEnv {
        home: PathBuf::from("/nonexistent"),
        vars: BTreeMap::from([(var.to_owned(), dir.display().to_string())]),
    };
    match agent.find_host_login(&env) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("no login found".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn claude_cases() -> Vec<(&'static str, String)> {
    let full: Value = serde_json::from_str(&fixture("claude/credentials-max.json")).unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut d = full.clone();
        f(&mut d);
        d.to_string()
    };
    vec![
        ("max", fixture("claude/credentials-max.json")),
        ("minimal", fixture("claude/credentials-minimal.json")),
        ("lapsed", fixture("claude/credentials-lapsed.json")),
        (
            "no inference scope",
            edit(&|d| d["claudeAiOauth"]["scopes"] = json!(["user:profile"])),
        ),
        (
            "no claudeAiOauth",
            edit(&|d| {
                d.as_object_mut().unwrap().remove("claudeAiOauth");
            }),
        ),
        (
            "no scopes",
            edit(&|d| {
                d["claudeAiOauth"].as_object_mut().unwrap().remove("scopes");
            }),
        ),
    ]
}

#[test]
fn claude_agrees_with_airlock() {
    let Some(bin) = bin_dir() else { return };
    let native = bin.join("../@anthropic-ai/claude-code-linux-x64/claude");
    let exe = if native.is_file() {
        native
    } else {
        bin.join("claude")
    };
    for (name, doc) in claude_cases() {
        let dir = tmp("claude-");
        std::fs::write(dir.path().join(".credentials.json"), &doc).unwrap();
        let ours = airlock_accepts(Agent::Claude, "CLAUDE_CONFIG_DIR", dir.path());
        let out = run(
            &exe,
            &["auth", "status"],
            &[("CLAUDE_CONFIG_DIR", dir.path())],
        );
        let status: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{name}: {}", String::from_utf8_lossy(&out.stderr)));
        let theirs = status["loggedIn"] == true && status["authMethod"] == "claude.ai";
        assert_eq!(
            ours.is_ok(),
            theirs,
            "{name}: airlock says {ours:?}, claude auth status says {status}"
        );
    }
}

/// `(name, auth.json, why airlock is stricter than codex login status)`.
fn codex_cases() -> Vec<(&'static str, String, Option<&'static str>)> {
    let chat: Value = serde_json::from_str(&fixture("codex/auth-chatgpt.json")).unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut d = chat.clone();
        f(&mut d);
        d.to_string()
    };
    let agree = |name, doc| (name, doc, None);
    vec![
        agree("chatgpt", fixture("codex/auth-chatgpt.json")),
        agree(
            "chatgpt, no auth_mode, lapsed",
            fixture("codex/auth-chatgpt-lapsed.json"),
        ),
        agree("apikey", fixture("codex/auth-apikey.json")),
        agree(
            "apikey without auth_mode",
            fixture("codex/auth-apikey-no-mode.json"),
        ),
        agree(
            "minimal JWT id_token",
            edit(&|d| d["tokens"]["id_token"] = json!("a.e30.c")),
        ),
        agree(
            "id_token not a JWT",
            edit(&|d| d["tokens"]["id_token"] = json!("notajwt")),
        ),
        agree(
            "truncated",
            fixture("codex/auth-chatgpt.json")[..120].to_owned(),
        ),
        agree("not JSON", "hello".to_owned()),
        agree("empty file", String::new()),
        (
            "no tokens",
            edit(&|d| {
                d.as_object_mut().unwrap().remove("tokens");
            }),
            Some(
                "`codex login status` only looks at auth_mode; without tokens no request can authenticate",
            ),
        ),
    ]
}

#[test]
fn codex_agrees_with_airlock() {
    let Some(bin) = bin_dir() else { return };
    let native = bin.join("../@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex");
    let exe = if native.is_file() {
        native
    } else {
        bin.join("codex")
    };
    for (name, doc, stricter) in codex_cases() {
        let dir = tmp("codex-");
        std::fs::write(dir.path().join("auth.json"), &doc).unwrap();
        let ours = airlock_accepts(Agent::Codex, "CODEX_HOME", dir.path());
        let out = run(&exe, &["login", "status"], &[("CODEX_HOME", dir.path())]);
        let theirs = out.status.code() == Some(0);
        if let Some(why) = stricter {
            assert!(
                ours.is_err() && theirs,
                "{name}: expected airlock to refuse what codex accepts ({why}); airlock: {ours:?}, codex: {:?}",
                out.status.code()
            );
            continue;
        }
        assert_eq!(
            ours.is_ok(),
            theirs,
            "{name}: airlock says {ours:?}, codex login status says {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
