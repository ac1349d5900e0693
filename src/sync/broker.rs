//! Broker mode (`--rotation broker`, `docs/broker.md`): the sandbox gets the
//! session's **access token only**; the refresh token never leaves the host.
//!
//! A broker account is a synced account ([`AccountSpec::broker`]) whose
//! shared directory holds the session *without* its refresh token (the
//! agents' own access-only reduction: Claude `refreshToken: null`, Codex
//! `tokens.refresh_token: ""`; Gemini's `oauth_creds.json` without its
//! `refresh_token`, read by a `gemini` process once, at its start). The `airlock sync` watcher keeps the full
//! session on the host side only: in the source of truth (vault record or
//! host agent file) and, after each of its refreshes, in a host-only copy
//! next to the shared directory (`<runtime>/sync/<agent>-<account>.broker`,
//! 0600, never mounted) until the truth has accepted it. It refreshes at
//! [`lead`] before expiry, which is always longer than the agents' own
//! refresh windows ([`agent_window`]), so an agent never finds its session
//! due and never tries to refresh (it could not: it has no refresh token).
//!
//! Direction is one way only, truth → sandboxes: whatever a sandbox writes
//! into its shared file (a document without refresh token, garbage, a
//! session of its own with a refresh token) is never offered to the truth.
//! The watcher restores the access-only session over it and records why
//! (`last_rejected` in the account's status). No network path from the
//! sandbox to the host is needed: the new access token arrives through the
//! bind-mounted directory.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::sync::credential::{self, AgentKind, Parsed, content_hash};
use crate::sync::engine::{AccountSpec, Outcome, Syncer};
use crate::sync::registry::{Layout, Registration, list_sandboxes};
use crate::sync::truth::{Offer, read_file};
use crate::sync::write::{AgentLock, write_shared};
use crate::vault::Backend;

/// Claude Code refreshes when `now + 5 min >= expiresAt`.
pub const CLAUDE_WINDOW: Duration = Duration::from_secs(300);

/// Codex CLI refreshes once the access token's `exp` has passed (0.169);
/// newer versions 5 minutes before it. The larger of the two.
pub const CODEX_WINDOW: Duration = Duration::from_secs(300);

/// Gemini CLI (google-auth-library) refreshes when `now + 5 min >=
/// expiry_date`; without a refresh token it then fails instead.
pub const GEMINI_WINDOW: Duration = Duration::from_secs(300);

/// How much earlier than the agent's window airlock refreshes at the least.
pub const MARGIN: Duration = Duration::from_secs(60);

/// The agent's own refresh window: how long before expiry it refreshes.
pub fn agent_window(kind: AgentKind) -> Duration {
    match kind {
        AgentKind::Claude => CLAUDE_WINDOW,
        AgentKind::Codex => CODEX_WINDOW,
        AgentKind::Gemini => GEMINI_WINDOW,
    }
}

/// The lead before expiry at which airlock refreshes a broker account:
/// the configured lead (`[sync] refresh_lead_seconds`), but never less than
/// the agent's window plus [`MARGIN`] (6 minutes for both agents). For a
/// session whose whole lifetime is shorter than twice that, the engine
/// uses half its lifetime (see [`crate::sync::Syncer::refresh_at`]).
pub fn lead(kind: AgentKind, configured: Duration) -> Duration {
    configured.max(agent_window(kind) + MARGIN)
}

/// `full` as a sandbox in broker mode sees it: the agent's own access-only
/// reduction (the same code as `--rotation access-only`).
pub fn access_only(full: &Parsed) -> Map<String, Value> {
    let mut doc = full.document().clone();
    match full.kind {
        AgentKind::Claude => crate::agents::claude::inject::strip_refresh_token(&mut doc),
        AgentKind::Codex => crate::agents::codex::inject::strip_refresh_token(&mut doc),
        AgentKind::Gemini => {
            doc.remove("refresh_token");
        }
    }
    doc
}

