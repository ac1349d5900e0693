//! What a sandbox receives for the Gemini CLI.
//!
//! Gemini is pointed at [`CLI_HOME`] with `GEMINI_CLI_HOME`, so its files
//! live in [`GEMINI_DIR`] (`$GEMINI_CLI_HOME/.gemini`). The work dir is
//! trusted with `GEMINI_CLI_TRUST_WORKSPACE=true`.
//!
//! | method | sandbox receives |
//! |---|---|
//! | api-key | `GEMINI_API_KEY` (secret env); `settings.json` `selectedType = "gemini-api-key"` |
//! | api-key, Vertex AI | `GOOGLE_API_KEY` (secret env), `GOOGLE_GENAI_USE_VERTEXAI=true`, `GOOGLE_CLOUD_PROJECT`/`GOOGLE_CLOUD_LOCATION` from the credential's settings; `selectedType = "vertex-ai"` |
//! | session | `oauth_creds.json` (0600) + `google_accounts.json`; `selectedType = "oauth-personal"` |
//! | session, broker mode | the account's shared directory mounted at [`GEMINI_DIR`]: `oauth_creds.json` without its refresh token, kept fresh by the watcher; `google_accounts.json`, `settings.json` written when missing |
//! | session, proxy mode | `GOOGLE_CLOUD_ACCESS_TOKEN` (a placeholder, secret env), `GOOGLE_GENAI_USE_GCA=true`, `CODE_ASSIST_ENDPOINT` (the proxy); `selectedType = "oauth-personal"` |
//!
//! Google refresh tokens do not rotate, so sessions are copied whole (but
//! in broker and proxy mode, which keep the refresh token on the host).
//!
//! A stored session is a JSON wrapper holding both of Gemini's documents:
//! `{"oauth_creds": {…}, "google_accounts": {…}}`. A bare `oauth_creds.json`
//! document is accepted as well.

use serde_json::{Value as Json, json};

pub use super::capture::{SETTING_LOCATION, SETTING_PROJECT};
use crate::agents::inject::{InjectOptions, Rotation, plain_json, secret_json, single_line};
use crate::error::{Error, Result};
use crate::plan::{Alias, SandboxPlan, SyncMount, Value};
use crate::secret::Secret;
use crate::vault::{Method, Record};

/// `GEMINI_CLI_HOME` inside the container.
pub const CLI_HOME: &str = "/run/airlock/gemini";
/// Gemini's own directory inside the container.
pub const GEMINI_DIR: &str = "/run/airlock/gemini/.gemini";

/// The credential settings that select Vertex AI: `vertex = "true"`, or a
/// `project` (with `location`, [`SETTING_PROJECT`], [`SETTING_LOCATION`]).
pub const SETTING_VERTEX: &str = "vertex";

/// What broker mode means for a Gemini login (Gemini CLI 0.61, checked
/// with the genuine CLI; docs/broker.md).
pub const BROKER_NOTE: &str = "gemini: broker mode: each gemini process reads its access token once, when it starts (a new `gemini` gets airlock's newest one); a gemini process that runs longer than its token (Google's live about an hour) stops working about 5 minutes before that token expires, as it cannot refresh without the refresh token; for long sessions use --rotation proxy";

const FIX_SESSION: &str =
    "log in on the host with `gemini`, then `airlock auth gemini --from-host`";

/// Whether `record` is used through Vertex AI: `vertex = "true"`, or an API
/// key with a project.
pub fn uses_vertex(record: &Record) -> bool {
    let settings = &record.meta.settings;
    settings.get(SETTING_VERTEX).map(String::as_str) == Some("true")
        || (record.method == Method::ApiKey
            && settings.get(SETTING_PROJECT).is_some_and(|s| !s.is_empty()))
}

/// Onboarding and trust only: what the sandbox gets with no credential.
pub fn onboarding(opts: &InjectOptions) -> Result<SandboxPlan> {
    let mut plan = base(opts);
    plan.add_file(
        format!("{GEMINI_DIR}/settings.json"),
        Value::Plain(plain_json(&json!({}))),
        0o600,
    );
    Ok(plan)
}

