//! What every agent's injection shares: the options, the per-agent dispatch,
//! and small helpers for reading session documents without leaking them.
//!
//! Each agent module (`claude::inject`, `codex::inject`, `gemini::inject`,
//! [`custom_inject`](super::custom_inject)) turns one [`Record`] into a
//! [`SandboxPlan`]. They are pure: anything from the host (a config file to
//! clean and copy) is read by [`crate::resolve`] and handed in through
//! [`InjectOptions`].

use jiff::Timestamp;
use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::plan::SandboxPlan;
use crate::secret::Secret;
use crate::vault::Record;

/// How a rotating login session (Claude `.credentials.json`, Codex ChatGPT
/// `auth.json`) reaches a sandbox. Refresh tokens of those agents are
/// single-use: two copies that both refresh break each other and the host's
/// login. Gemini sessions do not rotate and are always copied whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Rotation {
    /// The default: the sandbox gets the session without its refresh token.
    /// It works until the access token expires (Claude: hours; Codex: days)
    /// and can never invalidate the host's or the vault's copy.
    #[default]
    AccessOnly,
    /// The whole session, refresh token included. The first refresh inside
    /// the sandbox invalidates every other copy (host login, vault, other
    /// sandboxes). Only for a session dedicated to one sandbox.
    Copy,
}

impl Rotation {
    /// The name used in config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Rotation::AccessOnly => "access-only",
            Rotation::Copy => "copy",
        }
    }
}

impl std::str::FromStr for Rotation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "access-only" => Ok(Rotation::AccessOnly),
            "copy" => Ok(Rotation::Copy),
            _ => Err(Error::Usage(format!(
                "unknown rotation mode {s:?}: use access-only or copy"
            ))),
        }
    }
}

/// What an agent's injection needs to know besides the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectOptions {
    /// The agent's working directory inside the container (trusted).
    pub workdir: String,
    /// Whether to wrap the agent's command so it runs without permission
    /// prompts (`claude --dangerously-skip-permissions`, …).
    pub aliases: bool,
    /// The text of the host's own config file for this agent (Claude
    /// `~/.claude.json`, Codex `~/.codex/config.toml`), when the host has one
    /// and copying it is enabled. The agent module cleans it before use.
    pub host_config: Option<String>,
    /// How rotating sessions are delivered.
    pub rotation: Rotation,
}

impl Default for InjectOptions {
    fn default() -> Self {
        InjectOptions {
            workdir: DEFAULT_WORKDIR.to_owned(),
            aliases: true,
            host_config: None,
            rotation: Rotation::default(),
        }
    }
}

/// The container work dir used when none is configured.
pub const DEFAULT_WORKDIR: &str = "/workspace";

/// Facts about a session document that decide whether it is usable. Never
/// holds a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// When the access token expires, when the document says.
    pub access_expires_at: Option<Timestamp>,
    /// Whether a (non-empty) refresh token is present.
    pub has_refresh_token: bool,
    /// Whether the agent's refresh tokens are single-use (Claude, Codex).
    pub rotates: bool,
}

/// The plan for `record`, dispatched on its agent. Custom agents need the
/// configuration that defines them.
pub fn plan_for(record: &Record, opts: &InjectOptions, config: &Config) -> Result<SandboxPlan> {
    match record.id.agent.as_str() {
        "claude" => super::claude::inject::plan(record, opts),
        "codex" => super::codex::inject::plan(record, opts),
        "gemini" => super::gemini::inject::plan(record, opts),
        name => {
            let def = super::custom_inject::definition(config, name)?;
            super::custom_inject::plan(record, def)
        }
    }
}

/// What a sandbox gets for `agent` with no credential: onboarding and trust,
/// so the agent starts without prompts and can be logged in by hand.
pub fn onboarding_for(agent: &str, opts: &InjectOptions) -> Result<SandboxPlan> {
    match agent {
        "claude" => super::claude::inject::onboarding(opts),
        "codex" => super::codex::inject::onboarding(opts),
        "gemini" => super::gemini::inject::onboarding(opts),
        _ => Ok(SandboxPlan::default()),
    }
}

