//! What each agent's sandbox receives, per method: the agents' `inject`
//! modules, tested directly (pure functions, no engine).

mod common;

use airlock::Secret;
use airlock::agents::inject::{InjectOptions, Rotation, plan_for};
use airlock::agents::{claude, codex, gemini};
use airlock::config::Config;
use airlock::plan::{SandboxPlan, Value};
use airlock::vault::{CredentialId, Metadata, Method, Record};
use common::CANARY;
use serde_json::{Value as Json, json};

fn now() -> jiff::Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

fn rec(agent: &str, method: Method, secret: &str) -> Record {
    let mut meta = Metadata::new("test");
    meta.created_at = now();
    meta.updated_at = now();
    Record {
        id: CredentialId::new(agent, "default").unwrap(),
        method,
        secret: Secret::from(secret),
        meta,
    }
}

fn opts() -> InjectOptions {
    InjectOptions::default()
}

fn env<'a>(p: &'a SandboxPlan, name: &str) -> &'a Value {
    &p.env
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no env {name} in {p:#?}"))
        .value
}

fn file<'a>(p: &'a SandboxPlan, path: &str) -> (&'a Value, u32) {
    let f = p
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no file {path} in {p:#?}"));
    (&f.content, f.mode)
}

fn text(v: &Value) -> &str {
    match v {
        Value::Plain(s) => s,
        Value::Secret(s) => s.expose(),
    }
}

fn json_of(v: &Value) -> Json {
    serde_json::from_str(text(v)).unwrap()
}

/// The plan as it would be printed: secrets must show as "[secret]".
fn printed(p: &SandboxPlan) -> String {
    let s = serde_json::to_string_pretty(p).unwrap();
    assert!(
        !s.contains(CANARY),
        "a secret leaked into the printed plan:\n{s}"
    );
    assert!(
        !format!("{p:?}").contains(CANARY),
        "a secret leaked into Debug"
    );
    s
}

/// Every secret value in the plan is marked secret: no plain value holds
/// the canary.
fn assert_secrets_marked(p: &SandboxPlan) {
    for e in &p.env {
        if let Value::Plain(v) = &e.value {
            assert!(!v.contains(CANARY), "env {} is plain but secret", e.name);
        }
    }
    for f in &p.files {
        if let Value::Plain(v) = &f.content {
            assert!(!v.contains(CANARY), "file {} is plain but secret", f.path);
        }
        if f.content.is_secret() {
            assert_eq!(f.mode, 0o600, "{}", f.path);
        }
    }
}

fn token() -> String {
    format!("sk-ant-oat01-{CANARY}-0123456789abcdef")
}

fn claude_session(refresh: &str, expires_ms: i64) -> String {
    json!({
        "claudeAiOauth": {
            "accessToken": format!("sk-ant-oat01-{CANARY}"),
            "refreshToken": refresh,
            "expiresAt": expires_ms,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max",
        },
        "mcpOAuth": { "srv": { "refresh": format!("mcp-{CANARY}") } }
    })
    .to_string()
}

const CLAUDE_DIR: &str = "/run/airlock/claude";

// ---------------------------------------------------------------- claude

#[test]
fn claude_token() {
    let p = claude::inject::plan(
        &rec("claude", Method::SetupToken, &format!(" {}\n", token())),
        &opts(),
    )
    .unwrap();
    assert_eq!(
        env(&p, "CLAUDE_CODE_OAUTH_TOKEN"),
        &Value::Secret(Secret::from(token()))
    );
    assert_eq!(
        env(&p, "CLAUDE_CONFIG_DIR"),
        &Value::Plain(CLAUDE_DIR.into())
    );
    let (state, mode) = file(&p, "/run/airlock/claude/.claude.json");
    assert!(!state.is_secret());
    assert_eq!(mode, 0o600);
    let state = json_of(state);
    assert_eq!(state["hasCompletedOnboarding"], true);
    assert_eq!(
        state["projects"]["/workspace"]["hasTrustDialogAccepted"],
        true
    );
    let (settings, _) = file(&p, "/run/airlock/claude/settings.json");
    assert_eq!(json_of(settings)["skipDangerousModePermissionPrompt"], true);
    assert_eq!(p.aliases[0].command, "claude");
    assert_eq!(p.aliases[0].args, ["--dangerously-skip-permissions"]);
    assert_secrets_marked(&p);
    insta::assert_snapshot!("plan_claude_token", printed(&p));
}

#[test]
fn claude_api_key_is_pre_approved() {
    let key = format!("sk-ant-api03-{CANARY}-ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    let p = claude::inject::plan(&rec("claude", Method::ApiKey, &key), &opts()).unwrap();
    assert_eq!(
        env(&p, "ANTHROPIC_API_KEY"),
        &Value::Secret(Secret::from(key.clone()))
    );
    let (state, _) = file(&p, "/run/airlock/claude/.claude.json");
    // holds part of the key: secret
    assert!(state.is_secret());
    let state = json_of(state);
    assert_eq!(
        state["customApiKeyResponses"]["approved"],
        json!([key[key.len() - 20..]])
    );
    assert_eq!(state["customApiKeyResponses"]["rejected"], json!([]));
    assert!(p.env.iter().all(|e| e.name != "CLAUDE_CODE_OAUTH_TOKEN"));
    assert_secrets_marked(&p);
    insta::assert_snapshot!("plan_claude_api_key", printed(&p));
}

#[test]
fn claude_session_is_delivered_without_refresh_token_by_default() {
    let r = rec(
        "claude",
        Method::Session,
        &claude_session("sk-ant-ort01-REFRESH", 1_795_267_240_000),
    );
    let p = claude::inject::plan(&r, &opts()).unwrap();
    let (creds, mode) = file(&p, "/run/airlock/claude/.credentials.json");
    assert!(creds.is_secret());
    assert_eq!(mode, 0o600);
    let creds = json_of(creds);
    assert_eq!(creds["claudeAiOauth"]["refreshToken"], Json::Null);
    assert_eq!(creds["claudeAiOauth"]["subscriptionType"], "max");
    assert!(
        creds["claudeAiOauth"]["accessToken"]
            .as_str()
            .unwrap()
            .contains(CANARY)
    );
    // other rotating secrets (MCP OAuth) stay behind
    assert!(creds.get("mcpOAuth").is_none());
    assert!(p.env.iter().all(|e| !e.value.is_secret()));
    assert_secrets_marked(&p);
    insta::assert_snapshot!("plan_claude_session", printed(&p));

    // rotation = copy: the whole document, unknown keys kept
    let o = InjectOptions {
        rotation: Rotation::Copy,
        ..opts()
    };
    let p = claude::inject::plan(&r, &o).unwrap();
    let creds = json_of(file(&p, "/run/airlock/claude/.credentials.json").0);
    assert_eq!(
        creds["claudeAiOauth"]["refreshToken"],
        "sk-ant-ort01-REFRESH"
    );
    assert!(creds.get("mcpOAuth").is_some());
}

#[test]
fn claude_rejects_unusable_credentials_without_quoting_them() {
    let cases = [
        rec(
            "claude",
            Method::Session,
            &format!("{{\"claudeAiOauth\": {CANARY}"),
        ),
        rec(
            "claude",
            Method::Session,
            &format!("{{\"other\": \"{CANARY}\"}}"),
        ),
        rec(
            "claude",
            Method::Session,
            &json!({"claudeAiOauth": {"accessToken": CANARY, "scopes": ["user:profile"]}})
                .to_string(),
        ),
        rec(
            "claude",
            Method::Session,
            &json!({"claudeAiOauth": {"accessToken": "", "refreshToken": CANARY}}).to_string(),
        ),
        rec(
            "claude",
            Method::SetupToken,
            &format!("sk-ant-api03-{CANARY}"),
        ),
        rec("claude", Method::SetupToken, "   \n"),
        rec(
            "claude",
            Method::ApiKey,
            &format!("sk-ant-api03-{CANARY}\nsecond line"),
        ),
    ];
    for r in cases {
        let e = claude::inject::plan(&r, &opts()).unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains(CANARY), "{msg}");
        assert_eq!(e.exit_code(), airlock::ExitCode::Invalid, "{msg}");
    }
}

#[test]
fn claude_host_config_is_reduced_to_the_allow_list() {
    let host = json!({
        "hasCompletedOnboarding": true,
        "lastOnboardingVersion": "2.1.197",
        "theme": "dark",
        "oauthAccount": {"emailAddress": "dev@example.com", "organizationName": "Org"},
        "primaryApiKey": format!("sk-ant-api03-{CANARY}"),
        "projects": {"/home/u/secret-project": {"hasTrustDialogAccepted": true, "history": ["x"]}},
        "mcpServers": {"gh": {"env": {"GITHUB_TOKEN": CANARY}}},
        "customApiKeyResponses": {"approved": [CANARY]},
    });
    let o = InjectOptions {
        host_config: Some(host.to_string()),
        workdir: "/src".into(),
        ..opts()
    };
    // with a session the identity is kept
    let r = rec(
        "claude",
        Method::Session,
        &claude_session("r", 1_795_267_240_000),
    );
    let p = claude::inject::plan(&r, &o).unwrap();
    let (state, _) = file(&p, "/run/airlock/claude/.claude.json");
    assert!(!text(state).contains(CANARY), "{}", text(state));
    assert!(!text(state).contains("secret-project"));
    let state = json_of(state);
    assert_eq!(state["theme"], "dark");
    assert_eq!(state["lastOnboardingVersion"], "2.1.197");
    assert_eq!(state["oauthAccount"]["emailAddress"], "dev@example.com");
    assert_eq!(
        state["projects"],
        json!({"/src": {"hasTrustDialogAccepted": true}})
    );
    for gone in ["primaryApiKey", "mcpServers", "customApiKeyResponses"] {
        assert!(state.get(gone).is_none(), "{gone}");
    }
    insta::assert_snapshot!("plan_claude_session_host_config", printed(&p));

    // with a token, the host's identity (which may be another account) is not
    let p = claude::inject::plan(&rec("claude", Method::SetupToken, &token()), &o).unwrap();
    let state = json_of(file(&p, "/run/airlock/claude/.claude.json").0);
    assert!(state.get("oauthAccount").is_none());
    assert_eq!(state["theme"], "dark");

    // a broken host file is a warning, not an error
    let o = InjectOptions {
        host_config: Some("{not json".into()),
        ..opts()
    };
    let p = claude::inject::plan(&rec("claude", Method::SetupToken, &token()), &o).unwrap();
    assert!(
        p.warnings[0].contains("not a JSON object"),
        "{:?}",
        p.warnings
    );
}

#[test]
fn claude_without_aliases_or_credential() {
    let o = InjectOptions {
        aliases: false,
        ..opts()
    };
    let p = claude::inject::plan(&rec("claude", Method::SetupToken, &token()), &o).unwrap();
    assert!(p.aliases.is_empty());
    assert!(p.files.iter().all(|f| !f.path.ends_with("settings.json")));

    let p = claude::inject::onboarding(&opts()).unwrap();
    assert!(p.env.iter().all(|e| !e.value.is_secret()));
    assert!(p.files.iter().all(|f| !f.content.is_secret()));
    let state = json_of(file(&p, "/run/airlock/claude/.claude.json").0);
    assert_eq!(state["hasCompletedOnboarding"], true);
    insta::assert_snapshot!("plan_claude_onboarding", printed(&p));
}

// ---------------------------------------------------------------- codex

fn jwt(claims: Json) -> String {
    use base64::Engine as _;
    let b = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        b(b"{\"alg\":\"none\"}"),
        b(claims.to_string().as_bytes()),
        b(CANARY.as_bytes())
    )
}

