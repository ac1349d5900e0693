//! What airlock knows about each agent, one module per agent.
//!
//! * capture side (`<agent>::capture`): validating secrets, reading the
//!   host's existing logins, computing expiry, and the one parser of the
//!   agent's session document (`parse_document`), which injection uses too,
//!   and `SESSION`, the description of its rotating session file that
//!   `sync` uses (file name, session keys, what may be propagated; see
//!   [`session`]);
//! * injection side (`<agent>::inject`): what a sandbox must receive (env vars,
//!   files, config patches) for a stored credential.
//!
//! Custom agents are defined in the config file (`custom`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::vault::Record;

pub use agent::{Agent, SecretFile, method_list};

pub mod agent;
pub mod claude;
pub mod codex;
pub mod custom;
pub mod custom_inject;
pub mod gemini;
pub mod inject;
pub mod jwt;
pub mod refresh;
pub mod session;
pub mod validate;

/// The built-in agents' names.
pub const BUILTIN: [&str; 3] = ["claude", "codex", "gemini"];

/// The parts of the host environment agents care about: the home directory
/// and variables such as `CLAUDE_CONFIG_DIR`, `CODEX_HOME`, `GEMINI_CLI_HOME`.
/// Tests build one by hand instead of touching the real home.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostEnv {
    /// The user's home directory.
    pub home: PathBuf,
    /// Relevant environment variables.
    pub vars: BTreeMap<String, String>,
}

impl HostEnv {
    /// Reads the real environment.
    pub fn from_process(home: PathBuf) -> Self {
        let vars = std::env::vars()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "CLAUDE_CONFIG_DIR"
                        | "CLAUDE_SECURESTORAGE_CONFIG_DIR"
                        | "CODEX_HOME"
                        | "GEMINI_CLI_HOME"
                        | "USER"
                )
            })
            .collect();
        HostEnv { home, vars }
    }

    /// A variable, if set and non-empty.
    pub fn var(&self, k: &str) -> Option<&str> {
        self.vars
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The host's current login for `agent`, read (never modified) and validated
/// into an unsaved record, or `None` when the host has none.
pub fn host_login(agent: &str, env: &HostEnv) -> Result<Option<Record>> {
    let agent = match agent {
        "claude" => Agent::Claude,
        "codex" => Agent::Codex,
        "gemini" => Agent::Gemini,
        _ => return Ok(None),
    };
    Ok(agent.find_host_login(env)?.map(|h| h.record))
}
