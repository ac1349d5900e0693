//! Parsing, validating, comparing and merging rotating session files.
//!
//! The agents' formats live in their own modules (reference:
//! `agent-formats.md` §1.1, §2.1, §3.1), each described by a
//! [`SessionFormat`]:
//!
//! | agent | file | credential part | expiry | described in |
//! |---|---|---|---|---|
//! | Claude | `.credentials.json` | `claudeAiOauth` | `expiresAt` (epoch ms) | [`crate::agents::claude::capture::SESSION`] |
//! | Codex | `auth.json` | `tokens`, `last_refresh`, `auth_mode` | `access_token` JWT `exp`, else `last_refresh` + 8 days | [`crate::agents::codex::capture::SESSION`] |
//! | Gemini | `oauth_creds.json` | the token fields | `expiry_date` (epoch ms) | [`crate::agents::gemini::capture::SESSION`] |
//!
//! This module is the agent-independent part. A [`Parsed`] credential
//! holds the whole document (secret) and a few non-secret facts: its expiry
//! and a fingerprint of its refresh token. [`parse`] rejects anything a
//! sync must never propagate: empty files, partial writes, logged-out
//! states (Claude's wiped `refreshToken: ""`), documents without a refresh
//! token or an expiry. The [`Rejection`] says why without quoting a value.

use std::fmt;

use jiff::Timestamp;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::agents::session::SessionFormat;
use crate::error::{Error, Result};

