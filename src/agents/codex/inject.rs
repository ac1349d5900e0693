//! What a sandbox receives for the Codex CLI.
//!
//! Codex is pointed at [`CODEX_HOME`] and reads `auth.json` and
//! `config.toml` from there. `OPENAI_API_KEY` in the environment is not
//! enough (`codex login status` ignores it), so API keys go into `auth.json`
//! in `apikey` mode too.
//!
//! | method | sandbox receives |
//! |---|---|
//! | api-key | `auth.json` `{"auth_mode":"apikey","OPENAI_API_KEY":…}` (0600) |
//! | session | the stored ChatGPT `auth.json` (0600; without the refresh token unless rotation is `copy`) |
//!
//! Always: `config.toml` trusting the work dir, forcing file credential
//! storage (there is no keyring in a container), built on a copy of the
//! host's `config.toml` with every `[projects.*]` entry removed.

use std::path::PathBuf;

use serde_json::{Value as Json, json};
use toml_edit::{DocumentMut, Item, Table, value};

use crate::agents::HostEnv;
use crate::agents::inject::{InjectOptions, Rotation, secret_json, single_line};
use crate::error::{Error, Result};
use crate::plan::{Alias, SandboxPlan, SyncMount, Value};
use crate::secret::Secret;
use crate::vault::{Method, Record};

/// `CODEX_HOME` inside the container.
pub const CODEX_HOME: &str = "/run/airlock/codex";

/// The wrapper's arguments: Codex 0.169 has no `--full-auto` any more; this
/// flag runs without approvals and without Codex's own sandbox, which cannot
/// work inside a container anyway (the container is the sandbox).
pub const ALIAS_ARGS: &[&str] = &["--dangerously-bypass-approvals-and-sandbox"];

/// Where the host's `config.toml` is: `$CODEX_HOME/config.toml`, else
/// `~/.codex/config.toml`.
pub fn host_config_path(env: &HostEnv) -> PathBuf {
    match env.var("CODEX_HOME") {
        Some(dir) => PathBuf::from(dir).join("config.toml"),
        None => env.home.join(".codex").join("config.toml"),
    }
}

/// Onboarding and trust only: what the sandbox gets with no credential.
pub fn onboarding(opts: &InjectOptions) -> Result<SandboxPlan> {
    build(None, opts)
}

/// Everything the sandbox needs to run Codex with `record`.
pub fn plan(record: &Record, opts: &InjectOptions) -> Result<SandboxPlan> {
    build(Some(record), opts)
}

fn build(record: Option<&Record>, opts: &InjectOptions) -> Result<SandboxPlan> {
    let mut plan = SandboxPlan::default();
    plan.set_env("CODEX_HOME", Value::Plain(CODEX_HOME.into()));

    let (mut config, from_host) = base_config(opts, &mut plan);
    if let Some(r) = record {
        let auth = match r.method {
            Method::Session if opts.rotation.is_shared() => {
                // Codex keeps everything in CODEX_HOME: the shared directory
                // is mounted there; the shim writes config.toml only when
                // the directory has none yet (docs/rotation.md §9).
                super::capture::parse_session_document(
                    r.secret.expose(),
                    "the stored codex session",
                )?;
                plan.sync.push(SyncMount {
                    agent: "codex".into(),
                    account: r.id.account.clone(),
                    truth: None,
                    container: CODEX_HOME.into(),
                    broker: opts.rotation == Rotation::Broker,
                });
                None
            }
            Method::ApiKey => {
                let key = single_line(r, "API key")?;
                // `forced_login_method = "chatgpt"` would make Codex refuse the key.
                if config.get("forced_login_method").and_then(Item::as_str) == Some("chatgpt") {
                    config.remove("forced_login_method");
                    plan.warnings.push(
                        "the host's codex config forces a ChatGPT login; the sandbox's copy drops forced_login_method so the API key works".into(),
                    );
                }
                Some(secret_json(
                    &json!({ "auth_mode": "apikey", "OPENAI_API_KEY": key.expose() }),
                )?)
            }
            Method::Session => Some(session_file(&r.secret, opts.rotation)?),
            Method::SetupToken => {
                return Err(Error::invalid(
                    format!(
                        "the credential {} is a setup-token, which codex does not have",
                        r.id
                    ),
                    "store a codex API key (`airlock auth codex --method api-key`) or a ChatGPT session (`airlock auth codex --from-host`)",
                ));
            }
        };
        if let Some(auth) = auth {
            plan.add_file(
                format!("{CODEX_HOME}/auth.json"),
                Value::Secret(auth),
                0o600,
            );
        }
    }

    if let (Some(url), Some(r)) = (&opts.proxy_url, record) {
        // proxy mode: the API (key) or the ChatGPT backend (session) there
        let url = url.trim_end_matches('/');
        if r.method == Method::Session {
            config["chatgpt_base_url"] = value(format!("{url}/backend-api/"));
            config["openai_base_url"] = value(format!("{url}/backend-api/codex"));
        } else {
            config["openai_base_url"] = value(format!("{url}/v1"));
        }
    }

    let text = config.to_string();
    // A host config may hold tokens airlock cannot recognise (MCP server
    // `env`, provider headers): treat the copy as secret.
    let content = if from_host {
        Value::Secret(Secret::new(text))
    } else {
        Value::Plain(text)
    };
    plan.add_file(format!("{CODEX_HOME}/config.toml"), content, 0o600);

    if opts.aliases {
        plan.aliases.push(Alias {
            command: "codex".into(),
            args: ALIAS_ARGS.iter().map(|s| (*s).to_owned()).collect(),
        });
    }
    Ok(plan)
}

