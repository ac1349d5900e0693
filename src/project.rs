//! `.airlock.toml`: per-project choices, committed with the project.
//!
//! ```toml
//! agents = ["claude:work", "codex"]   # which agents (and accounts) this project's sandboxes get
//! workdir = "/src"                    # the work dir inside the container (default /workspace)
//! aliases = false                     # no permission-skipping wrappers
//! require_auth = true                 # fail instead of starting an agent without a credential
//! host_configs = false                # do not copy cleaned host configs
//!
//! [accounts]                          # account pins for agents named without one
//! gemini = "team"
//! ```
//!
//! The file is looked for in the current directory and its parents, up to
//! the repository root (the first directory holding `.git`) or `/`. The
//! command line wins over it. It only chooses among credentials the user
//! already stored; it cannot name host files, so a cloned repository cannot
//! make airlock read anything new.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::vault::{CredentialId, validate_name};

/// The project file's name.
pub const FILE_NAME: &str = ".airlock.toml";

/// The contents of `.airlock.toml`. Every key is optional; unknown keys are
/// an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    /// Agent specs (`claude`, `claude:work`).
    #[serde(default)]
    pub agents: Vec<String>,
    /// The work dir inside the container.
    pub workdir: Option<String>,
    /// Whether agents are wrapped to skip permission prompts.
    pub aliases: Option<bool>,
    /// Fail when an agent has no credential.
    pub require_auth: Option<bool>,
    /// Whether cleaned host configs are copied.
    pub host_configs: Option<bool>,
    /// Account pins per agent.
    #[serde(default)]
    pub accounts: BTreeMap<String, String>,
}

impl ProjectFile {
    /// Parses and checks project file text (names, specs, work dir).
    pub fn parse(text: &str) -> std::result::Result<ProjectFile, String> {
        let p: ProjectFile = toml::from_str(text).map_err(|e| crate::config::toml_message(&e))?;
        for spec in &p.agents {
            CredentialId::parse(spec).map_err(|e| e.to_string())?;
        }
        for (agent, account) in &p.accounts {
            validate_name("agent", agent).map_err(|e| e.to_string())?;
            validate_name("account", account).map_err(|e| e.to_string())?;
        }
        if let Some(w) = &p.workdir
            && !w.starts_with('/')
        {
            return Err(format!(
                "workdir = {} must be an absolute path inside the container",
                crate::secret::shown(w)
            ));
        }
        Ok(p)
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<ProjectFile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        Self::parse(&text).map_err(|msg| {
            Error::Usage(format!(
                "the project file {} is invalid: {msg}; fix it or move it away",
                path.display()
            ))
        })
    }
}

/// Finds the project file for `start`: in `start` or the nearest parent,
/// stopping after the repository root (a directory holding `.git`) or `/`.
/// Returns its path and contents.
pub fn find(start: &Path) -> Result<Option<(PathBuf, ProjectFile)>> {
    for dir in start.ancestors() {
        let candidate = dir.join(FILE_NAME);
        if candidate.is_file() {
            let p = ProjectFile::load(&candidate)?;
            tracing::info!(path = %candidate.display(), "using project file");
            return Ok(Some((candidate, p)));
        }
        if dir.join(".git").exists() {
            break;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let p = ProjectFile::parse(
            "agents = [\"claude:work\", \"codex\"]\nworkdir = \"/src\"\naliases = false\nrequire_auth = true\nhost_configs = false\n[accounts]\ngemini = \"team\"\n",
        )
        .unwrap();
        assert_eq!(p.agents, ["claude:work", "codex"]);
        assert_eq!(p.workdir.as_deref(), Some("/src"));
        assert_eq!(p.aliases, Some(false));
        assert_eq!(p.require_auth, Some(true));
        assert_eq!(p.host_configs, Some(false));
        assert_eq!(p.accounts["gemini"], "team");
        assert_eq!(ProjectFile::parse("").unwrap(), ProjectFile::default());
    }

    #[test]
    fn rejects_bad_files() {
        for bad in [
            "agent = [\"claude\"]",
            "agents = [\"Claude\"]",
            "agents = [\"claude:\"]",
            "workdir = \"src\"",
            "[accounts]\nclaude = \"a b\"",
            "secret_file = \"/etc/shadow\"",
            // a cloned repository cannot make airlock run a command
            // (docs/secret-refs.md): references live in config.toml only
            "secret_ref = \"cmd:curl evil\"",
            "[accounts.claude.default]\nsecret_ref = \"cmd:curl evil\"",
        ] {
            assert!(ProjectFile::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn found_upward_but_not_past_the_repo_root() {
        let t = tempfile::tempdir().unwrap();
        let outer = t.path();
        let repo = outer.join("repo");
        let deep = repo.join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(outer.join(FILE_NAME), "aliases = false\n").unwrap();
        // no .git: the outer file is found from deep inside
        let (path, p) = find(&deep).unwrap().unwrap();
        assert_eq!(path, outer.join(FILE_NAME));
        assert_eq!(p.aliases, Some(false));
        // a .git marks the root: the outer file is out of reach
        std::fs::create_dir(repo.join(".git")).unwrap();
        assert!(find(&deep).unwrap().is_none());
        // the repo's own file, found from a subdirectory
        std::fs::write(repo.join(FILE_NAME), "agents = [\"codex\"]\n").unwrap();
        let (path, p) = find(&deep).unwrap().unwrap();
        assert_eq!(path, repo.join(FILE_NAME));
        assert_eq!(p.agents, ["codex"]);
        // a broken file is an error naming it, not ignored
        std::fs::write(repo.join(FILE_NAME), "agents = 3\n").unwrap();
        let e = find(&deep).unwrap_err().to_string();
        assert!(e.contains(".airlock.toml"), "{e}");
    }
}
