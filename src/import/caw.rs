//! caw: `~/.caw/auth/manifest.json`, written by `caw auth setup`. It lists
//! the files caw manages for each agent: credential files (`strategy:
//! bind`, bind-mounted from their host path, which caw never modifies) and
//! cleaned config files (`strategy: copy`, staged in `~/.caw/auth/`).
//!
//! caw holds no credential of its own: its credentials stay at their host
//! paths. So each bound credential file becomes a host-login reference, as
//! `airlock auth <agent> --from-host` makes (the record follows that file,
//! and refreshes land there). Copied config files are not credentials and
//! are not imported.
//!
//! caw's documentation names each entry's `agent`, `file`, `type` and
//! `strategy`; the host path is read from `host_path` (or `source`), and
//! defaults to the agent's usual file under the home directory. The entries
//! are a JSON array, or the `files` array of a JSON object.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Found, Scan, Tool, parse_json, prepare_host_login, read_file};
use crate::agents::Agent;
use crate::agents::validate::invalid;
use crate::error::Result;

/// The manifest, relative to the home directory.
pub const MANIFEST: &str = ".caw/auth/manifest.json";

#[derive(Deserialize)]
#[serde(untagged)]
enum Manifest {
    List(Vec<Entry>),
    Object { files: Vec<Entry> },
}

#[derive(Deserialize)]
struct Entry {
    agent: String,
    #[serde(default)]
    file: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    strategy: String,
    #[serde(default, alias = "source")]
    host_path: Option<PathBuf>,
}

/// Reads caw's manifest (`--from` names it, or the `~/.caw/auth` directory).
pub fn scan(s: &Scan<'_>) -> Result<Found> {
    let mut path = s.location(MANIFEST);
    if path.is_dir() {
        path = path.join("manifest.json");
    }
    let shown = s.show(&path);
    let mut found = Found::new(Tool::Caw, shown.clone());
    let fix =
        "run `caw auth setup` again to rewrite it, or point --from at the right manifest.json";
    super::require(
        &path,
        &shown,
        "caw's manifest",
        "run `caw auth setup` first, or point --from at manifest.json",
    )?;
    let input = read_file(&path, fix)?;
    let what = format!("caw's manifest {shown}");
    let entries = match parse_json::<Manifest>(input.text.expose(), &what, fix)? {
        Manifest::List(v) | Manifest::Object { files: v } => v,
    };
    for (n, e) in entries.into_iter().enumerate() {
        let label = format!(
            "{}/{}",
            e.agent,
            e.file.as_deref().unwrap_or("(unnamed file)")
        );
        match e.strategy.as_str() {
            "copy" => {
                found.skip(
                    label,
                    &shown,
                    "a config file caw cleans and copies (not a credential): airlock writes the agents' config files itself",
                );
                continue;
            }
            "bind" => {}
            other => {
                return Err(invalid(
                    &format!("entry {} of {what}", n + 1),
                    format!(
                        "has strategy {}, not bind or copy",
                        crate::secret::shown(other)
                    ),
                    fix,
                ));
            }
        }
        if e.kind.as_deref().is_some_and(|k| k != "credential") {
            found.skip(label, &shown, "not a credential file");
            continue;
        }
        let agent = match e.agent.as_str() {
            "claude" => Agent::Claude,
            "codex" => Agent::Codex,
            other => {
                found.skip(
                    label,
                    &shown,
                    format!(
                        "caw manages {} files; airlock links host logins of claude and codex only",
                        crate::secret::shown(other)
                    ),
                );
                continue;
            }
        };
        let host = e
            .host_path
            .clone()
            .unwrap_or_else(|| agent.host_paths(&s.env).remove(0));
        if !host.is_absolute() {
            return Err(invalid(
                &format!("entry {} of {what}", n + 1),
                "has a host_path that is not absolute",
                fix,
            ));
        }
        match prepare_host_login(s, Tool::Caw, agent, Some(&host))? {
            Some(item) => found.items.push(item),
            None => found.skip(
                label,
                s.show(&host),
                format!(
                    "the host file is missing: log in with `{}` on this machine, then import again",
                    agent.name()
                ),
            ),
        }
    }
    Ok(found)
}
