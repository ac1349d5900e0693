//! Proxy mode's plans (`--rotation proxy`): for every credential proxy mode
//! serves, the sandbox's plan holds a placeholder of the right shape and the
//! base URL of the proxy, and not one byte of the real credential; the plan
//! carries the grant (agent, account, method, where the real credential is
//! kept) that `airlock run` registers with the proxy.

mod common;

use airlock::Secret;
use airlock::agents::HostEnv;
use airlock::agents::inject::Rotation;
use airlock::config::Config;
use airlock::plan::{SandboxPlan, Value};
use airlock::resolve::{AgentRequest, Request, resolve};
use airlock::sync::Truth;
use airlock::vault::{CredentialId, Metadata, Method, Record, Vault};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::CANARY;
use jiff::Timestamp;
use serde_json::{Value as Json, json};

const URL: &str = "http://host.docker.internal:47211";

fn plan_for(spec: &str, method: Method, secret: &str) -> SandboxPlan {
    let vault = Vault::in_memory();
    let id = CredentialId::parse(spec).unwrap();
    vault
        .backend()
        .put(Record {
            id,
            method,
            secret: Secret::new(secret.to_owned()),
            meta: Metadata::new("stdin"),
        })
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let host = HostEnv {
        home: home.path().to_path_buf(),
        vars: Default::default(),
    };
    let req = Request {
        agents: vec![AgentRequest::parse(spec).unwrap()],
        rotation: Rotation::Proxy,
        proxy_url: Some(URL.into()),
        require_auth: true,
        host_configs: false,
        ..Request::default()
    };
    resolve(&req, &vault, &host, &Config::default(), Timestamp::now())
        .unwrap()
        .plan
}

/// Every value the sandbox would receive, secret or not, exposed.
fn everything(plan: &SandboxPlan) -> String {
    let show = |v: &Value| match v {
        Value::Plain(s) => s.clone(),
        Value::Secret(s) => s.expose().to_owned(),
    };
    let mut all = String::new();
    for e in &plan.env {
        all.push_str(&format!("{}={}\n", e.name, show(&e.value)));
    }
    for f in &plan.files {
        all.push_str(&format!("{}:{}\n", f.path, show(&f.content)));
    }
    all
}

fn env<'a>(plan: &'a SandboxPlan, name: &str) -> Option<&'a Value> {
    plan.env.iter().find(|e| e.name == name).map(|e| &e.value)
}

fn placeholder(plan: &SandboxPlan) -> String {
    assert_eq!(plan.proxy.len(), 1, "one grant");
    match &plan.proxy[0].placeholder {
        Value::Secret(s) => s.expose().to_owned(),
        Value::Plain(_) => panic!("the placeholder must be a secret value"),
    }
}

fn check_grant(plan: &SandboxPlan, spec: &str, method: Method) {
    let g = &plan.proxy[0];
    let id = CredentialId::parse(spec).unwrap();
    assert_eq!(
        (g.agent.as_str(), g.account.as_str()),
        (id.agent.as_str(), id.account.as_str())
    );
    assert_eq!(g.method, method);
    assert_eq!(g.truth, Some(Truth::Vault { id }));
    let all = everything(plan);
    assert!(
        !all.contains(CANARY),
        "a real credential reached the sandbox's plan"
    );
    // nor in the plan's JSON form (what `--json` and logs could show)
    let j = serde_json::to_string(plan).unwrap();
    assert!(!j.contains(CANARY) && !j.contains(&placeholder(plan)));
}