fn codex_session(exp: i64, refresh: &str) -> String {
    json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": jwt(json!({"email": "dev@example.com"})),
            "access_token": jwt(json!({"exp": exp})),
            "refresh_token": refresh,
            "account_id": "acc-1"
        },
        "last_refresh": "2026-11-20T10:00:00Z",
        "future_field": {"kept": true}
    })
    .to_string()
}

#[test]
fn codex_api_key_goes_into_auth_json() {
    let key = format!("sk-proj-{CANARY}");
    let p =
        codex::inject::plan(&rec("codex", Method::ApiKey, &format!("{key}\n")), &opts()).unwrap();
    assert_eq!(
        env(&p, "CODEX_HOME"),
        &Value::Plain("/run/airlock/codex".into())
    );
    let (auth, mode) = file(&p, "/run/airlock/codex/auth.json");
    assert!(auth.is_secret());
    assert_eq!(mode, 0o600);
    assert_eq!(
        json_of(auth),
        json!({"auth_mode": "apikey", "OPENAI_API_KEY": key})
    );
    let (config, _) = file(&p, "/run/airlock/codex/config.toml");
    assert!(!config.is_secret());
    let config: toml::Table = text(config).parse().unwrap();
    assert_eq!(
        config["projects"]["/workspace"]["trust_level"].as_str(),
        Some("trusted")
    );
    assert_eq!(config["cli_auth_credentials_store"].as_str(), Some("file"));
    assert_eq!(p.aliases[0].command, "codex");
    assert_eq!(
        p.aliases[0].args,
        ["--dangerously-bypass-approvals-and-sandbox"]
    );
    // no key in the environment: it would not be seen and would only leak further
    assert!(p.env.iter().all(|e| !e.value.is_secret()));
    assert_secrets_marked(&p);
    insta::assert_snapshot!("plan_codex_api_key", printed(&p));
}

