//! Capturing Claude Code credentials.
//!
//! Three kinds, three [`Method`]s:
//!
//! | method | input | payload stored | expiry |
//! |---|---|---|---|
//! | `setup-token` | `sk-ant-oat01-…` from `claude setup-token` | the trimmed token | created + 365 days (the token carries no date) |
//! | `session` | `.credentials.json` (or the macOS keychain item) | the whole JSON document, unknown keys kept | `claudeAiOauth.expiresAt` (ms); refreshable when a refresh token is present |
//! | `api-key` | `sk-ant-api03-…` | the trimmed key | none |
//!
//! A session only counts as a login when `claudeAiOauth.scopes` contains
//! `user:inference`: that is Claude Code's own test.

use std::path::PathBuf;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

use crate::agents::HostEnv;
use crate::agents::session::{self, Rejection, SessionFacts, SessionFormat};
use crate::agents::validate::{
    self, HostLogin, SessionInfo, Validated, check_token_shape, foreign_token, invalid,
};
use crate::error::Result;
use crate::secret::Secret;
use crate::vault::Method;

/// The prefix of tokens printed by `claude setup-token`.
pub const SETUP_TOKEN_PREFIX: &str = "sk-ant-oat01-";
/// The prefix of Anthropic Console API keys.
pub const API_KEY_PREFIX: &str = "sk-ant-api03-";
/// The length of an Anthropic API key (prefix, 93 characters, `AA`).
pub const API_KEY_LEN: usize = 108;
/// How long a setup-token lives (`claude setup-token` asks for one year).
pub const SETUP_TOKEN_LIFETIME: SignedDuration = SignedDuration::from_hours(365 * 24);
/// The scope without which Claude Code does not count a login.
pub const INFERENCE_SCOPE: &str = "user:inference";
/// The session file's key that holds the login.
pub const OAUTH_KEY: &str = "claudeAiOauth";

/// `.credentials.json` as sync sees it: Claude writes it compact, and
/// refresh tokens are single-use.
pub const SESSION: SessionFormat = SessionFormat {
    file_name: ".credentials.json",
    keys: &[OAUTH_KEY],
    pretty: false,
    rotates: true,
    check: session_facts,
};

const MIN_TOKEN_LEN: usize = 40;
const LOGIN_FIX: &str = "log in again on this machine with `claude auth login`, then run `airlock auth claude --from-host`";
const TOKEN_FIX: &str = "run `claude setup-token` and paste the sk-ant-oat01-… token it prints";
const API_KEY_FIX: &str =
    "create a key at console.anthropic.com (Settings > API keys) and paste the sk-ant-api03-… key";