#[test]
fn claude_oauth_session_and_token_become_an_oauth_placeholder() {
    let session = json!({"claudeAiOauth": {"accessToken": format!("sk-ant-oat01-{CANARY}-at"),
        "refreshToken": format!("sk-ant-ort01-{CANARY}-rt"), "expiresAt": 4_102_444_800_000i64,
        "scopes": ["user:inference"], "subscriptionType": "max"}})
    .to_string();
    let token = format!("sk-ant-oat01-{CANARY}-{}", "0123456789".repeat(8));
    for (method, secret) in [(Method::Session, session), (Method::SetupToken, token)] {
        let plan = plan_for("claude:work", method, &secret);
        check_grant(&plan, "claude:work", method);
        let ph = placeholder(&plan);
        assert!(ph.starts_with("sk-ant-oat01-airlock-"), "{method:?}");
        assert!(
            matches!(env(&plan, "CLAUDE_CODE_OAUTH_TOKEN"), Some(Value::Secret(s)) if s.expose() == ph)
        );
        assert_eq!(
            env(&plan, "ANTHROPIC_BASE_URL"),
            Some(&Value::Plain(URL.into()))
        );
        assert!(
            !plan
                .files
                .iter()
                .any(|f| f.path.ends_with(".credentials.json"))
        );
        assert!(
            plan.sync.is_empty(),
            "nothing to sync: the sandbox has no session"
        );
    }
}

#[test]
fn claude_api_key_becomes_an_api_key_placeholder() {
    let plan = plan_for(
        "claude",
        Method::ApiKey,
        &format!("sk-ant-api03-{CANARY}-{}", "x".repeat(80)),
    );
    check_grant(&plan, "claude", Method::ApiKey);
    let ph = placeholder(&plan);
    assert!(ph.starts_with("sk-ant-api03-airlock-"));
    assert!(matches!(env(&plan, "ANTHROPIC_API_KEY"), Some(Value::Secret(s)) if s.expose() == ph));
    // Claude approves the key by its last 20 characters: the placeholder's
    let state = plan
        .files
        .iter()
        .find(|f| f.path.ends_with(".claude.json"))
        .unwrap();
    let Value::Secret(s) = &state.content else {
        panic!("approval is secret")
    };
    assert!(s.expose().contains(&ph[ph.len() - 20..]));
}

#[test]
fn codex_api_key_and_chatgpt_session_point_codex_at_the_proxy() {
    let plan = plan_for(
        "codex",
        Method::ApiKey,
        &format!("sk-proj-{CANARY}-{}", "k".repeat(40)),
    );
    check_grant(&plan, "codex", Method::ApiKey);
    let ph = placeholder(&plan);
    assert!(ph.starts_with("sk-proj-airlock-"));
    let all = everything(&plan);
    assert!(
        all.contains(&format!("openai_base_url = \"{URL}/v1\"")),
        "{}",
        all.len()
    );
    assert!(all.contains(&ph));

    let claims = URL_SAFE_NO_PAD.encode(
        json!({"email": "dev@example.com", "https://api.openai.com/auth":
            {"chatgpt_plan_type": "pro", "chatgpt_account_id": "acc-1"}})
        .to_string(),
    );
    let session = json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null, "tokens": {
        "id_token": format!("eyJhbGciOiJSUzI1NiJ9.{claims}.{CANARY}sig"),
        "access_token": format!("{CANARY}-access"), "refresh_token": format!("{CANARY}-refresh"),
        "account_id": "acc-1"}, "last_refresh": "2026-11-01T00:00:00Z"})
    .to_string();
    let plan = plan_for("codex", Method::Session, &session);
    check_grant(&plan, "codex", Method::Session);
    let ph = placeholder(&plan);
    let auth = plan
        .files
        .iter()
        .find(|f| f.path.ends_with("/auth.json"))
        .unwrap();
    let Value::Secret(s) = &auth.content else {
        panic!("auth.json is secret")
    };
    let v: Json = serde_json::from_str(s.expose()).unwrap();
    assert_eq!(v["tokens"]["access_token"], ph.as_str());
    assert_eq!(v["tokens"]["account_id"], "acc-1");
    let all = everything(&plan);
    assert!(all.contains(&format!("chatgpt_base_url = \"{URL}/backend-api/\"")));
    assert!(all.contains(&format!("openai_base_url = \"{URL}/backend-api/codex\"")));
}

