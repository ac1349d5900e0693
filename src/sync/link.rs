//! Vault records linked to the host agent's own login file (issue 10).
//!
//! A session captured from the host (`airlock auth claude --from-host`, or
//! the wizard's "use the host login") shares the host's refresh-token
//! family: whoever refreshes first spends the token the other still holds.
//! So such a record is **linked**: its metadata names the host file
//! ([`crate::vault::Metadata::host_link`]), resolution hands the sandbox the
//! host file's current session, and the sync truth is the host file, so
//! every refresh (a sandbox's, airlock's pre-refresh, the host agent's own)
//! lands in that one file. A record captured another way (a pasted file,
//! `--from-file`) is linked too when its refresh-token fingerprint (sha256,
//! never the token) equals the host file's. Design: `docs/rotation.md` §5.5.

use std::path::{Path, PathBuf};

use crate::agents::HostEnv;
use crate::sync::credential::{self, AgentKind};
use crate::vault::{Method, Record};

/// What [`follow`] found for a vault record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Not a rotating session shared with the host: use the record as is.
    None,
    /// Linked: the record now holds the host file's session, and the host
    /// file is the sync truth.
    Linked {
        /// The host file.
        path: PathBuf,
        /// The link was found by fingerprint and is new: store it.
        new: bool,
    },
    /// The record names a host file that now holds another account's login
    /// (a new refresh-token family): the link is dropped, the record keeps
    /// its own session and the host file is never written with it.
    Moved {
        /// The host file.
        path: PathBuf,
    },
}

/// The absolute path of a host login's `host:<location>` source.
pub fn host_path(source: &str, home: &Path) -> Option<PathBuf> {
    let loc = source.strip_prefix("host:")?;
    let path = match loc.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(loc),
    };
    path.is_absolute().then_some(path)
}

/// The account a session belongs to, when its file says (Codex:
/// `tokens.account_id`; Claude's file does not name its account: see
/// [`host_account`]).
pub fn account_of(kind: AgentKind, bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    match kind {
        AgentKind::Codex => v["tokens"]["account_id"].as_str().map(str::to_owned),
        _ => None,
    }
}

/// The account the host's agent is logged in to, when it says: Codex names
/// it in the session (`tokens.account_id`), Claude in its `.claude.json`
/// (`oauthAccount.accountUuid`, beside — not in — the credential file).
pub fn host_account(kind: AgentKind, host_session: &[u8], env: &HostEnv) -> Option<String> {
    match kind {
        AgentKind::Claude => {
            let path = crate::agents::claude::inject::host_config_path(env);
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
            v["oauthAccount"]["accountUuid"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        }
        _ => account_of(kind, host_session),
    }
}

/// Decides whether `record` (from the vault) is linked to `host_login`, the
/// host's current login of the same agent, and if so replaces its session
/// by the host file's.
pub fn follow(record: &mut Record, host_login: Option<&Record>, env: &HostEnv) -> Link {
    let Ok(kind) = AgentKind::from_name(&record.id.agent) else {
        return Link::None;
    };
    if record.method != Method::Session || !kind.rotates() {
        return Link::None;
    }
    let named = record.meta.host_link.clone();
    let Some(host) = host_login.filter(|h| h.method == Method::Session) else {
        return Link::None;
    };
    let Some(path) = host_path(&host.meta.source, &env.home) else {
        return Link::None;
    };
    let ours = credential::parse(kind, record.secret.expose().as_bytes()).ok();
    let theirs = credential::parse(kind, host.secret.expose().as_bytes()).ok();
    let (Some(ours), Some(theirs)) = (ours, theirs) else {
        return Link::None;
    };
    let same_family = ours.fingerprint == theirs.fingerprint;
    let named_here = named.as_deref().is_some_and(|n| Path::new(n) == path);
    if !same_family && !named_here {
        return Link::None;
    }
    let now_account = host_account(kind, host.secret.expose().as_bytes(), env);
    let other_account = match (
        account_of(kind, record.secret.expose().as_bytes()),
        account_of(kind, host.secret.expose().as_bytes()),
    ) {
        (Some(a), Some(b)) => a != b,
        // Claude's file names no account: the one recorded at the link
        // against the one the host's `.claude.json` names now
        _ => {
            !same_family
                && matches!((&record.meta.host_account, &now_account), (Some(a), Some(b)) if a != b)
        }
    };
    if other_account {
        record.meta.host_link = None;
        return Link::Moved { path };
    }
    if theirs.newer_than(Some(&ours)) || same_family {
        record.secret = host.secret.clone();
        record.meta.expires_at = Some(theirs.expiry);
    }
    record.meta.host_link = Some(path.display().to_string());
    if now_account.is_some() {
        record.meta.host_account = now_account;
    }
    Link::Linked {
        path,
        new: !named_here,
    }
}

/// Stores what [`follow`] changed in `record` (its session, expiry and
/// link) into the vault record, so that the record equals the host file's
/// session; a record removed in the meantime stays removed.
pub fn store(vault: &dyn crate::vault::Backend, record: &Record) -> crate::error::Result<()> {
    vault.update(&record.id, &mut |cur| {
        Ok(cur.map(|mut r| {
            if r.secret != record.secret
                || r.meta.host_link != record.meta.host_link
                || r.meta.host_account != record.meta.host_account
            {
                r.secret = record.secret.clone();
                r.meta.expires_at = record.meta.expires_at;
                r.meta.host_link = record.meta.host_link.clone();
                r.meta.host_account = record.meta.host_account.clone();
                r.meta.updated_at = jiff::Timestamp::now();
            }
            r
        }))
    })
}

/// For `airlock doctor`: a stored, unlinked session whose token family the
/// host has moved on from (the same login — captured from the host, or the
/// same Codex account — with another refresh token, and the host's is
/// newer): its refresh token is most likely spent. `(problem, fix)`.
pub fn moved_on(
    record: &Record,
    host_login: Option<&Record>,
    env: &HostEnv,
) -> Option<(String, String)> {
    let kind = AgentKind::from_name(&record.id.agent).ok()?;
    if record.method != Method::Session || !kind.rotates() || record.meta.host_link.is_some() {
        return None;
    }
    let host = host_login.filter(|h| h.method == Method::Session)?;
    let path = host_path(&host.meta.source, &env.home)?;
    let ours = credential::parse(kind, record.secret.expose().as_bytes()).ok()?;
    let theirs = credential::parse(kind, host.secret.expose().as_bytes()).ok()?;
    let same_login = record.meta.source == host.meta.source
        || matches!(
            (
                account_of(kind, record.secret.expose().as_bytes()),
                account_of(kind, host.secret.expose().as_bytes()),
            ),
            (Some(a), Some(b)) if a == b
        );
    if !same_login || ours.fingerprint == theirs.fingerprint || !theirs.newer_than(Some(&ours)) {
        return None;
    }
    Some((
        format!(
            "a copy of the host login in {} whose refresh token the host has since replaced: it is most likely spent, and a sandbox using it would be logged out",
            path.display()
        ),
        format!(
            "run `airlock auth {0} --account {1} --from-host` to store the host's current login linked to its file, or `airlock login {0}` for a separate session",
            record.id.agent, record.id.account
        ),
    ))
}