#[test]
fn codex_session_keeps_unknown_keys_and_withholds_the_refresh_token() {
    let r = rec(
        "codex",
        Method::Session,
        &codex_session(1_800_000_000, "rt_REFRESH"),
    );
    let p = codex::inject::plan(&r, &opts()).unwrap();
    let auth = json_of(file(&p, "/run/airlock/codex/auth.json").0);
    assert_eq!(auth["tokens"]["refresh_token"], "");
    assert_eq!(auth["tokens"]["account_id"], "acc-1");
    assert_eq!(auth["future_field"]["kept"], true);
    assert_eq!(auth["auth_mode"], "chatgpt");
    assert_secrets_marked(&p);
    insta::assert_snapshot!("plan_codex_session", printed(&p));

    let o = InjectOptions {
        rotation: Rotation::Copy,
        ..opts()
    };
    let auth = json_of(
        file(
            &codex::inject::plan(&r, &o).unwrap(),
            "/run/airlock/codex/auth.json",
        )
        .0,
    );
    assert_eq!(auth["tokens"]["refresh_token"], "rt_REFRESH");

    // One parser of auth.json, shared by capture, status and injection.
    let info = codex::capture::parse_session(r.secret.expose(), "the session").unwrap();
    assert_eq!(info.expires_at.unwrap().as_second(), 1_800_000_000);
    assert!(info.refreshable && info.rotates);
}

