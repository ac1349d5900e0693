//! `config.toml`: user configuration.
//!
//! ```toml
//! [vault]
//! backend = "file"            # file | secret-service | keyutils | keychain | wincred (default: automatic)
//! path = "/path/to/vault.airlock"   # the encrypted file (default: <data dir>/vault.airlock)
//! key_cache_seconds = 300     # how long an unlocked file vault stays unlocked (0 = never cache)
//!
//! [status]
//! expiring_days = 30          # "expiring" when a credential expires within this many days
//!
//! [agents.claude]             # also [agents.codex], [agents.gemini]
//! account = "work"            # the account used when none is named
//! secret_file = "/run/secrets/claude-token"   # last resort before "no credential" (sops, agenix)
//! method = "token"            # what secret_file holds: token | api-key | session (default: guessed)
//!
//! [agents.custom.aider]       # an agent airlock does not know: one API key in one env var
//! api_key_env = "OPENAI_API_KEY"
//! secret_file = "/run/secrets/aider-key"       # optional
//! files = [{ path = ".aider/key", mode = "0600" }] # optional: files under the sandbox home that get the key
//!
//! [accounts.claude.work]     # a credential kept in a secret manager (docs/secret-refs.md)
//! secret_ref = "cmd:pass show anthropic"      # or file:PATH, env:NAME
//! timeout_seconds = 10        # optional; cache_seconds = 300, method = "token" too
//!
//! [sync]
//! refresh = true              # the watcher refreshes synced sessions before the agents would
//! refresh_lead_seconds = 600  # how long before expiry
//! ```
//!
//! Every key is optional. Unknown keys are an error, so that a typo does not
//! silently do nothing. Sections for agents and projects are added by the
//! modules that use them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::vault::{BackendKind, Method};

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where and how credentials are stored.
    #[serde(default)]
    pub vault: VaultConfig,
    /// `airlock status` settings.
    #[serde(default)]
    pub status: StatusConfig,
    /// Per-agent settings and custom agents.
    #[serde(default)]
    pub agents: AgentsConfig,
    /// Rotation sync (`airlock sync`).
    #[serde(default)]
    pub sync: SyncConfig,
    /// `[accounts.<agent>.<account>]`: per-account settings, such as a
    /// secret reference (`secret_ref`, see [`crate::secretref`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accounts: BTreeMap<String, BTreeMap<String, crate::secretref::AccountConfig>>,
}

/// `[sync]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Whether the watcher refreshes synced OAuth sessions itself before
    /// the agents would (default true; `AIRLOCK_SYNC_REFRESH` overrides).
    pub refresh: Option<bool>,
    /// Seconds before expiry at which it does (default 600;
    /// `AIRLOCK_SYNC_REFRESH_LEAD` overrides).
    pub refresh_lead_seconds: Option<u64>,
    /// How rotating sessions are delivered when no `--rotation` flag says
    /// (sync, broker, access-only, copy; `AIRLOCK_ROTATION` overrides).
    /// Applies to the commands that can deliver the mode; others keep their
    /// own default.
    pub rotation: Option<String>,
}

impl SyncConfig {
    /// The configured default rotation mode: `AIRLOCK_ROTATION`, else
    /// `rotation` in this section; `None` when neither is set.
    pub fn default_rotation(&self) -> Result<Option<crate::agents::inject::Rotation>> {
        if let Ok(v) = std::env::var("AIRLOCK_ROTATION")
            && !v.trim().is_empty()
        {
            return v.trim().parse().map(Some).map_err(|e| {
                Error::Usage(format!(
                    "AIRLOCK_ROTATION is not usable: {e}; unset it or fix it"
                ))
            });
        }
        match self.rotation.as_deref() {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|e| {
                Error::Usage(format!(
                    "[sync] rotation in the config file is not usable: {e}; fix it or remove the line"
                ))
            }),
        }
    }

    /// The refresh policy: this section, then the environment.
    pub fn refresh_policy(&self) -> Result<crate::sync::refresh::Policy> {
        crate::sync::refresh::Policy::from_config(self.refresh, self.refresh_lead_seconds)
    }
}

/// `[agents]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// `[agents.claude]`.
    #[serde(default)]
    pub claude: AgentConfig,
    /// `[agents.codex]`.
    #[serde(default)]
    pub codex: AgentConfig,
    /// `[agents.gemini]`.
    #[serde(default)]
    pub gemini: AgentConfig,
    /// `[agents.custom.NAME]`: agents airlock does not know.
    #[serde(default)]
    pub custom: BTreeMap<String, CustomAgentConfig>,
}

impl AgentsConfig {
    /// The settings of a built-in agent (`None` for other names).
    pub fn builtin(&self, agent: &str) -> Option<&AgentConfig> {
        match agent {
            "claude" => Some(&self.claude),
            "codex" => Some(&self.codex),
            "gemini" => Some(&self.gemini),
            _ => None,
        }
    }
}

/// `[agents.claude]`, `[agents.codex]`, `[agents.gemini]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The account used when none is named on the command line or in the
    /// project file.
    pub account: Option<String>,
    /// A secret file managed elsewhere (sops-nix, agenix, Docker secrets),
    /// tried when neither the vault nor the host login has a credential.
    pub secret_file: Option<PathBuf>,
    /// What `secret_file` holds (`token`, `api-key`, `session`); guessed
    /// from its contents when absent.
    #[serde(default, deserialize_with = "de_method")]
    pub method: Option<Method>,
}

