//! Capturing Gemini CLI credentials.
//!
//! | method | input | payload stored | expiry |
//! |---|---|---|---|
//! | `session` | `~/.gemini/oauth_creds.json` + `google_accounts.json` | the wrapper below | `expiry_date` (ms); refreshable when a refresh token is present |
//! | `api-key` | `AIza…` (optionally with Vertex AI project and location) | the trimmed key; Vertex settings in metadata | none |
//!
//! The session payload wraps both host documents, each kept whole (unknown
//! keys included):
//!
//! ```json
//! {"oauth_creds": { …oauth_creds.json… }, "google_accounts": { …google_accounts.json… } | null}
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::agents::HostEnv;
use crate::agents::session::{self, Rejection, SessionFacts, SessionFormat};
use crate::agents::validate::{
    self, HostLogin, SessionInfo, Validated, check_token_shape, foreign_token, invalid,
};
use crate::error::Result;
use crate::secret::Secret;
use crate::vault::Method;

/// The prefix of Google API keys.
pub const API_KEY_PREFIX: &str = "AIza";
/// The length of a Google API key.
pub const API_KEY_LEN: usize = 39;
/// The settings key for the Vertex AI project.
pub const SETTING_PROJECT: &str = "project";
/// The settings key for the Vertex AI location.
pub const SETTING_LOCATION: &str = "location";
/// The session wrapper's key for `oauth_creds.json`.
pub const WRAP_OAUTH: &str = "oauth_creds";
/// The session wrapper's key for `google_accounts.json`.
pub const WRAP_ACCOUNTS: &str = "google_accounts";

/// `oauth_creds.json` as sync sees it: every field belongs to the session,
/// Gemini writes it pretty-printed, and Google rarely rotates refresh
/// tokens, so copies do not break each other.
pub const SESSION: SessionFormat = SessionFormat {
    file_name: "oauth_creds.json",
    keys: &[
        "access_token",
        "refresh_token",
        "scope",
        "token_type",
        "id_token",
        "expiry_date",
    ],
    pretty: true,
    rotates: false,
    check: session_facts,
};

const LOGIN_FIX: &str = "log in again on this machine with `gemini` (choose Login with Google), then run `airlock auth gemini --from-host`";
const API_KEY_FIX: &str = "create a key at aistudio.google.com/apikey and paste the AIza… key";