/// Everything the sandbox needs to run Gemini with `record`.
pub fn plan(record: &Record, opts: &InjectOptions) -> Result<SandboxPlan> {
    let mut plan = base(opts);
    let settings = &record.meta.settings;
    let project = settings.get(SETTING_PROJECT).filter(|s| !s.is_empty());
    let location = settings.get(SETTING_LOCATION).filter(|s| !s.is_empty());
    let vertex = uses_vertex(record);

    let selected = match record.method {
        Method::ApiKey if vertex => {
            let key = single_line(record, "API key")?;
            plan.set_env("GOOGLE_GENAI_USE_VERTEXAI", Value::Plain("true".into()));
            plan.set_env("GOOGLE_API_KEY", Value::Secret(key));
            if project.is_some() != location.is_some() {
                plan.warnings.push(format!(
                    "the Vertex AI credential {} sets only one of project and location; Gemini uses the API key alone",
                    record.id
                ));
            }
            "vertex-ai"
        }
        Method::ApiKey => {
            let key = single_line(record, "API key")?;
            plan.set_env("GEMINI_API_KEY", Value::Secret(key));
            if let Some(url) = &opts.proxy_url {
                // proxy mode: Gemini's API-key requests go there instead
                plan.set_env("GOOGLE_GEMINI_BASE_URL", Value::Plain(url.clone()));
            }
            "gemini-api-key"
        }
        Method::Session if opts.proxy_url.is_some() => {
            // proxy mode: the record holds a placeholder access token, which
            // Gemini uses as is (no refresh token, no oauth_creds.json), and
            // sends to the Code Assist endpoint, the proxy
            if record.secret.expose().trim_start().starts_with('{') {
                // a whole session here would put its refresh token in the env
                return Err(Error::Other(
                    "proxy mode plans a Gemini login from its placeholder only".into(),
                ));
            }
            let token = single_line(record, "access token")?;
            plan.set_env("GOOGLE_GENAI_USE_GCA", Value::Plain("true".into()));
            plan.set_env("GOOGLE_CLOUD_ACCESS_TOKEN", Value::Secret(token));
            if let Some(url) = &opts.proxy_url {
                plan.set_env("CODE_ASSIST_ENDPOINT", Value::Plain(url.clone()));
            }
            "oauth-personal"
        }
        Method::Session if opts.rotation == Rotation::Broker => {
            // broker mode (docs/broker.md): the account's shared directory
            // is Gemini's directory; the watcher keeps `oauth_creds.json`
            // there without its refresh token and writes each new access
            // token into it. The shim writes the other files only when the
            // directory has none yet.
            let (_, accounts) = split_session(&record.secret)?;
            plan.sync.push(SyncMount {
                agent: "gemini".into(),
                account: record.id.account.clone(),
                truth: None,
                container: GEMINI_DIR.into(),
                broker: true,
            });
            plan.add_file(
                format!("{GEMINI_DIR}/google_accounts.json"),
                Value::Plain(accounts),
                0o600,
            );
            plan.warnings.push(BROKER_NOTE.into());
            "oauth-personal"
        }
        Method::Session => {
            let (creds, accounts) = split_session(&record.secret)?;
            plan.add_file(
                format!("{GEMINI_DIR}/oauth_creds.json"),
                Value::Secret(creds),
                0o600,
            );
            plan.add_file(
                format!("{GEMINI_DIR}/google_accounts.json"),
                Value::Plain(accounts),
                0o600,
            );
            "oauth-personal"
        }
        Method::SetupToken => {
            return Err(Error::invalid(
                format!(
                    "the credential {} is a setup-token, which gemini does not have",
                    record.id
                ),
                "store a Gemini API key (`airlock auth gemini --method api-key`) or a Google login (`airlock auth gemini --from-host`)",
            ));
        }
    };
    // A workspace (Code Assist Standard) login and Vertex both need the project.
    if let Some(p) = project {
        plan.set_env("GOOGLE_CLOUD_PROJECT", Value::Plain(p.clone()));
    }
    if let Some(l) = location {
        plan.set_env("GOOGLE_CLOUD_LOCATION", Value::Plain(l.clone()));
    }
    plan.add_file(
        format!("{GEMINI_DIR}/settings.json"),
        Value::Plain(plain_json(
            &json!({ "security": { "auth": { "selectedType": selected } } }),
        )),
        0o600,
    );
    Ok(plan)
}

fn base(opts: &InjectOptions) -> SandboxPlan {
    let mut plan = SandboxPlan::default();
    plan.set_env("GEMINI_CLI_HOME", Value::Plain(CLI_HOME.into()));
    plan.set_env("GEMINI_CLI_TRUST_WORKSPACE", Value::Plain("true".into()));
    if opts.aliases {
        plan.aliases.push(Alias {
            command: "gemini".into(),
            args: vec!["--yolo".into()],
        });
    }
    plan
}

/// `oauth_creds.json` (secret) and `google_accounts.json` (not secret).
fn split_session(secret: &Secret) -> Result<(Secret, String)> {
    let doc = super::capture::parse_document(secret.expose(), "the stored gemini session")?;
    if !doc.info.refreshable {
        return Err(Error::invalid(
            "the gemini session has no refresh token, so Gemini would ask to log in again within the hour",
            FIX_SESSION,
        ));
    }
    let accounts = match doc.accounts {
        Some(a) => Json::Object(a),
        None => json!({ "active": null, "old": [] }),
    };
    Ok((
        secret_json(&Json::Object(doc.creds))?,
        plain_json(&accounts),
    ))
}
