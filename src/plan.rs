//! The injection plan: everything one sandbox receives, as plain data.
//!
//! Resolution ([`crate::resolve`]) and the agent modules
//! (`crate::agents::<agent>::inject`) build a [`SandboxPlan`]; renderers turn it
//! into engine flags, a compose override or a running container. Nothing here
//! touches the file system or an engine, so plans are unit-tested directly.
//!
//! ## Where things go in the container
//!
//! * [`IN_DIR`] (`/run/airlock-in`): a read-only bind mount of the sandbox's
//!   host directory (on a host tmpfs, 0700). It holds the shim and one file
//!   per secret value; the values never appear in the container's config.
//! * [`STATE_DIR`] (`/run/airlock`): a tmpfs inside the container, owned by
//!   the container's user. The shim writes the agents' files there
//!   (`/run/airlock/claude/.credentials.json`, …) and points the agents at
//!   them (`CLAUDE_CONFIG_DIR`, `CODEX_HOME`, `GEMINI_CLI_HOME`), so no secret
//!   is written to the container's disk layer either.

use std::fmt;

use serde::Serialize;

use crate::secret::Secret;
use crate::vault::{CredentialId, Method};

/// Where the sandbox's host directory is mounted (read-only).
pub const IN_DIR: &str = "/run/airlock-in";
/// The tmpfs inside the container that holds the agents' files.
pub const STATE_DIR: &str = "/run/airlock";

/// A value the sandbox receives.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// Not secret: may appear in flags, logs and `docker inspect`.
    Plain(String),
    /// Secret: only ever travels as a file in the sandbox's host directory.
    Secret(Secret),
}

impl Value {
    /// True for [`Value::Secret`].
    pub fn is_secret(&self) -> bool {
        matches!(self, Value::Secret(_))
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Plain(s) => write!(f, "Plain({s:?})"),
            Value::Secret(_) => f.write_str("Secret([redacted])"),
        }
    }
}

impl Serialize for Value {
    /// Secret values serialize as `"[secret]"`: a plan can be printed as JSON.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Plain(v) => s.serialize_str(v),
            Value::Secret(_) => s.serialize_str("[secret]"),
        }
    }
}

/// An environment variable for the agent's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Its value.
    pub value: Value,
}

/// A file the shim creates inside the container before the agent starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedFile {
    /// Absolute path inside the container, normally under [`STATE_DIR`].
    pub path: String,
    /// Contents.
    pub content: Value,
    /// Unix mode (0o600 for anything secret).
    pub mode: u32,
}

/// A command wrapper inside the sandbox (`claude` → `claude --dangerously-skip-permissions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alias {
    /// The command name to wrap.
    pub command: String,
    /// Arguments inserted before the user's.
    pub args: Vec<String>,
}

/// A directory shared between host and sandbox (`--rotation sync`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Host directory.
    pub host: String,
    /// Container directory.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// A rotating session to deliver through a synced shared directory
/// (`--rotation sync`, docs/rotation.md): `airlock run` registers it with
/// the sync watcher and mounts the returned directory read-write at
/// `container`. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncMount {
    /// `claude` or `codex`.
    pub agent: String,
    /// The account (sandboxes of one account share the directory).
    pub account: String,
    /// Where the session came from and goes back to; `None` until
    /// resolution fills it in.
    pub truth: Option<crate::sync::Truth>,
    /// Container directory to mount the shared directory at.
    pub container: String,
    /// Broker mode (`--rotation broker`, docs/broker.md): the shared
    /// directory holds the session without its refresh token, and only
    /// airlock refreshes it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub broker: bool,
}

/// A placeholder to register with `airlock proxy` (`--rotation proxy`,
/// docs/proxy.md): the sandbox holds `placeholder`; the proxy swaps it for
/// the real credential of `agent:account`, read from `truth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyGrant {
    /// `claude`, `codex` or `gemini`.
    pub agent: String,
    /// The account whose credential the proxy uses.
    pub account: String,
    /// The real credential's method (which upstream and header it needs).
    pub method: Method,
    /// The placeholder the sandbox holds ([`Value::Secret`]).
    pub placeholder: Value,
    /// Where the proxy reads the real credential; `None` until resolution
    /// fills it in. For a [`ProxyGrant::reference`], names the account only.
    pub truth: Option<crate::sync::Truth>,
    /// The account's secret reference (`file:`, `cmd:`), which the proxy
    /// resolves itself instead of reading `truth` (docs/secret-refs.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<ProxyReference>,
}

