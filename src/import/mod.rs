//! `airlock import <tool>`: reads the credentials another sandboxing tool
//! (cloister, forage, caw, headjack, claude-hub) keeps, and turns them into
//! airlock records through the same validation as `airlock auth`.
//!
//! Each tool has its own module with a `scan` function that reads the tool's
//! files (or keyring entries) **read only** and returns a [`Found`]: the
//! records it would store, already validated ([`Prepared`]), and what it
//! found but does not import, with the reason. A scan that meets malformed
//! input fails as a whole (exit code 7, naming the file): nothing is stored
//! unless everything found was valid. Storing is the caller's job
//! (`airlock import --apply`, in `src/cli/import.rs`), with
//! [`capture::store`] like `airlock auth`.
//!
//! No value ever reaches a report: only the agent, account, kind, source and
//! dates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;

use crate::agents::validate::{self, invalid};
use crate::agents::{Agent, HostEnv};
use crate::capture::{self, Input, Prepared, Request, Source};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::{DEFAULT_ACCOUNT, Method};

pub mod caw;
pub mod claude_hub;
pub mod cloister;
pub mod forage;
pub mod headjack;

/// The tools airlock imports from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tool {
    /// cloister: `~/.config/cloister/config.yaml`.
    Cloister,
    /// forage (firefly-forage): `<stateDir>/tokens/claude-oauth.json`.
    Forage,
    /// caw: `~/.caw/auth/manifest.json`.
    Caw,
    /// headjack: keyring entries of the service `com.headjack.cli`.
    Headjack,
    /// claude-hub: a captured `~/.claude-hub` directory.
    ClaudeHub,
}

impl Tool {
    /// The tool's name, as typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Cloister => "cloister",
            Tool::Forage => "forage",
            Tool::Caw => "caw",
            Tool::Headjack => "headjack",
            Tool::ClaudeHub => "claude-hub",
        }
    }
}

/// What a scan needs.
#[derive(Debug)]
pub struct Scan<'a> {
    /// airlock's config (custom agents, for validation).
    pub config: &'a Config,
    /// The home directory and the agents' environment variables.
    pub env: HostEnv,
    /// `--from PATH`: the tool's file or directory, when not the default.
    pub from: Option<PathBuf>,
    /// `--account NAME`, else [`DEFAULT_ACCOUNT`].
    pub account: String,
    /// forage only: `--secrets-map FILE`.
    pub secrets_map: Option<PathBuf>,
    /// The current time.
    pub now: Timestamp,
}

impl Scan<'_> {
    /// `--from`, else `default` under the home directory.
    pub fn location(&self, default: &str) -> PathBuf {
        self.from
            .clone()
            .unwrap_or_else(|| self.env.home.join(default))
    }

    /// A path as shown in reports (`~/…` under the home directory).
    pub fn show(&self, p: &Path) -> String {
        validate::tilde(p, &self.env.home)
    }
}

/// One credential found, ready to store.
#[derive(Debug)]
pub struct Item {
    /// The record to store (validated).
    pub prepared: Prepared,
    /// What it is, for the report: `setup-token`, `session`, `api-key`, or
    /// `session, host login`.
    pub kind: String,
    /// Where it was read (a path or a keyring entry).
    pub source: String,
}

/// Something found and not imported.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// What it is (`agents.codex.api_key`, `secret "openai"`, …).
    pub what: String,
    /// Where it was found.
    pub source: String,
    /// Why it is not imported, and what to do instead.
    pub reason: String,
}

/// A secret reference to write to the config file (`[accounts.<agent>.
/// <account>] secret_ref`, docs/secret-refs.md): where a secret is, never
/// the secret.
#[derive(Debug)]
pub struct RefItem {
    /// The reference and the account it is for.
    pub spec: crate::secretref::Spec,
    /// Where it was found.
    pub source: String,
}

/// The result of a scan.
#[derive(Debug)]
pub struct Found {
    /// The tool.
    pub tool: Tool,
    /// Where it looked.
    pub from: String,
    /// The credentials to store.
    pub items: Vec<Item>,
    /// The secret references to write (not read during a scan).
    pub references: Vec<RefItem>,
    /// What is not imported, with the reason.
    pub skipped: Vec<Skipped>,
}

impl Found {
    fn new(tool: Tool, from: String) -> Self {
        Found {
            tool,
            from,
            items: Vec::new(),
            references: Vec::new(),
            skipped: Vec::new(),
        }
    }

    fn skip(
        &mut self,
        what: impl Into<String>,
        source: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.skipped.push(Skipped {
            what: what.into(),
            source: source.into(),
            reason: reason.into(),
        });
    }
}

/// Scans `tool`'s files or keyring entries.
pub fn scan(tool: Tool, s: &Scan<'_>) -> Result<Found> {
    if s.secrets_map.is_some() && tool != Tool::Forage {
        return Err(Error::Usage(
            "--secrets-map only applies to `airlock import forage`".into(),
        ));
    }
    let found = match tool {
        Tool::Cloister => cloister::scan(s)?,
        Tool::Forage => forage::scan(s)?,
        Tool::Caw => caw::scan(s)?,
        Tool::Headjack => headjack::scan(s)?,
        Tool::ClaudeHub => claude_hub::scan(s)?,
    };
    let mut seen = BTreeMap::new();
    let ids = found
        .items
        .iter()
        .map(|i| (&i.prepared.record.id, &i.source))
        .chain(found.references.iter().map(|r| (&r.spec.id, &r.source)));
    for (id, source) in ids {
        if let Some(prev) = seen.insert(id.clone(), source.clone()) {
            return Err(Error::Usage(format!(
                "{} found two credentials for {id} ({prev} and {source}): import them one at a time with --from, or give the second another --account",
                tool.name(),
            )));
        }
    }
    Ok(found)
}