/// A broker shared file (no refresh token) read for its expiry: parsed
/// as a full session whose access token stands in for the refresh token,
/// so its fingerprint changes with each new access token. `None` when it
/// is not a valid session otherwise.
pub fn parse_shared(kind: AgentKind, bytes: &[u8]) -> Option<Parsed> {
    let mut doc: Map<String, Value> = serde_json::from_slice(bytes).ok()?;
    let (part, access, field) = match kind {
        AgentKind::Claude => ("claudeAiOauth", "accessToken", "refreshToken"),
        AgentKind::Codex => ("tokens", "access_token", "refresh_token"),
        AgentKind::Gemini => ("", "access_token", "refresh_token"),
    };
    let p = if part.is_empty() {
        &mut doc
    } else {
        doc.get_mut(part)?.as_object_mut()?
    };
    let stand_in = p.get(access)?.clone();
    p.insert(field.into(), stand_in);
    let bytes = zeroize::Zeroizing::new(serde_json::to_vec(&doc).ok()?);
    credential::parse(kind, &bytes).ok()
}

/// The host-only copy of the newest full session of a broker account:
/// beside the shared directory, never inside it (it is not mounted).
pub fn held_path(spec: &AccountSpec) -> PathBuf {
    let mut name = spec
        .shared_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".broker");
    spec.shared_dir.with_file_name(name)
}

/// The host-only copy's bytes, if any.
pub(crate) fn read_held(spec: &AccountSpec) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
    read_file(&held_path(spec))
}

/// Keeps `full` (a session airlock just obtained) in the host-only copy
/// (0600, atomic), so that its refresh token is never only in memory while
/// the truth cannot be written (a locked vault, say).
pub(crate) fn hold(spec: &AccountSpec, full: &Parsed) -> Result<()> {
    let bytes = full.merge_into(None);
    crate::fsutil::write_atomic(&held_path(spec), &bytes, 0o600)
}

/// What one broker sync did, for the engine's bookkeeping. No secret.
#[derive(Debug)]
pub(crate) struct Step {
    pub outcome: Outcome,
    /// Hash of what was written into the shared file, if anything.
    pub wrote_shared: Option<[u8; 32]>,
    /// Hash of what was written to the truth, if anything.
    pub wrote_truth: Option<[u8; 32]>,
    /// Expiry and refresh-token fingerprint of the newest full session.
    pub newest: Option<(Timestamp, [u8; 32])>,
    /// Why a sandbox's own write was overwritten, if one was.
    pub rejected: Option<String>,
}

/// Brings a broker account in step: the host-only copy, if newer, goes to
/// the truth; the newest full session's access-only form goes to the shared
/// file. The shared file is read only to tell whether it is already in
/// step; it is never parsed as a candidate for the truth.
pub(crate) fn sync(
    spec: &AccountSpec,
    vault: Option<&dyn Backend>,
    wrote_shared: Option<[u8; 32]>,
    spent: &VecDeque<[u8; 32]>,
) -> Result<Step> {
    let kind = spec.kind()?;
    let key = spec.key();
    let parse =
        |b: Option<zeroize::Zeroizing<Vec<u8>>>| b.and_then(|b| credential::parse(kind, &b).ok());
    let truth = parse(spec.truth.read(vault)?);
    let held = parse(read_held(spec)?).filter(|h| !spent.contains(&h.fingerprint));
    let truth_spent = truth
        .as_ref()
        .map(|t| t.fingerprint)
        .filter(|f| spent.contains(f));
    let truth_ok = truth.filter(|t| !spent.contains(&t.fingerprint));

    let mut wrote_truth = None;
    let mut outcome = Outcome::Unchanged;
    if let Some(h) = &held
        && h.newer_than(truth_ok.as_ref())
    {
        match spec.truth.offer_replacing(h, truth_spent, vault) {
            Ok(Offer::Written(x)) => {
                wrote_truth = Some(x);
                outcome = Outcome::ToTruth { expiry: h.expiry };
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(account = %key, error = %e, "the refreshed session could not be written to the truth yet; airlock keeps it on the host");
            }
        }
    }
    let best = match (truth_ok, held) {
        (Some(t), Some(h)) => Some(if h.newer_than(Some(&t)) { h } else { t }),
        (t, h) => t.or(h),
    };
    let Some(best) = best else {
        tracing::warn!(account = %key, truth = %spec.truth, "the source of truth holds no valid session; the sandboxes keep what they have");
        return Ok(Step {
            outcome,
            wrote_shared: None,
            wrote_truth,
            newest: None,
            rejected: None,
        });
    };
    let mut step = Step {
        outcome,
        wrote_shared: None,
        wrote_truth,
        newest: Some((best.expiry, best.fingerprint)),
        rejected: None,
    };
    if spec.shared_dir.is_dir() {
        let (wrote, rejected) = push(spec, &best, wrote_shared)?;
        if wrote.is_some() {
            step.outcome = Outcome::ToShared {
                expiry: best.expiry,
            };
        }
        step.wrote_shared = wrote;
        step.rejected = rejected;
    }
    Ok(step)
}

