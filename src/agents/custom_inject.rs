//! Custom agents: anything configured as `[agents.custom.NAME]` in
//! `config.toml`. airlock knows nothing about their files; the sandbox gets
//! the stored key in the configured environment variable, nothing else.

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
    plan.set_env(&def.api_key_env, Value::Secret(key));
    Ok(plan)
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
    }
}