/// Validates a value read from another tool as `airlock auth --from-file`
/// would (same validators, same errors, naming `origin`), and records where
/// it came from as `import:<tool>:<origin>`.
pub(crate) fn prepare_value(
    s: &Scan<'_>,
    tool: Tool,
    agent: &str,
    method: Option<Method>,
    secret: Secret,
    origin: &str,
) -> Result<Item> {
    let req = Request {
        agent: agent.to_owned(),
        account: s.account.clone(),
        method,
        // Only names the origin in validation messages ("from <origin>").
        source: Source::File(PathBuf::from(origin)),
        settings: BTreeMap::new(),
        label: None,
    };
    let mut prepared = capture::prepare(
        &req,
        s.config,
        Input {
            secret,
            warnings: Vec::new(),
        },
        s.now,
    )?;
    prepared.record.meta.source = format!("import:{}:{origin}", tool.name());
    if prepared.record.method == Method::Session {
        // A copy of a login shares its refresh-token family with wherever
        // it was copied from (docs/rotation.md).
        prepared.warnings.push(format!(
            "the {agent} session from {origin} is a copy of a login: if that login is still used elsewhere (the host's own files, the other tool), the first to refresh it logs the other out; if it is this machine's login, `airlock auth {agent} --from-host` links it instead of copying it"
        ));
    }
    Ok(Item {
        kind: prepared.record.method.to_string(),
        prepared,
        source: origin.to_owned(),
    })
}

/// A host-login reference, as `airlock auth <agent> --from-host` makes it:
/// the record follows the host agent's own file (`file`, which must be that
/// agent's credential file) and refreshes land there. `Ok(None)` when the
/// file does not exist.
pub(crate) fn prepare_host_login(
    s: &Scan<'_>,
    tool: Tool,
    agent: Agent<'_>,
    file: Option<&Path>,
) -> Result<Option<Item>> {
    let mut env = s.env.clone();
    if let Some(f) = file {
        if std::fs::symlink_metadata(f).is_err() {
            return Ok(None);
        }
        // Not the agent's default file: point the agent's own variable at
        // its directory, so that the login is found exactly where the other
        // tool says it is.
        if !agent.host_paths(&env).iter().any(|p| p == f) {
            let var = match agent {
                Agent::Claude => "CLAUDE_CONFIG_DIR",
                Agent::Codex => "CODEX_HOME",
                Agent::Gemini | Agent::Custom(..) => return Ok(None),
            };
            let dir = f.parent().unwrap_or(Path::new("/")).display().to_string();
            env.vars.insert(var.to_owned(), dir);
        }
    }
    let req = Request {
        agent: agent.name().to_owned(),
        account: s.account.clone(),
        method: None,
        source: Source::Host,
        settings: BTreeMap::new(),
        label: None,
    };
    let mut prepared = match capture::prepare_host(&req, s.config, &env, s.now) {
        Ok(p) => p,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let location = prepared.record.meta.source.clone();
    let location = location
        .strip_prefix("host:")
        .unwrap_or(&location)
        .to_owned();
    prepared.record.meta.label = Some(format!("imported from {}", tool.name()));
    Ok(Some(Item {
        kind: format!("{}, host login", prepared.record.method),
        prepared,
        source: location,
    }))
}

/// Fails with "not found" (exit code 6) when `path` does not exist: the
/// tool was not set up here, or `--from` is needed.
pub(crate) fn require(path: &Path, shown: &str, what: &str, fix: &str) -> Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Err(Error::NotFound {
            what: format!("{what} ({shown})"),
            fix: fix.to_owned(),
        });
    }
    Ok(())
}

/// Reads a file of another tool (at most 1 MiB, a regular file), with the
/// message `airlock auth --from-file` gives when it cannot.
pub(crate) fn read_file(path: &Path, fix: &str) -> Result<validate::FileInput> {
    validate::read_input_file(path, fix)
}

/// A parse error of another tool's file, without its text (serde's own
/// messages may quote a value).
pub(crate) fn malformed(what: &str, format: &str, at: Option<(usize, usize)>, fix: &str) -> Error {
    let place = at
        .filter(|(l, _)| *l > 0)
        .map(|(l, c)| format!(" (line {l}, column {c})"))
        .unwrap_or_default();
    invalid(what, format!("is not valid {format}{place}"), fix)
}

/// Parses JSON of another tool's file, naming `what` on failure.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
    fix: &str,
) -> Result<T> {
    serde_json::from_str(text).map_err(|e| {
        let kind = if e.is_data() {
            "JSON of the expected shape"
        } else {
            "JSON"
        };
        malformed(what, kind, Some((e.line(), e.column())), fix)
    })
}

/// Parses an RFC 3339 date of another tool's file.
pub(crate) fn parse_date(value: &str, what: &str, fix: &str) -> Result<Timestamp> {
    value.parse::<Timestamp>().map_err(|_| {
        invalid(
            what,
            format!("is not an RFC 3339 date ({})", crate::secret::shown(value)),
            fix,
        )
    })
}

/// The default account, unless `--account` named one.
pub fn account_or_default(account: Option<String>) -> String {
    account.unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned())
}