/// Session facts for a session record, dispatched on its agent; `None` for
/// agents without a session format.
pub fn session_info_for(record: &Record) -> Result<Option<SessionInfo>> {
    Ok(Some(match record.id.agent.as_str() {
        "claude" => super::claude::inject::session_info(&record.secret)?,
        "codex" => super::codex::inject::session_info(&record.secret)?,
        "gemini" => super::gemini::inject::session_info(&record.secret)?,
        _ => return Ok(None),
    }))
}

/// Parses a secret JSON document into an object. The error never quotes the
/// document: only where parsing stopped.
pub(crate) fn parse_object(
    secret: &Secret,
    what: &str,
    fix: &str,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str::<serde_json::Value>(secret.expose()) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::invalid(
            format!("the {what} is JSON but not an object"),
            fix,
        )),
        Err(e) => Err(Error::invalid(
            format!(
                "the {what} is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
            fix,
        )),
    }
}

/// Serializes a document that holds secrets, straight into a [`Secret`].
pub(crate) fn secret_json(value: &serde_json::Value) -> Result<Secret> {
    serde_json::to_string_pretty(value)
        .map(Secret::new)
        .map_err(|_| Error::Other("could not serialize a credential document".into()))
}

/// Serializes a document without secrets.
pub(crate) fn plain_json(value: &serde_json::Value) -> String {
    // Serializing a `Value` cannot fail (no non-string map keys).
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A non-empty string field.
pub(crate) fn nonempty_str(v: Option<&serde_json::Value>) -> Option<&str> {
    v.and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
}

/// An epoch-milliseconds field (`expiresAt`, `expiry_date`) as a timestamp.
pub(crate) fn millis(v: Option<&serde_json::Value>) -> Option<Timestamp> {
    let ms = v.and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))?;
    Timestamp::from_millisecond(ms).ok()
}

/// A single-line token or key, trimmed: what env vars carry.
pub(crate) fn single_line(record: &Record, what: &str) -> Result<Secret> {
    let v = record.secret.trimmed();
    if v.is_empty() {
        return Err(Error::invalid(
            format!("the stored {what} for {} is empty", record.id),
            format!("store it again with `airlock auth {}`", record.id.agent),
        ));
    }
    if v.expose().chars().any(char::is_control) || v.expose().contains(' ') {
        return Err(Error::invalid(
            format!(
                "the stored {what} for {} contains spaces or line breaks",
                record.id
            ),
            format!(
                "a {what} is one word; store it again with `airlock auth {}`",
                record.id.agent
            ),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_never_quote_the_document() {
        let s = Secret::from("{\"token\": CANARY}");
        let e = parse_object(&s, "claude session", "fix").unwrap_err();
        assert!(!e.to_string().contains("CANARY"), "{e}");
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = parse_object(&Secret::from("[\"CANARY\"]"), "x", "fix").unwrap_err();
        assert!(!e.to_string().contains("CANARY"), "{e}");
    }

    #[test]
    fn rotation_names_round_trip() {
        for r in [Rotation::AccessOnly, Rotation::Copy] {
            assert_eq!(r.as_str().parse::<Rotation>().unwrap(), r);
        }
        assert!("sync-later".parse::<Rotation>().is_err());
        assert_eq!(Rotation::default(), Rotation::AccessOnly);
    }

    #[test]
    fn millis_reads_integers_and_floats() {
        let v = serde_json::json!(1_795_267_240_000_i64);
        assert_eq!(
            millis(Some(&v)).unwrap().as_millisecond(),
            1_795_267_240_000
        );
        let v = serde_json::json!(1.5e12);
        assert!(millis(Some(&v)).is_some());
        assert!(millis(Some(&serde_json::json!("soon"))).is_none());
        assert!(millis(None).is_none());
    }
}
