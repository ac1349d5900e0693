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
//!
//! Google refresh tokens do not rotate, so sessions are copied whole.
//!
//! A stored session is a JSON wrapper holding both of Gemini's documents:
//! `{"oauth_creds": {…}, "google_accounts": {…}}`. A bare `oauth_creds.json`
//! document is accepted as well.

use serde_json::{Map, Value as Json, json};

use crate::agents::inject::{
    InjectOptions, SessionInfo, millis, nonempty_str, parse_object, plain_json, secret_json,
    single_line,
};
use crate::error::{Error, Result};
use crate::plan::{Alias, SandboxPlan, Value};
use crate::secret::Secret;
use crate::vault::{Method, Record};

/// `GEMINI_CLI_HOME` inside the container.
pub const CLI_HOME: &str = "/run/airlock/gemini";
/// Gemini's own directory inside the container.
pub const GEMINI_DIR: &str = "/run/airlock/gemini/.gemini";

/// The credential settings that select Vertex AI: `vertex = "true"`, or a
/// `project` (with `location`).
pub const SETTING_VERTEX: &str = "vertex";
/// Credential setting: the Google Cloud project (`GOOGLE_CLOUD_PROJECT`).
pub const SETTING_PROJECT: &str = "project";
/// Credential setting: the Vertex AI location (`GOOGLE_CLOUD_LOCATION`).
pub const SETTING_LOCATION: &str = "location";

const FIX_SESSION: &str =
    "log in on the host with `gemini`, then `airlock auth gemini --from-host`";

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
    let vertex = settings.get(SETTING_VERTEX).map(String::as_str) == Some("true")
        || (record.method == Method::ApiKey && project.is_some());

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
            "gemini-api-key"
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

/// Session facts from a stored Gemini session (wrapper or bare document).
pub fn session_info(secret: &Secret) -> Result<SessionInfo> {
    let doc = parse_object(secret, "gemini session", FIX_SESSION)?;
    let creds = creds_of(&doc);
    Ok(SessionInfo {
        access_expires_at: creds.and_then(|c| millis(c.get("expiry_date"))),
        has_refresh_token: creds
            .and_then(|c| nonempty_str(c.get("refresh_token")))
            .is_some(),
        rotates: false,
    })
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

/// The credentials object: `oauth_creds` of the wrapper, or the document
/// itself when it is a bare `oauth_creds.json`.
fn creds_of(doc: &Map<String, Json>) -> Option<&Map<String, Json>> {
    match doc.get("oauth_creds") {
        Some(c) => c.as_object(),
        None if doc.contains_key("refresh_token") || doc.contains_key("access_token") => Some(doc),
        None => None,
    }
}

/// `oauth_creds.json` (secret) and `google_accounts.json` (not secret).
fn split_session(secret: &Secret) -> Result<(Secret, String)> {
    let doc = parse_object(secret, "gemini session", FIX_SESSION)?;
    let Some(creds) = creds_of(&doc) else {
        return Err(Error::invalid(
            "the gemini session has no oauth_creds document",
            FIX_SESSION,
        ));
    };
    if nonempty_str(creds.get("refresh_token")).is_none() {
        return Err(Error::invalid(
            "the gemini session has no refresh token, so Gemini would ask to log in again within the hour",
            FIX_SESSION,
        ));
    }
    let accounts = match doc.get("google_accounts") {
        Some(Json::Object(a)) => Json::Object(a.clone()),
        _ => json!({ "active": null, "old": [] }),
    };
    Ok((
        secret_json(&Json::Object(creds.clone()))?,
        plain_json(&accounts),
    ))
}