/// `$GEMINI_CLI_HOME/.gemini`, else `~/.gemini`.
pub fn gemini_dir(env: &HostEnv) -> PathBuf {
    env.var("GEMINI_CLI_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| env.home.clone())
        .join(".gemini")
}

/// `oauth_creds.json`.
pub fn oauth_creds_path(env: &HostEnv) -> PathBuf {
    gemini_dir(env).join(SESSION.file_name)
}

/// `google_accounts.json`.
pub fn google_accounts_path(env: &HostEnv) -> PathBuf {
    gemini_dir(env).join("google_accounts.json")
}

/// The host files that hold a Gemini login.
pub fn host_paths(env: &HostEnv) -> Vec<PathBuf> {
    vec![oauth_creds_path(env), google_accounts_path(env)]
}

/// Guesses the method from the value.
pub fn detect(value: &str) -> Option<Method> {
    let v = value.trim_start();
    if v.starts_with('{') {
        Some(Method::Session)
    } else if v.starts_with(API_KEY_PREFIX) {
        Some(Method::ApiKey)
    } else {
        None
    }
}

/// Checks Vertex AI settings: a Google Cloud project id and a location.
/// Both or neither must be given.
pub fn vertex_settings(
    project: Option<&str>,
    location: Option<&str>,
) -> Result<BTreeMap<String, String>> {
    let mut s = BTreeMap::new();
    match (project, location) {
        (None, None) => return Ok(s),
        (Some(_), None) | (None, Some(_)) => {
            return Err(invalid(
                "Vertex AI",
                "needs both a project and a location",
                "pass both --project and --location (for example --location us-central1)",
            ));
        }
        (Some(p), Some(l)) => {
            let p = p.trim();
            let l = l.trim();
            let project_ok = (6..=30).contains(&p.len())
                && p.starts_with(|c: char| c.is_ascii_lowercase())
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !project_ok {
                return Err(invalid(
                    &format!("the Vertex AI project {p:?}"),
                    "is not a Google Cloud project id",
                    "use the project id (6-30 lowercase letters, digits or hyphens, starting with a letter), as shown by `gcloud projects list`",
                ));
            }
            let location_ok = !l.is_empty()
                && l.len() <= 40
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !location_ok {
                return Err(invalid(
                    &format!("the Vertex AI location {l:?}"),
                    "is not a Google Cloud location",
                    "use a region such as us-central1, europe-west4, or global",
                ));
            }
            s.insert(SETTING_PROJECT.into(), p.into());
            s.insert(SETTING_LOCATION.into(), l.into());
        }
    }
    Ok(s)
}

/// Validates `secret` for `method`; `origin` names where it came from.
/// A session may be the wrapper or a bare `oauth_creds.json`; it is stored
/// as the wrapper.
pub fn validate(
    method: Method,
    secret: &Secret,
    origin: &str,
    _now: Timestamp,
) -> Result<Validated> {
    let value = secret.trimmed();
    match method {
        Method::ApiKey => {
            let what = format!("the Gemini API key ({origin})");
            if !value.expose().starts_with(API_KEY_PREFIX)
                && let Some((desc, suggestion)) = foreign_token(value.expose())
            {
                return Err(invalid(&what, format!("is {desc}"), suggestion));
            }
            check_token_shape(
                &what,
                value.expose(),
                API_KEY_PREFIX,
                API_KEY_LEN,
                API_KEY_FIX,
            )?;
            let mut v = Validated::new(method, value);
            if v.payload.len() != API_KEY_LEN {
                v.warnings.push(format!(
                    "the Gemini API key ({origin}) is longer than the usual {API_KEY_LEN} characters; stored anyway"
                ));
            }
            Ok(v)
        }
        Method::Session => {
            let what = format!("the Gemini login ({origin})");
            let doc = parse_document(value.expose(), &what)?;
            let payload = wrap(doc.creds, doc.accounts);
            Ok(Validated::new(method, payload).with_session(doc.info))
        }
        Method::SetupToken => Err(invalid(
            "gemini",
            "has no setup-token",
            "use --method session (your Google login) or --method api-key",
        )),
    }
}

/// A Gemini session document, parsed: the stored wrapper, or a bare
/// `oauth_creds.json`.
#[derive(Debug)]
pub struct Document {
    /// `oauth_creds.json`, every key kept.
    pub creds: Map<String, Value>,
    /// `google_accounts.json`, when the wrapper holds one.
    pub accounts: Option<Map<String, Value>>,
    /// Expiry, refresh token, the active account.
    pub info: SessionInfo,
}

/// The one parser of Gemini session documents (the wrapper or a bare
/// `oauth_creds.json`), for capture, status and injection alike.
pub fn parse_document(text: &str, what: &str) -> Result<Document> {
    let doc = validate::parse_json_object(what, text, LOGIN_FIX)?;
    let (creds, accounts) = if doc.contains_key(WRAP_OAUTH) {
        let creds = match doc.get(WRAP_OAUTH) {
            Some(Value::Object(o)) => o.clone(),
            _ => {
                return Err(invalid(
                    what,
                    format!("has an {WRAP_OAUTH} entry that is not an object"),
                    LOGIN_FIX,
                ));
            }
        };
        let accounts = match doc.get(WRAP_ACCOUNTS) {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => Some(o.clone()),
            Some(_) => {
                return Err(invalid(
                    what,
                    format!("has a {WRAP_ACCOUNTS} entry that is not an object"),
                    LOGIN_FIX,
                ));
            }
        };
        (creds, accounts)
    } else {
        (doc, None)
    };
    let mut info = parse_oauth_creds(&creds, what)?;
    if let Some(a) = &accounts {
        info.detail = check_accounts(a, what)?;
    }
    Ok(Document {
        creds,
        accounts,
        info,
    })
}

/// Builds the stored session payload from the two documents.
pub fn wrap(creds: Map<String, Value>, accounts: Option<Map<String, Value>>) -> Secret {
    let mut m = Map::new();
    m.insert(WRAP_OAUTH.into(), Value::Object(creds));
    m.insert(
        WRAP_ACCOUNTS.into(),
        accounts.map(Value::Object).unwrap_or(Value::Null),
    );
    Secret::new(Value::Object(m).to_string())
}

fn parse_oauth_creds(creds: &Map<String, Value>, what: &str) -> Result<SessionInfo> {
    match creds.get("access_token") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(invalid(what, "has no access_token", LOGIN_FIX));
        }
        Some(other) => {
            return Err(validate::wrong_type(
                what,
                "an access_token",
                other,
                "a string",
                LOGIN_FIX,
            ));
        }
    }
    let mut warnings = Vec::new();
    let refreshable = match creds.get("refresh_token") {
        Some(Value::String(s)) if !s.trim().is_empty() => true,
        Some(Value::String(_)) | None | Some(Value::Null) => {
            warnings.push(format!(
                "{what} has no refresh_token: a sandbox can use it only until the access token lapses (about an hour)"
            ));
            false
        }
        Some(other) => {
            return Err(validate::wrong_type(
                what,
                "a refresh_token",
                other,
                "a string",
                LOGIN_FIX,
            ));
        }
    };
    let expires_at = validate::millis_field(creds, "expiry_date", what, LOGIN_FIX)?;
    for key in ["token_type", "scope", "id_token"] {
        validate::optional_str(creds, key, &format!("a {key}"), what, LOGIN_FIX)?;
    }
    Ok(SessionInfo {
        expires_at,
        refreshable,
        rotates: SESSION.rotates,
        detail: None,
        warnings,
    })
}

