//! The health of credentials: one pure computation ([`state`]) shared by
//! `airlock status` and by injection, plus the report `status` prints.
//!
//! | state | meaning |
//! |---|---|
//! | `valid` | usable, and not expiring within the threshold |
//! | `expiring` | expires within the threshold (default 30 days, `[status] expiring_days`) |
//! | `expired` | past its expiry, and nothing can renew it |
//! | `refreshable` | a session whose access token has lapsed but that holds a refresh token: the agent renews it on first use |
//! | `missing` | nothing stored and no host login |
//! | `invalid` | stored or found, but it fails validation |
//! | `unavailable` | the vault could not be opened (locked, damaged, unreachable): what it stores is unknown |
//! | `unchecked` | a secret reference that no airlock command has resolved yet |
//!
//! Sessions with a refresh token are never `expiring`: their access tokens
//! live hours, and the agent renews them. API keys do not expire.

use std::collections::BTreeMap;

use comfy_table::{Cell, Table, presets};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::agents::Agent;
use crate::agents::validate::HostLogin;
use crate::error::Result;
use crate::vault::{Method, Record};

/// A credential's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Usable and not expiring soon.
    Valid,
    /// Usable, but expires within the threshold.
    Expiring,
    /// Past its expiry, nothing can renew it.
    Expired,
    /// Access token lapsed; a refresh token will renew it.
    Refreshable,
    /// Nothing stored, no host login.
    Missing,
    /// Fails validation.
    Invalid,
    /// In a vault that could not be opened or read.
    Unavailable,
    /// A secret reference not resolved yet: it is read when a sandbox starts.
    Unchecked,
}

impl State {
    /// The name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Valid => "valid",
            State::Expiring => "expiring",
            State::Expired => "expired",
            State::Refreshable => "refreshable",
            State::Missing => "missing",
            State::Invalid => "invalid",
            State::Unavailable => "unavailable",
            State::Unchecked => "unchecked",
        }
    }

    /// Whether a sandbox can use the credential now.
    pub fn usable(self) -> bool {
        matches!(self, State::Valid | State::Expiring | State::Refreshable)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a credential of `method` that expires at `expires_at`
/// (`refreshable`: a session holding a refresh token), at `now`, with
/// "expiring" meaning within `expiring_days`.
pub fn state(
    method: Method,
    expires_at: Option<Timestamp>,
    refreshable: bool,
    now: Timestamp,
    expiring_days: u32,
) -> State {
    let Some(exp) = expires_at else {
        return State::Valid;
    };
    if method == Method::Session && refreshable {
        return if exp <= now {
            State::Refreshable
        } else {
            State::Valid
        };
    }
    if exp <= now {
        State::Expired
    } else if exp.duration_since(now) < SignedDuration::from_hours(24 * i64::from(expiring_days)) {
        State::Expiring
    } else {
        State::Valid
    }
}

/// Where a listed credential lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoredIn {
    /// In airlock's vault.
    Vault,
    /// Only on the host, in the agent's own files (not stored by airlock).
    Host,
    /// A secret file named in the config (`[agents.<agent>] secret_file`).
    File,
    /// A secret reference (`[accounts.<agent>.<account>] secret_ref`).
    Reference,
    /// Nowhere.
    None,
}

/// One line of `airlock status`. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The agent.
    pub agent: String,
    /// The account (`null` for host logins and missing agents).
    pub account: Option<String>,
    /// The method (`null` when missing).
    pub method: Option<Method>,
    /// Vault, host or none.
    pub stored_in: StoredIn,
    /// The vault backend and its location, or the host file.
    pub location: Option<String>,
    /// The health.
    pub state: State,
    /// When it expires (sessions: the access token).
    pub expires_at: Option<Timestamp>,
    /// Whether a refresh token is present (sessions).
    pub refreshable: bool,
    /// When it was last stored or modified.
    pub modified_at: Option<Timestamp>,
    /// Where it came from (`stdin`, `file:/x`, `host:~/.claude/.credentials.json`, …).
    pub source: Option<String>,
    /// What a sandbox receives.
    pub delivery: Option<String>,
    /// Non-secret facts (subscription, e-mail, Vertex project).
    pub detail: Option<String>,
    /// Why it is invalid or missing.
    pub problem: Option<String>,
    /// What to do about it.
    pub fix: Option<String>,
    /// The host file a linked session follows (`docs/rotation.md` §5.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linked_to: Option<String>,
    /// A secret reference's last result (ok or failed, why, when; never the
    /// value), recorded by the last command that resolved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_result: Option<crate::secretref::LastResult>,
}

