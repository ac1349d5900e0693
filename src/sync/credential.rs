//! Parsing, validating, comparing and merging rotating session files.
//!
//! This is the only place in `sync` that knows the agents' credential
//! formats (reference: `agent-formats.md` §1.1, §2.1, §3.1):
//!
//! | agent | file | credential part | expiry |
//! |---|---|---|---|
//! | Claude | `.credentials.json` | `claudeAiOauth` | `expiresAt` (epoch ms) |
//! | Codex | `auth.json` | `tokens`, `last_refresh`, `auth_mode` | `access_token` JWT `exp`, else `last_refresh` + 8 days |
//! | Gemini | `oauth_creds.json` | the token fields | `expiry_date` (epoch ms) |
//!
//! A [`Parsed`] credential holds the whole document (secret) and a few
//! non-secret facts: its expiry and a fingerprint of its refresh token.
//! [`parse`] rejects anything a sync must never propagate: empty files,
//! partial writes, logged-out states (Claude's wiped `refreshToken: ""`),
//! documents without a refresh token or an expiry. The [`Rejection`] says
//! why without quoting a value.
//!
//! (The capture module has its own expiry parsing; the lead may merge the
//! two once both have landed.)

use std::fmt;

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Codex refreshes a token without a readable `exp` once `last_refresh` is
/// this old (`TOKEN_REFRESH_INTERVAL`).
const CODEX_REFRESH_INTERVAL: SignedDuration = SignedDuration::from_hours(8 * 24);

/// An agent whose session file airlock can sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AgentKind {
    /// Claude Code: `.credentials.json`.
    Claude,
    /// Codex CLI: `auth.json`.
    Codex,
    /// Gemini CLI: `oauth_creds.json`.
    Gemini,
}

impl AgentKind {
    /// The agent for a name (`claude`, `codex`, `gemini`).
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "claude" => Ok(AgentKind::Claude),
            "codex" => Ok(AgentKind::Codex),
            "gemini" => Ok(AgentKind::Gemini),
            other => Err(Error::Usage(format!(
                "agent {other:?} has no rotating session airlock can sync: use claude, codex or gemini"
            ))),
        }
    }

    /// The agent's name.
    pub fn name(self) -> &'static str {
        match self {
            AgentKind::Claude => "claude",
            AgentKind::Codex => "codex",
            AgentKind::Gemini => "gemini",
        }
    }

    /// The credential file's name inside the agent's directory.
    pub fn file_name(self) -> &'static str {
        match self {
            AgentKind::Claude => ".credentials.json",
            AgentKind::Codex => "auth.json",
            AgentKind::Gemini => "oauth_creds.json",
        }
    }

    /// Whether a refresh invalidates the previous refresh token.
    pub fn rotates(self) -> bool {
        !matches!(self, AgentKind::Gemini)
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a credential document was not accepted. Never contains a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The file is empty (or only whitespace): an interrupted write.
    Empty,
    /// Not valid JSON: a partial write, or not a credential file.
    NotJson,
    /// JSON, but not an object.
    NotAnObject,
    /// The credential part (`claudeAiOauth`, `tokens`, …) is missing or not an object.
    NoCredential,
    /// The access token is missing or empty.
    NoAccessToken,
    /// The refresh token is missing or empty (a logged-out or wiped session).
    NoRefreshToken,
    /// No usable expiry.
    NoExpiry,
    /// Claude: `scopes` lacks `user:inference`, so Claude considers it logged out.
    NotInference,
    /// Codex: `id_token` is not JWT-shaped, which Codex refuses to load.
    BadIdToken,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::Empty => "the file is empty",
            Rejection::NotJson => "the file is not valid JSON (a partial write?)",
            Rejection::NotAnObject => "the file is not a JSON object",
            Rejection::NoCredential => "the file has no OAuth session",
            Rejection::NoAccessToken => "the session has no access token",
            Rejection::NoRefreshToken => "the session has no refresh token (logged out?)",
            Rejection::NoExpiry => "the session has no readable expiry",
            Rejection::NotInference => "the session lacks the user:inference scope",
            Rejection::BadIdToken => "the id_token is not a JWT",
        })
    }
}

