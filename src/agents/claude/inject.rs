//! What a sandbox receives for Claude Code.
//!
//! Claude is pointed at [`CONFIG_DIR`] with `CLAUDE_CONFIG_DIR`; it then reads
//! `.credentials.json`, `settings.json` **and `.claude.json`** from that
//! directory (not from `$HOME`), so everything lives on the container's tmpfs.
//!
//! | method | sandbox receives |
//! |---|---|
//! | setup-token | `CLAUDE_CODE_OAUTH_TOKEN` (secret env) |
//! | api-key | `ANTHROPIC_API_KEY` (secret env) + its last 20 characters in `.claude.json` `customApiKeyResponses.approved` |
//! | session | `.credentials.json` (0600; without the refresh token with rotation `access-only`); with `sync`, the account's shared directory mounted at [`SESSION_DIR`] (`CLAUDE_SECURESTORAGE_CONFIG_DIR`) instead |
//!
//! Always: `.claude.json` with `hasCompletedOnboarding` and trust for the
//! work dir (plus an allow-listed copy of the host's keys), and with aliases
//! on, `settings.json` `skipDangerousModePermissionPrompt` and the
//! `claude --dangerously-skip-permissions` wrapper.

use std::path::PathBuf;

use serde_json::{Map, Value as Json, json};

use crate::agents::HostEnv;
use crate::agents::inject::{InjectOptions, Rotation, plain_json, secret_json, single_line};
use crate::error::{Error, Result};
use crate::plan::{Alias, STATE_DIR, SandboxPlan, SyncMount, Value};
use crate::secret::Secret;
use crate::vault::{Method, Record};

/// Claude's config dir inside the container (`CLAUDE_CONFIG_DIR`).
pub const CONFIG_DIR: &str = "/run/airlock/claude";

/// Where the account's shared session directory is mounted with
/// `--rotation sync` (`CLAUDE_SECURESTORAGE_CONFIG_DIR`): Claude keeps only
/// its credential store there (`.credentials.json`, its refresh and write
/// locks), so `.claude.json` and `settings.json` stay per sandbox in
/// [`CONFIG_DIR`].
pub const SESSION_DIR: &str = "/run/airlock/claude-session";

/// Keys of the host's `~/.claude.json` that are copied into a sandbox. Every
/// other key stays behind: `projects` (the host's trust and history),
/// `primaryApiKey`, `mcpServers` (their `env` often holds tokens),
/// `customApiKeyResponses` (the host's approvals), caches.
pub const HOST_KEYS: &[&str] = &[
    "hasCompletedOnboarding",
    "lastOnboardingVersion",
    "lastReleaseNotesSeen",
    "theme",
    "editorMode",
    "verbose",
    "autoCompactEnabled",
    "preferredNotifChannel",
    "hasAcknowledgedCostThreshold",
    "hasSeenTasksHint",
    "userID",
    "oauthAccount",
];

/// Where the host's `.claude.json` is: in `$CLAUDE_CONFIG_DIR` when set,
/// else `~/.claude.json`.
pub fn host_config_path(env: &HostEnv) -> PathBuf {
    match env.var("CLAUDE_CONFIG_DIR") {
        Some(dir) => PathBuf::from(dir).join(".claude.json"),
        None => env.home.join(".claude.json"),
    }
}

/// Onboarding and trust only: what the sandbox gets with no credential.
pub fn onboarding(opts: &InjectOptions) -> Result<SandboxPlan> {
    build(None, opts)
}

/// Everything the sandbox needs to run Claude with `record`.
pub fn plan(record: &Record, opts: &InjectOptions) -> Result<SandboxPlan> {
    build(Some(record), opts)
}