impl Entry {
    fn new(agent: &str, state: State, stored_in: StoredIn) -> Self {
        Entry {
            agent: agent.to_owned(),
            account: None,
            method: None,
            stored_in,
            location: None,
            state,
            expires_at: None,
            refreshable: false,
            modified_at: None,
            source: None,
            delivery: None,
            detail: None,
            problem: None,
            fix: None,
            linked_to: None,
            last_result: None,
        }
    }
}

/// The entry for a secret reference (`reference`, as configured) of
/// `agent:account`: its state is its last result's (`unchecked` when none
/// was recorded, or when it was recorded for another reference); `problem`
/// is a configuration error.
pub fn reference_entry(
    agent: &str,
    account: &str,
    reference: &str,
    last: Option<&crate::secretref::LastResult>,
    problem: Option<String>,
    now: Timestamp,
    expiring_days: u32,
) -> Entry {
    let mut e = Entry::new(agent, State::Unchecked, StoredIn::Reference);
    e.account = Some(account.to_owned());
    e.location = Some(reference.to_owned());
    e.source = Some(reference.to_owned());
    if let Some(p) = problem {
        e.state = State::Invalid;
        e.problem = Some(p);
        e.fix = Some(format!(
            "fix secret_ref under [accounts.{agent}.{account}] in the config file"
        ));
        return e;
    }
    let last = last.filter(|l| l.reference == reference);
    match last {
        None => {
            e.delivery = Some("what the reference gives when a sandbox starts".into());
            e.fix = Some(format!(
                "it is resolved when a sandbox starts; `airlock auth {agent} --account {account} --ref '{reference}'` checks it now"
            ));
        }
        Some(l) if l.result == "ok" => {
            e.method = l.method;
            e.expires_at = l.expires_at;
            e.modified_at = Some(l.at);
            e.state = match l.method {
                Some(m) => state(m, l.expires_at, false, now, expiring_days),
                None => State::Valid,
            };
            e.delivery = Some(format!(
                "what the reference gives (last resolved {})",
                date(l.at)
            ));
        }
        Some(l) => {
            e.state = State::Invalid;
            e.modified_at = Some(l.at);
            e.problem = Some(format!(
                "it failed when last resolved ({}): {}",
                date(l.at),
                l.reason.as_deref().unwrap_or("no reason recorded")
            ));
            e.delivery = Some("nothing (its last resolution failed)".into());
            e.fix = Some(format!(
                "check the secret manager, then `airlock auth {agent} --account {account} --ref '{reference}'` to try it"
            ));
        }
    }
    e.last_result = last.cloned();
    e
}

/// Adds entries (secret references) to a report, each after the last entry
/// of its agent, with a warning for each that failed. A reference comes
/// first in the chain ([`crate::resolve`]): the vault record of its account,
/// and the host login and secret file when they serve that account
/// (`in_use`: the agent's account when none is named), deliver nothing.
pub fn add_entries(report: &mut Report, entries: Vec<Entry>, in_use: &dyn Fn(&str) -> String) {
    for e in entries {
        let account = e.account.clone().unwrap_or_default();
        for c in report.credentials.iter_mut().filter(|c| c.agent == e.agent) {
            let shadowed = match c.stored_in {
                StoredIn::Vault => c.account.as_deref() == Some(account.as_str()),
                StoredIn::Host | StoredIn::File => in_use(&e.agent) == account,
                _ => false,
            };
            if shadowed && c.delivery.is_some() {
                c.delivery = Some(format!(
                    "nothing: the secret reference {} of {}:{account} comes first",
                    e.source.as_deref().unwrap_or("?"),
                    e.agent
                ));
            }
        }
        if let Some(p) = &e.problem {
            report.warnings.push(format!(
                "{}:{}: secret reference {}: {p}",
                e.agent,
                e.account.as_deref().unwrap_or("default"),
                e.source.as_deref().unwrap_or("?")
            ));
        }
        let at = report
            .credentials
            .iter()
            .rposition(|c| c.agent == e.agent)
            .map_or(report.credentials.len(), |i| i + 1);
        // an agent listed as missing has this reference now
        if at > 0 && report.credentials[at - 1].state == State::Missing {
            report.credentials[at - 1] = e;
        } else {
            report.credentials.insert(at, e);
        }
    }
}

/// What the host has for one agent: a login, none, or a broken one.
pub type HostResult = Result<Option<HostLogin>>;