impl std::error::Error for Rejection {}

/// A validated session document.
///
/// `Debug` shows only the expiry: the document is secret.
#[derive(Clone)]
pub struct Parsed {
    /// Which agent's format.
    pub kind: AgentKind,
    /// When the access token expires (for Codex without `exp`: when it is due
    /// for refresh).
    pub expiry: Timestamp,
    /// SHA-256 of the refresh token: tells two logins apart without keeping
    /// the token in a comparable form.
    pub fingerprint: [u8; 32],
    doc: Map<String, Value>,
}

impl fmt::Debug for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parsed")
            .field("kind", &self.kind)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

impl Parsed {
    /// The whole validated document (secret).
    pub(crate) fn document(&self) -> &Map<String, Value> {
        &self.doc
    }

    /// True when `self` should replace `other`: its expiry is strictly later.
    /// Expiry, never mtime: a slow process that rewrites an old copy must lose.
    pub fn newer_than(&self, other: Option<&Parsed>) -> bool {
        match other {
            None => true,
            Some(o) => self.expiry > o.expiry,
        }
    }

    /// This credential merged into `target` (the current bytes of the file
    /// being written, if any): only the credential part is replaced, every
    /// other key of `target` is kept. An unreadable target is replaced by
    /// the credential part alone.
    pub fn merge_into(&self, target: Option<&[u8]>) -> Zeroizing<Vec<u8>> {
        let mut out: Map<String, Value> = target
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default();
        // A key the new document lacks keeps the target's value: agents
        // have been known to drop fields on write (gemini-cli#21691).
        for key in credential_keys(self.kind) {
            if let Some(v) = self.doc.get(*key) {
                out.insert((*key).to_owned(), v.clone());
            }
        }
        let v = Value::Object(out);
        let mut bytes = match self.kind {
            AgentKind::Claude => serde_json::to_vec(&v),
            AgentKind::Codex | AgentKind::Gemini => serde_json::to_vec_pretty(&v),
        }
        .unwrap_or_default();
        if self.kind != AgentKind::Claude {
            bytes.push(b'\n');
        }
        Zeroizing::new(bytes)
    }
}

/// The top-level keys that make up the session in each format.
fn credential_keys(kind: AgentKind) -> &'static [&'static str] {
    match kind {
        AgentKind::Claude => &["claudeAiOauth"],
        AgentKind::Codex => &["tokens", "last_refresh", "auth_mode"],
        AgentKind::Gemini => &[
            "access_token",
            "refresh_token",
            "scope",
            "token_type",
            "id_token",
            "expiry_date",
        ],
    }
}

/// SHA-256 of some bytes (used for "did we write this ourselves?").
pub fn content_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Parses and validates a session document of `kind`.
pub fn parse(kind: AgentKind, bytes: &[u8]) -> std::result::Result<Parsed, Rejection> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::Empty);
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|_| Rejection::NotJson)?;
    let Value::Object(doc) = v else {
        return Err(Rejection::NotAnObject);
    };
    let (expiry, refresh) = match kind {
        AgentKind::Claude => claude(&doc)?,
        AgentKind::Codex => codex(&doc)?,
        AgentKind::Gemini => gemini(&doc)?,
    };
    Ok(Parsed {
        kind,
        expiry,
        fingerprint: Sha256::digest(refresh.as_bytes()).into(),
        doc,
    })
}

fn nonempty_str<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn millis(v: Option<&Value>) -> Option<Timestamp> {
    let ms = v.and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))?;
    if ms <= 0 {
        return None;
    }
    Timestamp::from_millisecond(ms).ok()
}