/// Claude Code's configuration directory: `$CLAUDE_CONFIG_DIR`, else `~/.claude`.
pub fn config_dir(env: &HostEnv) -> PathBuf {
    env.var("CLAUDE_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env.home.join(".claude"))
}

/// The credentials file: `$CLAUDE_SECURESTORAGE_CONFIG_DIR`, else
/// `$CLAUDE_CONFIG_DIR`, else `~/.claude`, joined with `.credentials.json`.
pub fn credentials_path(env: &HostEnv) -> PathBuf {
    env.var("CLAUDE_SECURESTORAGE_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| config_dir(env))
        .join(SESSION.file_name)
}

/// The host files that hold a Claude login (for status, doctor, teardown).
pub fn host_paths(env: &HostEnv) -> Vec<PathBuf> {
    vec![credentials_path(env)]
}

/// The macOS keychain service: `Claude Code-credentials`, plus
/// `-<first 8 hex of sha256(config dir)>` when the config dir was moved.
pub fn keychain_service(env: &HostEnv) -> String {
    use sha2::Digest as _;
    let dir = env
        .var("CLAUDE_SECURESTORAGE_CONFIG_DIR")
        .or_else(|| env.var("CLAUDE_CONFIG_DIR"));
    match dir {
        None => "Claude Code-credentials".to_owned(),
        Some(d) => {
            let hash = sha2::Sha256::digest(d.as_bytes());
            let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
            format!("Claude Code-credentials-{hex}")
        }
    }
}

/// The macOS keychain account: `$USER` when it is a plain name, else
/// `claude-code-user` (Claude Code's own rule).
pub fn keychain_account(env: &HostEnv) -> String {
    match env.var("USER") {
        Some(u)
            if u.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            u.to_owned()
        }
        _ => "claude-code-user".to_owned(),
    }
}

/// Guesses the method from the value: a setup-token, an API key, or a JSON
/// credentials document.
pub fn detect(value: &str) -> Option<Method> {
    let v = value.trim_start();
    if v.starts_with(SETUP_TOKEN_PREFIX) {
        Some(Method::SetupToken)
    } else if v.starts_with(API_KEY_PREFIX) {
        Some(Method::ApiKey)
    } else if v.starts_with('{') {
        Some(Method::Session)
    } else {
        None
    }
}

/// Validates `secret` for `method`. `origin` names where it came from
/// (`stdin`, `file /x`, …); `now` fixes the setup-token expiry.
pub fn validate(
    method: Method,
    secret: &Secret,
    origin: &str,
    now: Timestamp,
) -> Result<Validated> {
    let value = secret.trimmed();
    match method {
        Method::SetupToken => {
            let what = format!("the Claude setup-token ({origin})");
            wrong_kind(&what, value.expose(), SETUP_TOKEN_PREFIX)?;
            check_token_shape(
                &what,
                value.expose(),
                SETUP_TOKEN_PREFIX,
                MIN_TOKEN_LEN,
                TOKEN_FIX,
            )?;
            let mut v = Validated::new(method, value);
            v.expires_at = now.checked_add(SETUP_TOKEN_LIFETIME).ok();
            v.detail = Some("inference only, assumed valid 365 days".into());
            Ok(v)
        }
        Method::ApiKey => {
            let what = format!("the Anthropic API key ({origin})");
            wrong_kind(&what, value.expose(), API_KEY_PREFIX)?;
            check_token_shape(
                &what,
                value.expose(),
                API_KEY_PREFIX,
                MIN_TOKEN_LEN,
                API_KEY_FIX,
            )?;
            let mut warnings = Vec::new();
            if value.len() != API_KEY_LEN || !value.expose().ends_with("AA") {
                warnings.push(format!(
                    "the Anthropic API key ({origin}) does not have the usual shape ({API_KEY_LEN} characters ending in AA); it was stored anyway"
                ));
            }
            let mut v = Validated::new(method, value);
            v.warnings = warnings;
            Ok(v)
        }
        Method::Session => {
            let what = format!("the Claude login ({origin})");
            let info = parse_session(value.expose(), &what)?;
            Ok(Validated::new(method, value).with_session(info))
        }
    }
}

fn wrong_kind(what: &str, value: &str, want: &str) -> Result<()> {
    if value.starts_with(want) {
        return Ok(());
    }
    // The generic "sk-ant-" match says nothing useful here: fall through to
    // the prefix check, which names the expected prefix.
    if let Some((desc, suggestion)) =
        foreign_token(value).filter(|(d, _)| *d != "an Anthropic credential")
    {
        return Err(invalid(what, format!("is {desc}"), suggestion));
    }
    Ok(())
}

/// Reads a `.credentials.json` document: checks its shape and returns the
/// access token's expiry and whether it can be refreshed. Unknown keys are
/// allowed everywhere (they are kept as they are).
pub fn parse_session(text: &str, what: &str) -> Result<SessionInfo> {
    parse_document(text, what).map(|(_, info)| info)
}

/// [`parse_session`], also returning the document itself: the one parser
/// of `.credentials.json`, for capture, status and injection alike.
pub fn parse_document(text: &str, what: &str) -> Result<(Map<String, Value>, SessionInfo)> {
    let doc = validate::parse_json_object(what, text, LOGIN_FIX)?;
    let oauth = match doc.get(OAUTH_KEY) {
        None => {
            return Err(invalid(
                what,
                "has no claudeAiOauth entry, so it holds no Claude login",
                LOGIN_FIX,
            ));
        }
        Some(Value::Object(o)) => o,
        Some(other) => {
            return Err(invalid(
                what,
                format!(
                    "has a claudeAiOauth entry that is a {}, not an object",
                    validate::json_kind(other)
                ),
                LOGIN_FIX,
            ));
        }
    };
    let access = match oauth.get("accessToken") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::String(_)) => {
            return Err(invalid(
                what,
                "has an empty access token: Claude Code wipes it when a refresh fails",
                LOGIN_FIX,
            ));
        }
        None | Some(Value::Null) => {
            return Err(invalid(what, "has no access token", LOGIN_FIX));
        }
        Some(other) => {
            return Err(validate::wrong_type(
                what,
                "an access token",
                other,
                "a string",
                LOGIN_FIX,
            ));
        }
    };
    let mut warnings = Vec::new();
    if !access.starts_with("sk-ant-oat") {
        warnings.push(format!(
            "{what} holds an access token that does not start with sk-ant-oat; stored anyway"
        ));
    }
    let refreshable = match oauth.get("refreshToken") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(other) => {
            return Err(validate::wrong_type(
                what,
                "a refresh token",
                other,
                "a string",
                LOGIN_FIX,
            ));
        }
    };
    let expires_at = validate::millis_field(oauth, "expiresAt", what, LOGIN_FIX)?;
    match oauth.get("scopes") {
        Some(Value::Array(a)) => {
            if !a.iter().any(|s| s.as_str() == Some(INFERENCE_SCOPE)) {
                return Err(invalid(
                    what,
                    format!(
                        "has scopes without {INFERENCE_SCOPE}, so Claude Code would not count it as a login"
                    ),
                    LOGIN_FIX,
                ));
            }
        }
        None | Some(Value::Null) => {
            return Err(invalid(
                what,
                format!("has no scopes (Claude Code needs {INFERENCE_SCOPE})"),
                LOGIN_FIX,
            ));
        }
        Some(other) => {
            return Err(invalid(
                what,
                format!(
                    "has scopes that are a {}, not a list",
                    validate::json_kind(other)
                ),
                LOGIN_FIX,
            ));
        }
    }
    let detail = oauth
        .get("subscriptionType")
        .and_then(Value::as_str)
        .map(|s| format!("{s} subscription"));
    let info = SessionInfo {
        expires_at,
        refreshable,
        rotates: SESSION.rotates,
        detail,
        warnings,
    };
    Ok((doc, info))
}

