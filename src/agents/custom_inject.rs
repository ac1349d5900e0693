//! Custom agents: anything configured as `[agents.custom.NAME]` in
//! `config.toml`. The sandbox gets the stored key in the configured
//! environment variable, and in each configured file (`files`, relative to
//! the container user's home, planned as `~/<path>`), nothing else.

use crate::agents::inject::single_line;
use crate::config::{Config, CustomAgentConfig};
use crate::error::{Error, Result};
use crate::plan::{SandboxPlan, Value};
use crate::vault::{Method, Record};

/// The definition of custom agent `name`, or a usage error naming the fix.
pub fn definition<'a>(config: &'a Config, name: &str) -> Result<&'a CustomAgentConfig> {
    config.agents.custom.get(name).ok_or_else(|| {
        Error::Usage(format!(
            "unknown agent {name:?}: the built-in agents are claude, codex and gemini; define others in config.toml as [agents.custom.{name}] with api_key_env = \"VARIABLE\""
        ))
    })
}

/// The plan for a custom agent's key: one secret environment variable.
pub fn plan(record: &Record, def: &CustomAgentConfig) -> Result<SandboxPlan> {
    check_env_name(&record.id.agent, &def.api_key_env)?;
    if record.method == Method::Session {
        return Err(Error::invalid(
            format!(
                "the credential {} is a session, but custom agents only take a key",
                record.id
            ),
            format!(
                "store the key with `airlock auth {} --method api-key`",
                record.id.agent
            ),
        ));
    }
    let key = single_line(record, "key")?;
    let mut plan = SandboxPlan::default();
    for f in &def.files {
        check_home_path(&record.id.agent, &f.path)?;
        plan.add_file(
            format!("~/{}", f.path),
            Value::Secret(key.clone()),
            f.mode_bits() & 0o777,
        );
    }
    plan.set_env(&def.api_key_env, Value::Secret(key));
    Ok(plan)
}

/// Paths relative to the home directory, without `..`.
fn check_home_path(agent: &str, path: &str) -> Result<()> {
    use std::path::{Component, Path};
    let ok = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "[agents.custom.{agent}] file path {path:?} must be relative to the home directory, without '..' (for example .aider/key)"
        )))
    }
}

/// Environment variable names: `[A-Za-z_][A-Za-z0-9_]*`.
fn check_env_name(agent: &str, name: &str) -> Result<()> {
    let ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "[agents.custom.{agent}] api_key_env = {name:?} is not a valid environment variable name: use letters, digits and '_'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_checked() {
        assert!(check_env_name("a", "OPENAI_API_KEY").is_ok());
        assert!(check_env_name("a", "_X1").is_ok());
        for bad in ["", "1X", "A-B", "A B", "A=B"] {
            assert!(check_env_name("a", bad).is_err(), "{bad:?}");
        }
        assert!(check_home_path("a", ".aider/key").is_ok());
        for bad in ["", "/etc/x", "../x", "a/../../x"] {
            assert!(check_home_path("a", bad).is_err(), "{bad:?}");
        }
    }
}
