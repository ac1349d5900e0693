//! Capturing Codex CLI credentials.
//!
//! | method | input | payload stored | expiry |
//! |---|---|---|---|
//! | `session` | `$CODEX_HOME/auth.json` with ChatGPT tokens | the whole JSON document, unknown keys kept | the access token's JWT `exp`; refreshable when a refresh token is present |
//! | `api-key` | `sk-proj-…` / `sk-…` (or an `auth.json` in API-key mode, from the host) | the trimmed key | none |
//!
//! Codex refuses to load an `auth.json` whose `tokens.id_token` is not
//! JWT-shaped, so airlock refuses to store one.

use std::path::PathBuf;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

use crate::agents::HostEnv;
use crate::agents::jwt;
use crate::agents::session::{self, Rejection, SessionFacts, SessionFormat};
use crate::agents::validate::{
    self, HostLogin, SessionInfo, Validated, check_token_shape, foreign_token, invalid,
};
use crate::error::Result;
use crate::secret::Secret;
use crate::vault::Method;

/// The prefix every OpenAI API key starts with (`sk-proj-`, `sk-svcacct-`, legacy `sk-`).
pub const API_KEY_PREFIX: &str = "sk-";

/// Codex refreshes a token without a readable `exp` once `last_refresh` is
/// this old (`TOKEN_REFRESH_INTERVAL`).
pub const REFRESH_INTERVAL: SignedDuration = SignedDuration::from_hours(8 * 24);

/// `auth.json` as sync sees it: Codex writes it pretty-printed, and refresh
/// tokens are single-use.
pub const SESSION: SessionFormat = SessionFormat {
    file_name: "auth.json",
    keys: &["tokens", "last_refresh", "auth_mode"],
    pretty: true,
    rotates: true,
    check: session_facts,
};

const MIN_KEY_LEN: usize = 40;
const LOGIN_FIX: &str =
    "log in again on this machine with `codex login`, then run `airlock auth codex --from-host`";
const API_KEY_FIX: &str =
    "create a key at platform.openai.com/api-keys and paste the sk-proj-… key";