/// A secret reference as the proxy resolves it: the reference's text (never
/// a secret: [`crate::secretref::Reference::parse`] refuses one that holds
/// a credential) and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProxyReference {
    /// `file:PATH` or `cmd:COMMAND`.
    pub text: String,
    /// How long a command may run, in milliseconds.
    pub timeout_ms: u64,
    /// How long the value is kept in the proxy's memory, in milliseconds.
    pub cache_ms: u64,
}

/// What was resolved for one agent, for logs, `status` and `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentSummary {
    /// Agent name.
    pub agent: String,
    /// The credential used, if any.
    pub credential: Option<CredentialId>,
    /// Its method.
    pub method: Option<Method>,
    /// Where it came from (`vault`, `host:/path`, `file:/path`).
    pub source: String,
    /// One line: what the sandbox receives (`CLAUDE_CODE_OAUTH_TOKEN`, `~/.codex/auth.json`).
    pub delivers: String,
}

/// Everything one sandbox receives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SandboxPlan {
    /// Environment variables for the agent's process.
    pub env: Vec<EnvVar>,
    /// Files to create inside the container.
    pub files: Vec<PlannedFile>,
    /// Command wrappers.
    pub aliases: Vec<Alias>,
    /// Shared directories.
    pub mounts: Vec<Mount>,
    /// Sessions to sync (turned into [`Mount`]s by `airlock run`).
    pub sync: Vec<SyncMount>,
    /// Placeholders to register with the proxy (`--rotation proxy`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy: Vec<ProxyGrant>,
    /// Per-agent summaries.
    pub agents: Vec<AgentSummary>,
    /// Warnings to show the user (never secret).
    pub warnings: Vec<String>,
}

impl SandboxPlan {
    /// Adds an environment variable, replacing an earlier one of the same name.
    pub fn set_env(&mut self, name: &str, value: Value) {
        self.env.retain(|e| e.name != name);
        self.env.push(EnvVar {
            name: name.to_owned(),
            value,
        });
    }

    /// Adds a file, replacing an earlier one at the same path.
    pub fn add_file(&mut self, path: impl Into<String>, content: Value, mode: u32) {
        let path = path.into();
        self.files.retain(|f| f.path != path);
        self.files.push(PlannedFile {
            path,
            content,
            mode,
        });
    }

    /// Merges another plan into this one (later entries win on conflicts).
    pub fn merge(&mut self, other: SandboxPlan) {
        for e in other.env {
            self.set_env(&e.name, e.value);
        }
        for f in other.files {
            self.add_file(f.path, f.content, f.mode);
        }
        for a in other.aliases {
            self.aliases.retain(|x| x.command != a.command);
            self.aliases.push(a);
        }
        self.mounts.extend(other.mounts);
        self.sync.extend(other.sync);
        self.proxy.extend(other.proxy);
        self.agents.extend(other.agents);
        self.warnings.extend(other.warnings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let mut p = SandboxPlan::default();
        p.set_env("TOKEN", Value::Secret(Secret::from("CANARY-1")));
        p.add_file(
            "/run/airlock/x",
            Value::Secret(Secret::from("CANARY-2")),
            0o600,
        );
        let dbg = format!("{p:?}");
        let json = serde_json::to_string(&p).unwrap();
        for s in [&dbg, &json] {
            assert!(!s.contains("CANARY"), "{s}");
        }
        assert!(json.contains("[secret]"));
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let mut a = SandboxPlan::default();
        a.set_env("X", Value::Plain("1".into()));
        let mut b = SandboxPlan::default();
        b.set_env("X", Value::Plain("2".into()));
        b.add_file("/f", Value::Plain("c".into()), 0o644);
        a.merge(b);
        assert_eq!(a.env.len(), 1);
        assert_eq!(a.env[0].value, Value::Plain("2".into()));
        assert_eq!(a.files.len(), 1);
    }
}
