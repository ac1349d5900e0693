//! cloister: the global config file `~/.config/cloister/config.yaml`, where
//! `cloister setup` keeps the agents' credentials:
//!
//! ```yaml
//! agents:
//!   claude:
//!     auth_method: token   # or existing, or api_key
//!     token: "..."         # auth_method: token
//!     api_key: "..."       # auth_method: api_key
//!   codex:
//!     api_key: "..."
//! ```
//!
//! `token` becomes a Claude setup-token, `api_key` an API key, and
//! `existing` (cloister copies the host's Claude login at each start) a
//! host-login reference, as `airlock auth claude --from-host` makes. Other
//! keys (cloister's alias preferences) are listed as not imported: airlock's
//! permission-skipping wrappers are set per project, not globally.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Found, Scan, Tool, malformed, prepare_host_login, prepare_value, read_file};
use crate::agents::Agent;
use crate::agents::validate::invalid;
use crate::error::Result;
use crate::secret::Secret;
use crate::vault::Method;

/// The config file, relative to the home directory.
pub const CONFIG: &str = ".config/cloister/config.yaml";

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    agents: BTreeMap<String, AgentEntry>,
}

#[derive(Deserialize, Default)]
struct AgentEntry {
    auth_method: Option<String>,
    token: Option<String>,
    api_key: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, IgnoredAny>,
}

const ALIASES: &str = "airlock has no global alias setting; its permission-skipping wrappers are on by default and turned off per project with `aliases = false` in .airlock.toml, or with --no-aliases";

/// Reads cloister's config file (`--from` names it, else the default).
pub fn scan(s: &Scan<'_>) -> Result<Found> {
    let path = s.location(CONFIG);
    let shown = s.show(&path);
    let mut found = Found::new(Tool::Cloister, shown.clone());
    let fix = "fix the file (`cloister setup claude` / `cloister setup codex` rewrite it), or point --from at the right one";
    super::require(
        &path,
        &shown,
        "cloister's config file",
        "run `cloister setup claude` first, or point --from at the file",
    )?;
    let input = read_file(&path, fix)?;
    let what = format!("cloister's config file {shown}");
    let file: File = if input.text.expose().trim().is_empty() {
        File::default()
    } else {
        serde_saphyr::from_str(input.text.expose()).map_err(|_| {
            malformed(
                &what,
                "YAML of cloister's layout (agents.<name>.auth_method, token, api_key)",
                None,
                fix,
            )
        })?
    };
    for (name, entry) in file.agents {
        let key = |k: &str| format!("agents.{name}.{k}");
        for k in entry.other.keys() {
            found.skip(key(k), &shown, ALIASES);
        }
        let token = entry.token.map(Secret::new);
        let api_key = entry.api_key.map(Secret::new);
        match name.as_str() {
            "claude" => claude(
                s,
                &shown,
                &what,
                fix,
                entry.auth_method,
                token,
                api_key,
                &mut found,
            )?,
            "codex" => {
                if let Some(m) = entry.auth_method.as_deref()
                    && m != "api_key"
                {
                    found.skip(
                        key("auth_method"),
                        &shown,
                        format!(
                            "cloister's Codex set-up uses an API key; auth_method {} is ignored",
                            crate::secret::shown(m)
                        ),
                    );
                }
                if token.is_some() {
                    found.skip(
                        key("token"),
                        &shown,
                        "cloister's Codex set-up uses only api_key",
                    );
                }
                match api_key {
                    Some(k) => {
                        let item = prepare_value(
                            s,
                            Tool::Cloister,
                            "codex",
                            Some(Method::ApiKey),
                            k,
                            &format!("{shown} (agents.codex.api_key)"),
                        )?;
                        found.items.push(item);
                    }
                    None => found.skip("agents.codex", &shown, "no api_key"),
                }
            }
            other => found.skip(
                format!("agents.{other}"),
                &shown,
                "not an agent airlock imports from cloister (claude and codex)",
            ),
        }
    }
    for item in &mut found.items {
        let meta = &mut item.prepared.record.meta;
        // As for a configured secret file: a setup-token's year is counted
        // from when the file was written (by `cloister setup`), not from now.
        if item.prepared.record.method == Method::SetupToken
            && let Some(m) = input.modified
        {
            meta.created_at = m;
            meta.expires_at = m
                .checked_add(crate::agents::claude::capture::SETUP_TOKEN_LIFETIME)
                .ok();
        }
    }
    if let Some(first) = found.items.first_mut() {
        first.prepared.warnings.extend(input.warnings);
    }
    Ok(found)
}

#[allow(clippy::too_many_arguments)]
fn claude(
    s: &Scan<'_>,
    shown: &str,
    what: &str,
    fix: &str,
    method: Option<String>,
    token: Option<Secret>,
    api_key: Option<Secret>,
    found: &mut Found,
) -> Result<()> {
    let method = match method.as_deref() {
        Some(m) => m.to_owned(),
        None if token.is_some() => "token".into(),
        None if api_key.is_some() => "api_key".into(),
        None => {
            found.skip("agents.claude", shown, "no auth_method, token or api_key");
            return Ok(());
        }
    };
    let unused = |found: &mut Found, k: &str| {
        found.skip(
            format!("agents.claude.{k}"),
            shown,
            format!("auth_method is {method}: cloister does not use it"),
        )
    };
    let missing = |k: &str| {
        invalid(
            &format!("agents.claude in {what}"),
            format!("says auth_method: {method} but has no {k}"),
            fix,
        )
    };
    match method.as_str() {
        "token" => {
            let t = token.ok_or_else(|| missing("token"))?;
            if api_key.is_some() {
                unused(found, "api_key");
            }
            let item = prepare_value(
                s,
                Tool::Cloister,
                "claude",
                Some(Method::SetupToken),
                t,
                &format!("{shown} (agents.claude.token)"),
            )?;
            found.items.push(item);
        }
        "api_key" => {
            let k = api_key.ok_or_else(|| missing("api_key"))?;
            if token.is_some() {
                unused(found, "token");
            }
            let item = prepare_value(
                s,
                Tool::Cloister,
                "claude",
                Some(Method::ApiKey),
                k,
                &format!("{shown} (agents.claude.api_key)"),
            )?;
            found.items.push(item);
        }
        "existing" => {
            for k in [("token", token.is_some()), ("api_key", api_key.is_some())] {
                if k.1 {
                    unused(found, k.0);
                }
            }
            match prepare_host_login(s, Tool::Cloister, Agent::Claude, None)? {
                Some(item) => found.items.push(item),
                None => found.skip(
                    "agents.claude.auth_method: existing",
                    shown,
                    "cloister uses the host's Claude login, and there is none on this machine: log in with `claude`, then run the import again (or `airlock auth claude --from-host`)",
                ),
            }
        }
        other => {
            return Err(invalid(
                &format!("agents.claude.auth_method in {what}"),
                format!(
                    "is {}, not token, existing or api_key",
                    crate::secret::shown(other)
                ),
                fix,
            ));
        }
    }
    Ok(())
}