/// `[agents.custom.NAME]`: an agent that takes one API key in one
/// environment variable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomAgentConfig {
    /// The environment variable that carries the key (`OPENAI_API_KEY`).
    pub api_key_env: String,
    /// The account used when none is named.
    pub account: Option<String>,
    /// A secret file holding the key, tried after the vault.
    pub secret_file: Option<PathBuf>,
    /// Files, relative to the sandbox user's home, that receive the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<CustomFile>,
    /// A short description for humans.
    pub description: Option<String>,
}

/// One file a custom agent's key is written to (`{ path = ".aider/key", mode = "0600" }`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomFile {
    /// Path relative to the sandbox user's home (no `..`, not absolute).
    pub path: String,
    /// Octal permissions, `"0600"` when not given.
    pub mode: Option<String>,
}

impl CustomFile {
    /// The permission bits (default 0600).
    pub fn mode_bits(&self) -> u32 {
        self.mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m.trim_start_matches("0o"), 8).ok())
            .unwrap_or(0o600)
    }
}

/// Accepts every spelling `Method::from_str` does (`token`, `api-key`, …).
fn de_method<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Method>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<Method>()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(e.to_string()))
}

/// `[vault]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Force a backend instead of choosing automatically.
    pub backend: Option<BackendKind>,
    /// The encrypted vault file.
    pub path: Option<PathBuf>,
    /// Seconds an unlocked file vault stays unlocked (default 300; 0 disables).
    pub key_cache_seconds: Option<u64>,
}

/// `[status]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// Days before expiry at which a credential counts as expiring.
    #[serde(default = "default_expiring_days")]
    pub expiring_days: u32,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            expiring_days: default_expiring_days(),
        }
    }
}

fn default_expiring_days() -> u32 {
    30
}

impl Config {
    /// Loads `path`; a missing file is the default configuration.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        Self::parse(&text).map_err(|msg| {
            Error::Usage(format!(
                "the configuration file {} is invalid: {msg}; fix it or move it away",
                path.display()
            ))
        })
    }

    /// Parses configuration text.
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        toml::from_str(text).map_err(|e| toml_message(&e))
    }
}

/// A TOML error's message without the offending value: serde quotes it
/// (`invalid type: string "sk-…", expected a boolean`, ``unknown variant
/// `sk-…` ``), and a secret pasted in the wrong place must not reach the
/// terminal or a log. Key names (`unknown field`) are kept: they say what to fix.
pub(crate) fn toml_message(e: &toml::de::Error) -> String {
    redact_between(
        &redact_between(e.message(), "string \"", "\", expected", "a string"),
        "unknown variant `",
        "`, expected",
        "an unknown value",
    )
}

/// Replaces `open` + value up to the last `close` (a one-byte quote
/// followed by the rest of `close`) by `with`.
fn redact_between(msg: &str, open: &str, close: &str, with: &str) -> String {
    match (msg.find(open), msg.rfind(close)) {
        (Some(a), Some(b)) if b >= a + open.len() => {
            format!("{}{with}{}", &msg[..a], &msg[b + 1..])
        }
        _ => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::default().status.expiring_days, 30);
    }

    #[test]
    fn parses_vault_section() {
        let c = Config::parse("[vault]\nbackend = \"keyutils\"\nkey_cache_seconds = 0\n").unwrap();
        assert_eq!(c.vault.backend, Some(BackendKind::Keyutils));
        assert_eq!(c.vault.key_cache_seconds, Some(0));
    }

    #[test]
    fn parses_agent_sections() {
        let c = Config::parse(
            "[agents.claude]\naccount = \"work\"\nsecret_file = \"/run/secrets/c\"\nmethod = \"token\"\n\n[agents.custom.aider]\napi_key_env = \"OPENAI_API_KEY\"\n",
        )
        .unwrap();
        assert_eq!(c.agents.claude.account.as_deref(), Some("work"));
        assert_eq!(c.agents.claude.method, Some(Method::SetupToken));
        assert_eq!(
            c.agents.builtin("claude").unwrap().secret_file,
            Some(PathBuf::from("/run/secrets/c"))
        );
        assert_eq!(c.agents.custom["aider"].api_key_env, "OPENAI_API_KEY");
        assert!(Config::parse("[agents.claude]\nmethod = \"password\"\n").is_err());
        assert!(Config::parse("[agents.claude]\nsecret = \"x\"\n").is_err());
    }

    #[test]
    fn errors_never_quote_a_value() {
        let e = Config::parse("[vault]\nkey_cache_seconds = \"sk-ant-SECRET\"\n").unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        assert!(e.contains("a string, expected"), "{e}");
        let e = Config::parse("[vault]\nbackend = \"sk-ant-SECRET\"\n").unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        assert!(e.contains("an unknown value, expected one of"), "{e}");
    }

    #[test]
    fn typos_are_errors() {
        let e = Config::parse("[vault]\nbakend = \"file\"\n").unwrap_err();
        assert!(e.contains("bakend"), "{e}");
        assert!(Config::parse("[vault]\nbackend = \"gpg\"\n").is_err());
    }
}