pub use crate::agents::session::Rejection;

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

    /// The agent's description of its session file.
    fn format(self) -> &'static SessionFormat {
        match self {
            AgentKind::Claude => &crate::agents::claude::capture::SESSION,
            AgentKind::Codex => &crate::agents::codex::capture::SESSION,
            AgentKind::Gemini => &crate::agents::gemini::capture::SESSION,
        }
    }

    /// The credential file's name inside the agent's directory.
    pub fn file_name(self) -> &'static str {
        self.format().file_name
    }

    /// Whether a refresh invalidates the previous refresh token.
    pub fn rotates(self) -> bool {
        self.format().rotates
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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

impl Parsed {
    /// The account the session belongs to, when its document names one
    /// (Codex: `tokens.account_id`; Claude's and Gemini's do not).
    pub fn account(&self) -> Option<&str> {
        match self.kind {
            AgentKind::Codex => self
                .doc
                .get("tokens")
                .and_then(|t| t.get("account_id"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty()),
            _ => None,
        }
    }
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

    /// The hex SHA-256 of the session's access token, for a refresh on
    /// demand ([`crate::sync::demand`]).
    pub fn access_token_hash(&self) -> Option<String> {
        let (outer, inner) = match self.kind {
            AgentKind::Claude => ("claudeAiOauth", "accessToken"),
            AgentKind::Codex => ("tokens", "access_token"),
            AgentKind::Gemini => {
                let t = self.doc.get("access_token")?.as_str()?;
                return Some(crate::sync::demand::token_hash(t));
            }
        };
        let t = self.doc.get(outer)?.get(inner)?.as_str()?;
        Some(crate::sync::demand::token_hash(t))
    }

    /// The account the session belongs to, when the document names it:
    /// Codex's `tokens.account_id`, else the `sub` of an `id_token` (Codex,
    /// Gemini). Claude's credential file names no account.
    pub fn account_id(&self) -> Option<String> {
        let tokens = self.doc.get("tokens").and_then(Value::as_object);
        if let Some(a) = tokens
            .and_then(|t| t.get("account_id"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            return Some(a.to_owned());
        }
        tokens
            .unwrap_or(&self.doc)
            .get("id_token")
            .and_then(Value::as_str)
            .and_then(jwt_payload)
            .and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_owned))
            .filter(|s| !s.is_empty())
    }

    /// False when both sessions name their account and the accounts differ
    /// (a sandbox wrote another account's session into the shared directory).
    pub fn same_account(&self, other: &Parsed) -> bool {
        match (self.account_id(), other.account_id()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
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
        merge_document(self.kind, &self.doc, target)
    }
}

/// The credential part of `doc` (a session document of `kind`, validated
/// or not) merged into `target` as [`Parsed::merge_into`] does it.
pub(crate) fn merge_document(
    kind: AgentKind,
    doc: &Map<String, Value>,
    target: Option<&[u8]>,
) -> Zeroizing<Vec<u8>> {
    let format = kind.format();
    let mut out: Map<String, Value> = target
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    // A key the new document lacks keeps the target's value: agents
    // have been known to drop fields on write (gemini-cli#21691).
    for key in format.keys {
        if let Some(v) = doc.get(*key) {
            out.insert((*key).to_owned(), v.clone());
        }
    }
    let v = Value::Object(out);
    let mut bytes = if format.pretty {
        serde_json::to_vec_pretty(&v)
    } else {
        serde_json::to_vec(&v)
    }
    .unwrap_or_default();
    if format.pretty {
        bytes.push(b'\n');
    }
    Zeroizing::new(bytes)
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
    let facts = (kind.format().check)(&doc)?;
    let fingerprint = Sha256::digest(facts.refresh_token.as_bytes()).into();
    let expiry = facts.expiry;
    Ok(Parsed {
        kind,
        expiry,
        fingerprint,
        doc,
    })
}

/// The most a shared (sandbox-writable) file may hold: 1 MiB. A session
/// document is a few kilobytes.
pub const SHARED_MAX: u64 = 1 << 20;

/// What [`read_shared`] found: `None` when the file does not exist, the
/// bytes, or why they were refused without being read.
pub type SharedRead = Option<std::result::Result<Zeroizing<Vec<u8>>, Rejection>>;

/// Reads a file a sandbox can write (the account's shared session file),
/// treating it as hostile (docs/sandbox.md, "What the watcher refuses"):
///
/// * `lstat` first: anything but a regular file (a FIFO that would block
///   the watcher, a symbolic link to a root-only file, a directory, a device)
///   is refused without being opened;
/// * opened with `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`, then `fstat`: the
///   opened file must still be a regular file, the same one `lstat` saw;
/// * at most [`SHARED_MAX`] bytes: a larger file is refused (at most
///   `SHARED_MAX + 1` bytes are ever read);
/// * a file airlock may not open (another user's, or `chmod 000`) is
///   refused too, not an error: the sandbox chose it.
///
/// Other I/O errors are errors; a refusal never quotes the file's content.
pub fn read_shared(path: &std::path::Path) -> Result<SharedRead> {
    use std::io::Read as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};

    let before = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("inspect", path, e)),
    };
    if !before.file_type().is_file() {
        return Ok(Some(Err(Rejection::NotRegularFile(file_type_name(
            before.file_type(),
        )))));
    }
    if before.len() > SHARED_MAX {
        return Ok(Some(Err(Rejection::TooLarge)));
    }
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Some(Err(Rejection::Replaced)));
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Ok(Some(Err(Rejection::Unreadable)));
        }
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let after = f.metadata().map_err(|e| Error::io("inspect", path, e))?;
    if !after.file_type().is_file() || after.ino() != before.ino() || after.dev() != before.dev() {
        return Ok(Some(Err(Rejection::Replaced)));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(
        usize::try_from(after.len().min(SHARED_MAX)).unwrap_or(0) + 1,
    ));
    f.take(SHARED_MAX + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("read", path, e))?;
    if buf.len() as u64 > SHARED_MAX {
        return Ok(Some(Err(Rejection::TooLarge)));
    }
    Ok(Some(Ok(buf)))
}

/// [`read_shared`] for a caller that only needs acceptable bytes: a refused
/// file reads as absent (logged once here, without its content).
pub fn read_shared_bytes(path: &std::path::Path) -> Result<Option<Zeroizing<Vec<u8>>>> {
    Ok(match read_shared(path)? {
        Some(Ok(b)) => Some(b),
        Some(Err(r)) => {
            tracing::debug!(file = %path.display(), reason = %r, "refused a shared file");
            None
        }
        None => None,
    })
}

fn file_type_name(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// The payload of a JWT-shaped string (three non-empty dot-separated parts,
/// the middle one base64url JSON), or `None`. The signature is not checked:
/// only the agents' servers can do that.
pub fn jwt_payload(token: &str) -> Option<Map<String, Value>> {
    crate::agents::jwt::claims(token).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
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
        // no scopes at all: Claude counts that as logged out too
        let no_scopes =
            br#"{"claudeAiOauth":{"accessToken":"a","refreshToken":"r","expiresAt":5}}"#;
        assert_eq!(
            parse(AgentKind::Claude, no_scopes).unwrap_err(),
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
