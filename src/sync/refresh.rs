//! airlock's own refresh of a rotating session ("pre-refresh",
//! `docs/rotation.md` §5).
//!
//! The agents refresh their session in a window before it expires (Claude:
//! 5 minutes; Codex: at expiry). Several agents on one account — sandboxes,
//! and the host's own agent — can enter that window together, and Codex
//! does not lock around its refresh request. So the watcher refreshes each
//! synced account itself, once, `lead` before expiry (default 10 minutes,
//! before any agent's window opens), under the agents' own refresh locks on
//! both sides, and writes the result to the shared directory and the source
//! of truth: the agents then find a fresh session and have nothing to
//! refresh. `airlock run` waits for a session that is already due to be
//! refreshed before it starts the container, so that sandboxes started
//! together with an expired session do not all refresh at once.
//!
//! This module is the network half: the [`Policy`] (on/off, lead, URLs) and
//! one token request ([`post_refresh`]). The per-account scheduling and the
//! writes live in [`crate::sync::engine::Syncer::refresh`] and the watcher.
//! Nothing here logs or returns a token: errors name the HTTP status and the
//! server's error code only.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::agents::refresh::TokenEndpoint;
use crate::error::{Error, Result};

/// Default time before expiry at which airlock refreshes.
pub const DEFAULT_LEAD: Duration = Duration::from_secs(600);

/// How long one token request may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Wait after a failed attempt before the next one.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(60);

/// Whether and when airlock refreshes synced sessions itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Refresh at all (`[sync] refresh`, `AIRLOCK_SYNC_REFRESH`).
    pub enabled: bool,
    /// How long before expiry (`[sync] refresh_lead_seconds`,
    /// `AIRLOCK_SYNC_REFRESH_LEAD`). For a session whose lifetime is shorter
    /// than twice this, half its lifetime is used.
    pub lead: Duration,
    /// Per request.
    pub timeout: Duration,
    /// After a failure.
    pub retry: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            enabled: true,
            lead: DEFAULT_LEAD,
            timeout: DEFAULT_TIMEOUT,
            retry: DEFAULT_RETRY,
        }
    }
}

impl Policy {
    /// A policy that never refreshes (the agents refresh themselves).
    pub fn disabled() -> Policy {
        Policy {
            enabled: false,
            ..Policy::default()
        }
    }

    /// The configured policy, overridden by `AIRLOCK_SYNC_REFRESH`
    /// (`on`/`off`) and `AIRLOCK_SYNC_REFRESH_LEAD` (seconds).
    pub fn from_config(enabled: Option<bool>, lead_seconds: Option<u64>) -> Result<Policy> {
        let mut p = Policy::default();
        if let Some(e) = enabled {
            p.enabled = e;
        }
        if let Some(s) = lead_seconds {
            p.lead = Duration::from_secs(s);
        }
        if let Ok(v) = std::env::var("AIRLOCK_SYNC_REFRESH") {
            p.enabled = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "on" | "true" | "yes" => true,
                "0" | "off" | "false" | "no" => false,
                _ => {
                    return Err(Error::Usage(
                        "AIRLOCK_SYNC_REFRESH must be on or off".into(),
                    ));
                }
            };
        }
        if let Ok(v) = std::env::var("AIRLOCK_SYNC_REFRESH_LEAD") {
            let s: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0 && s.is_finite())
                .ok_or_else(|| {
                    Error::Usage(
                        "AIRLOCK_SYNC_REFRESH_LEAD must be a positive number of seconds".into(),
                    )
                })?;
            p.lead = Duration::from_secs_f64(s);
        }
        Ok(p)
    }

    /// The URL to send `ep`'s requests to: the first override set in the
    /// environment, else the agent's own. An override must be `https://`,
    /// or `http://` to a loopback address (a mock server).
    pub fn url(&self, ep: &TokenEndpoint) -> Result<String> {
        for var in ep.url_env {
            if let Ok(u) = std::env::var(var)
                && !u.trim().is_empty()
            {
                let u = u.trim().to_owned();
                check_url(&u).map_err(|why| {
                    Error::Usage(format!(
                        "{var} is not usable: {why}; unset it or give an https:// URL"
                    ))
                })?;
                return Ok(u);
            }
        }
        Ok(ep.url.to_owned())
    }
}

fn check_url(u: &str) -> std::result::Result<(), &'static str> {
    if u.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = u.strip_prefix("http://") else {
        return Err("not an http(s) URL");
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let name = if let Some(h) = host.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err("plain http is only allowed to a loopback address")
    }
}