/// Whether sync may propagate a `.credentials.json` document: stricter than
/// [`parse_document`] about the refresh token and the expiry (a sync must
/// never spread a wiped login), laxer about the rest (a missing `scopes`
/// list is accepted).
fn session_facts(doc: &Map<String, Value>) -> std::result::Result<SessionFacts<'_>, Rejection> {
    let o = doc
        .get(OAUTH_KEY)
        .and_then(Value::as_object)
        .ok_or(Rejection::NoCredential)?;
    session::nonempty_str(o, "accessToken").ok_or(Rejection::NoAccessToken)?;
    let refresh_token =
        session::nonempty_str(o, "refreshToken").ok_or(Rejection::NoRefreshToken)?;
    let expiry = session::positive_millis(o.get("expiresAt")).ok_or(Rejection::NoExpiry)?;
    // Claude counts a login as logged in only when its scopes include
    // `user:inference`; a document without scopes is a logged-out one.
    let ok = o
        .get("scopes")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(INFERENCE_SCOPE)));
    if !ok {
        return Err(Rejection::NotInference);
    }
    Ok(SessionFacts {
        expiry,
        refresh_token,
    })
}

/// The host's Claude login, read (never modified) and validated; `None`
/// when there is none. A present but broken file is an error.
pub fn find_host_login(env: &HostEnv) -> Result<Option<HostLogin>> {
    #[cfg(target_os = "macos")]
    if let Some(found) = keychain::read(env)? {
        return Ok(Some(found));
    }
    let path = credentials_path(env);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let input = validate::read_input_file(&path, LOGIN_FIX)?;
    let location = validate::tilde(&path, &env.home);
    let mut v = validate(Method::Session, &input.text, &location, Timestamp::now())?;
    v.prepend_warnings(input.warnings);
    HostLogin::from_validated("claude", v, location, input.modified).map(Some)
}

/// The exact steps to renew an expiring or expired credential.
pub fn renewal(method: Method, account: &str) -> String {
    let acc = account_flag(account);
    match method {
        Method::SetupToken => format!(
            "run `claude setup-token`, then `airlock auth claude{acc} --method token` and paste the new token"
        ),
        Method::Session => format!(
            "run `claude auth login` on this machine, then `airlock auth claude{acc} --from-host` (or switch to a setup-token: `claude setup-token`)"
        ),
        Method::ApiKey => format!(
            "create a new key at console.anthropic.com, then `airlock auth claude{acc} --method api-key`"
        ),
    }
}