/// The entry for a stored record.
pub fn record_entry(
    agent: Agent<'_>,
    r: &Record,
    location: &str,
    now: Timestamp,
    expiring_days: u32,
) -> Entry {
    let mut e = Entry::new(agent.name(), State::Valid, StoredIn::Vault);
    e.account = Some(r.id.account.clone());
    e.method = Some(r.method);
    e.location = Some(location.to_owned());
    e.modified_at = Some(r.meta.updated_at);
    e.source = Some(r.meta.source.clone());
    e.linked_to = r.meta.host_link.as_deref().map(|p| {
        match std::env::var_os("HOME").and_then(|h| {
            std::path::Path::new(p)
                .strip_prefix(h)
                .ok()
                .map(|r| r.display().to_string())
        }) {
            Some(rest) => format!("~/{rest}"),
            None => p.to_owned(),
        }
    });
    // A credential that cannot be planned delivers nothing (it is invalid).
    e.delivery = agent.delivery(r).ok();
    e.expires_at = r.meta.expires_at;
    let mut detail = r.meta.label.clone();
    if r.method == Method::Session {
        match agent.session_info(&r.secret) {
            Ok(info) => {
                // The document is the truth: a refresh written back by a
                // sandbox moves the expiry without touching the metadata.
                e.expires_at = info.expires_at.or(r.meta.expires_at);
                e.refreshable = info.refreshable;
                detail = join(detail, info.detail);
            }
            Err(err) => {
                e.state = State::Invalid;
                let (problem, _) = split_error(&err);
                e.problem = Some(problem);
                e.fix = Some(agent.renewal(r.method, &r.id.account));
                e.detail = detail;
                return e;
            }
        }
    }
    if let Some(p) = r.meta.settings.get("project") {
        let loc = r
            .meta
            .settings
            .get("location")
            .map(String::as_str)
            .unwrap_or("?");
        detail = join(detail, Some(format!("Vertex AI {p}/{loc}")));
    }
    e.detail = detail;
    e.state = state(r.method, e.expires_at, e.refreshable, now, expiring_days);
    if e.state != State::Valid {
        // A refreshable Claude or Codex session in the vault is a copy: its
        // single-use refresh token dies when the host (or a sandbox) refreshes,
        // and sandboxes get only the lapsed access token by default. The fix
        // is to store the agent's fresh login again.
        e.fix = Some(agent.renewal(r.method, &r.id.account));
    }
    e
}

/// The problem and, for validation errors, the fix, apart.
fn split_error(err: &crate::Error) -> (String, Option<String>) {
    match err {
        crate::Error::Invalid { problem, fix } => (problem.clone(), Some(fix.clone())),
        other => (other.to_string(), None),
    }
}