#[test]
fn gemini_api_key_becomes_an_aiza_placeholder() {
    let plan = plan_for(
        "gemini",
        Method::ApiKey,
        &format!("AIza{CANARY}{}", "g".repeat(20)),
    );
    check_grant(&plan, "gemini", Method::ApiKey);
    let ph = placeholder(&plan);
    assert!(ph.starts_with("AIza") && ph.len() == 39, "{}", ph.len());
    assert!(matches!(env(&plan, "GEMINI_API_KEY"), Some(Value::Secret(s)) if s.expose() == ph));
    assert_eq!(
        env(&plan, "GOOGLE_GEMINI_BASE_URL"),
        Some(&Value::Plain(URL.into()))
    );
}

#[test]
fn gemini_google_login_becomes_a_ya29_placeholder_for_code_assist() {
    let session = json!({"oauth_creds": {"access_token": format!("ya29.{CANARY}-access"),
        "refresh_token": format!("1//{CANARY}-refresh"), "scope": "openid", "token_type": "Bearer",
        "id_token": format!("h.{CANARY}.s"), "expiry_date": 4_102_444_800_000i64},
        "google_accounts": {"active": "a@example.com", "old": []}})
    .to_string();
    let plan = plan_for("gemini", Method::Session, &session);
    check_grant(&plan, "gemini", Method::Session);
    let ph = placeholder(&plan);
    assert!(ph.starts_with("ya29.airlock-"), "{}", ph.len());
    assert!(
        matches!(env(&plan, "GOOGLE_CLOUD_ACCESS_TOKEN"), Some(Value::Secret(s)) if s.expose() == ph)
    );
    assert_eq!(
        env(&plan, "GOOGLE_GENAI_USE_GCA"),
        Some(&Value::Plain("true".into()))
    );
    assert_eq!(
        env(&plan, "CODE_ASSIST_ENDPOINT"),
        Some(&Value::Plain(URL.into()))
    );
    // no session document at all: the CLI uses the token as is
    assert!(
        !plan
            .files
            .iter()
            .any(|f| f.path.ends_with("oauth_creds.json")),
        "{:?}",
        plan.files.iter().map(|f| &f.path).collect::<Vec<_>>()
    );
    assert!(everything(&plan).contains("\"oauth-personal\""));
}

#[test]
fn every_sandbox_gets_its_own_placeholder() {
    let key = format!("sk-proj-{CANARY}-{}", "k".repeat(40));
    let a = placeholder(&plan_for("codex", Method::ApiKey, &key));
    let b = placeholder(&plan_for("codex", Method::ApiKey, &key));
    assert_ne!(a, b);
}

/// A credential from a secret reference (`file:`, `cmd:`): the proxy
/// resolves the reference itself, so the grant carries the reference (its
/// text, never the value); `env:` is this command's environment, which the
/// proxy does not share, so it is not offered.
#[test]
fn a_secret_reference_is_resolved_by_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("anthropic");
    let token = format!("sk-ant-oat01-{CANARY}ref0123456789abcdefghijklmnopqrstuvwxyzAB");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let config = Config::parse(&format!(
        "[accounts.claude.default]\nsecret_ref = \"file:{}\"\nmethod = \"token\"\n",
        file.display()
    ))
    .unwrap();
    let host = HostEnv {
        home: dir.path().to_path_buf(),
        vars: Default::default(),
    };
    let req = Request {
        agents: vec![AgentRequest::parse("claude").unwrap()],
        rotation: Rotation::Proxy,
        proxy_url: Some(URL.into()),
        require_auth: true,
        host_configs: false,
        ..Request::default()
    };
    let plan = resolve(&req, &Vault::in_memory(), &host, &config, Timestamp::now())
        .unwrap()
        .plan;
    assert!(
        !everything(&plan).contains(CANARY),
        "no byte of the real token"
    );
    assert_eq!(plan.proxy.len(), 1);
    let r = plan.proxy[0]
        .reference
        .as_ref()
        .expect("the grant carries the reference");
    assert_eq!(r.text, format!("file:{}", file.display()));
    assert!(!serde_json::to_string(&plan.proxy).unwrap().contains(CANARY));
}
