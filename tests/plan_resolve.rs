//! The resolution chain: vault → host login → secret file → none, with
//! expiry states, `--require-auth`, account pins and the project file.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use airlock::agents::HostEnv;
use airlock::config::Config;
use airlock::plan::Value;
use airlock::project::ProjectFile;
use airlock::resolve::{
    AgentRequest, Choices, ExpiryState, Outcome, Request, Resolved, Step, resolve_with,
};
use airlock::vault::{CredentialId, Metadata, Method, Record, Vault};
use airlock::{ExitCode, Result, Secret};
use common::CANARY;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

fn now() -> Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

fn days(n: i64) -> Timestamp {
    now() + SignedDuration::from_hours(24 * n)
}

fn rec(spec: &str, method: Method, secret: &str, expires: Option<Timestamp>) -> Record {
    let mut meta = Metadata::new("stdin");
    meta.created_at = now();
    meta.updated_at = now();
    meta.expires_at = expires;
    Record {
        id: CredentialId::parse(spec).unwrap(),
        method,
        secret: Secret::from(secret),
        meta,
    }
}

/// A setup-token of a plausible length: secret files are validated like
/// `airlock auth --from-file` input, which refuses truncated tokens.
fn token() -> String {
    format!("sk-ant-oat01-{CANARY}-{}", "0123456789".repeat(3))
}

fn only(agent: &str) -> Request {
    Request {
        agents: vec![AgentRequest::parse(agent).unwrap()],
        ..Request::default()
    }
}

struct World {
    vault: Vault,
    host: HostEnv,
    config: Config,
    home: tempfile::TempDir,
    host_logins: Vec<Record>,
    host_error: bool,
}

