//! Every supported file shape of the three agents, validated through the
//! library: method, expiry, refreshability, unknown keys kept, and host
//! files read but never modified.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use airlock::Secret;
use airlock::agents::Agent;
use airlock::agents::HostEnv;
use airlock::capture::{self, Input, Request, Source};
use airlock::config::Config;
use airlock::vault::{CredentialId, Method, Vault};
use jiff::Timestamp;
use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).unwrap()
}

fn req(agent: &str, method: Option<Method>) -> Request {
    Request {
        agent: agent.into(),
        account: "default".into(),
        method,
        source: Source::File(fixture("x")),
        settings: BTreeMap::new(),
        label: None,
    }
}

fn prepare(agent: &str, method: Option<Method>, rel: &str) -> capture::Prepared {
    let input = Input {
        secret: Secret::new(read(rel)),
        warnings: Vec::new(),
    };
    capture::prepare(
        &req(agent, method),
        &Config::default(),
        input,
        Timestamp::now(),
    )
    .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn tokens_and_keys_are_detected_trimmed_and_dated() {
    let now = Timestamp::now();
    let p = prepare("claude", None, "claude/setup-token.txt");
    assert_eq!(p.record.method, Method::SetupToken);
    assert_eq!(
        p.record.secret.expose(),
        read("claude/setup-token.txt").trim()
    );
    let days = p
        .record
        .meta
        .expires_at
        .unwrap()
        .duration_since(now)
        .as_hours()
        / 24;
    assert!((364..=365).contains(&days), "{days}");
    assert!(p.delivery.contains("CLAUDE_CODE_OAUTH_TOKEN"));

    for (agent, rel, env) in [
        ("claude", "claude/api-key.txt", "ANTHROPIC_API_KEY"),
        ("codex", "codex/api-key.txt", "auth.json"),
        ("gemini", "gemini/api-key.txt", "GEMINI_API_KEY"),
    ] {
        let p = prepare(agent, None, rel);
        assert_eq!(p.record.method, Method::ApiKey, "{rel}");
        assert_eq!(
            p.record.meta.expires_at, None,
            "{rel}: API keys do not expire"
        );
        assert!(p.warnings.is_empty(), "{rel}: {:?}", p.warnings);
        assert!(p.delivery.contains(env), "{rel}: {}", p.delivery);
    }
}

#[test]
fn session_documents_keep_every_key() {
    for (agent, rel) in [
        ("claude", "claude/credentials-max.json"),
        ("claude", "claude/credentials-minimal.json"),
        ("claude", "claude/credentials-lapsed.json"),
        ("codex", "codex/auth-chatgpt.json"),
        ("codex", "codex/auth-chatgpt-lapsed.json"),
    ] {
        let p = prepare(agent, Some(Method::Session), rel);
        // Stored exactly as found (trimmed): unknown keys, order and numbers survive.
        assert_eq!(p.record.secret.expose(), read(rel).trim(), "{rel}");
        // ... and survive a vault round trip.
        let v = Vault::in_memory();
        capture::store(&*v, p.record).unwrap();
        let back = v
            .get(&CredentialId::parse(agent).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(back.secret.expose(), read(rel).trim(), "{rel}");
    }
    let p = prepare(
        "claude",
        Some(Method::Session),
        "claude/credentials-max.json",
    );
    let doc: Value = serde_json::from_str(p.record.secret.expose()).unwrap();
    assert_eq!(
        doc["zzUnknownFutureKey"]["nested"][1],
        serde_json::json!(2.5)
    );
    assert!(doc["mcpOAuth"].is_object());
}

#[test]
fn session_expiry_and_refreshability() {
    let cases = [
        (
            "claude",
            "claude/credentials-max.json",
            Some(4_102_444_800),
            true,
        ),
        ("claude", "claude/credentials-minimal.json", None, false),
        (
            "claude",
            "claude/credentials-lapsed.json",
            Some(1_700_000_000),
            true,
        ),
        (
            "codex",
            "codex/auth-chatgpt.json",
            Some(4_102_444_800),
            true,
        ),
        (
            "codex",
            "codex/auth-chatgpt-lapsed.json",
            Some(1_700_000_000),
            true,
        ),
        (
            "gemini",
            "gemini/session-wrapper.json",
            Some(4_102_444_800),
            true,
        ),
        (
            "gemini",
            "gemini/oauth_creds.json",
            Some(4_102_444_800),
            true,
        ),
    ];
    for (agent, rel, exp, refreshable) in cases {
        let p = prepare(agent, Some(Method::Session), rel);
        assert_eq!(
            p.record.meta.expires_at.map(|t| t.as_second()),
            exp,
            "{rel}"
        );
        assert_eq!(p.refreshable, refreshable, "{rel}");
    }
    // Display facts, never secrets.
    let p = prepare("codex", None, "codex/auth-chatgpt.json");
    assert_eq!(p.detail.as_deref(), Some("fake@example.com (plus)"));
    let p = prepare("claude", None, "claude/credentials-max.json");
    assert_eq!(p.detail.as_deref(), Some("max subscription"));
}

#[test]
fn gemini_wrapper_holds_both_documents() {
    let p = prepare(
        "gemini",
        Some(Method::Session),
        "gemini/session-wrapper.json",
    );
    let doc: Value = serde_json::from_str(p.record.secret.expose()).unwrap();
    let original: Value = serde_json::from_str(&read("gemini/oauth_creds.json")).unwrap();
    assert_eq!(doc["oauth_creds"], original);
    assert_eq!(
        serde_json::to_string(&doc["oauth_creds"]).unwrap(),
        serde_json::to_string(&original).unwrap(),
        "key order is kept"
    );
    assert_eq!(doc["google_accounts"]["active"], "fake@example.com");
    assert_eq!(p.detail.as_deref(), Some("fake@example.com"));
}

/// A temporary home holding agent files; checks that they are never modified.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn put(&self, rel: &str, fixture_rel: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(fixture(fixture_rel), &p).unwrap();
        set_mode(&p, 0o600);
        p
    }
    fn env(&self, vars: &[(&str, &str)]) -> HostEnv {
        HostEnv {
            home: self.dir.path().to_path_buf(),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
    fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime, u32)> {
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out.sort();
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>, std::time::SystemTime, u32)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            walk(&p, out);
        } else {
            use std::os::unix::fs::PermissionsExt;
            out.push((
                p.clone(),
                std::fs::read(&p).unwrap_or_default(),
                md.modified().unwrap(),
                md.permissions().mode(),
            ));
        }
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn host_logins_are_found_where_each_agent_keeps_them() {
    let config = Config::default();
    let home = Home::new();
    let env = home.env(&[]);
    for a in ["claude", "codex", "gemini"] {
        let agent = Agent::resolve(a, &config).unwrap();
        assert!(agent.find_host_login(&env).unwrap().is_none(), "{a}");
    }
    home.put(".claude/.credentials.json", "claude/credentials-max.json");
    home.put(".codex/auth.json", "codex/auth-chatgpt.json");
    home.put(".gemini/oauth_creds.json", "gemini/oauth_creds.json");
    home.put(
        ".gemini/google_accounts.json",
        "gemini/google_accounts.json",
    );
    let before = home.snapshot();

    let claude = Agent::Claude.find_host_login(&env).unwrap().unwrap();
    assert_eq!(claude.location, "~/.claude/.credentials.json");
    assert_eq!(claude.record.method, Method::Session);
    assert!(claude.warnings.is_empty(), "{:?}", claude.warnings);
    assert_eq!(
        claude.record.secret.expose(),
        read("claude/credentials-max.json").trim()
    );
    let codex = Agent::Codex.find_host_login(&env).unwrap().unwrap();
    assert_eq!(codex.record.method, Method::Session);
    let gemini = Agent::Gemini.find_host_login(&env).unwrap().unwrap();
    let doc: Value = serde_json::from_str(gemini.record.secret.expose()).unwrap();
    assert_eq!(doc["google_accounts"]["old"][0], "older@example.com");
    assert_eq!(doc["oauth_creds"]["zz_unknown"]["keep"], true);
    assert!(gemini.modified.is_some());

    assert_eq!(home.snapshot(), before, "host files must not change");
}

#[test]
fn host_paths_follow_the_agents_variables() {
    let home = Home::new();
    home.put("cfg/.credentials.json", "claude/credentials-lapsed.json");
    home.put("cx/auth.json", "codex/auth-apikey.json");
    home.put("gh/.gemini/oauth_creds.json", "gemini/oauth_creds.json");
    let root = home.dir.path().display().to_string();
    let env = home.env(&[
        ("CLAUDE_CONFIG_DIR", &format!("{root}/cfg")),
        ("CODEX_HOME", &format!("{root}/cx")),
        ("GEMINI_CLI_HOME", &format!("{root}/gh")),
    ]);
    let c = Agent::Claude.find_host_login(&env).unwrap().unwrap();
    assert_eq!(c.location, "~/cfg/.credentials.json");
    assert!(c.refreshable);
    // An API-key auth.json is captured as an API key, not a session.
    let x = Agent::Codex.find_host_login(&env).unwrap().unwrap();
    assert_eq!(x.record.method, Method::ApiKey);
    assert_eq!(x.record.secret.expose(), read("codex/api-key.txt").trim());
    let g = Agent::Gemini.find_host_login(&env).unwrap().unwrap();
    let doc: Value = serde_json::from_str(g.record.secret.expose()).unwrap();
    assert!(
        doc["google_accounts"].is_null(),
        "no google_accounts.json: null"
    );
}

#[test]
fn host_files_readable_by_others_or_symlinked_warn() {
    let home = Home::new();
    let real = home.put("elsewhere/creds.json", "claude/credentials-max.json");
    std::fs::create_dir_all(home.dir.path().join(".claude")).unwrap();
    std::os::unix::fs::symlink(&real, home.dir.path().join(".claude/.credentials.json")).unwrap();
    set_mode(&real, 0o644);
    let h = Agent::Claude
        .find_host_login(&home.env(&[]))
        .unwrap()
        .unwrap();
    let all = h.warnings.join("\n");
    assert!(all.contains("symbolic link"), "{all}");
    assert!(all.contains("mode 0644"), "{all}");
    assert!(all.contains("chmod 600"), "{all}");
}

#[test]
fn host_login_becomes_a_record_via_from_host() {
    let home = Home::new();
    home.put(".codex/auth.json", "codex/auth-chatgpt.json");
    let mut r = req("codex", None);
    r.account = "work".into();
    r.source = Source::Host;
    let p =
        capture::prepare_host(&r, &Config::default(), &home.env(&[]), Timestamp::now()).unwrap();
    assert_eq!(p.record.id.to_string(), "codex:work");
    assert_eq!(p.record.meta.source, "host:~/.codex/auth.json");
    assert!(p.refreshable);
    // Nothing on the host: a clear NotFound naming where airlock looked.
    let empty = Home::new();
    let e = capture::prepare_host(
        &req("gemini", None),
        &Config::default(),
        &empty.env(&[]),
        Timestamp::now(),
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), airlock::ExitCode::NotFound);
    let msg = e.to_string();
    assert!(msg.contains("~/.gemini/oauth_creds.json"), "{msg}");
    assert!(msg.contains("gemini"), "{msg}");
}

#[test]
fn custom_agents_take_single_line_keys() {
    let config = Config::parse(
        "[agents.custom.aider]\napi_key_env = \"OPENAI_API_KEY\"\nfiles = [{ path = \".aider/key\", mode = \"0600\" }]\n",
    )
    .unwrap();
    let input = Input {
        secret: Secret::from("any-vendor-key-CANARYx7Q2zV9\n"),
        warnings: Vec::new(),
    };
    let p = capture::prepare(&req("aider", None), &config, input, Timestamp::now()).unwrap();
    assert_eq!(p.record.method, Method::ApiKey);
    assert_eq!(p.record.secret.expose(), "any-vendor-key-CANARYx7Q2zV9");
    assert_eq!(p.delivery, "env OPENAI_API_KEY, file ~/.aider/key");
}
