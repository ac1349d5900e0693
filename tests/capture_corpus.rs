//! A corpus of malformed inputs. Each one must be rejected with a clear
//! message (what is wrong and what to do), exit code 7, no secret in the
//! output, and nothing stored: checked through the library against an
//! in-memory vault, and through the real binary against the file vault.

mod common;

use std::path::Path;

use airlock::Secret;
use airlock::capture::{self, Input, Request, Source};
use airlock::config::Config;
use airlock::vault::{Method, Vault};
use common::{CANARY, TestContext};
use jiff::Timestamp;
use serde_json::{Value, json};

const CONFIG: &str = "[agents.custom.aider]\napi_key_env = \"AIDER_KEY\"\n";

struct Case {
    name: String,
    agent: &'static str,
    method: Option<&'static str>,
    bytes: Vec<u8>,
    /// A fragment the error message must contain.
    expect: &'static str,
}

fn fixture(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agents")
            .join(rel),
    )
    .unwrap()
}

fn doc(rel: &str) -> Value {
    serde_json::from_str(&fixture(rel)).unwrap()
}

/// `rel`'s JSON with `edit` applied.
fn edited(rel: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut d = doc(rel);
    edit(&mut d);
    d.to_string().into_bytes()
}

fn oat() -> String {
    format!("sk-ant-oat01-{CANARY}{}AA", "x".repeat(80))
}