pub(crate) fn account_flag(account: &str) -> String {
    if account == crate::vault::DEFAULT_ACCOUNT {
        String::new()
    } else {
        format!(" --account {account}")
    }
}

// Compiled everywhere so that Linux builds check it; only called on macOS.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod keychain {
    //! The macOS login keychain, read through `security` (thin on purpose).
    use super::*;

    /// Reads `Claude Code-credentials[-hash]` for `$USER`; `None` when absent
    /// (exit 44 from `security`).
    pub fn read(env: &HostEnv) -> Result<Option<HostLogin>> {
        let service = keychain_service(env);
        let account = keychain_account(env);
        let out = std::process::Command::new("security")
            .args([
                "find-generic-password",
                "-s",
                &service,
                "-a",
                &account,
                "-w",
            ])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output();
        let out = match out {
            Ok(o) if o.status.success() => o,
            _ => return Ok(None),
        };
        let location = format!("macOS keychain item {service:?}");
        let text = Secret::from_utf8(out.stdout)
            .map_err(|_| invalid(&location, "is not UTF-8 text", LOGIN_FIX))?;
        let v = validate(Method::Session, &text, &location, Timestamp::now())?;
        HostLogin::from_validated("claude", v, location, None).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(vars: &[(&str, &str)]) -> HostEnv {
        HostEnv {
            home: PathBuf::from("/home/u"),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn paths_follow_the_environment() {
        assert_eq!(
            credentials_path(&env_with(&[])),
            PathBuf::from("/home/u/.claude/.credentials.json")
        );
        assert_eq!(
            credentials_path(&env_with(&[("CLAUDE_CONFIG_DIR", "/x")])),
            PathBuf::from("/x/.credentials.json")
        );
        assert_eq!(
            credentials_path(&env_with(&[
                ("CLAUDE_CONFIG_DIR", "/x"),
                ("CLAUDE_SECURESTORAGE_CONFIG_DIR", "/s")
            ])),
            PathBuf::from("/s/.credentials.json")
        );
    }

    #[test]
    fn keychain_names() {
        assert_eq!(keychain_service(&env_with(&[])), "Claude Code-credentials");
        let s = keychain_service(&env_with(&[("CLAUDE_CONFIG_DIR", "/x")]));
        assert!(s.starts_with("Claude Code-credentials-"), "{s}");
        assert_eq!(s.len(), "Claude Code-credentials-".len() + 8);
        assert_eq!(keychain_account(&env_with(&[("USER", "ann.b")])), "ann.b");
        assert_eq!(
            keychain_account(&env_with(&[("USER", "a b")])),
            "claude-code-user"
        );
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn keychain_without_security_is_no_login() {
        // No `security` binary here: nothing found, no error.
        assert!(
            keychain::read(&env_with(&[("USER", "u")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn setup_token_expires_in_a_year() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let t = format!("{SETUP_TOKEN_PREFIX}{}AA\n", "x".repeat(93));
        let v = validate(Method::SetupToken, &Secret::from(t.as_str()), "stdin", now).unwrap();
        assert_eq!(v.payload.expose(), t.trim());
        assert_eq!(
            v.expires_at.unwrap().duration_since(now),
            SignedDuration::from_hours(365 * 24)
        );
    }

    #[test]
    fn wrong_kinds_point_elsewhere() {
        let now = Timestamp::now();
        let key = format!("{API_KEY_PREFIX}{}AA", "x".repeat(93));
        let e = validate(
            Method::SetupToken,
            &Secret::from(key.as_str()),
            "stdin",
            now,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Anthropic API key"), "{e}");
        assert!(e.contains("--method api-key"), "{e}");
        assert!(!e.contains(&key));
    }

    #[test]
    fn session_shape_and_expiry() {
        let doc = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-a","refreshToken":"sk-ant-ort01-b","expiresAt":1795267240000,"scopes":["user:inference"],"subscriptionType":"max"},"mcpOAuth":{"k":1}}"#;
        let info = parse_session(doc, "the file").unwrap();
        assert!(info.refreshable);
        assert_eq!(info.expires_at.unwrap().as_millisecond(), 1_795_267_240_000);
        assert_eq!(info.detail.as_deref(), Some("max subscription"));
        let no_scope = doc.replace("user:inference", "user:profile");
        assert!(
            parse_session(&no_scope, "f")
                .unwrap_err()
                .to_string()
                .contains("user:inference")
        );
    }
}
