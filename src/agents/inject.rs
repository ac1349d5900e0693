//! What every agent's injection shares: the options, the per-agent dispatch,
//! the refresh-token rule for rotating sessions, [`Delivery`] (what a
//! sandbox gets, read off a plan), and small helpers for writing documents
//! that hold secrets.
//!
//! Each agent module (`claude::inject`, `codex::inject`, `gemini::inject`,
//! [`custom_inject`](super::custom_inject)) turns one [`Record`] into a
//! [`SandboxPlan`]. They are pure: anything from the host (a config file to
//! clean and copy) is read by [`crate::resolve`] and handed in through
//! [`InjectOptions`]. Session documents are parsed by the one parser of
//! each agent, in `<agent>::capture` (`parse_document`), which capture,
//! status and resolution use too.

use serde::Serialize;

use crate::agents::Agent;
use crate::agents::validate::SessionInfo;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::plan::SandboxPlan;
use crate::secret::Secret;
use crate::vault::{Method, Record};

/// How a rotating login session (Claude `.credentials.json`, Codex ChatGPT
/// `auth.json`) reaches a sandbox. Refresh tokens of those agents are
/// single-use: two copies that both refresh break each other and the host's
/// login. Gemini sessions do not rotate and are copied whole (in every mode
/// but [`Rotation::Proxy`]).
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
    /// The whole session, kept in one directory shared by every sandbox of
    /// the account and synced with its source of truth by `airlock sync`
    /// (docs/rotation.md). The default of `airlock run`; needs a process
    /// that lives as long as the container, so the plan only asks for it
    /// ([`crate::plan::SyncMount`]) and `airlock run` registers it.
    Sync,
    /// The access token only, kept fresh by airlock: the account's shared
    /// directory holds the session **without** its refresh token, and the
    /// `airlock sync` watcher, which alone holds the refresh token (in the
    /// source of truth, on the host), refreshes ahead of the agents' own
    /// refresh window and writes each new access token there
    /// (docs/broker.md, [`crate::sync::broker`]). Registered like `Sync`.
    Broker,
    /// No real credential in the sandbox at all: a random placeholder of
    /// the same shape and a base URL pointing the agent at `airlock proxy`
    /// on the host, which swaps the placeholder for the real credential on
    /// the way to the agent's API (docs/proxy.md, [`crate::proxy`]).
    Proxy,
}

impl Rotation {
    /// Whether the session reaches the sandbox through an account's shared
    /// directory registered with the watcher (`sync` and `broker`).
    pub fn is_shared(self) -> bool {
        matches!(self, Rotation::Sync | Rotation::Broker)
    }
}

impl Rotation {
    /// The name used in config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Rotation::AccessOnly => "access-only",
            Rotation::Copy => "copy",
            Rotation::Sync => "sync",
            Rotation::Broker => "broker",
            Rotation::Proxy => "proxy",
        }
    }
}