fn corpus() -> Vec<Case> {
    let mut v = Vec::new();
    let mut add = |name: &str,
                   agent: &'static str,
                   method: Option<&'static str>,
                   bytes: Vec<u8>,
                   expect: &'static str| {
        v.push(Case {
            name: name.into(),
            agent,
            method,
            bytes,
            expect,
        })
    };
    let tok = Some("token");
    let ses = Some("session");
    let key = Some("api-key");
    let t = oat();
    let claude_creds = "claude/credentials-max.json";
    let codex_auth = "codex/auth-chatgpt.json";
    let gem = "gemini/session-wrapper.json";

    // Claude setup-tokens.
    add("token-empty-file", "claude", tok, vec![], "is empty");
    add(
        "token-whitespace",
        "claude",
        tok,
        b"  \n\t\n".to_vec(),
        "is empty",
    );
    add(
        "token-truncated",
        "claude",
        tok,
        format!("sk-ant-oat01-{CANARY}").into_bytes(),
        "looks truncated",
    );
    add(
        "token-wrong-version",
        "claude",
        tok,
        format!("sk-ant-oat02-{CANARY}{}", "x".repeat(60)).into_bytes(),
        "does not start with sk-ant-oat01-",
    );
    add(
        "token-is-api-key",
        "claude",
        tok,
        format!("sk-ant-api03-{CANARY}{}AA", "x".repeat(80)).into_bytes(),
        "--method api-key",
    );
    add(
        "token-is-refresh-token",
        "claude",
        tok,
        format!("sk-ant-ort01-{CANARY}{}", "x".repeat(60)).into_bytes(),
        "refresh token",
    );
    add(
        "token-is-openai-key",
        "claude",
        tok,
        format!("sk-proj-{CANARY}{}", "x".repeat(60)).into_bytes(),
        "OpenAI API key",
    );
    add(
        "token-two-lines",
        "claude",
        tok,
        format!("{t}\n{t}\n").into_bytes(),
        "2 lines",
    );
    add(
        "token-quoted",
        "claude",
        tok,
        format!("\"{t}\"").into_bytes(),
        "quotes",
    );
    add(
        "token-shell-export",
        "claude",
        tok,
        format!("export CLAUDE_CODE_OAUTH_TOKEN={t}").into_bytes(),
        "shell assignment",
    );
    add(
        "token-with-prose",
        "claude",
        tok,
        format!("Your OAuth token (valid for 1 year): {t}").into_bytes(),
        "spaces",
    );
    add(
        "token-control-char",
        "claude",
        tok,
        format!("{t}\u{7}x").into_bytes(),
        "control characters",
    );
    add(
        "token-zero-width-space",
        "claude",
        tok,
        format!("{t}\u{200b}").into_bytes(),
        "non-ASCII",
    );
    add(
        "token-bad-character",
        "claude",
        tok,
        format!("sk-ant-oat01-{CANARY}${}", "x".repeat(60)).into_bytes(),
        "'$'",
    );
    add(
        "token-json",
        "claude",
        tok,
        fixture(claude_creds).into_bytes(),
        "JSON document",
    );
    add(
        "token-not-utf8",
        "claude",
        tok,
        vec![0x73, 0x6b, 0xff, 0xfe, 0x00],
        "not UTF-8",
    );
    // Claude API keys.
    add(
        "key-is-setup-token",
        "claude",
        key,
        t.clone().into_bytes(),
        "setup-token",
    );
    add(
        "key-truncated",
        "claude",
        key,
        format!("sk-ant-api03-{CANARY}").into_bytes(),
        "looks truncated",
    );
    add(
        "key-unknown-kind",
        "claude",
        None,
        format!("hello-{CANARY}").into_bytes(),
        "cannot recognise",
    );
    // Claude sessions.
    add("creds-empty-file", "claude", ses, vec![], "is empty");
    let full = fixture(claude_creds);
    add(
        "creds-truncated",
        "claude",
        ses,
        full.as_bytes()[..full.len() / 2].to_vec(),
        "truncated",
    );
    add("creds-nul-bytes", "claude", ses, vec![0; 64], "NUL bytes");
    add(
        "creds-not-json",
        "claude",
        ses,
        format!("{{accessToken: {CANARY}}}").into_bytes(),
        "not valid JSON",
    );
    add(
        "creds-array",
        "claude",
        ses,
        b"[1,2]".to_vec(),
        "array, not an object",
    );
    add(
        "creds-no-oauth",
        "claude",
        ses,
        edited(claude_creds, |d| {
            d.as_object_mut().unwrap().remove("claudeAiOauth");
        }),
        "no claudeAiOauth",
    );
    add(
        "creds-oauth-string",
        "claude",
        ses,
        edited(claude_creds, |d| d["claudeAiOauth"] = json!(CANARY)),
        "not an object",
    );
    add(
        "creds-wiped-after-failed-refresh",
        "claude",
        ses,
        edited(claude_creds, |d| {
            d["claudeAiOauth"]["accessToken"] = json!("");
            d["claudeAiOauth"]["refreshToken"] = json!("");
            d["claudeAiOauth"]["expiresAt"] = json!(0);
        }),
        "empty access token",
    );
    add(
        "creds-access-number",
        "claude",
        ses,
        edited(claude_creds, |d| {
            d["claudeAiOauth"]["accessToken"] = json!(42)
        }),
        "not a string",
    );
    add(
        "creds-no-inference-scope",
        "claude",
        ses,
        edited(claude_creds, |d| {
            d["claudeAiOauth"]["scopes"] = json!(["user:profile"])
        }),
        "user:inference",
    );
    add(
        "creds-no-scopes",
        "claude",
        ses,
        edited(claude_creds, |d| {
            d["claudeAiOauth"].as_object_mut().unwrap().remove("scopes");
        }),
        "no scopes",
    );
    add(
        "creds-expiry-string",
        "claude",
        ses,
        edited(claude_creds, |d| {
            d["claudeAiOauth"]["expiresAt"] = json!("tomorrow")
        }),
        "expiresAt",
    );
    add(
        "creds-refresh-number",
        "claude",
        ses,
        edited(claude_creds, |d| {
            d["claudeAiOauth"]["refreshToken"] = json!(7)
        }),
        "refresh token that is a number",
    );
    add(
        "creds-expired-no-refresh",
        "claude",
        ses,
        edited(claude_creds, |d| {
            d["claudeAiOauth"]["refreshToken"] = json!(null);
            d["claudeAiOauth"]["expiresAt"] = json!(1_700_000_000_000i64);
        }),
        "no refresh token",
    );
    // Codex API keys.
    add(
        "openai-key-is-anthropic",
        "codex",
        key,
        format!("sk-ant-api03-{CANARY}{}AA", "x".repeat(80)).into_bytes(),
        "auth claude",
    );
    add(
        "openai-key-is-google",
        "codex",
        key,
        format!("AIza{CANARY}{}", "x".repeat(22)).into_bytes(),
        "Gemini",
    );
    add(
        "openai-key-truncated",
        "codex",
        key,
        format!("sk-{CANARY}").into_bytes(),
        "looks truncated",
    );
    add(
        "openai-key-no-prefix",
        "codex",
        key,
        format!("key-{CANARY}{}", "x".repeat(60)).into_bytes(),
        "does not start with sk-",
    );
    add(
        "codex-has-no-setup-token",
        "codex",
        tok,
        fixture("codex/api-key.txt").into_bytes(),
        "does not take a setup-token",
    );
    // Codex auth.json.
    add(
        "auth-id-token-not-jwt",
        "codex",
        ses,
        edited(codex_auth, |d| d["tokens"]["id_token"] = json!("notajwt")),
        "not a JWT",
    );
    add(
        "auth-id-token-bad-base64",
        "codex",
        ses,
        edited(codex_auth, |d| d["tokens"]["id_token"] = json!("a.!!!.c")),
        "not base64url",
    );
    add(
        "auth-no-tokens",
        "codex",
        ses,
        edited(codex_auth, |d| {
            d.as_object_mut().unwrap().remove("tokens");
        }),
        "no tokens",
    );
    add(
        "auth-apikey-as-session",
        "codex",
        ses,
        fixture("codex/auth-apikey.json").into_bytes(),
        "holds an API key",
    );
    add(
        "auth-apikey-mode-without-key",
        "codex",
        ses,
        br#"{"auth_mode":"apikey","OPENAI_API_KEY":null}"#.to_vec(),
        "no OPENAI_API_KEY",
    );
    add(
        "auth-bad-last-refresh",
        "codex",
        ses,
        edited(codex_auth, |d| d["last_refresh"] = json!("yesterday")),
        "RFC 3339",
    );
    add(
        "auth-no-refresh-token",
        "codex",
        ses,
        edited(codex_auth, |d| {
            d["tokens"].as_object_mut().unwrap().remove("refresh_token");
        }),
        "no tokens.refresh_token",
    );
    add(
        "auth-no-access-token",
        "codex",
        ses,
        edited(codex_auth, |d| d["tokens"]["access_token"] = json!("")),
        "no tokens.access_token",
    );
    add(
        "auth-mode-number",
        "codex",
        ses,
        edited(codex_auth, |d| d["auth_mode"] = json!(1)),
        "auth_mode",
    );
    add(
        "auth-truncated",
        "codex",
        ses,
        fixture(codex_auth).as_bytes()[..200].to_vec(),
        "truncated",
    );
    // Gemini API keys.
    add(
        "gemini-key-is-openai",
        "gemini",
        key,
        format!("sk-proj-{CANARY}{}", "x".repeat(60)).into_bytes(),
        "OpenAI",
    );
    add(
        "gemini-key-truncated",
        "gemini",
        key,
        format!("AIza{CANARY}").into_bytes(),
        "looks truncated",
    );
    add(
        "gemini-key-bad-character",
        "gemini",
        key,
        format!("AIza{CANARY}.{}", "x".repeat(30)).into_bytes(),
        "'.'",
    );
    add(
        "gemini-key-access-token",
        "gemini",
        key,
        format!("ya29.{CANARY}{}", "x".repeat(60)).into_bytes(),
        "access token",
    );
    // Gemini sessions.
    add(
        "gemini-no-access-token",
        "gemini",
        ses,
        edited(gem, |d| {
            d["oauth_creds"]
                .as_object_mut()
                .unwrap()
                .remove("access_token");
        }),
        "no access_token",
    );
    add(
        "gemini-expiry-string",
        "gemini",
        ses,
        edited(gem, |d| d["oauth_creds"]["expiry_date"] = json!("soon")),
        "expiry_date",
    );
    add(
        "gemini-creds-not-object",
        "gemini",
        ses,
        edited(gem, |d| d["oauth_creds"] = json!([CANARY])),
        "not an object",
    );
    add(
        "gemini-active-number",
        "gemini",
        ses,
        edited(gem, |d| d["google_accounts"]["active"] = json!(3)),
        "active",
    );
    add(
        "gemini-expired-no-refresh",
        "gemini",
        ses,
        fixture("gemini/oauth_creds-no-refresh-expired.json").into_bytes(),
        "no refresh token",
    );
    add(
        "gemini-empty-object",
        "gemini",
        ses,
        b"{}".to_vec(),
        "no access_token",
    );
    // Custom agents.
    add(
        "custom-two-lines",
        "aider",
        key,
        format!("{CANARY}\nsecond").into_bytes(),
        "2 lines",
    );
    add("custom-empty", "aider", None, b"\n".to_vec(), "is empty");
    add(
        "custom-session",
        "aider",
        ses,
        fixture("codex/auth-chatgpt.json").into_bytes(),
        "does not take a session",
    );
    v
}