/// Writes `full`'s access-only form into the account's shared file (merged,
/// under the agent's write lock) unless the file already holds exactly
/// that. Returns the hash written, and why a sandbox's write was replaced
/// (when the file held something airlock did not write last).
pub(crate) fn push(
    spec: &AccountSpec,
    full: &Parsed,
    wrote_shared: Option<[u8; 32]>,
) -> Result<(Option<[u8; 32]>, Option<String>)> {
    let kind = full.kind;
    let file = spec.shared_file()?;
    let want = access_only(full);
    let _lock = AgentLock::take(kind, &spec.shared_dir);
    let cur = credential::read_shared_bytes(&file)?;
    let cur = cur.as_deref().map(Vec::as_slice);
    let bytes = credential::merge_document(kind, &want, cur);
    if cur == Some(&bytes[..]) {
        return Ok((None, None));
    }
    let rejected = cur
        .filter(|c| wrote_shared.is_some_and(|h| h != content_hash(c)))
        .map(|c| sandbox_write(kind, c));
    if let Some(r) = &rejected {
        tracing::warn!(account = %spec.key(), reason = %r, "a sandbox changed its broker session file: restored the access-only session (the truth is never written from a sandbox)");
    }
    write_shared(&file, &bytes)?;
    Ok((Some(content_hash(&bytes)), rejected))
}

/// Why a sandbox's write to its broker session file is not taken.
fn sandbox_write(kind: AgentKind, bytes: &[u8]) -> String {
    match credential::parse(kind, bytes) {
        Ok(_) => "the sandbox wrote a session with a refresh token of its own; broker mode never takes one from a sandbox".into(),
        Err(r) => r.to_string(),
    }
}

/// After the last sandbox of a broker account left: removes the host-only
/// copy if the truth holds it (or something newer); otherwise keeps it
/// (the next registration of the account hands it to the truth) and says so.
pub(crate) fn release(spec: &AccountSpec, vault: Option<&dyn Backend>) -> Result<()> {
    remove(&dir_marker(spec))?;
    let path = held_path(spec);
    let Some(held) = read_file(&path)? else {
        return Ok(());
    };
    let kind = spec.kind()?;
    let Ok(held) = credential::parse(kind, &held) else {
        return remove(&path);
    };
    let truth = spec
        .truth
        .read(vault)?
        .and_then(|b| credential::parse(kind, &b).ok());
    match truth {
        Some(t) if t.fingerprint == held.fingerprint || t.expiry >= held.expiry => remove(&path),
        _ => {
            tracing::warn!(account = %spec.key(), truth = %spec.truth, "the truth does not hold airlock's latest refresh yet: keeping it on the host for the next sandbox of this account");
            Ok(())
        }
    }
}

/// Broker mode needs airlock's own refresh: the sandboxes cannot refresh.
/// Refused (with the fix) when pre-refresh is turned off.
pub fn check_policy(policy: &crate::sync::refresh::Policy) -> Result<()> {
    if policy.enabled {
        return Ok(());
    }
    Err(Error::Usage(
        "--rotation broker needs airlock to refresh the sessions (its sandboxes hold no refresh token), but pre-refresh is off: remove `refresh = false` from [sync] in the config and unset AIRLOCK_SYNC_REFRESH, or use --rotation sync".into(),
    ))
}

