//! `airlock status` output pinned by snapshots: every state, computed at a
//! fixed time from stored records and host logins (library level, so the
//! clock and the vault are under the test's control).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use airlock::Secret;
use airlock::agents::Agent;
use airlock::agents::HostEnv;
use airlock::config::Config;
use airlock::status::{self, State, VaultInfo};
use airlock::vault::{CredentialId, Metadata, Method, Record};
use common::CANARY;
use jiff::Timestamp;

const NOW: &str = "2026-11-22T12:00:00Z";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn fixture(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agents")
            .join(rel),
    )
    .unwrap()
}

fn record(
    id: &str,
    method: Method,
    secret: String,
    created: &str,
    expires: Option<&str>,
) -> Record {
    let mut meta = Metadata::new("stdin");
    meta.created_at = ts(created);
    meta.updated_at = ts(created);
    meta.expires_at = expires.map(ts);
    Record {
        id: CredentialId::parse(id).unwrap(),
        method,
        secret: Secret::new(secret),
        meta,
    }
}

fn records() -> Vec<Record> {
    let token = fixture("claude/setup-token.txt").trim().to_owned();
    let mut vertex = record(
        "gemini:vertex",
        Method::ApiKey,
        fixture("gemini/api-key.txt").trim().to_owned(),
        "2026-01-01T00:00:00Z",
        None,
    );
    vertex
        .meta
        .settings
        .insert("project".into(), "my-proj-1".into());
    vertex
        .meta
        .settings
        .insert("location".into(), "us-central1".into());
    vertex.meta.label = Some("team billing".into());
    let mut from_host = record(
        "claude:laptop",
        Method::Session,
        fixture("claude/credentials-lapsed.json"),
        "2026-11-01T08:00:00Z",
        Some("2023-11-14T22:13:20Z"),
    );
    from_host.meta.source = "host:~/.claude/.credentials.json".into();
    vec![
        // valid: a setup-token created a month ago
        record(
            "claude:default",
            Method::SetupToken,
            token.clone(),
            "2026-10-22T12:00:00Z",
            Some("2027-10-22T12:00:00Z"),
        ),
        // expiring: created 350 days ago
        record(
            "claude:ci",
            Method::SetupToken,
            token.clone(),
            "2025-12-07T12:00:00Z",
            Some("2026-12-07T12:00:00Z"),
        ),
        // expired
        record(
            "claude:old",
            Method::SetupToken,
            token,
            "2025-11-01T12:00:00Z",
            Some("2026-11-01T12:00:00Z"),
        ),
        // refreshable: session whose access token lapsed, with a refresh token
        from_host,
        // valid session
        record(
            "codex:default",
            Method::Session,
            fixture("codex/auth-chatgpt.json"),
            "2026-11-20T09:30:00Z",
            Some("2099-12-31T00:00:00Z"),
        ),
        // invalid: a stored session that no longer parses
        record(
            "codex:broken",
            Method::Session,
            "{\"tokens\":".into(),
            "2026-11-20T09:30:00Z",
            None,
        ),
        // API keys never expire
        record(
            "codex:api",
            Method::ApiKey,
            fixture("codex/api-key.txt").trim().to_owned(),
            "2026-06-01T00:00:00Z",
            None,
        ),
        vertex,
    ]
}

fn report(
    config: &Config,
    agents: &[Agent<'_>],
    hosts: &BTreeMap<String, (status::HostResult, String)>,
) -> status::Report {
    status::report(
        agents,
        &records(),
        hosts,
        &BTreeMap::new(),
        VaultInfo {
            backend: "file".into(),
            location: "[DATA]/vault.airlock".into(),
        },
        ts(NOW),
        config,
    )
}

fn hosts() -> (
    tempfile::TempDir,
    BTreeMap<String, (status::HostResult, String)>,
) {
    // The codex host login is not stored (a different document); gemini's
    // host file is broken; claude's host login is the stored claude:laptop.
    let dir = tempfile::tempdir().unwrap();
    let put = |rel: &str, content: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    put(
        ".claude/.credentials.json",
        &fixture("claude/credentials-lapsed.json"),
    );
    put(
        ".codex/auth.json",
        &fixture("codex/auth-chatgpt-lapsed.json"),
    );
    put(".gemini/oauth_creds.json", "");
    let env = HostEnv {
        home: dir.path().to_path_buf(),
        vars: BTreeMap::new(),
    };
    let mut m = BTreeMap::new();
    for a in [Agent::Claude, Agent::Codex, Agent::Gemini] {
        let mut found = a.find_host_login(&env);
        if let Ok(Some(h)) = &mut found {
            h.modified = Some(ts("2026-11-22T11:00:00Z"));
        }
        let first = a.host_paths(&env)[0].clone();
        m.insert(
            a.name().to_owned(),
            (found, airlock::agents::validate::tilde(&first, &env.home)),
        );
    }
    (dir, m)
}

/// Snapshot settings that redact the temporary home.
fn settings(home: &Path) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(&regex_escape(&home.display().to_string()), "[HOME]");
    s
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

#[test]
fn every_state_in_the_table() {
    let config = Config::parse("[agents.custom.aider]\napi_key_env = \"AIDER_KEY\"\n").unwrap();
    let agents = Agent::all(&config);
    let (home, hosts) = hosts();
    let r = report(&config, &agents, &hosts);
    let states: Vec<State> = r.credentials.iter().map(|e| e.state).collect();
    for s in [
        State::Valid,
        State::Expiring,
        State::Expired,
        State::Refreshable,
        State::Missing,
        State::Invalid,
    ] {
        assert!(states.contains(&s), "{s} missing from {states:?}");
    }
    let table = status::table(&r, false);
    assert!(!table.contains(CANARY));
    settings(home.path()).bind(|| {
        insta::assert_snapshot!("status_table", table);
        insta::assert_snapshot!("status_warnings", r.warnings.join("\n"));
    });
}

#[test]
fn json_schema() {
    let config = Config::default();
    let agents = Agent::all(&config);
    let (home, hosts) = hosts();
    let r = report(&config, &agents, &hosts);
    let json = serde_json::to_string_pretty(&r).unwrap();
    assert!(!json.contains(CANARY));
    settings(home.path()).bind(|| insta::assert_snapshot!("status_json", json));
}

#[test]
fn threshold_is_configurable() {
    // claude:ci expires in 15 days.
    for (days, want) in [
        (30, State::Expiring),
        (16, State::Expiring),
        (15, State::Valid),
        (5, State::Valid),
    ] {
        let config = Config::parse(&format!("[status]\nexpiring_days = {days}\n")).unwrap();
        let r = report(&config, &[Agent::Claude], &BTreeMap::new());
        let ci = r
            .credentials
            .iter()
            .find(|e| e.account.as_deref() == Some("ci"))
            .unwrap();
        assert_eq!(ci.state, want, "threshold {days} days");
    }
}