/// Whether sync may propagate a (bare) `oauth_creds.json` document: stricter
/// than [`parse_document`] about the refresh token (a write that drops it
/// must not spread) and the expiry, laxer about the other fields.
fn session_facts(doc: &Map<String, Value>) -> std::result::Result<SessionFacts<'_>, Rejection> {
    session::nonempty_str(doc, "access_token").ok_or(Rejection::NoAccessToken)?;
    let refresh_token =
        session::nonempty_str(doc, "refresh_token").ok_or(Rejection::NoRefreshToken)?;
    let expiry = session::positive_millis(doc.get("expiry_date")).ok_or(Rejection::NoExpiry)?;
    Ok(SessionFacts {
        expiry,
        refresh_token,
    })
}

fn check_accounts(a: &Map<String, Value>, what: &str) -> Result<Option<String>> {
    let active = validate::optional_str(
        a,
        "active",
        "a google_accounts active entry",
        what,
        LOGIN_FIX,
    )?
    .map(str::to_owned);
    match a.get("old") {
        None | Some(Value::Null) | Some(Value::Array(_)) => {}
        Some(_) => {
            return Err(invalid(
                what,
                "has a google_accounts old entry that is not a list",
                LOGIN_FIX,
            ));
        }
    }
    Ok(active)
}

/// Reads a stored session payload (the wrapper) for status and injection.
pub fn parse_session(text: &str, what: &str) -> Result<SessionInfo> {
    parse_document(text, what).map(|d| d.info)
}

/// The host's Gemini login (`oauth_creds.json` plus `google_accounts.json`
/// when present), read (never modified) and validated; `None` when absent.
pub fn find_host_login(env: &HostEnv) -> Result<Option<HostLogin>> {
    let creds_path = oauth_creds_path(env);
    if std::fs::symlink_metadata(&creds_path).is_err() {
        return Ok(None);
    }
    let creds_in = validate::read_input_file(&creds_path, LOGIN_FIX)?;
    let location = validate::tilde(&creds_path, &env.home);
    let what = format!("the Gemini login ({location})");
    let creds = validate::parse_json_object(&what, creds_in.text.expose(), LOGIN_FIX)?;
    let mut warnings = creds_in.warnings;
    let acc_path = google_accounts_path(env);
    let accounts = if std::fs::symlink_metadata(&acc_path).is_ok() {
        let acc_loc = validate::tilde(&acc_path, &env.home);
        let input = validate::read_input_file(&acc_path, LOGIN_FIX)?;
        warnings.extend(input.warnings);
        let what = format!("the Gemini account list ({acc_loc})");
        Some(validate::parse_json_object(
            &what,
            input.text.expose(),
            LOGIN_FIX,
        )?)
    } else {
        None
    };
    let wrapped = wrap(creds, accounts);
    let mut v = validate(Method::Session, &wrapped, &location, Timestamp::now())?;
    v.prepend_warnings(warnings);
    HostLogin::from_validated("gemini", v, location, creds_in.modified).map(Some)
}

/// The exact steps to renew an expiring or expired credential.
pub fn renewal(method: Method, account: &str) -> String {
    let acc = crate::agents::claude::capture::account_flag(account);
    match method {
        Method::ApiKey => format!(
            "create a new key at aistudio.google.com/apikey, then `airlock auth gemini{acc} --method api-key`"
        ),
        _ => format!(
            "run `gemini` on this machine and log in with Google, then `airlock auth gemini{acc} --from-host`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_creds_are_wrapped_and_keys_kept() {
        let bare = r#"{"access_token":"ya29.a","refresh_token":"1//r","expiry_date":1795000000000,"zzz_unknown":[1,2]}"#;
        let v = validate(Method::Session, &Secret::from(bare), "f", Timestamp::now()).unwrap();
        let doc: Value = serde_json::from_str(v.payload.expose()).unwrap();
        assert_eq!(doc[WRAP_OAUTH]["zzz_unknown"], serde_json::json!([1, 2]));
        assert_eq!(doc[WRAP_ACCOUNTS], Value::Null);
        assert!(v.refreshable);
        assert_eq!(v.expires_at.unwrap().as_millisecond(), 1_795_000_000_000);
        // Wrapping is idempotent.
        let again = validate(Method::Session, &v.payload, "f", Timestamp::now()).unwrap();
        assert_eq!(again.payload, v.payload);
    }

    #[test]
    fn vertex_settings_are_checked() {
        let s = vertex_settings(Some("my-proj-1"), Some("us-central1")).unwrap();
        assert_eq!(s[SETTING_PROJECT], "my-proj-1");
        assert!(vertex_settings(Some("my-proj-1"), None).is_err());
        assert!(vertex_settings(Some("Bad Project"), Some("us-central1")).is_err());
        assert!(vertex_settings(None, None).unwrap().is_empty());
    }
}