/// `$CODEX_HOME`, else `~/.codex`.
pub fn codex_home(env: &HostEnv) -> PathBuf {
    env.var("CODEX_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| env.home.join(".codex"))
}

/// `$CODEX_HOME/auth.json`.
pub fn auth_json_path(env: &HostEnv) -> PathBuf {
    codex_home(env).join(SESSION.file_name)
}

/// The host files that hold a Codex login.
pub fn host_paths(env: &HostEnv) -> Vec<PathBuf> {
    vec![auth_json_path(env)]
}

/// Guesses the method from the value.
pub fn detect(value: &str) -> Option<Method> {
    let v = value.trim_start();
    if v.starts_with('{') {
        Some(Method::Session)
    } else if v.starts_with(API_KEY_PREFIX) && !v.starts_with("sk-ant-") {
        Some(Method::ApiKey)
    } else {
        None
    }
}

/// What an `auth.json` holds.
#[derive(Debug)]
pub enum AuthDoc {
    /// API-key mode: the key (validated).
    ApiKey(Secret),
    /// A ChatGPT login.
    ChatGpt(SessionInfo),
}

/// Validates `secret` for `method`; `origin` names where it came from.
pub fn validate(
    method: Method,
    secret: &Secret,
    origin: &str,
    _now: Timestamp,
) -> Result<Validated> {
    let value = secret.trimmed();
    match method {
        Method::ApiKey => {
            let what = format!("the OpenAI API key ({origin})");
            validate_key(&what, value.expose())?;
            Ok(Validated::new(method, value))
        }
        Method::Session => {
            let what = format!("the Codex login ({origin})");
            match parse_auth_json(value.expose(), &what)? {
                AuthDoc::ApiKey(_) => Err(invalid(
                    &what,
                    "holds an API key (auth_mode apikey), not a ChatGPT login",
                    "store the key with `airlock auth codex --method api-key`, or use --from-host, which stores it as an API key",
                )),
                AuthDoc::ChatGpt(info) => Ok(Validated::new(method, value).with_session(info)),
            }
        }
        Method::SetupToken => Err(invalid(
            "codex",
            "has no setup-token",
            "use --method session (your ChatGPT login) or --method api-key",
        )),
    }
}

fn validate_key(what: &str, value: &str) -> Result<()> {
    if (value.starts_with("sk-ant-") || !value.starts_with(API_KEY_PREFIX))
        && let Some((desc, suggestion)) =
            foreign_token(value).filter(|(d, _)| !d.contains("OpenAI"))
    {
        return Err(invalid(what, format!("is {desc}"), suggestion));
    }
    check_token_shape(what, value, API_KEY_PREFIX, MIN_KEY_LEN, API_KEY_FIX)
}

/// Reads an `auth.json` document: API-key mode or a ChatGPT login (with the
/// access token's expiry and whether it can be refreshed).
pub fn parse_auth_json(text: &str, what: &str) -> Result<AuthDoc> {
    parse_document(text, what).map(|(_, d)| d)
}

/// [`parse_auth_json`], also returning the document itself: the one parser
/// of `auth.json`, for capture, status and injection alike.
pub fn parse_document(text: &str, what: &str) -> Result<(Map<String, Value>, AuthDoc)> {
    let doc = validate::parse_json_object(what, text, LOGIN_FIX)?;
    let mode = validate::optional_str(&doc, "auth_mode", "an auth_mode", what, LOGIN_FIX)?;
    let key = validate::optional_str(&doc, "OPENAI_API_KEY", "an OPENAI_API_KEY", what, LOGIN_FIX)?;
    let api_mode = match mode {
        Some("apikey") => true,
        None => key.is_some(),
        Some(_) => false,
    };
    if api_mode {
        let Some(key) = key else {
            return Err(invalid(
                what,
                "is in API-key mode but holds no OPENAI_API_KEY",
                "run `printenv OPENAI_API_KEY | codex login --with-api-key`, or store the key with `airlock auth codex --method api-key`",
            ));
        };
        let kwhat = format!("the OPENAI_API_KEY in {what}");
        validate_key(&kwhat, key.trim())?;
        let key = Secret::from(key.trim());
        return Ok((doc, AuthDoc::ApiKey(key)));
    }
    let mut warnings = Vec::new();
    if let Some(m) = mode.filter(|m| *m != "chatgpt") {
        warnings.push(format!(
            "{what} use auth_mode {m:?}, which this airlock does not know; stored as a ChatGPT session"
        ));
    }
    let tokens = match doc.get("tokens") {
        Some(Value::Object(t)) => t,
        None | Some(Value::Null) => {
            return Err(invalid(
                what,
                "has no tokens, so it holds no ChatGPT login",
                LOGIN_FIX,
            ));
        }
        Some(other) => {
            return Err(invalid(
                what,
                format!(
                    "has tokens that are a {}, not an object",
                    validate::json_kind(other)
                ),
                LOGIN_FIX,
            ));
        }
    };
    let id_token = required_string(tokens, "id_token", what)?;
    let id_claims = jwt::claims(id_token).map_err(|e| {
        invalid(
            what,
            format!("has a tokens.id_token that {e}; Codex itself refuses to load such a file"),
            LOGIN_FIX,
        )
    })?;
    let access = required_string(tokens, "access_token", what)?;
    let refresh = match tokens.get("refresh_token") {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => {
            return Err(invalid(what, "has no tokens.refresh_token", LOGIN_FIX));
        }
        Some(other) => {
            return Err(validate::wrong_type(
                what,
                "a tokens.refresh_token",
                other,
                "a string",
                LOGIN_FIX,
            ));
        }
    };
    validate::optional_str(tokens, "account_id", "a tokens.account_id", what, LOGIN_FIX)?;
    match doc.get("last_refresh") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.parse::<Timestamp>().is_ok() => {}
        Some(_) => {
            return Err(invalid(
                what,
                "has a last_refresh that is not an RFC 3339 time",
                LOGIN_FIX,
            ));
        }
    }
    let expires_at = access_expiry(access);
    let plan = id_claims
        .get("https://api.openai.com/auth")
        .and_then(|a| a.get("chatgpt_plan_type"))
        .and_then(Value::as_str);
    let detail = match (jwt::email(&id_claims), plan) {
        (Some(e), Some(p)) => Some(format!("{e} ({p})")),
        (Some(e), None) => Some(e),
        (None, Some(p)) => Some(format!("ChatGPT {p}")),
        (None, None) => None,
    };
    let info = SessionInfo {
        expires_at,
        refreshable: !refresh.trim().is_empty(),
        rotates: SESSION.rotates,
        detail,
        warnings,
    };
    Ok((doc, AuthDoc::ChatGpt(info)))
}

/// The access token's JWT `exp`, when it has one.
fn access_expiry(access: &str) -> Option<Timestamp> {
    jwt::claims(access).ok().and_then(|c| jwt::expiry(&c))
}

/// Whether sync may propagate an `auth.json` document: it must hold a
/// ChatGPT session with both tokens and a JWT-shaped `id_token`. Its expiry
/// is the access token's `exp`, else `last_refresh` + [`REFRESH_INTERVAL`]
/// (when Codex would refresh it). Laxer than [`parse_document`] about the
/// other fields.
fn session_facts(doc: &Map<String, Value>) -> std::result::Result<SessionFacts<'_>, Rejection> {
    let t = doc
        .get("tokens")
        .and_then(Value::as_object)
        .ok_or(Rejection::NoCredential)?;
    let access = session::nonempty_str(t, "access_token").ok_or(Rejection::NoAccessToken)?;
    let refresh_token =
        session::nonempty_str(t, "refresh_token").ok_or(Rejection::NoRefreshToken)?;
    let id = session::nonempty_str(t, "id_token").ok_or(Rejection::BadIdToken)?;
    if jwt::claims(id).is_err() {
        return Err(Rejection::BadIdToken);
    }
    let refresh_due = || {
        session::nonempty_str(doc, "last_refresh")
            .and_then(|s| s.parse::<Timestamp>().ok())
            .and_then(|t| t.checked_add(REFRESH_INTERVAL).ok())
    };
    let expiry = access_expiry(access)
        .or_else(refresh_due)
        .ok_or(Rejection::NoExpiry)?;
    Ok(SessionFacts {
        expiry,
        refresh_token,
    })
}