#[test]
fn codex_rejects_bad_sessions_and_setup_tokens() {
    let bad_id =
        json!({"tokens": {"id_token": "notajwt", "access_token": CANARY, "refresh_token": "r"}});
    for r in [
        rec("codex", Method::Session, &bad_id.to_string()),
        rec(
            "codex",
            Method::Session,
            &json!({"tokens": null, "x": CANARY}).to_string(),
        ),
        rec("codex", Method::SetupToken, &format!("sk-{CANARY}")),
    ] {
        let e = codex::inject::plan(&r, &opts()).unwrap_err().to_string();
        assert!(!e.contains(CANARY), "{e}");
    }
}

#[test]
fn codex_host_config_loses_host_trust_and_keeps_the_rest() {
    let host = format!(
        "# my codex settings\nmodel = \"gpt-5\"\ncli_auth_credentials_store = \"keyring\"\nforced_login_method = \"chatgpt\"\n\n[projects.\"/home/u/work\"]\ntrust_level = \"trusted\"\n\n[mcp_servers.gh]\ncommand = \"gh-mcp\"\nenv = {{ GITHUB_TOKEN = \"{CANARY}\" }}\n"
    );
    let o = InjectOptions {
        host_config: Some(host),
        ..opts()
    };
    let p =
        codex::inject::plan(&rec("codex", Method::ApiKey, &format!("sk-{CANARY}")), &o).unwrap();
    let (config, _) = file(&p, "/run/airlock/codex/config.toml");
    // copied from the host: may hold tokens, so secret
    assert!(config.is_secret());
    let t = text(config);
    assert!(t.contains("# my codex settings"), "{t}");
    assert!(!t.contains("/home/u/work"), "{t}");
    let parsed: toml::Table = t.parse().unwrap();
    assert_eq!(parsed["model"].as_str(), Some("gpt-5"));
    assert_eq!(parsed["cli_auth_credentials_store"].as_str(), Some("file"));
    assert!(parsed.get("forced_login_method").is_none(), "{t}");
    assert_eq!(parsed["projects"].as_table().unwrap().len(), 1);
    assert!(p.warnings.iter().any(|w| w.contains("forced_login_method")));

    // unparsable: a warning that never quotes the file
    let o = InjectOptions {
        host_config: Some(format!("model = {CANARY}\n[[[")),
        ..opts()
    };
    let p = codex::inject::onboarding(&o).unwrap();
    assert!(!p.warnings.join(" ").contains(CANARY));
    assert!(!file(&p, "/run/airlock/codex/config.toml").0.is_secret());
    insta::assert_snapshot!("plan_codex_onboarding", printed(&p));
}