fn build(record: Option<&Record>, opts: &InjectOptions) -> Result<SandboxPlan> {
    let mut plan = SandboxPlan::default();
    plan.set_env("CLAUDE_CONFIG_DIR", Value::Plain(CONFIG_DIR.into()));

    let mut state = base_state(opts, &mut plan);
    let mut state_is_secret = false;

    if let Some(r) = record {
        match r.method {
            Method::SetupToken => {
                let token = single_line(r, "setup-token")?;
                if token.expose().starts_with("sk-ant-api") {
                    return Err(Error::invalid(
                        format!(
                            "the credential {} is stored as a setup-token but is an API key",
                            r.id
                        ),
                        format!(
                            "store it again with `airlock auth {} --method api-key`",
                            r.id.agent
                        ),
                    ));
                }
                plan.set_env("CLAUDE_CODE_OAUTH_TOKEN", Value::Secret(token));
            }
            Method::ApiKey => {
                let key = single_line(r, "API key")?;
                let approved = last_20(&key);
                state.insert(
                    "customApiKeyResponses".into(),
                    json!({ "approved": [approved.expose()], "rejected": [] }),
                );
                state_is_secret = true;
                plan.set_env("ANTHROPIC_API_KEY", Value::Secret(key));
            }
            Method::Session if opts.rotation.is_shared() => {
                // Validate it as a session; the file itself comes through
                // the shared directory.
                super::capture::parse_document(r.secret.expose(), "the stored claude session")?;
                plan.set_env(
                    "CLAUDE_SECURESTORAGE_CONFIG_DIR",
                    Value::Plain(SESSION_DIR.into()),
                );
                plan.sync.push(SyncMount {
                    agent: "claude".into(),
                    account: r.id.account.clone(),
                    truth: None,
                    container: SESSION_DIR.into(),
                    broker: opts.rotation == Rotation::Broker,
                });
            }
            Method::Session => {
                let creds = session_file(&r.secret, opts.rotation)?;
                plan.add_file(
                    format!("{CONFIG_DIR}/.credentials.json"),
                    Value::Secret(creds),
                    0o600,
                );
            }
        }
        // The host's identity describes the host's claude.ai login: keep it
        // only for a session, where `claude auth status` shows it.
        if r.method != Method::Session {
            state.remove("oauthAccount");
        }
    } else {
        state.remove("oauthAccount");
    }

    if let Some(url) = &opts.proxy_url {
        // proxy mode: Claude sends its requests (with the placeholder) there
        plan.set_env("ANTHROPIC_BASE_URL", Value::Plain(url.clone()));
    }

    let text = plain_json(&Json::Object(state));
    let content = if state_is_secret {
        Value::Secret(Secret::new(text))
    } else {
        Value::Plain(text)
    };
    plan.add_file(format!("{CONFIG_DIR}/.claude.json"), content, 0o600);

    if opts.aliases {
        plan.add_file(
            format!("{CONFIG_DIR}/settings.json"),
            Value::Plain(plain_json(
                &json!({ "skipDangerousModePermissionPrompt": true }),
            )),
            0o644,
        );
        plan.aliases.push(Alias {
            command: "claude".into(),
            args: vec!["--dangerously-skip-permissions".into()],
        });
    }
    debug_assert!(CONFIG_DIR.starts_with(STATE_DIR));
    Ok(plan)
}

/// `.claude.json` before the credential: the host's allow-listed keys, then
/// onboarding done and the work dir trusted.
fn base_state(opts: &InjectOptions, plan: &mut SandboxPlan) -> Map<String, Json> {
    let mut state = Map::new();
    if let Some(text) = &opts.host_config {
        match serde_json::from_str::<Json>(text) {
            Ok(Json::Object(host)) => {
                for key in HOST_KEYS {
                    if let Some(v) = host.get(*key) {
                        state.insert((*key).to_owned(), v.clone());
                    }
                }
            }
            _ => plan.warnings.push(
                "the host's ~/.claude.json is not a JSON object; it was not copied (the sandbox gets a fresh one)"
                    .into(),
            ),
        }
    }
    state.insert("hasCompletedOnboarding".into(), Json::Bool(true));
    let mut projects = Map::new();
    projects.insert(
        opts.workdir.clone(),
        json!({ "hasTrustDialogAccepted": true }),
    );
    state.insert("projects".into(), Json::Object(projects));
    state
}

/// The `.credentials.json` the sandbox gets. With [`Rotation::AccessOnly`]
/// it keeps only `claudeAiOauth`, with the refresh token removed: the
/// sandbox can use the access token but never rotate the session.
fn session_file(secret: &Secret, rotation: Rotation) -> Result<Secret> {
    let (mut doc, _) =
        super::capture::parse_document(secret.expose(), "the stored claude session")?;
    match rotation {
        Rotation::Copy | Rotation::Sync => secret_json(&Json::Object(doc)),
        Rotation::AccessOnly | Rotation::Broker | Rotation::Proxy => {
            strip_refresh_token(&mut doc);
            secret_json(&Json::Object(doc))
        }
    }
}

/// A session document reduced to what a sandbox without the refresh token
/// gets (access-only and broker mode): only `claudeAiOauth`, with
/// `refreshToken` set to `null`.
pub fn strip_refresh_token(doc: &mut Map<String, Json>) {
    let mut oauth = match doc.remove("claudeAiOauth") {
        Some(Json::Object(o)) => o,
        _ => Map::new(),
    };
    oauth.insert("refreshToken".into(), Json::Null);
    doc.clear();
    doc.insert("claudeAiOauth".into(), Json::Object(oauth));
}

/// The last 20 characters of an API key: what `customApiKeyResponses`
/// records. Still secret material.
fn last_20(key: &Secret) -> Secret {
    let v = key.expose();
    let start = v.char_indices().rev().nth(19).map(|(i, _)| i).unwrap_or(0);
    Secret::from(&v[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_20_takes_the_tail() {
        let key = Secret::from("sk-ant-api03-0123456789abcdefghijXYZ");
        assert_eq!(last_20(&key).expose(), "3456789abcdefghijXYZ");
        assert_eq!(last_20(&Secret::from("short")).expose(), "short");
        // counted in characters, never splitting one
        assert_eq!(
            last_20(&Secret::from(&*"é".repeat(25))).expose(),
            "é".repeat(20)
        );
    }

    #[test]
    fn host_config_path_follows_claude_config_dir() {
        let mut env = HostEnv {
            home: "/home/u".into(),
            ..Default::default()
        };
        assert_eq!(
            host_config_path(&env),
            PathBuf::from("/home/u/.claude.json")
        );
        env.vars.insert("CLAUDE_CONFIG_DIR".into(), "/cfg".into());
        assert_eq!(host_config_path(&env), PathBuf::from("/cfg/.claude.json"));
    }
}