#[test]
fn corpus_is_large_enough_and_names_are_unique() {
    let c = corpus();
    assert!(c.len() >= 40, "{} cases", c.len());
    let mut names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), c.len());
}

#[test]
fn library_rejects_every_case_and_stores_nothing() {
    let config = Config::parse(CONFIG).unwrap();
    let vault = Vault::in_memory();
    for case in corpus() {
        let input = match Secret::from_utf8(case.bytes.clone()) {
            Ok(s) => s,
            Err(_) => continue, // non-UTF-8: rejected while reading, see the CLI test
        };
        let req = Request {
            agent: case.agent.into(),
            account: "default".into(),
            method: case.method.map(|m| m.parse::<Method>().unwrap()),
            source: Source::Stdin,
            settings: Default::default(),
            label: None,
        };
        let result = capture::prepare(
            &req,
            &config,
            Input {
                secret: input,
                warnings: vec![],
            },
            Timestamp::now(),
        )
        .and_then(|p| capture::store(&*vault, p.record));
        let err = match result {
            Ok(_) => panic!("{}: accepted", case.name),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert_eq!(
            err.exit_code(),
            airlock::ExitCode::Invalid,
            "{}: {msg}",
            case.name
        );
        assert!(
            msg.contains(case.expect),
            "{}: {msg:?} lacks {:?}",
            case.name,
            case.expect
        );
        assert!(
            !msg.contains(CANARY),
            "{}: the message leaks the input: {msg}",
            case.name
        );
        assert!(msg.contains("; "), "{}: no fix in {msg:?}", case.name);
        assert!(
            !format!("{err:?}").contains(CANARY),
            "{}: Debug leaks",
            case.name
        );
    }
    assert!(vault.list().unwrap().is_empty());
}

#[test]
fn cli_rejects_every_case_with_exit_7_and_stores_nothing() {
    let ctx = TestContext::new();
    std::fs::create_dir_all(&ctx.config_dir).unwrap();
    std::fs::write(ctx.config_dir.join("config.toml"), CONFIG).unwrap();
    let inputs = ctx.root.path().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    for case in corpus() {
        let path = inputs.join(&case.name);
        std::fs::write(&path, &case.bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut cmd = ctx.cmd();
        cmd.args(["-vvv", "auth", case.agent, "--from-file"])
            .arg(&path);
        if let Some(m) = case.method {
            cmd.args(["--method", m]);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(7), "{}: {stderr}", case.name);
        assert!(
            stderr.contains(case.expect),
            "{}: {stderr:?} lacks {:?}",
            case.name,
            case.expect
        );
        assert!(
            stderr.contains("airlock: error: "),
            "{}: {stderr}",
            case.name
        );
        assert!(
            !stderr.contains(CANARY) && !stdout.contains(CANARY),
            "{}: leak: {stderr}",
            case.name
        );
        assert!(stdout.is_empty(), "{}: {stdout}", case.name);
    }
    assert!(
        !ctx.data_dir.join("vault.airlock").exists(),
        "a rejected input created the vault"
    );
}

#[test]
fn cli_source_errors_are_clear() {
    let ctx = TestContext::new();
    // No terminal and no source flag: the message names the flags (exit 2).
    let out = ctx.cmd().args(["auth", "claude"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--stdin") && err.contains("--from-file") && err.contains("--from-env"),
        "{err}"
    );

    // An unset variable, a missing file, a directory, empty stdin: exit 7.
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "auth",
                "claude",
                "--method",
                "token",
                "--from-env",
                "NOPE_NOT_SET",
            ],
            "NOPE_NOT_SET is not set",
        ),
        (
            vec![
                "auth",
                "claude",
                "--method",
                "token",
                "--from-file",
                "/nonexistent/x",
            ],
            "does not exist",
        ),
        (
            vec!["auth", "claude", "--method", "token", "--from-file", "/"],
            "is a directory",
        ),
        (
            vec!["auth", "claude", "--method", "token", "--stdin"],
            "is empty",
        ),
    ];
    for (args, expect) in cases {
        let out = ctx
            .cmd()
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(7), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    // Secrets are never arguments: there is no flag that takes one.
    let out = ctx
        .cmd()
        .args(["auth", "claude", "--token", &oat()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(CANARY));
    // A token typed as an argument: refused, not echoed.
    let out = ctx.cmd().args(["auth", "claude", &oat()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains(CANARY), "{err}");
    assert!(err.contains("never goes on the command line"), "{err}");
    // A token pasted where a path or a variable name belongs: refused, not echoed.
    for flag in ["--from-env", "--from-file"] {
        let out = ctx
            .cmd()
            .args(["auth", "claude", flag, &oat()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains(CANARY), "{flag}: {err}");
        assert!(err.contains("looks like a secret itself"), "{flag}: {err}");
    }
    // Unknown agents and accounts are usage errors.
    let out = ctx
        .cmd()
        .args(["auth", "aider", "--stdin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[agents.custom.aider]"));
    let out = ctx
        .cmd()
        .args(["auth", "claude", "--account", "Bad Name", "--stdin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!ctx.data_dir.join("vault.airlock").exists());
}
