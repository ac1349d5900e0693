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
//! [agents.custom.aider]       # a custom agent (API keys only): see `agents::custom`
//! api_key_env = "OPENAI_API_KEY"
//! files = [{ path = ".aider/key", mode = "0600" }]
//! ```
//!
//! Every key is optional. Unknown keys are an error, so that a typo does not
//! silently do nothing. Sections for agents and projects are added by the
//! modules that use them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::vault::BackendKind;

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
    /// Agent settings, including custom agents.
    #[serde(default, skip_serializing_if = "AgentsConfig::is_empty")]
    pub agents: AgentsConfig,
}

/// `[agents]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// `[agents.custom.<name>]`: agents airlock does not know, API keys only.
    #[serde(default)]
    pub custom: std::collections::BTreeMap<String, crate::agents::custom::CustomAgent>,
}

impl AgentsConfig {
    /// True when nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.custom.is_empty()
    }
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
        let c: Config = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        crate::agents::custom::check_all(&c.agents.custom)?;
        Ok(c)
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
    fn parses_custom_agents() {
        let c = Config::parse(
            "[agents.custom.aider]\napi_key_env = \"OPENAI_API_KEY\"\nfiles = [{ path = \".aider/key\", mode = \"0600\" }]\n",
        )
        .unwrap();
        assert_eq!(c.agents.custom["aider"].api_key_env, "OPENAI_API_KEY");
        let e = Config::parse("[agents.custom.codex]\napi_key_env = \"X\"\n").unwrap_err();
        assert!(e.contains("built-in"), "{e}");
    }

    #[test]
    fn typos_are_errors() {
        let e = Config::parse("[vault]\nbakend = \"file\"\n").unwrap_err();
        assert!(e.contains("bakend"), "{e}");
        assert!(Config::parse("[vault]\nbackend = \"gpg\"\n").is_err());
    }
}