impl std::str::FromStr for Rotation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "access-only" => Ok(Rotation::AccessOnly),
            "copy" => Ok(Rotation::Copy),
            "sync" => Ok(Rotation::Sync),
            "broker" => Ok(Rotation::Broker),
            "proxy" => Ok(Rotation::Proxy),
            _ => Err(Error::Usage(format!(
                "unknown rotation mode {s:?}: use sync, broker, proxy, access-only or copy"
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
    /// Proxy mode: the base URL at which the sandbox reaches `airlock
    /// proxy`; each agent points its API base URL there.
    pub proxy_url: Option<String>,
}

impl Default for InjectOptions {
    fn default() -> Self {
        InjectOptions {
            workdir: DEFAULT_WORKDIR.to_owned(),
            aliases: true,
            host_config: None,
            rotation: Rotation::default(),
            proxy_url: None,
        }
    }
}

/// The container work dir used when none is configured.
pub const DEFAULT_WORKDIR: &str = "/workspace";

/// The plan for `record`, dispatched on its agent. Custom agents need the
/// configuration that defines them.
pub fn plan_for(record: &Record, opts: &InjectOptions, config: &Config) -> Result<SandboxPlan> {
    if opts.rotation == Rotation::Proxy {
        return crate::proxy::sandbox::plan(record, opts);
    }
    let agent = match record.id.agent.as_str() {
        "claude" => Agent::Claude,
        "codex" => Agent::Codex,
        "gemini" => Agent::Gemini,
        name => Agent::Custom(name, super::custom_inject::definition(config, name)?),
    };
    plan_for_agent(agent, record, opts)
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

/// The plan for `record` of `agent` (whose definition a custom agent
/// carries).
pub fn plan_for_agent(
    agent: Agent<'_>,
    record: &Record,
    opts: &InjectOptions,
) -> Result<SandboxPlan> {
    match agent {
        Agent::Claude => super::claude::inject::plan(record, opts),
        Agent::Codex => super::codex::inject::plan(record, opts),
        Agent::Gemini => super::gemini::inject::plan(record, opts),
        Agent::Custom(_, def) => super::custom_inject::plan(record, def),
    }
}

/// Whether a sandbox gets a session without its refresh token: the
/// agent's refresh tokens are single-use and `rotation` is access-only. The
/// rule the agents' `session_file`s follow, and resolution's warnings.
pub fn withholds_refresh(info: &SessionInfo, rotation: Rotation) -> bool {
    info.rotates && info.refreshable && rotation == Rotation::AccessOnly
}

/// What carries a credential's secret into a sandbox, read off the
/// injection plan itself: `airlock status`, `airlock auth` and the plan's
/// [`AgentSummary::delivers`](crate::plan::AgentSummary) all show this, so
/// they cannot drift from what the sandbox really gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Secret environment variables, by name.
    pub env: Vec<String>,
    /// Secret files, by path in the container.
    pub files: Vec<String>,
    /// A rotating session: synced by `airlock run` (`--rotation sync`),
    /// delivered without its refresh token by `docker-flags` and `compose`
    /// (access-only, their default).
    pub access_only: bool,
    /// A Gemini key used through Vertex AI.
    pub vertex: bool,
}

impl Delivery {
    /// The secret values of `plan`.
    pub fn of(plan: &SandboxPlan) -> Self {
        Delivery {
            env: plan
                .env
                .iter()
                .filter(|e| e.value.is_secret())
                .map(|e| e.name.clone())
                .collect(),
            files: plan
                .files
                .iter()
                .filter(|f| f.content.is_secret())
                .map(|f| f.path.clone())
                .collect(),
            ..Delivery::default()
        }
    }

    /// One line naming what carries the secret: `CLAUDE_CODE_OAUTH_TOKEN`,
    /// `/run/airlock/codex/auth.json`.
    pub fn names(&self) -> String {
        let all: Vec<&str> = self
            .env
            .iter()
            .chain(&self.files)
            .map(String::as_str)
            .collect();
        all.join(", ")
    }

    /// For humans: `env CLAUDE_CODE_OAUTH_TOKEN`, `file auth.json (synced
    /// by airlock run; …)`; files are named inside the agent's directory.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self.env.iter().map(|n| format!("env {n}")).collect();
        parts.extend(self.files.iter().map(|p| format!("file {}", short_path(p))));
        let mut notes = Vec::new();
        if self.access_only {
            notes.push("synced by airlock run; access token only in docker-flags and compose");
        }
        if self.vertex {
            notes.push("Vertex AI");
        }
        let mut s = parts.join(", ");
        if !notes.is_empty() {
            s.push_str(&format!(" ({})", notes.join("; ")));
        }
        s
    }
}

/// `/run/airlock/codex/auth.json` → `auth.json`; other paths unchanged.
fn short_path(p: &str) -> &str {
    p.strip_prefix(crate::plan::STATE_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|r| r.split_once('/'))
        .map_or(p, |(_, rest)| rest)
}

/// What a sandbox receives for `record` with the default options, from its
/// plan; an error when the record could not be delivered at all.
pub fn delivery(agent: Agent<'_>, record: &Record) -> Result<Delivery> {
    let plan = plan_for_agent(agent, record, &InjectOptions::default())?;
    let mut d = Delivery::of(&plan);
    if record.method == Method::Session {
        let info = agent.session_info(&record.secret)?;
        d.access_only = withholds_refresh(&info, Rotation::default());
    }
    d.vertex = agent == Agent::Gemini && super::gemini::inject::uses_vertex(record);
    Ok(d)
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
    fn rotation_names_round_trip() {
        for r in [
            Rotation::AccessOnly,
            Rotation::Copy,
            Rotation::Sync,
            Rotation::Broker,
        ] {
            assert_eq!(r.as_str().parse::<Rotation>().unwrap(), r);
        }
        assert!("sync-later".parse::<Rotation>().is_err());
        assert_eq!(Rotation::default(), Rotation::AccessOnly);
    }
}
