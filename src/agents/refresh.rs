//! The agents' OAuth refresh requests, as airlock sends them when it
//! refreshes a rotating session itself (`docs/rotation.md` §5,
//! "pre-refresh"): where to send them, the request body, and how a
//! successful response updates the session document.
//!
//! Each agent's knowledge lives in its own module
//! (`agents::claude::refresh`, `agents::codex::refresh`); this module is
//! the common shape. Nothing here does I/O.

use jiff::Timestamp;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// How one agent refreshes its session.
#[derive(Debug)]
pub struct TokenEndpoint {
    /// The agent's name (`claude`, `codex`).
    pub agent: &'static str,
    /// The public token URL the agent itself uses.
    pub url: &'static str,
    /// Environment variables that override [`TokenEndpoint::url`], first
    /// wins (for tests against a mock server, and for proxies).
    pub url_env: &'static [&'static str],
    /// The request body's media type ([`JSON`] or [`FORM`]).
    pub content_type: &'static str,
    /// The request body for the session document `doc`, in
    /// [`TokenEndpoint::content_type`]; `None` when it has no refresh token.
    pub body: fn(doc: &Map<String, Value>) -> Option<Zeroizing<String>>,
    /// The session document after a successful response `resp` received at
    /// `now`. Keys of `doc` the response does not mention are kept.
    pub apply: ApplyFn,
}

/// A JSON request body (Claude, Codex).
pub const JSON: &str = "application/json";
/// A form-encoded request body (Google's token endpoint, Gemini).
pub const FORM: &str = "application/x-www-form-urlencoded";

/// `(document, response, now) → updated document`.
pub type ApplyFn = fn(
    doc: &Map<String, Value>,
    resp: &Map<String, Value>,
    now: Timestamp,
) -> Result<Map<String, Value>, BadResponse>;

/// A 2xx response that cannot be used. Says which field, never a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadResponse(pub &'static str);

impl std::fmt::Display for BadResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The endpoint of `agent`, if airlock can refresh its sessions. Gemini's
/// sessions do not rotate; airlock refreshes them only for accounts the
/// watcher holds, which for Gemini is proxy mode only (the sandbox has no
/// refresh token there; in every other mode it gets the session whole).
pub fn endpoint(agent: &str) -> Option<&'static TokenEndpoint> {
    match agent {
        "claude" => Some(&super::claude::refresh::ENDPOINT),
        "codex" => Some(&super::codex::refresh::ENDPOINT),
        "gemini" => Some(&super::gemini::refresh::ENDPOINT),
        _ => None,
    }
}

/// A non-empty string field.
pub(crate) fn str_field<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `k=v&…` (`application/x-www-form-urlencoded`) in a zeroizing buffer:
/// every byte but the unreserved ones percent-encoded.
pub(crate) fn form_body(fields: &[(&str, &str)]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        for (j, part) in [k, v].into_iter().enumerate() {
            if j == 1 {
                out.push('=');
            }
            for b in part.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

/// `{"k": v, …}` as JSON text in a zeroizing buffer.
pub(crate) fn json_body(fields: &[(&str, &str)]) -> Zeroizing<String> {
    let mut m = Map::new();
    for (k, v) in fields {
        m.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    Zeroizing::new(Value::Object(m).to_string())
}