// ---------------------------------------------------------------- gemini

const GEMINI_DIR: &str = "/run/airlock/gemini/.gemini";

fn selected_type(p: &SandboxPlan) -> Json {
    json_of(file(p, &format!("{GEMINI_DIR}/settings.json")).0)["security"]["auth"]["selectedType"]
        .clone()
}

#[test]
fn gemini_api_key() {
    let key = format!("AIza{CANARY}");
    let p = gemini::inject::plan(&rec("gemini", Method::ApiKey, &key), &opts()).unwrap();
    assert_eq!(env(&p, "GEMINI_API_KEY"), &Value::Secret(Secret::from(key)));
    assert_eq!(
        env(&p, "GEMINI_CLI_HOME"),
        &Value::Plain("/run/airlock/gemini".into())
    );
    assert_eq!(
        env(&p, "GEMINI_CLI_TRUST_WORKSPACE"),
        &Value::Plain("true".into())
    );
    assert_eq!(selected_type(&p), "gemini-api-key");
    assert_eq!(p.aliases[0].args, ["--yolo"]);
    assert_secrets_marked(&p);
    insta::assert_snapshot!("plan_gemini_api_key", printed(&p));
}

#[test]
fn gemini_vertex() {
    let mut r = rec("gemini", Method::ApiKey, &format!("AIza{CANARY}"));
    r.meta.settings.insert("project".into(), "my-proj".into());
    r.meta
        .settings
        .insert("location".into(), "us-central1".into());
    let p = gemini::inject::plan(&r, &opts()).unwrap();
    assert_eq!(selected_type(&p), "vertex-ai");
    assert_eq!(
        env(&p, "GOOGLE_GENAI_USE_VERTEXAI"),
        &Value::Plain("true".into())
    );
    assert_eq!(
        env(&p, "GOOGLE_CLOUD_PROJECT"),
        &Value::Plain("my-proj".into())
    );
    assert_eq!(
        env(&p, "GOOGLE_CLOUD_LOCATION"),
        &Value::Plain("us-central1".into())
    );
    assert!(env(&p, "GOOGLE_API_KEY").is_secret());
    assert!(p.env.iter().all(|e| e.name != "GEMINI_API_KEY"));
    assert!(p.warnings.is_empty());
    assert_secrets_marked(&p);
    insta::assert_snapshot!("plan_gemini_vertex", printed(&p));

    // vertex = "true" alone selects Vertex too; half a location is a warning
    let mut r = rec("gemini", Method::ApiKey, "AIzaX");
    r.meta.settings.insert("vertex".into(), "true".into());
    r.meta.settings.insert("location".into(), "eu".into());
    let p = gemini::inject::plan(&r, &opts()).unwrap();
    assert_eq!(selected_type(&p), "vertex-ai");
    assert_eq!(p.warnings.len(), 1);
}