/// Why a refresh did not produce a session. Never contains a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server refused the refresh token as used, expired or revoked:
    /// the session is dead until someone logs in again (`code` from the server).
    Spent(String),
    /// Anything else (network, server error, unexpected answer): try again later.
    Transient(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Spent(c) => write!(f, "the refresh token was refused ({c}): log in again"),
            Failure::Transient(m) => f.write_str(m),
        }
    }
}

/// Sends one refresh of the session `doc` to `url` and returns the updated
/// document (still to be validated and written by the caller).
pub fn post_refresh(
    ep: &TokenEndpoint,
    url: &str,
    timeout: Duration,
    doc: &Map<String, Value>,
) -> std::result::Result<Map<String, Value>, Failure> {
    let body = (ep.body)(doc)
        .ok_or_else(|| Failure::Transient("the session has no refresh token".into()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        // Never follow a redirect: a 307/308 would send the refresh token
        // to wherever the answer points.
        .max_redirects(0)
        .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let started = std::time::Instant::now();
    let mut resp = agent
        .post(url)
        .header("Content-Type", ep.content_type)
        .header("Accept", "application/json")
        .send(body.as_bytes())
        .map_err(|e| Failure::Transient(format!("the token request failed: {}", describe(&e))))?;
    let status = resp.status().as_u16();
    let bytes = zeroize::Zeroizing::new(
        resp.body_mut()
            .with_config()
            .limit(256 * 1024)
            .read_to_vec()
            .map_err(|e| {
                Failure::Transient(format!(
                    "reading the token response failed: {}",
                    describe(&e)
                ))
            })?,
    );
    tracing::debug!(
        agent = ep.agent,
        status,
        ms = started.elapsed().as_millis() as u64,
        "token request"
    );
    let json: Option<Map<String, Value>> =
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            });
    if (200..300).contains(&status) {
        let Some(m) = json else {
            return Err(Failure::Transient(format!(
                "the token server answered HTTP {status} without a JSON object"
            )));
        };
        return (ep.apply)(doc, &m, Timestamp::now()).map_err(|e| {
            Failure::Transient(format!("the token server's answer is unusable: {e}"))
        });
    }
    let code = json.as_ref().and_then(error_code);
    match code.as_deref() {
        Some(
            c @ ("invalid_grant"
            | "refresh_token_reused"
            | "refresh_token_expired"
            | "refresh_token_invalidated"),
        ) if (400..500).contains(&status) => Err(Failure::Spent(c.to_owned())),
        Some(c) => Err(Failure::Transient(format!(
            "the token server answered HTTP {status} ({c})"
        ))),
        None => Err(Failure::Transient(format!(
            "the token server answered HTTP {status}"
        ))),
    }
}

/// The OAuth error code of an error body (`{"error":"…"}` or
/// `{"error":{"code":"…"}}`), reduced to a safe identifier.
fn error_code(m: &Map<String, Value>) -> Option<String> {
    let raw = match m.get("error")? {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o
            .get("code")
            .or_else(|| o.get("type"))
            .and_then(Value::as_str)?,
        _ => return None,
    };
    let safe: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(48)
        .collect();
    (!safe.is_empty()).then_some(safe)
}

/// A transport error without the request body (ureq's messages hold none;
/// this keeps it to the kind of failure).
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::Io(io) => format!("{}", io.kind()),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => "TLS error".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_urls_must_be_https_or_loopback() {
        assert!(check_url("https://auth.example.com/oauth/token").is_ok());
        assert!(check_url("http://127.0.0.1:8080/oauth/token").is_ok());
        assert!(check_url("http://localhost/x").is_ok());
        assert!(check_url("http://[::1]:9/x").is_ok());
        assert!(check_url("http://10.0.0.1/x").is_err());
        assert!(check_url("http://127.0.0.1.evil.com/x").is_err());
        assert!(check_url("http://u@evil.com/x").is_err());
        assert!(check_url("ftp://x").is_err());
    }

    #[test]
    fn error_codes_are_reduced_to_identifiers() {
        let m = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        assert_eq!(
            error_code(&m(serde_json::json!({"error": "invalid_grant"}))).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(
            error_code(&m(
                serde_json::json!({"error": {"code": "refresh_token_reused", "message": "x"}})
            ))
            .as_deref(),
            Some("refresh_token_reused")
        );
        assert_eq!(
            error_code(&m(serde_json::json!({"error": "bad <script> token=abc"}))).as_deref(),
            Some("badscripttokenabc")
        );
    }
}
