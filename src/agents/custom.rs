//! Custom agents, defined in the config file (`crate::config::CustomAgentConfig`):
//! checking a definition, and validating their API keys. Injection is in
//! `custom_inject`.
//!
//! ```toml
//! [agents.custom.aider]
//! api_key_env = "OPENAI_API_KEY"                  # the variable a sandbox receives
//! files = [{ path = ".aider/key", mode = "0600" }] # optional: files (relative to the
//!                                                  # sandbox user's home) that receive the key
//! description = "Aider with an OpenAI key"         # optional, shown by `airlock status`
//! ```
//!
//! A file receives the key exactly, without a trailing newline.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use crate::agents::validate::{self, Validated, invalid};
use crate::error::Result;
use crate::secret::Secret;
use crate::vault::Method;

/// A custom agent's definition (`[agents.custom.<name>]` in `config.toml`).
pub use crate::config::CustomAgentConfig as CustomAgent;
pub use crate::config::CustomFile;

/// Checks every custom agent of the config; the message names the problem.
pub fn check_all(agents: &BTreeMap<String, CustomAgent>) -> std::result::Result<(), String> {
    for (name, a) in agents {
        check(name, a)?;
    }
    Ok(())
}

/// Checks one custom agent's definition.
pub fn check(name: &str, a: &CustomAgent) -> std::result::Result<(), String> {
    let at = format!("[agents.custom.{name}]");
    crate::vault::validate_name("agent", name).map_err(|e| format!("{at}: {e}"))?;
    if crate::agents::BUILTIN.contains(&name) {
        return Err(format!(
            "{at}: {name} is a built-in agent and cannot be redefined; choose another name"
        ));
    }
    // The same rule as injection (`custom_inject`): `[A-Za-z_][A-Za-z0-9_]*`.
    let env_ok = a
        .api_key_env
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && a.api_key_env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !env_ok {
        return Err(format!(
            "{at}: api_key_env = {:?} is not an environment variable name; use letters, digits and '_' (for example OPENAI_API_KEY)",
            a.api_key_env
        ));
    }
    for f in &a.files {
        let p = Path::new(&f.path);
        let ok = !f.path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
        if !ok {
            return Err(format!(
                "{at}: file path {:?} must be relative to the home directory, without '..' (for example .aider/key)",
                f.path
            ));
        }
        if let Some(m) = &f.mode {
            let bits = u32::from_str_radix(m.trim_start_matches("0o"), 8);
            if !matches!(bits, Ok(b) if b <= 0o777) {
                return Err(format!(
                    "{at}: mode {m:?} for {} is not an octal permission such as \"0600\"",
                    f.path
                ));
            }
        }
    }
    Ok(())
}

/// Validates an API key for a custom agent: one non-empty line.
pub fn validate(name: &str, method: Method, secret: &Secret, origin: &str) -> Result<Validated> {
    if method != Method::ApiKey {
        return Err(invalid(
            &format!("the custom agent {name}"),
            format!("only takes API keys, not a {method}"),
            "use --method api-key (or leave --method out)",
        ));
    }
    let what = format!("the API key for {name} ({origin})");
    let fix = "give the key on a single line";
    let value = secret.trimmed();
    if value.is_empty() {
        return Err(invalid(&what, "is empty", fix));
    }
    if value.len() > validate::MAX_TOKEN_BYTES {
        return Err(invalid(&what, "is too long to be an API key", fix));
    }
    let lines = value.expose().lines().count();
    if lines > 1 {
        return Err(invalid(
            &what,
            format!("spans {lines} lines, but an API key is a single line"),
            fix,
        ));
    }
    if value.expose().chars().any(char::is_control) {
        return Err(invalid(&what, "contains control characters", fix));
    }
    Ok(Validated::new(Method::ApiKey, value))
}

/// The exact steps to store a new key.
pub fn renewal(name: &str, account: &str) -> String {
    let acc = crate::agents::claude::capture::account_flag(account);
    format!("store a new key with `airlock auth {name}{acc}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(env: &str, path: &str, mode: Option<&str>) -> CustomAgent {
        CustomAgent {
            api_key_env: env.into(),
            files: vec![CustomFile {
                path: path.into(),
                mode: mode.map(Into::into),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn definitions_are_checked() {
        assert!(
            check(
                "aider",
                &agent("OPENAI_API_KEY", ".aider/key", Some("0600"))
            )
            .is_ok()
        );
        assert!(
            check("claude", &agent("X", "k", None))
                .unwrap_err()
                .contains("built-in")
        );
        assert!(check("aider", &agent("bad-name", "k", None)).is_err());
        assert!(check("aider", &agent("K", "../etc/passwd", None)).is_err());
        assert!(check("aider", &agent("K", "/etc/passwd", None)).is_err());
        assert!(check("aider", &agent("K", "k", Some("999"))).is_err());
        assert_eq!(agent("K", "k", Some("0640")).files[0].mode_bits(), 0o640);
    }

    #[test]
    fn keys_are_single_lines() {
        assert!(validate("a", Method::ApiKey, &Secret::from(" k1 \n"), "stdin").is_ok());
        assert!(validate("a", Method::ApiKey, &Secret::from("a\nb"), "stdin").is_err());
        assert!(validate("a", Method::ApiKey, &Secret::from("  "), "stdin").is_err());
        assert!(validate("a", Method::Session, &Secret::from("k"), "stdin").is_err());
    }
}