fn join(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

/// The entry for a host login that airlock has not stored (or a broken one).
///
/// `shadowed_by` says why a sandbox would not get it (a stored credential
/// or a configured account comes first in the resolution chain), or `None`
/// when a sandbox asking for this agent gets the host login.
pub fn host_entry(
    agent: Agent<'_>,
    host: &HostResult,
    fallback_location: &str,
    shadowed_by: Option<&str>,
    now: Timestamp,
    expiring_days: u32,
) -> Option<Entry> {
    match host {
        Ok(None) => None,
        Ok(Some(h)) => {
            let mut e = Entry::new(agent.name(), State::Valid, StoredIn::Host);
            let r = &h.record;
            e.method = Some(r.method);
            e.location = Some(h.location.clone());
            e.expires_at = r.meta.expires_at;
            e.refreshable = h.refreshable;
            e.modified_at = h.modified;
            e.detail = h.detail.clone();
            e.delivery = Some(delivered("the host", agent, r, shadowed_by));
            e.state = state(
                r.method,
                r.meta.expires_at,
                h.refreshable,
                now,
                expiring_days,
            );
            if !matches!(e.state, State::Valid | State::Refreshable) {
                e.fix = Some(agent.renewal(r.method, crate::vault::DEFAULT_ACCOUNT));
            }
            Some(e)
        }
        Err(err) => {
            let mut e = Entry::new(agent.name(), State::Invalid, StoredIn::Host);
            e.location = Some(fallback_location.to_owned());
            let (problem, fix) = split_error(err);
            e.problem = Some(problem);
            e.fix = Some(fix.unwrap_or_else(|| {
                format!(
                    "{}, then `airlock auth {} --from-host`",
                    agent.host_login_hint(),
                    agent.name()
                )
            }));
            Some(e)
        }
    }
}

/// What a sandbox gets from a host login or a secret file: `from <place>:
/// <delivery>`, or `nothing: <why>`.
fn delivered(place: &str, agent: Agent<'_>, r: &Record, shadowed_by: Option<&str>) -> String {
    let why = match (shadowed_by, agent.delivery(r)) {
        (Some(why), _) => why.to_owned(),
        (None, Ok(d)) => return format!("from {place}: {d}"),
        (None, Err(why)) => why,
    };
    format!("nothing: {why}")
}

/// A configured secret file (`[agents.<agent>] secret_file`), read and
/// validated by the caller.
#[derive(Debug)]
pub struct FileSource {
    /// The file, for humans.
    pub location: String,
    /// The account it serves (the configured one, else `default`).
    pub account: String,
    /// The validated contents, or why they were rejected.
    pub read: Result<crate::agents::validate::Validated>,
    /// The file's modification time.
    pub modified: Option<Timestamp>,
}

/// The entry for a configured secret file; `shadowed_by` as for
/// [`host_entry`].
pub fn file_entry(
    agent: Agent<'_>,
    f: &FileSource,
    shadowed_by: Option<&str>,
    now: Timestamp,
    expiring_days: u32,
) -> Entry {
    let mut e = Entry::new(agent.name(), State::Valid, StoredIn::File);
    e.account = Some(f.account.clone());
    e.location = Some(f.location.clone());
    e.modified_at = f.modified;
    e.source = Some(format!("file:{}", f.location));
    match &f.read {
        Ok(v) => {
            e.method = Some(v.method);
            e.expires_at = v.expires_at;
            e.refreshable = v.refreshable;
            e.detail = v.detail.clone();
            e.state = state(v.method, v.expires_at, v.refreshable, now, expiring_days);
            let id = crate::vault::CredentialId::new(agent.name(), &f.account);
            e.delivery = id.ok().map(|id| {
                let r = v
                    .clone()
                    .into_record(id, format!("file:{}", f.location), now);
                delivered("the file", agent, &r, shadowed_by)
            });
            if e.state != State::Valid {
                e.fix = Some(format!(
                    "renew the secret behind {} ({})",
                    f.location,
                    agent.renewal(v.method, &f.account)
                ));
            }
        }
        Err(err) => {
            e.state = State::Invalid;
            let (problem, fix) = split_error(err);
            e.problem = Some(problem);
            e.fix = Some(fix.unwrap_or_else(|| format!("check secret_file = {}", f.location)));
        }
    }
    e
}

/// The entry for a stored record whose agent is not defined.
pub fn orphan_entry(r: &Record, location: &str) -> Entry {
    let mut e = Entry::new(&r.id.agent, State::Invalid, StoredIn::Vault);
    e.account = Some(r.id.account.clone());
    e.method = Some(r.method);
    e.location = Some(location.to_owned());
    e.modified_at = Some(r.meta.updated_at);
    e.source = Some(r.meta.source.clone());
    e.problem = Some(format!(
        "no agent named {} is defined (a custom agent removed from the config file?)",
        r.id.agent
    ));
    e.fix = Some(format!(
        "define [agents.custom.{}] in the config file again, or run `airlock remove {} --account {}`",
        r.id.agent, r.id.agent, r.id.account
    ));
    e
}

/// The entry standing for an agent's stored credentials when the vault
/// could not be opened or read: the reason, and how to open it.
pub fn unavailable_entry(agent: Agent<'_>, vault_error: &crate::Error, location: &str) -> Entry {
    let mut e = Entry::new(agent.name(), State::Unavailable, StoredIn::Vault);
    e.location = Some(location.to_owned());
    e.problem = Some(vault_error.to_string());
    e.fix = Some(vault_fix(vault_error));
    e
}

/// How to get at a vault that would not open.
fn vault_fix(e: &crate::Error) -> String {
    use crate::Error;
    match e {
        Error::NoPassphrase { .. } => {
            "set AIRLOCK_KEYRING_PASSWORD, or run `airlock status` in a terminal to type the passphrase".into()
        }
        Error::WrongPassphrase { .. } => {
            "check AIRLOCK_KEYRING_PASSWORD, or type the passphrase again".into()
        }
        Error::Backend { fix, .. } | Error::Unsafe { fix, .. } => fix.clone(),
        Error::Corrupt { .. } | Error::UnsupportedVersion { .. } => {
            "see the message above; `airlock doctor` checks the vault".into()
        }
        _ => "run `airlock doctor` to see what is wrong with the vault".into(),
    }
}

/// The entry for an agent with nothing stored and no host login.
pub fn missing_entry(agent: Agent<'_>) -> Entry {
    let mut e = Entry::new(agent.name(), State::Missing, StoredIn::None);
    e.fix = Some(format!("store one with `airlock auth {}`", agent.name()));
    e
}

/// Whether a host login is already in the vault: a record of the same
/// agent holds the same payload, or was captured from the same place.
pub fn host_is_stored(h: &HostLogin, records: &[Record]) -> bool {
    records.iter().any(|r| {
        r.id.agent == h.record.id.agent
            && (r.secret == h.record.secret || r.meta.source == format!("host:{}", h.location))
    })
}

/// Everything `airlock status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Schema version of the JSON output (docs/status-json.md).
    pub version: u32,
    /// When the report was computed.
    pub now: Timestamp,
    /// The "expiring" threshold in days.
    pub expiring_days: u32,
    /// The vault backend and where it keeps data.
    pub vault: VaultInfo,
    /// One entry per stored credential, host login or missing agent.
    pub credentials: Vec<Entry>,
    /// Warnings with renewal steps (also printed on stderr).
    pub warnings: Vec<String>,
}