fn claude(doc: &Map<String, Value>) -> std::result::Result<(Timestamp, String), Rejection> {
    let o = doc
        .get("claudeAiOauth")
        .and_then(Value::as_object)
        .ok_or(Rejection::NoCredential)?;
    nonempty_str(o, "accessToken").ok_or(Rejection::NoAccessToken)?;
    let refresh = nonempty_str(o, "refreshToken").ok_or(Rejection::NoRefreshToken)?;
    let expiry = millis(o.get("expiresAt")).ok_or(Rejection::NoExpiry)?;
    if let Some(scopes) = o.get("scopes") {
        let ok = scopes
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s.as_str() == Some("user:inference")));
        if !ok {
            return Err(Rejection::NotInference);
        }
    }
    Ok((expiry, refresh.to_owned()))
}

fn codex(doc: &Map<String, Value>) -> std::result::Result<(Timestamp, String), Rejection> {
    let t = doc
        .get("tokens")
        .and_then(Value::as_object)
        .ok_or(Rejection::NoCredential)?;
    let access = nonempty_str(t, "access_token").ok_or(Rejection::NoAccessToken)?;
    let refresh = nonempty_str(t, "refresh_token").ok_or(Rejection::NoRefreshToken)?;
    let id = nonempty_str(t, "id_token").ok_or(Rejection::BadIdToken)?;
    if jwt_payload(id).is_none() {
        return Err(Rejection::BadIdToken);
    }
    let from_exp = jwt_payload(access)
        .and_then(|p| p.get("exp").and_then(Value::as_i64))
        .and_then(|s| Timestamp::from_second(s).ok());
    let from_last = || {
        nonempty_str(doc, "last_refresh")
            .and_then(|s| s.parse::<Timestamp>().ok())
            .and_then(|t| t.checked_add(CODEX_REFRESH_INTERVAL).ok())
    };
    let expiry = from_exp.or_else(from_last).ok_or(Rejection::NoExpiry)?;
    Ok((expiry, refresh.to_owned()))
}

fn gemini(doc: &Map<String, Value>) -> std::result::Result<(Timestamp, String), Rejection> {
    nonempty_str(doc, "access_token").ok_or(Rejection::NoAccessToken)?;
    let refresh = nonempty_str(doc, "refresh_token").ok_or(Rejection::NoRefreshToken)?;
    let expiry = millis(doc.get("expiry_date")).ok_or(Rejection::NoExpiry)?;
    Ok((expiry, refresh.to_owned()))
}