fn required_string<'a>(tokens: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a str> {
    match tokens.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(invalid(what, format!("has no tokens.{key}"), LOGIN_FIX))
        }
        Some(other) => Err(validate::wrong_type(
            what,
            &format!("a tokens.{key}"),
            other,
            "a string",
            LOGIN_FIX,
        )),
    }
}

/// Reads a session document's expiry and refresh token; an error if it is
/// not a ChatGPT login.
pub fn parse_session(text: &str, what: &str) -> Result<SessionInfo> {
    parse_session_document(text, what).map(|(_, info)| info)
}

/// [`parse_session`], also returning the document itself.
pub fn parse_session_document(text: &str, what: &str) -> Result<(Map<String, Value>, SessionInfo)> {
    match parse_document(text, what)? {
        (doc, AuthDoc::ChatGpt(info)) => Ok((doc, info)),
        (_, AuthDoc::ApiKey(_)) => Err(invalid(
            what,
            "holds an API key, not a ChatGPT login",
            "store it again with `airlock auth codex --from-host`",
        )),
    }
}

/// The host's Codex login (ChatGPT session, or API key in `auth.json`),
/// read (never modified) and validated; `None` when there is none.
pub fn find_host_login(env: &HostEnv) -> Result<Option<HostLogin>> {
    let path = auth_json_path(env);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let input = validate::read_input_file(&path, LOGIN_FIX)?;
    let location = validate::tilde(&path, &env.home);
    let what = format!("the Codex login ({location})");
    let mut v = match parse_auth_json(input.text.expose(), &what)? {
        AuthDoc::ApiKey(key) => {
            let mut v = Validated::new(Method::ApiKey, key);
            v.detail = Some("API key from auth.json".into());
            v
        }
        AuthDoc::ChatGpt(_) => validate(Method::Session, &input.text, &location, Timestamp::now())?,
    };
    v.prepend_warnings(input.warnings);
    HostLogin::from_validated("codex", v, location, input.modified).map(Some)
}

/// The exact steps to renew an expiring or expired credential.
pub fn renewal(method: Method, account: &str) -> String {
    let acc = crate::agents::claude::capture::account_flag(account);
    match method {
        Method::ApiKey => format!(
            "create a new key at platform.openai.com/api-keys, then `airlock auth codex{acc} --method api-key`"
        ),
        _ => {
            format!("run `codex login` on this machine, then `airlock auth codex{acc} --from-host`")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chatgpt_doc(exp: i64) -> String {
        let id = jwt::fake(
            &serde_json::json!({"email":"a@example.com","https://api.openai.com/auth":{"chatgpt_plan_type":"plus"}}),
        );
        let access = jwt::fake(&serde_json::json!({ "exp": exp }));
        serde_json::json!({"auth_mode":"chatgpt","OPENAI_API_KEY":null,"tokens":{"id_token":id,"access_token":access,"refresh_token":"rt_x","account_id":"acc"},"last_refresh":"2026-11-22T13:22:00.000000Z","future_key":{"a":1}}).to_string()
    }

    #[test]
    fn chatgpt_session_expiry_and_detail() {
        let info = parse_session(&chatgpt_doc(1_800_000_000), "f").unwrap();
        assert_eq!(info.expires_at.unwrap().as_second(), 1_800_000_000);
        assert!(info.refreshable);
        assert_eq!(info.detail.as_deref(), Some("a@example.com (plus)"));
    }

    #[test]
    fn api_key_mode_is_recognised() {
        let key = format!("sk-proj-{}", "A".repeat(60));
        let doc = serde_json::json!({"auth_mode":"apikey","OPENAI_API_KEY":key}).to_string();
        match parse_auth_json(&doc, "f").unwrap() {
            AuthDoc::ApiKey(k) => assert_eq!(k.expose(), key),
            other => panic!("{other:?}"),
        }
        // No auth_mode, but a key: API-key mode (Codex's resolved_mode).
        let doc = serde_json::json!({"OPENAI_API_KEY":key}).to_string();
        assert!(matches!(
            parse_auth_json(&doc, "f").unwrap(),
            AuthDoc::ApiKey(_)
        ));
    }

    #[test]
    fn id_token_must_be_a_jwt() {
        let mut doc: Value = serde_json::from_str(&chatgpt_doc(1)).unwrap();
        doc["tokens"]["id_token"] = Value::from("notajwt");
        let e = parse_auth_json(&doc.to_string(), "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("id_token"), "{e}");
        assert!(e.contains("not a JWT"), "{e}");
    }

    #[test]
    fn anthropic_keys_are_pointed_at_claude() {
        let key = format!("sk-ant-api03-{}AA", "x".repeat(93));
        let e = validate(
            Method::ApiKey,
            &Secret::from(key.as_str()),
            "stdin",
            Timestamp::now(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("auth claude"), "{e}");
    }
}