/// The vault in a [`Report`].
#[derive(Debug, Clone, Serialize)]
pub struct VaultInfo {
    /// Backend name.
    pub backend: String,
    /// Where it keeps data.
    pub location: String,
}

/// Builds the report from what was read: the stored records, each agent's
/// host login, the vault. `agents` is the list to report on (all of them,
/// or the one asked for); records of agents not in the list are reported as
/// invalid, so pass only the asked-for agent's records when filtering.
/// Pure: no I/O.
pub fn report(
    agents: &[Agent<'_>],
    records: &[Record],
    hosts: &BTreeMap<String, (HostResult, String)>,
    files: &BTreeMap<String, FileSource>,
    vault: VaultInfo,
    now: Timestamp,
    config: &crate::config::Config,
) -> Report {
    build(agents, Ok(records), hosts, files, vault, now, config)
}

/// [`report`] when the vault could not be opened or read (`vault_error`):
/// host logins and secret files are listed as usual, and each agent gets one
/// `unavailable` row with the reason and the fix instead of its stored
/// credentials (which are unknown, so no agent is called `missing`).
pub fn report_without_vault(
    agents: &[Agent<'_>],
    vault_error: &crate::Error,
    hosts: &BTreeMap<String, (HostResult, String)>,
    files: &BTreeMap<String, FileSource>,
    vault: VaultInfo,
    now: Timestamp,
    config: &crate::config::Config,
) -> Report {
    build(agents, Err(vault_error), hosts, files, vault, now, config)
}

fn build(
    agents: &[Agent<'_>],
    records: std::result::Result<&[Record], &crate::Error>,
    hosts: &BTreeMap<String, (HostResult, String)>,
    files: &BTreeMap<String, FileSource>,
    vault: VaultInfo,
    now: Timestamp,
    config: &crate::config::Config,
) -> Report {
    let expiring_days = config.status.expiring_days;
    let (records, vault_error) = match records {
        Ok(r) => (r, None),
        Err(e) => (&[][..], Some(e)),
    };
    let vault_location = format!("{} {}", vault.backend, vault.location);
    let mut credentials = Vec::new();
    for agent in agents {
        let mine: Vec<&Record> = records
            .iter()
            .filter(|r| r.id.agent == agent.name())
            .collect();
        for r in &mine {
            credentials.push(record_entry(*agent, r, &vault_location, now, expiring_days));
        }
        if let Some(e) = vault_error {
            credentials.push(unavailable_entry(*agent, e, &vault_location));
        }
        let account = config
            .agents
            .builtin(agent.name())
            .and_then(|c| c.account.clone())
            .unwrap_or_else(|| crate::vault::DEFAULT_ACCOUNT.to_owned());
        let mut host_listed = false;
        if let Some((host, fallback)) = hosts.get(agent.name()) {
            let already = matches!(host, Ok(Some(h)) if host_is_stored(h, records));
            // The resolution chain (src/resolve.rs): the vault's record for
            // the account in use comes first; the host login only serves the
            // default account.
            let shadowed_by = if account != crate::vault::DEFAULT_ACCOUNT {
                Some(format!(
                    "the configured account {}:{account} is used",
                    agent.name()
                ))
            } else if mine.iter().any(|r| r.id.account == account) {
                Some(format!(
                    "{}:{account} in the vault comes first",
                    agent.name()
                ))
            } else {
                None
            };
            if !already
                && let Some(e) = host_entry(
                    *agent,
                    host,
                    fallback,
                    shadowed_by.as_deref(),
                    now,
                    expiring_days,
                )
            {
                credentials.push(e);
                host_listed = true;
            }
        }
        let mut file_listed = false;
        if let Some(f) = files.get(agent.name()) {
            let host_used = account == crate::vault::DEFAULT_ACCOUNT
                && matches!(hosts.get(agent.name()), Some((Ok(Some(h)), _))
                    if state(h.record.method, h.record.meta.expires_at, h.refreshable, now, expiring_days).usable());
            let shadowed_by = if mine.iter().any(|r| r.id.account == f.account) {
                Some(format!(
                    "{}:{} in the vault comes first",
                    agent.name(),
                    f.account
                ))
            } else if host_used && f.account == crate::vault::DEFAULT_ACCOUNT {
                Some("the host login comes first".to_owned())
            } else {
                None
            };
            credentials.push(file_entry(
                *agent,
                f,
                shadowed_by.as_deref(),
                now,
                expiring_days,
            ));
            file_listed = true;
        }
        if mine.is_empty() && vault_error.is_none() && !host_listed && !file_listed {
            credentials.push(missing_entry(*agent));
        }
    }
    // Records of agents nobody defines any more (a custom agent removed
    // from the config file): shown, so they can be removed.
    for r in records
        .iter()
        .filter(|r| !agents.iter().any(|a| a.name() == r.id.agent))
    {
        credentials.push(orphan_entry(r, &vault_location));
    }
    let warnings = warnings(&credentials, now);
    Report {
        version: 1,
        now,
        expiring_days,
        vault,
        credentials,
        warnings,
    }
}

/// Human warnings for expiring, expired and invalid entries, each with the
/// exact renewal steps.
pub fn warnings(entries: &[Entry], now: Timestamp) -> Vec<String> {
    let mut out = Vec::new();
    for e in entries {
        let name = match (&e.account, e.stored_in) {
            (Some(a), _) => format!("{}:{a}", e.agent),
            (None, StoredIn::Host) => format!("the {} login on this machine", e.agent),
            (None, _) => e.agent.clone(),
        };
        let method = e.method.map(|m| format!(" ({m})")).unwrap_or_default();
        let fix = e.fix.clone().unwrap_or_default();
        match e.state {
            State::Expiring => out.push(format!(
                "{name}{method} expires {}: {fix}",
                when(e.expires_at, now)
            )),
            State::Expired => out.push(format!(
                "{name}{method} expired {}: {fix}",
                when(e.expires_at, now)
            )),
            State::Invalid => out.push(format!(
                "{name}{method} is invalid: {}; {fix}",
                e.problem.as_deref().unwrap_or("it failed validation")
            )),
            _ => {}
        }
    }
    out
}

/// `on 2027-01-02 (in 12 days)` / `on … (3 days ago)`.
pub fn when(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        None => "at an unknown time".into(),
        Some(t) => format!("on {} ({})", date(t), relative(t, now)),
    }
}

/// `2027-01-02 14:00 UTC`.
pub fn date(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// `in 12 days`, `3 hours ago`, …
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let d = t.duration_since(now);
    let secs = d.as_secs().abs();
    let amount = if secs >= 2 * 86_400 {
        format!("{} days", (secs + 43_200) / 86_400)
    } else if secs >= 2 * 3600 {
        format!("{} hours", (secs + 1800) / 3600)
    } else {
        format!("{} minutes", (secs + 30) / 60)
    };
    if d.is_negative() {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// The `airlock status` table; `color` styles the state column.
pub fn table(r: &Report, color: bool) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    // Layout without styling; colour is added afterwards (see `colour_states`),
    // so that `--color always` wins over NO_COLOR and widths stay exact.
    t.force_no_tty();
    t.set_header([
        "AGENT",
        "ACCOUNT",
        "METHOD",
        "STORED IN",
        "STATE",
        "EXPIRES",
        "MODIFIED",
        "SANDBOX GETS",
    ]);
    for e in &r.credentials {
        t.add_row(vec![
            Cell::new(&e.agent),
            Cell::new(e.account.as_deref().unwrap_or("-")),
            Cell::new(
                e.method
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::new(stored(e)),
            Cell::new(e.state.as_str()),
            Cell::new(expires(e, r.now)),
            Cell::new(e.modified_at.map(date).unwrap_or_else(|| "-".into())),
            Cell::new(e.delivery.as_deref().unwrap_or("-")),
        ]);
    }
    let out = t.trim_fmt();
    let mut out = if color {
        colour_states(&out, &r.credentials)
    } else {
        out
    };
    for e in &r.credentials {
        if let Some(l) = &e.linked_to {
            out.push_str(&format!(
                "\nnote: {}:{} is linked to {l} (one session with the host's login: every refresh lands there)",
                e.agent,
                e.account.as_deref().unwrap_or("default")
            ));
        }
    }
    out
}

/// Wraps each row's state in its colour. Rows follow the header line in
/// the order of `entries`; the state starts in the STATE column.
fn colour_states(table: &str, entries: &[Entry]) -> String {
    let mut lines = table.lines();
    let Some(header) = lines.next() else {
        return table.to_owned();
    };
    let Some(col) = header.find("STATE").map(|b| header[..b].chars().count()) else {
        return table.to_owned();
    };
    let mut out = vec![header.to_owned()];
    for (line, e) in lines.zip(entries) {
        let start = line.char_indices().nth(col).map(|(i, _)| i);
        let word = e.state.as_str();
        match start {
            Some(i) if line[i..].starts_with(word) => {
                let style = state_style(e.state);
                let end = i + word.len();
                out.push(format!(
                    "{}{style}{word}{style:#}{}",
                    &line[..i],
                    &line[end..]
                ));
            }
            _ => out.push(line.to_owned()),
        }
    }
    out.join("\n")
}

fn state_style(s: State) -> anstyle::Style {
    use anstyle::AnsiColor;
    match s {
        State::Valid => AnsiColor::Green.on_default(),
        State::Expiring => AnsiColor::Yellow.on_default(),
        State::Expired => AnsiColor::Red.on_default(),
        State::Invalid => AnsiColor::Red.on_default().bold(),
        State::Refreshable => AnsiColor::Cyan.on_default(),
        State::Missing => anstyle::Style::new().dimmed(),
        State::Unavailable => AnsiColor::Yellow.on_default().bold(),
        State::Unchecked => anstyle::Style::new().dimmed(),
    }
}

fn stored(e: &Entry) -> String {
    match e.stored_in {
        StoredIn::Vault => {
            let backend = e
                .location
                .as_deref()
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or("?");
            format!("vault ({backend})")
        }
        StoredIn::Host => format!("host {}", e.location.as_deref().unwrap_or("?")),
        StoredIn::File => format!("file {}", e.location.as_deref().unwrap_or("?")),
        StoredIn::Reference => format!("ref {}", e.location.as_deref().unwrap_or("?")),
        StoredIn::None => "-".into(),
    }
}

fn expires(e: &Entry, now: Timestamp) -> String {
    if e.state == State::Invalid {
        return "-".into();
    }
    match (e.expires_at, e.method) {
        (_, None) => "-".into(),
        (None, _) => "never".into(),
        (Some(t), _) => format!("{} ({})", date(t), relative(t, now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::secret::Secret;
    use crate::vault::{CredentialId, Metadata};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }
    const DAY: i64 = 86_400;

    /// The report for stored records only (no host logins or files).
    fn report_of(agents: &[Agent<'_>], recs: &[Record], now: Timestamp, config: &Config) -> Report {
        report(
            agents,
            recs,
            &BTreeMap::new(),
            &BTreeMap::new(),
            memory(),
            now,
            config,
        )
    }

    fn memory() -> VaultInfo {
        VaultInfo {
            backend: "memory".into(),
            location: "memory".into(),
        }
    }

    #[test]
    fn states_by_method_and_time() {
        let now = ts(1_800_000_000);
        let st = |m, e: Option<i64>, r| state(m, e.map(|d| ts(1_800_000_000 + d)), r, now, 30);
        assert_eq!(st(Method::ApiKey, None, false), State::Valid);
        assert_eq!(st(Method::SetupToken, Some(364 * DAY), false), State::Valid);
        assert_eq!(
            st(Method::SetupToken, Some(29 * DAY), false),
            State::Expiring
        );
        assert_eq!(st(Method::SetupToken, Some(-1), false), State::Expired);
        assert_eq!(st(Method::SetupToken, Some(0), false), State::Expired);
        assert_eq!(st(Method::Session, Some(-DAY), true), State::Refreshable);
        assert_eq!(st(Method::Session, Some(3600), true), State::Valid);
        assert_eq!(st(Method::Session, Some(3600), false), State::Expiring);
        assert_eq!(st(Method::Session, Some(-3600), false), State::Expired);
        // The threshold is configurable.
        assert_eq!(
            state(
                Method::SetupToken,
                Some(ts(1_800_000_000 + 20 * DAY)),
                false,
                now,
                10
            ),
            State::Valid
        );
    }

    fn record(agent: &str, method: Method, secret: &str, exp: Option<Timestamp>) -> Record {
        let mut meta = Metadata::new("stdin");
        meta.expires_at = exp;
        Record {
            id: CredentialId::new(agent, "default").unwrap(),
            method,
            secret: Secret::from(secret),
            meta,
        }
    }

    #[test]
    fn report_lists_missing_and_warns_with_steps() {
        let config = Config::default();
        let agents = Agent::all(&config);
        let now = ts(1_800_000_000);
        let token = format!("sk-ant-oat01-{}", "x".repeat(60));
        let recs = vec![record(
            "claude",
            Method::SetupToken,
            &token,
            Some(ts(1_800_000_000 + 5 * DAY)),
        )];
        let r = report_of(&agents, &recs, now, &config);
        let states: Vec<(&str, State)> = r
            .credentials
            .iter()
            .map(|e| (e.agent.as_str(), e.state))
            .collect();
        assert_eq!(
            states,
            [
                ("claude", State::Expiring),
                ("codex", State::Missing),
                ("gemini", State::Missing)
            ]
        );
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].contains("in 5 days"), "{}", r.warnings[0]);
        assert!(
            r.warnings[0]
                .contains("run `claude setup-token`, then `airlock auth claude --method token`"),
            "{}",
            r.warnings[0]
        );
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains(&token));
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = ts(1_800_000_000);
        assert_eq!(relative(ts(1_800_000_000 + 365 * DAY), now), "in 365 days");
        assert_eq!(relative(ts(1_800_000_000 - 3 * DAY), now), "3 days ago");
        assert_eq!(relative(ts(1_800_000_000 + 5 * 3600), now), "in 5 hours");
        assert_eq!(relative(ts(1_800_000_000 - 90), now), "2 minutes ago");
        assert_eq!(when(None, now), "at an unknown time");
        assert_eq!(date(ts(0)), "1970-01-01 00:00 UTC");
    }

    #[test]
    fn a_host_login_counts_as_stored_by_payload_or_source() {
        use crate::agents::validate::HostLogin;
        let host = HostLogin {
            record: record("codex", Method::Session, "{\"a\":1}", None),
            location: "~/.codex/auth.json".into(),
            modified: None,
            refreshable: true,
            detail: None,
            warnings: vec![],
        };
        let same = record("codex", Method::Session, "{\"a\":1}", None);
        assert!(host_is_stored(&host, &[same]));
        let mut rotated = record("codex", Method::Session, "{\"a\":2}", None);
        assert!(!host_is_stored(&host, std::slice::from_ref(&rotated)));
        rotated.meta.source = "host:~/.codex/auth.json".into();
        assert!(host_is_stored(&host, &[rotated]));
        let other_agent = record("gemini", Method::Session, "{\"a\":1}", None);
        assert!(!host_is_stored(&host, &[other_agent]));
    }

    #[test]
    fn records_of_undefined_agents_are_listed_as_invalid() {
        let config = Config::default();
        let agents = Agent::all(&config);
        let recs = vec![record("aider", Method::ApiKey, "k", None)];
        let r = report_of(&agents, &recs, Timestamp::now(), &config);
        let e = r.credentials.last().unwrap();
        assert_eq!((e.agent.as_str(), e.state), ("aider", State::Invalid));
        assert!(
            e.fix
                .as_deref()
                .unwrap()
                .contains("airlock remove aider --account default")
        );
        assert_eq!(r.warnings.len(), 1);
    }

    #[test]
    fn host_rows_say_whether_a_sandbox_uses_them() {
        use crate::agents::jwt;
        use crate::agents::validate::HostLogin;
        // A real auth.json: what a sandbox gets is read off its plan.
        let doc = serde_json::json!({"tokens": {
            "id_token": jwt::fake(&serde_json::json!({})),
            "access_token": jwt::fake(&serde_json::json!({"exp": 4_000_000_000i64})),
            "refresh_token": "rt",
        }})
        .to_string();
        let host = || -> HostResult {
            Ok(Some(HostLogin {
                record: record("codex", Method::Session, &doc, None),
                location: "~/.codex/auth.json".into(),
                modified: None,
                refreshable: true,
                detail: None,
                warnings: vec![],
            }))
        };
        let mut hosts = BTreeMap::new();
        hosts.insert(
            "codex".to_owned(),
            (host(), "~/.codex/auth.json".to_owned()),
        );
        let agents = [Agent::Codex];
        let now = Timestamp::now();
        let config = Config::default();
        let r = report(
            &agents,
            &[],
            &hosts,
            &BTreeMap::new(),
            memory(),
            now,
            &config,
        );
        assert!(
            r.credentials[0]
                .delivery
                .as_deref()
                .unwrap()
                .starts_with("from the host: file auth.json")
        );
        let config = Config::parse("[agents.codex]\naccount = \"team\"\n").unwrap();
        let r = report(
            &agents,
            &[],
            &hosts,
            &BTreeMap::new(),
            memory(),
            now,
            &config,
        );
        assert_eq!(
            r.credentials[0].delivery.as_deref(),
            Some("nothing: the configured account codex:team is used")
        );
    }

    #[test]
    fn broken_stored_session_is_invalid() {
        let config = Config::default();
        let agents = [Agent::resolve("codex", &config).unwrap()];
        let recs = vec![record("codex", Method::Session, "{\"tokens\":", None)];
        let r = report_of(&agents, &recs, Timestamp::now(), &config);
        assert_eq!(r.credentials[0].state, State::Invalid);
        assert!(
            r.credentials[0]
                .problem
                .as_deref()
                .unwrap()
                .contains("truncated")
        );
    }
}