/// The payload of a JWT-shaped string (three non-empty dot-separated parts,
/// the middle one base64url JSON), or `None`. The signature is not checked:
/// only the agents' servers can do that.
pub fn jwt_payload(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || h.is_empty() || p.is_empty() || s.is_empty() {
        return None;
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&raw).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claude_doc(exp_ms: i64, rt: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "claudeAiOauth": {"accessToken": "sk-ant-oat01-CANARY", "refreshToken": rt,
                "expiresAt": exp_ms, "scopes": ["user:inference"], "subscriptionType": "max"},
            "mcpOAuth": {"x": 1}
        }))
        .unwrap()
    }

    fn jwt(payload: Value) -> String {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            b.encode(br#"{"alg":"none"}"#),
            b.encode(payload.to_string())
        )
    }

    #[test]
    fn claude_expiry_and_rejections() {
        let p = parse(AgentKind::Claude, &claude_doc(1_800_000_000_000, "rt1")).unwrap();
        assert_eq!(p.expiry.as_millisecond(), 1_800_000_000_000);
        assert!(!format!("{p:?}").contains("CANARY"));
        assert_eq!(parse(AgentKind::Claude, b"").unwrap_err(), Rejection::Empty);
        assert_eq!(
            parse(AgentKind::Claude, b"{\"claudeAiOauth\":{\"acc").unwrap_err(),
            Rejection::NotJson
        );
        assert_eq!(
            parse(AgentKind::Claude, &claude_doc(1, "")).unwrap_err(),
            Rejection::NoRefreshToken
        );
        assert_eq!(
            parse(AgentKind::Claude, &claude_doc(0, "rt")).unwrap_err(),
            Rejection::NoExpiry
        );
        let no_inf = br#"{"claudeAiOauth":{"accessToken":"a","refreshToken":"r","expiresAt":5,"scopes":["user:profile"]}}"#;
        assert_eq!(
            parse(AgentKind::Claude, no_inf).unwrap_err(),
            Rejection::NotInference
        );
    }

    #[test]
    fn codex_uses_jwt_exp_then_last_refresh() {
        let doc = json!({"auth_mode":"chatgpt","OPENAI_API_KEY":null,
            "tokens":{"id_token": jwt(json!({"email":"a@b"})), "access_token": jwt(json!({"exp": 1_900_000_000})),
                      "refresh_token":"rt_1","account_id":"acc"},
            "last_refresh":"2026-11-22T10:00:00Z"});
        let p = parse(AgentKind::Codex, doc.to_string().as_bytes()).unwrap();
        assert_eq!(p.expiry.as_second(), 1_900_000_000);

        let mut d2 = doc.clone();
        d2["tokens"]["access_token"] = json!("opaque");
        let p = parse(AgentKind::Codex, d2.to_string().as_bytes()).unwrap();
        assert_eq!(p.expiry.to_string(), "2026-11-30T10:00:00Z");

        let mut d3 = doc.clone();
        d3["tokens"]["id_token"] = json!("notajwt");
        assert_eq!(
            parse(AgentKind::Codex, d3.to_string().as_bytes()).unwrap_err(),
            Rejection::BadIdToken
        );
        let apikey = br#"{"auth_mode":"apikey","OPENAI_API_KEY":"sk-x"}"#;
        assert_eq!(
            parse(AgentKind::Codex, apikey).unwrap_err(),
            Rejection::NoCredential
        );
    }

    #[test]
    fn gemini_expiry_date() {
        let d = br#"{"access_token":"ya29","refresh_token":"1//r","expiry_date":1800000000000,"token_type":"Bearer"}"#;
        assert_eq!(
            parse(AgentKind::Gemini, d).unwrap().expiry.as_millisecond(),
            1_800_000_000_000
        );
        let no_rt = br#"{"access_token":"ya29","expiry_date":1800000000000}"#;
        assert_eq!(
            parse(AgentKind::Gemini, no_rt).unwrap_err(),
            Rejection::NoRefreshToken
        );
    }

    #[test]
    fn merge_keeps_target_keys_and_replaces_only_the_session() {
        let newer = parse(AgentKind::Claude, &claude_doc(2_000, "rt2")).unwrap();
        let host = br#"{"claudeAiOauth":{"accessToken":"old","refreshToken":"rt1","expiresAt":1000},"pluginSecrets":{"k":"v"},"zzUnknown":[1,2]}"#;
        let out = newer.merge_into(Some(host));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["pluginSecrets"]["k"], "v");
        assert_eq!(v["zzUnknown"], json!([1, 2]));
        assert_eq!(v["claudeAiOauth"]["refreshToken"], "rt2");
        // the sandbox's own extra keys do not travel
        assert!(v.get("mcpOAuth").is_none());
        // key order of the target is kept
        let s = String::from_utf8(out.to_vec()).unwrap();
        assert!(s.find("claudeAiOauth").unwrap() < s.find("zzUnknown").unwrap());
        // an unreadable target gets the session alone
        let v: Value = serde_json::from_slice(&newer.merge_into(Some(b"garbage"))).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1);
    }

    #[test]
    fn newer_compares_expiry_only() {
        let a = parse(AgentKind::Claude, &claude_doc(1_000, "a")).unwrap();
        let b = parse(AgentKind::Claude, &claude_doc(2_000, "b")).unwrap();
        assert!(b.newer_than(Some(&a)));
        assert!(!a.newer_than(Some(&b)));
        assert!(!a.newer_than(Some(&a)));
        assert!(a.newer_than(None));
        assert_ne!(a.fingerprint, b.fingerprint);
    }
}