/// `config.toml` for the sandbox and whether it started from the host's.
fn base_config(opts: &InjectOptions, plan: &mut SandboxPlan) -> (DocumentMut, bool) {
    let mut from_host = false;
    let mut doc = match opts.host_config.as_deref().map(str::parse::<DocumentMut>) {
        Some(Ok(d)) => {
            from_host = true;
            clean_host_config(d)
        }
        Some(Err(_)) => {
            // The parser's message quotes the offending line: never show it.
            plan.warnings.push(
                "the host's codex config.toml could not be parsed as TOML; it was not copied (the sandbox gets a fresh one)".into(),
            );
            DocumentMut::new()
        }
        None => DocumentMut::new(),
    };
    doc["cli_auth_credentials_store"] = value("file");
    trust(&mut doc, &opts.workdir);
    (doc, from_host)
}

/// Removes the host's project trust entries: host paths mean nothing in the
/// sandbox, and trust must not leak in from elsewhere. Comments and layout
/// of everything else are kept.
pub fn clean_host_config(mut doc: DocumentMut) -> DocumentMut {
    doc.remove("projects");
    doc
}

/// Adds `[projects."<workdir>"] trust_level = "trusted"`.
fn trust(doc: &mut DocumentMut, workdir: &str) {
    let projects = doc.entry("projects").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    if let Some(projects) = projects.as_table_mut() {
        let mut entry = Table::new();
        entry["trust_level"] = value("trusted");
        projects.insert(workdir, Item::Table(entry));
    }
}

/// The `auth.json` the sandbox gets. With [`Rotation::AccessOnly`] the
/// refresh token is blanked (Codex requires the field): the sandbox uses
/// the access token until it expires and never rotates the session.
fn session_file(secret: &Secret, rotation: Rotation) -> Result<Secret> {
    let (mut doc, _) =
        super::capture::parse_session_document(secret.expose(), "the stored codex session")?;
    if rotation == Rotation::AccessOnly {
        strip_refresh_token(&mut doc);
    }
    secret_json(&Json::Object(doc))
}

/// A session document without its refresh token (access-only and broker
/// mode): `tokens.refresh_token` blanked, since Codex requires the field.
pub fn strip_refresh_token(doc: &mut serde_json::Map<String, Json>) {
    if let Some(t) = doc.get_mut("tokens").and_then(Json::as_object_mut) {
        t.insert("refresh_token".into(), Json::String(String::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_keeps_comments_and_drops_every_project() {
        let host = "# my settings\nmodel = \"o3\" # fast\n\n[projects.\"/home/u/a\"]\ntrust_level = \"trusted\"\n\n[mcp_servers.x]\ncommand = \"x\"\n\n[projects.\"/home/u/b\"]\ntrust_level = \"untrusted\"\n";
        let doc = clean_host_config(host.parse().unwrap()).to_string();
        assert!(doc.contains("# my settings"), "{doc}");
        assert!(doc.contains("model = \"o3\" # fast"), "{doc}");
        assert!(doc.contains("[mcp_servers.x]"), "{doc}");
        assert!(!doc.contains("/home/u"), "{doc}");
    }

    #[test]
    fn host_config_path_follows_codex_home() {
        let mut env = HostEnv {
            home: "/home/u".into(),
            ..Default::default()
        };
        assert_eq!(
            host_config_path(&env),
            PathBuf::from("/home/u/.codex/config.toml")
        );
        env.vars.insert("CODEX_HOME".into(), "/c".into());
        assert_eq!(host_config_path(&env), PathBuf::from("/c/config.toml"));
    }
}