#[test]
fn gemini_session_is_split_into_its_two_files() {
    let creds = json!({
        "access_token": format!("ya29.{CANARY}"),
        "refresh_token": format!("1//{CANARY}"),
        "scope": "openid",
        "token_type": "Bearer",
        "expiry_date": 1_795_000_000_000_i64
    });
    let wrapper =
        json!({"oauth_creds": creds, "google_accounts": {"active": "dev@example.com", "old": []}});
    let p = gemini::inject::plan(
        &rec("gemini", Method::Session, &wrapper.to_string()),
        &opts(),
    )
    .unwrap();
    let (c, mode) = file(&p, &format!("{GEMINI_DIR}/oauth_creds.json"));
    assert!(c.is_secret());
    assert_eq!(mode, 0o600);
    // not rotating: the refresh token travels
    assert_eq!(json_of(c), creds);
    let (a, _) = file(&p, &format!("{GEMINI_DIR}/google_accounts.json"));
    assert_eq!(json_of(a)["active"], "dev@example.com");
    assert_eq!(selected_type(&p), "oauth-personal");
    assert_secrets_marked(&p);
    insta::assert_snapshot!("plan_gemini_session", printed(&p));

    // a bare oauth_creds.json works too; accounts default to none
    let p =
        gemini::inject::plan(&rec("gemini", Method::Session, &creds.to_string()), &opts()).unwrap();
    assert_eq!(
        json_of(file(&p, &format!("{GEMINI_DIR}/google_accounts.json")).0),
        json!({"active": null, "old": []})
    );
    let info = gemini::capture::parse_session(&creds.to_string(), "the session").unwrap();
    assert!(info.refreshable && !info.rotates);

    // no refresh token: unusable
    let e = gemini::inject::plan(
        &rec(
            "gemini",
            Method::Session,
            &json!({"oauth_creds": {"access_token": CANARY}}).to_string(),
        ),
        &opts(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("refresh token") && !e.contains(CANARY), "{e}");
    assert!(gemini::inject::plan(&rec("gemini", Method::SetupToken, "x"), &opts()).is_err());
}

#[test]
fn gemini_onboarding_trusts_without_auth() {
    let p = gemini::inject::onboarding(&opts()).unwrap();
    assert_eq!(
        env(&p, "GEMINI_CLI_TRUST_WORKSPACE"),
        &Value::Plain("true".into())
    );
    assert_eq!(selected_type(&p), Json::Null);
}

// ---------------------------------------------------------------- custom

#[test]
fn custom_agent_gets_its_key_in_its_variable() {
    let config = Config::parse(
        "[agents.custom.aider]\napi_key_env = \"OPENAI_API_KEY\"\nfiles = [{ path = \".aider/key\", mode = \"0400\" }]\n",
    )
    .unwrap();
    let r = rec("aider", Method::ApiKey, &format!("sk-{CANARY}"));
    let p = plan_for(&r, &opts(), &config).unwrap();
    assert_eq!(p.env.len(), 1);
    assert_eq!(
        env(&p, "OPENAI_API_KEY"),
        &Value::Secret(Secret::from(format!("sk-{CANARY}")))
    );
    assert_eq!(p.files.len(), 1);
    let (f, mode) = file(&p, "~/.aider/key");
    assert_eq!(f, &Value::Secret(Secret::from(format!("sk-{CANARY}"))));
    assert_eq!(mode, 0o400);
    assert!(p.aliases.is_empty());
    insta::assert_snapshot!("plan_custom", printed(&p));

    assert!(plan_for(&rec("aider", Method::Session, "{}"), &opts(), &config).is_err());
    let e = plan_for(&rec("other", Method::ApiKey, "k"), &opts(), &config).unwrap_err();
    assert!(e.to_string().contains("[agents.custom.other]"), "{e}");
    let bad = Config::parse("[agents.custom.aider]\napi_key_env = \"A-B\"\n").unwrap();
    assert!(plan_for(&r, &opts(), &bad).is_err());
}

#[test]
fn workdir_is_trusted_everywhere() {
    let o = InjectOptions {
        workdir: "/home/dev/my \"quoted\" project".into(),
        ..opts()
    };
    let p = claude::inject::onboarding(&o).unwrap();
    let state = json_of(file(&p, "/run/airlock/claude/.claude.json").0);
    assert_eq!(
        state["projects"]["/home/dev/my \"quoted\" project"]["hasTrustDialogAccepted"],
        true
    );
    let p = codex::inject::onboarding(&o).unwrap();
    let config: toml::Table = text(file(&p, "/run/airlock/codex/config.toml").0)
        .parse()
        .unwrap();
    assert_eq!(
        config["projects"]["/home/dev/my \"quoted\" project"]["trust_level"].as_str(),
        Some("trusted")
    );
}