/// The mode's name, as `--rotation` spells it.
pub fn mode_name(broker: bool) -> &'static str {
    if broker { "broker" } else { "sync" }
}

/// Before a sandbox registers for an account in broker mode (`broker`) or
/// sync mode: all sandboxes of one account use one mode (one shared
/// directory, one refresher), so a registration in the other mode is
/// refused while any runs. When none runs, whatever the other mode left
/// behind (a full session in the shared directory that could not be handed
/// back, a host-only copy not yet in the truth) is handed to the truth first.
pub(crate) fn check_mode(
    layout: &Layout,
    vault: Option<&dyn Backend>,
    reg: &Registration,
    broker: bool,
) -> Result<()> {
    let spec = AccountSpec {
        agent: reg.agent.clone(),
        account: reg.account.clone(),
        truth: reg.truth.clone(),
        shared_dir: layout.shared_dir(&reg.agent, &reg.account),
        broker: !broker,
    };
    let key = spec.key();
    let others: Vec<_> = list_sandboxes(layout)?
        .into_iter()
        .filter(|e| e.spec.key() == key)
        .collect();
    if let Some(e) = others.iter().find(|e| e.spec.broker != broker) {
        let theirs = mode_name(e.spec.broker);
        return Err(Error::invalid(
            format!(
                "the {} account {} is in use by sandbox {} in {theirs} mode; all sandboxes of an account use one mode",
                reg.agent, reg.account, e.sandbox
            ),
            format!("pass --rotation {theirs}, or use another account for this sandbox"),
        ));
    }
    // A directory last used in broker mode holds only what airlock wrote
    // there (access-only) or what a broker sandbox wrote: never a session
    // to hand to the truth. The marker tells it apart from a directory a
    // sync-mode sandbox left (its hand-back failed).
    let marker = dir_marker(&spec);
    let dir_was_broker = marker.exists();
    if others.is_empty() {
        if broker && !dir_was_broker {
            let kind = spec.kind()?;
            let full = credential::read_shared_bytes(&spec.shared_file()?)?
                .is_some_and(|b| credential::parse(kind, &b).is_ok());
            if full {
                let mut s = Syncer::new(vault, None);
                let k = s.add(spec.clone())?;
                let outcome = s.sync(&k)?;
                tracing::info!(account = %k, %outcome, "handed back what a sandbox in sync mode left");
            }
        }
        if !broker {
            if dir_was_broker {
                remove(&spec.shared_file()?)?;
            }
            if held_path(&spec).exists() {
                let mut s = Syncer::new(vault, None);
                let k = s.add(spec.clone())?;
                let outcome = s.sync(&k)?;
                tracing::info!(account = %k, %outcome, "handed airlock's last broker refresh to the truth");
            }
            release(&spec, vault)?;
        }
    }
    if broker && !dir_was_broker {
        crate::fsutil::ensure_private_dir(&layout.runtime)?;
        crate::fsutil::write_atomic(&marker, b"", 0o600)?;
    }
    Ok(())
}

/// Marks an account's shared directory as a broker one (beside it).
fn dir_marker(spec: &AccountSpec) -> PathBuf {
    let mut p = held_path(spec).into_os_string();
    p.push("-dir");
    PathBuf::from(p)
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_is_always_beyond_the_agents_windows() {
        for kind in [AgentKind::Claude, AgentKind::Codex] {
            assert!(lead(kind, Duration::from_secs(1)) > agent_window(kind));
            assert_eq!(
                lead(kind, Duration::from_secs(3600)),
                Duration::from_secs(3600)
            );
        }
    }

    #[test]
    fn access_only_has_no_refresh_token() {
        let doc = br#"{"claudeAiOauth":{"accessToken":"at","refreshToken":"rt-CANARY","expiresAt":1800000000000,"scopes":["user:inference"]},"mcpOAuth":{"k":"v"}}"#;
        let p = credential::parse(AgentKind::Claude, doc).unwrap();
        let a = Value::Object(access_only(&p)).to_string();
        assert!(!a.contains("CANARY"), "{a}");
        assert!(a.contains("\"accessToken\":\"at\""), "{a}");
        assert!(!a.contains("mcpOAuth"), "{a}");
    }
}