impl World {
    fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        World {
            vault: Vault::in_memory(),
            host: HostEnv {
                home: home.path().to_path_buf(),
                ..Default::default()
            },
            config: Config::default(),
            home,
            host_logins: Vec::new(),
            host_error: false,
        }
    }

    fn store(&self, r: Record) {
        self.vault.put(r).unwrap();
    }

    fn resolve(&self, req: &Request) -> Result<Resolved> {
        let logins = self.host_logins.clone();
        let fail = self.host_error;
        let host_login = move |agent: &str, _: &HostEnv| -> Result<Option<Record>> {
            if fail {
                return Err(airlock::Error::invalid(
                    "the host's credentials file is empty (0 bytes)",
                    "log in again",
                ));
            }
            Ok(logins.iter().find(|r| r.id.agent == agent).cloned())
        };
        resolve_with(
            req,
            &self.vault,
            &self.host,
            &self.config,
            now(),
            &host_login,
        )
    }

    fn secret_file(&mut self, agent: &str, content: &str, mode: u32, method: Option<&str>) {
        let path = self.home.path().join(format!("{agent}.secret"));
        std::fs::write(&path, content).unwrap();
        set_mode(&path, mode);
        let method = method
            .map(|m| format!("method = \"{m}\"\n"))
            .unwrap_or_default();
        self.config = Config::parse(&format!(
            "[agents.{agent}]\nsecret_file = \"{}\"\n{method}",
            path.display()
        ))
        .unwrap();
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn outcome(r: &Resolved, step: Step) -> Outcome {
    r.resolutions[0].attempt(step).unwrap().outcome.clone()
}

fn no_leak(r: &Resolved) {
    let s = serde_json::to_string(r).unwrap();
    assert!(!s.contains(CANARY), "{s}");
    assert!(!format!("{r:?}").contains(CANARY));
    for w in &r.plan.warnings {
        assert!(!w.contains(CANARY), "{w}");
    }
}

// ------------------------------------------------------------ the vault step

#[test]
fn valid_stored_credential_is_used() {
    let w = World::new();
    w.store(rec("claude", Method::SetupToken, &token(), Some(days(300))));
    let r = w.resolve(&only("claude")).unwrap();
    no_leak(&r);
    let res = &r.resolutions[0];
    assert_eq!(res.used, Some(Step::Vault));
    assert_eq!(res.method, Some(Method::SetupToken));
    assert_eq!(
        res.attempts[0].outcome,
        Outcome::Used {
            state: ExpiryState::Valid,
            expires_at: Some(days(300))
        }
    );
    assert!(r.plan.warnings.is_empty(), "{:?}", r.plan.warnings);
    let s = &r.plan.agents[0];
    assert_eq!(s.credential.as_ref().unwrap().to_string(), "claude:default");
    assert_eq!(s.source, "vault:claude:default");
    assert_eq!(s.delivers, "CLAUDE_CODE_OAUTH_TOKEN");
    insta::assert_snapshot!(
        "plan_resolve_vault_token",
        serde_json::to_string_pretty(&r).unwrap()
    );
}

#[test]
fn expiring_credential_is_used_with_a_warning() {
    let w = World::new();
    w.store(rec("claude", Method::SetupToken, &token(), Some(days(10))));
    let r = w.resolve(&only("claude")).unwrap();
    no_leak(&r);
    assert!(matches!(
        outcome(&r, Step::Vault),
        Outcome::Used {
            state: ExpiryState::Expiring,
            ..
        }
    ));
    assert_eq!(r.plan.warnings.len(), 1);
    assert!(
        r.plan.warnings[0].contains("expires in 10 days"),
        "{:?}",
        r.plan.warnings
    );
    assert!(r.plan.warnings[0].contains("claude setup-token"));
}

#[test]
fn expiring_days_is_configurable() {
    let mut w = World::new();
    w.config = Config::parse("[status]\nexpiring_days = 5\n").unwrap();
    w.store(rec("claude", Method::SetupToken, &token(), Some(days(10))));
    let r = w.resolve(&only("claude")).unwrap();
    assert!(r.plan.warnings.is_empty());
}

#[test]
fn expired_credential_is_skipped_and_the_host_login_used() {
    let mut w = World::new();
    w.store(rec("claude", Method::SetupToken, &token(), Some(days(-1))));
    let mut host = rec("claude", Method::SetupToken, &token(), None);
    host.meta.source = "host:/home/u/.claude/.credentials.json".into();
    w.host_logins.push(host);
    let r = w.resolve(&only("claude")).unwrap();
    no_leak(&r);
    let res = &r.resolutions[0];
    assert!(
        matches!(&res.attempts[0].outcome, Outcome::Skipped { reason } if reason.contains("expired"))
    );
    assert_eq!(res.used, Some(Step::Host));
    assert!(
        r.plan
            .warnings
            .iter()
            .any(|w| w.contains("skipped vault:claude:default"))
    );
    let s = &r.plan.agents[0];
    assert_eq!(s.source, "host:/home/u/.claude/.credentials.json");
    assert_eq!(s.credential, None);
}

#[test]
fn a_broken_stored_credential_falls_through() {
    let mut w = World::new();
    w.store(rec("codex", Method::Session, &format!("{{{CANARY}"), None));
    w.host_logins
        .push(rec("codex", Method::ApiKey, &format!("sk-{CANARY}"), None));
    let r = w.resolve(&only("codex")).unwrap();
    no_leak(&r);
    assert!(
        matches!(outcome(&r, Step::Vault), Outcome::Skipped { reason } if reason.contains("not valid JSON"))
    );
    assert_eq!(r.resolutions[0].used, Some(Step::Host));
}

// ----------------------------------------------------------- sessions

fn claude_session(expires: Timestamp, refresh: &str) -> String {
    json!({"claudeAiOauth": {
        "accessToken": format!("sk-ant-oat01-{CANARY}"),
        "refreshToken": refresh,
        "expiresAt": expires.as_millisecond(),
        "scopes": ["user:inference"]
    }})
    .to_string()
}

#[test]
fn lapsed_session_is_refreshable_only_when_the_sandbox_gets_the_refresh_token() {
    let w = World::new();
    let lapsed = now() - SignedDuration::from_hours(1);
    w.store(rec(
        "claude",
        Method::Session,
        &claude_session(lapsed, "sk-ant-ort01-R"),
        None,
    ));

    // rotation = copy: refreshable, used (with the rotation warning)
    let mut req = only("claude");
    req.rotation = airlock::agents::inject::Rotation::Copy;
    let r = w.resolve(&req).unwrap();
    no_leak(&r);
    assert!(matches!(
        outcome(&r, Step::Vault),
        Outcome::Used {
            state: ExpiryState::Refreshable,
            ..
        }
    ));
    assert!(
        r.plan
            .warnings
            .iter()
            .any(|w| w.contains("invalidates every other copy"))
    );

    // default (access-only): the access token is all the sandbox would get
    let r = w.resolve(&only("claude")).unwrap();
    assert!(
        matches!(outcome(&r, Step::Vault), Outcome::Skipped { reason } if reason.contains("access-only"))
    );
    assert_eq!(r.resolutions[0].used, None);
}

#[test]
fn sync_sessions_get_the_shared_directory_instead_of_a_file() {
    use airlock::agents::inject::Rotation;
    use airlock::sync::Truth;
    let w = World::new();
    let later = now() + SignedDuration::from_hours(7);
    w.store(rec(
        "claude",
        Method::Session,
        &claude_session(later, "sk-ant-ort01-R"),
        None,
    ));
    let mut req = only("claude");
    req.rotation = Rotation::Sync;
    let r = w.resolve(&req).unwrap();
    no_leak(&r);
    assert_eq!(r.resolutions[0].used, Some(Step::Vault));
    // no credential file, no access-only warning: the session is synced
    assert!(
        r.plan
            .files
            .iter()
            .all(|f| !f.path.ends_with(".credentials.json")),
        "{:?}",
        r.plan.files
    );
    assert!(r.plan.warnings.is_empty(), "{:?}", r.plan.warnings);
    assert_eq!(r.plan.sync.len(), 1);
    let m = &r.plan.sync[0];
    assert_eq!(
        (m.agent.as_str(), m.account.as_str()),
        ("claude", "default")
    );
    assert_eq!(
        m.truth,
        Some(Truth::Vault {
            id: CredentialId::parse("claude").unwrap()
        })
    );
    assert_eq!(m.container, "/run/airlock/claude-session");
    assert!(
        r.plan
            .env
            .iter()
            .any(|e| e.name == "CLAUDE_SECURESTORAGE_CONFIG_DIR"
                && e.value == Value::Plain("/run/airlock/claude-session".into()))
    );
    // .claude.json stays per sandbox, in CLAUDE_CONFIG_DIR
    assert!(
        r.plan
            .files
            .iter()
            .any(|f| f.path == "/run/airlock/claude/.claude.json")
    );
    assert_eq!(
        r.plan.agents[0].delivers,
        "/run/airlock/claude-session (synced)"
    );
}

#[test]
fn sync_falls_back_to_access_only_without_a_source_to_write_back_to() {
    use airlock::agents::inject::Rotation;
    let mut w = World::new();
    let later = now() + SignedDuration::from_hours(7);
    w.secret_file(
        "claude",
        &claude_session(later, "sk-ant-ort01-R"),
        0o600,
        Some("session"),
    );
    let mut req = only("claude");
    req.rotation = Rotation::Sync;
    let r = w.resolve(&req).unwrap();
    no_leak(&r);
    assert_eq!(r.resolutions[0].used, Some(Step::SecretFile));
    assert!(r.plan.sync.is_empty());
    assert!(
        r.plan
            .warnings
            .iter()
            .any(|w| w.contains("cannot be synced back")),
        "{:?}",
        r.plan.warnings
    );
    assert_eq!(
        r.plan.agents[0].delivers,
        "/run/airlock/claude/.credentials.json"
    );
}

#[test]
fn access_only_session_warns_how_long_it_lasts() {
    let w = World::new();
    let later = now() + SignedDuration::from_hours(7);
    w.store(rec(
        "claude",
        Method::Session,
        &claude_session(later, "sk-ant-ort01-R"),
        None,
    ));
    let r = w.resolve(&only("claude")).unwrap();
    no_leak(&r);
    assert_eq!(r.resolutions[0].used, Some(Step::Vault));
    assert!(
        r.plan.warnings[0].contains("7 hours"),
        "{:?}",
        r.plan.warnings
    );
    assert!(r.plan.warnings[0].contains("setup-token"));
    assert_eq!(
        r.plan.agents[0].delivers,
        "/run/airlock/claude/.credentials.json"
    );
}

#[test]
fn session_without_refresh_token_expires_like_a_token() {
    let w = World::new();
    let gone = now() - SignedDuration::from_hours(1);
    let creds = json!({"oauth_creds": {"access_token": "a", "refresh_token": "", "expiry_date": gone.as_millisecond()}});
    w.store(rec("gemini", Method::Session, &creds.to_string(), None));
    let r = w.resolve(&only("gemini")).unwrap();
    assert!(
        matches!(outcome(&r, Step::Vault), Outcome::Skipped { reason } if reason.contains("expired"))
    );
}

#[test]
fn gemini_session_with_refresh_token_is_refreshable() {
    let w = World::new();
    let gone = now() - SignedDuration::from_hours(1);
    let creds = json!({"oauth_creds": {"access_token": "a", "refresh_token": CANARY, "expiry_date": gone.as_millisecond()}});
    w.store(rec("gemini", Method::Session, &creds.to_string(), None));
    let r = w.resolve(&only("gemini")).unwrap();
    no_leak(&r);
    assert!(matches!(
        outcome(&r, Step::Vault),
        Outcome::Used {
            state: ExpiryState::Refreshable,
            ..
        }
    ));
    assert!(r.plan.warnings.is_empty(), "{:?}", r.plan.warnings);
}

// -------------------------------------------------------- the host step

#[test]
fn host_login_is_not_used_for_a_pinned_account() {
    let mut w = World::new();
    w.host_logins
        .push(rec("claude", Method::SetupToken, &token(), None));
    let r = w.resolve(&only("claude:work")).unwrap();
    assert_eq!(r.resolutions[0].account, "work");
    assert!(
        matches!(outcome(&r, Step::Host), Outcome::Skipped { reason } if reason.contains("\"work\""))
    );
    assert_eq!(r.resolutions[0].used, None);

    // the config's default account pins too
    w.config = Config::parse("[agents.claude]\naccount = \"work\"\n").unwrap();
    w.store(rec("claude:work", Method::SetupToken, &token(), None));
    let r = w.resolve(&only("claude")).unwrap();
    assert_eq!(r.resolutions[0].used, Some(Step::Vault));
    assert_eq!(r.plan.agents[0].source, "vault:claude:work");
}

#[test]
fn host_errors_are_warnings() {
    let mut w = World::new();
    w.host_error = true;
    let r = w.resolve(&only("codex")).unwrap();
    assert!(
        matches!(outcome(&r, Step::Host), Outcome::Skipped { reason } if reason.contains("0 bytes"))
    );
    assert!(r.plan.warnings.iter().any(|w| w.contains("0 bytes")));
}

#[test]
fn host_configs_are_read_cleaned_and_can_be_turned_off() {
    let w = World::new();
    std::fs::write(
        w.home.path().join(".claude.json"),
        json!({"theme": "light", "primaryApiKey": CANARY, "projects": {"/host": {}}}).to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(w.home.path().join(".codex")).unwrap();
    std::fs::write(
        w.home.path().join(".codex/config.toml"),
        "model = \"o4\"\n[projects.\"/host\"]\ntrust_level = \"trusted\"\n",
    )
    .unwrap();
    w.store(rec("claude", Method::SetupToken, &token(), None));
    let mut req = Request::from_choices(
        &Choices {
            agents: vec!["claude".into(), "codex".into()],
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let r = w.resolve(&req).unwrap();
    let all: String = r
        .plan
        .files
        .iter()
        .map(|f| match &f.content {
            Value::Plain(s) => s.clone(),
            Value::Secret(s) => s.expose().to_owned(),
        })
        .collect();
    assert!(all.contains("\"theme\": \"light\""), "{all}");
    assert!(all.contains("model = \"o4\""), "{all}");
    assert!(!all.contains(CANARY) && !all.contains("/host"), "{all}");

    req.host_configs = false;
    let r = w.resolve(&req).unwrap();
    let claude_json = r
        .plan
        .files
        .iter()
        .find(|f| f.path.ends_with(".claude.json"))
        .unwrap();
    match &claude_json.content {
        Value::Plain(s) => assert!(!s.contains("theme"), "{s}"),
        Value::Secret(_) => panic!("no api key: not secret"),
    }
}

// ---------------------------------------------------- the secret-file step

#[test]
fn secret_file_is_the_last_resort() {
    let mut w = World::new();
    w.secret_file("claude", &format!("{}\n", token()), 0o400, None);
    let r = w.resolve(&only("claude")).unwrap();
    no_leak(&r);
    let res = &r.resolutions[0];
    assert_eq!(res.used, Some(Step::SecretFile));
    // guessed from the value
    assert_eq!(res.method, Some(Method::SetupToken));
    assert_eq!(res.attempts.len(), 3);
    assert_eq!(res.attempts[0].outcome, Outcome::Absent);
    assert_eq!(res.attempts[1].outcome, Outcome::Absent);
    assert!(r.plan.agents[0].source.starts_with("file:/"));
    assert!(r.plan.warnings.is_empty(), "{:?}", r.plan.warnings);
    assert!(
        r.plan
            .env
            .iter()
            .any(|e| e.name == "CLAUDE_CODE_OAUTH_TOKEN" && e.value.is_secret())
    );
}

#[test]
fn secret_file_method_and_problems() {
    let mut w = World::new();
    // explicit method; a world-readable file is used but warned about
    // (a Google API key is 39 characters)
    w.secret_file(
        "gemini",
        &format!("AIza{CANARY}{}", "x".repeat(22)),
        0o644,
        Some("api-key"),
    );
    let r = w.resolve(&only("gemini")).unwrap();
    no_leak(&r);
    assert_eq!(r.resolutions[0].method, Some(Method::ApiKey));
    assert!(
        r.plan
            .warnings
            .iter()
            .any(|w| w.contains("readable by every user"))
    );

    // empty (an interrupted login): skipped, then the "none" warning
    w.secret_file("gemini", "\n", 0o600, None);
    let r = w.resolve(&only("gemini")).unwrap();
    assert!(
        matches!(outcome(&r, Step::SecretFile), Outcome::Skipped { reason } if reason.contains("empty"))
    );
    assert_eq!(r.resolutions[0].used, None);

    // missing
    w.config = Config::parse("[agents.gemini]\nsecret_file = \"/nonexistent/x\"\n").unwrap();
    let r = w.resolve(&only("gemini")).unwrap();
    assert!(
        matches!(outcome(&r, Step::SecretFile), Outcome::Skipped { reason } if reason.contains("/nonexistent/x"))
    );

    // a session document is guessed as a session
    let creds = json!({"oauth_creds": {"access_token": "a", "refresh_token": CANARY}});
    w.secret_file("gemini", &creds.to_string(), 0o600, None);
    let r = w.resolve(&only("gemini")).unwrap();
    assert_eq!(r.resolutions[0].method, Some(Method::Session));
}

#[test]
fn custom_agent_uses_vault_then_its_secret_file() {
    let mut w = World::new();
    let path = w.home.path().join("aider.key");
    std::fs::write(&path, format!("sk-{CANARY}")).unwrap();
    set_mode(&path, 0o600);
    w.config = Config::parse(&format!(
        "[agents.custom.aider]\napi_key_env = \"OPENAI_API_KEY\"\nsecret_file = \"{}\"\n",
        path.display()
    ))
    .unwrap();
    let r = w.resolve(&only("aider")).unwrap();
    no_leak(&r);
    assert_eq!(r.resolutions[0].used, Some(Step::SecretFile));
    // no host step for agents airlock does not know
    assert!(r.resolutions[0].attempt(Step::Host).is_none());
    assert!(
        r.plan
            .env
            .iter()
            .any(|e| e.name == "OPENAI_API_KEY" && e.value.is_secret())
    );

    w.store(rec("aider", Method::ApiKey, "sk-stored", None));
    let r = w.resolve(&only("aider")).unwrap();
    assert_eq!(r.resolutions[0].used, Some(Step::Vault));
}

// ------------------------------------------------------------- nothing

#[test]
fn no_credential_starts_with_onboarding_and_instructions() {
    let w = World::new();
    let r = w.resolve(&only("claude")).unwrap();
    assert_eq!(r.resolutions[0].used, None);
    assert_eq!(r.plan.warnings.len(), 1);
    assert!(
        r.plan.warnings[0].contains("claude setup-token"),
        "{:?}",
        r.plan.warnings
    );
    assert!(r.plan.env.iter().all(|e| !e.value.is_secret()));
    assert!(
        r.plan
            .files
            .iter()
            .any(|f| f.path.ends_with(".claude.json"))
    );
    assert_eq!(r.plan.agents[0].source, "none");
    insta::assert_snapshot!(
        "plan_resolve_none",
        serde_json::to_string_pretty(&r).unwrap()
    );
}

#[test]
fn require_auth_fails_with_exit_9() {
    let w = World::new();
    w.store(rec("claude", Method::SetupToken, &token(), None));
    let mut req = Request::from_choices(
        &Choices {
            agents: vec!["claude".into(), "codex".into()],
            require_auth: true,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let e = w.resolve(&req).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::NoAuth);
    let msg = e.to_string();
    assert!(msg.contains("codex") && !msg.contains("claude,"), "{msg}");
    assert!(msg.contains("codex login"), "{msg}");

    req.agents.pop();
    assert!(w.resolve(&req).is_ok());
}

#[test]
fn unnamed_agents_are_optional() {
    let w = World::new();
    w.store(rec("codex", Method::ApiKey, &format!("sk-{CANARY}"), None));
    // the default request: every built-in agent, optional
    let r = w.resolve(&Request::default()).unwrap();
    no_leak(&r);
    assert_eq!(r.resolutions.len(), 3);
    assert_eq!(r.plan.agents.len(), 1);
    assert_eq!(r.plan.agents[0].agent, "codex");
    assert!(r.plan.warnings.is_empty(), "{:?}", r.plan.warnings);
    assert!(r.plan.env.iter().all(|e| !e.name.starts_with("CLAUDE")));

    // nothing at all: one warning, not one per agent
    let w = World::new();
    let r = w.resolve(&Request::default()).unwrap();
    assert_eq!(r.plan.warnings.len(), 1, "{:?}", r.plan.warnings);
    assert!(r.plan.agents.is_empty() && r.plan.env.is_empty());

    // --require-auth with nothing at all fails
    let req = Request {
        require_auth: true,
        ..Request::default()
    };
    assert_eq!(w.resolve(&req).unwrap_err().exit_code(), ExitCode::NoAuth);
}

#[test]
fn bad_requests_are_usage_errors() {
    let w = World::new();
    let mut twice = only("claude");
    twice
        .agents
        .push(AgentRequest::parse("claude:work").unwrap());
    let mut relative = only("claude");
    relative.workdir = "workspace".into();
    for req in [twice, relative, only("aider")] {
        assert_eq!(w.resolve(&req).unwrap_err().exit_code(), ExitCode::Usage);
    }
}

// ------------------------------------------------------- request building

#[test]
fn command_line_beats_project_file_beats_defaults() {
    let p = ProjectFile::parse(
        "agents = [\"claude:work\", \"gemini\"]\nworkdir = \"/src\"\naliases = false\n[accounts]\ngemini = \"team\"\ncodex = \"ci\"\n",
    )
    .unwrap();
    let req = Request::from_choices(&Choices::default(), Some(&p)).unwrap();
    let got: Vec<_> = req
        .agents
        .iter()
        .map(|a| (a.agent.as_str(), a.account.as_deref(), a.optional))
        .collect();
    assert_eq!(
        got,
        [
            ("claude", Some("work"), false),
            ("gemini", Some("team"), false)
        ]
    );
    assert_eq!(req.workdir, "/src");
    assert!(!req.aliases);
    assert!(!req.require_auth);

    let cli = Choices {
        agents: vec!["codex".into(), "claude".into()],
        workdir: Some("/w".into()),
        aliases: Some(true),
        require_auth: true,
        host_configs: Some(false),
        rotation: Some(airlock::agents::inject::Rotation::Copy),
    };
    let req = Request::from_choices(&cli, Some(&p)).unwrap();
    assert_eq!(req.rotation, airlock::agents::inject::Rotation::Copy);
    let got: Vec<_> = req
        .agents
        .iter()
        .map(|a| (a.agent.as_str(), a.account.as_deref()))
        .collect();
    // pins still apply to agents named without an account
    assert_eq!(got, [("codex", Some("ci")), ("claude", None)]);
    assert_eq!(req.workdir, "/w");
    assert!(req.aliases && req.require_auth && !req.host_configs);

    let req = Request::from_choices(&Choices::default(), None).unwrap();
    assert_eq!(req, Request::default());
    assert!(req.agents.iter().all(|a| a.optional));
}

#[test]
fn aliases_opt_out_reaches_every_agent() {
    let w = World::new();
    let mut req = Request::default();
    req.agents.iter_mut().for_each(|a| a.optional = false);
    req.aliases = false;
    let r = w.resolve(&req).unwrap();
    assert!(r.plan.aliases.is_empty());
    req.aliases = true;
    let r = w.resolve(&req).unwrap();
    let cmds: Vec<_> = r.plan.aliases.iter().map(|a| a.command.as_str()).collect();
    assert_eq!(cmds, ["claude", "codex", "gemini"]);
}

// ------------------------------------------------------------- logging

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_step_is_logged_without_values() {
    let mut w = World::new();
    w.store(rec("claude", Method::SetupToken, &token(), Some(days(-3))));
    w.host_logins.push(rec(
        "claude",
        Method::Session,
        &format!("{{\"claudeAiOauth\":{CANARY}"),
        None,
    ));
    w.secret_file("claude", &token(), 0o600, Some("token"));
    // A global subscriber, not a scoped one: other tests of this binary run in
    // parallel, and with a scoped subscriber a log call site they hit first can
    // cache "nobody listens" and drop this test's lines. Their lines land in
    // the same buffer, which is fine: no log line may hold a secret anyway.
    let buf = Buf::default();
    let writer = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(sub).expect("only this test sets a subscriber");
    let r = w.resolve(&only("claude")).unwrap();
    assert_eq!(r.resolutions[0].used, Some(Step::SecretFile));
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(!log.contains(CANARY), "{log}");
    for needle in [
        "step=\"vault\"",
        "state=\"skipped\"",
        "step=\"host\"",
        "step=\"secret-file\"",
        "state=\"valid\"",
        "method=\"setup-token\"",
    ] {
        assert!(log.contains(needle), "{needle} missing from:\n{log}");
    }
}
