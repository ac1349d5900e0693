//! The shape every agent gives its rotating session file, as `sync` sees it.
//!
//! Each agent describes its file once, next to its capture parser, with a
//! [`SessionFormat`]: the file's name, the top-level keys that make up the
//! session, how the agent writes it, whether refreshes rotate, and the
//! check that decides whether a document may be propagated. The
//! agent-independent part (expiry comparison, merging, hashing) is
//! [`crate::sync::credential`].

use std::fmt;

use jiff::Timestamp;
use serde_json::{Map, Value};

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
    /// The shared file is not a regular file (a FIFO, a symbolic link, a
    /// directory, a device, a socket): never opened, never followed.
    NotRegularFile(&'static str),
    /// The shared file is larger than [`crate::sync::credential::SHARED_MAX`].
    TooLarge,
    /// The shared file was replaced between its check and its opening.
    Replaced,
    /// The shared file cannot be opened by airlock (another user's file:
    /// written by a container's root under rootful Docker, or `chmod 000`).
    Unreadable,
    /// The session belongs to another account than the one the sandbox was
    /// given (a different account id).
    OtherAccount,
}

impl Rejection {
    /// True for a refusal of a hostile shared file (not an agent's ordinary
    /// write in progress or logout): reported even when airlock repairs it.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            Rejection::NotRegularFile(_)
                | Rejection::TooLarge
                | Rejection::Replaced
                | Rejection::Unreadable
                | Rejection::OtherAccount
        )
    }
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
            Rejection::NotRegularFile(what) => {
                return write!(
                    f,
                    "refused: the shared file is a {what}, not a regular file"
                );
            }
            Rejection::TooLarge => "refused: the shared file is larger than 1 MiB",
            Rejection::Replaced => "refused: the shared file was replaced while being read",
            Rejection::Unreadable => {
                "refused: the shared file is not readable by airlock (another user's file?)"
            }
            Rejection::OtherAccount => "refused: the session belongs to another account",
        })
    }
}

impl std::error::Error for Rejection {}

/// The facts `sync` needs from an accepted session document.
pub struct SessionFacts<'a> {
    /// When the access token expires (or, without a readable expiry, when
    /// the agent considers the session due for refresh).
    pub expiry: Timestamp,
    /// The refresh token (secret: only ever hashed).
    pub refresh_token: &'a str,
}

/// Checks a session document (already a JSON object) for propagation.
pub type SessionCheck = for<'a> fn(&'a Map<String, Value>) -> Result<SessionFacts<'a>, Rejection>;

/// One agent's rotating session file.
#[derive(Debug)]
pub struct SessionFormat {
    /// The file's name inside the agent's directory.
    pub file_name: &'static str,
    /// The top-level keys that make up the session (the rest of the
    /// document belongs to the agent and is kept on merge).
    pub keys: &'static [&'static str],
    /// Whether the agent writes the file pretty-printed with a final newline
    /// (else compact, without one).
    pub pretty: bool,
    /// Whether a refresh invalidates the previous refresh token.
    pub rotates: bool,
    /// Whether a document may be propagated, and its expiry and refresh token.
    pub check: SessionCheck,
}

/// A string field that is present and non-empty.
pub fn nonempty_str<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// An epoch-milliseconds field that is a positive time.
pub fn positive_millis(v: Option<&Value>) -> Option<Timestamp> {
    v.and_then(crate::agents::validate::millis)
        .filter(|t| t.as_millisecond() > 0)
}
