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
    // The definition's rules (variable name, relative paths) are checked
    // where they are defined, in `custom::check`.
    super::custom::check(&record.id.agent, def).map_err(Error::Usage)?;
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
        plan.add_file(
            format!("~/{}", f.path),
            Value::Secret(key.clone()),
            f.mode_bits() & 0o777,
        );
    }
    plan.set_env(&def.api_key_env, Value::Secret(key));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CustomFile;

    fn def(env: &str, path: &str) -> CustomAgentConfig {
        CustomAgentConfig {
            api_key_env: env.into(),
            files: vec![CustomFile {
                path: path.into(),
                mode: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn env_names_are_checked() {
        let mut r = Record {
            id: crate::vault::CredentialId::new("a", "default").unwrap(),
            method: Method::ApiKey,
            secret: crate::secret::Secret::from("k"),
            meta: crate::vault::Metadata::new("test"),
        };
        assert!(plan(&r, &def("OPENAI_API_KEY", ".aider/key")).is_ok());
        assert!(plan(&r, &def("_X1", ".aider/key")).is_ok());
        for bad in ["", "1X", "A-B", "A B", "A=B"] {
            let e = plan(&r, &def(bad, "k")).unwrap_err();
            assert_eq!(e.exit_code(), crate::ExitCode::Usage, "{bad:?}");
        }
        for bad in ["", "/etc/x", "../x", "a/../../x"] {
            assert!(plan(&r, &def("K", bad)).is_err(), "{bad:?}");
        }
        r.method = Method::Session;
        assert!(plan(&r, &def("K", "k")).is_err());
    }
}
