//! The sync logic for one account, free of any watcher: given a shared
//! directory and a source of truth, make the newer valid credential win on
//! both sides. The watcher ([`crate::sync::watch`]), registration
//! ([`crate::sync::register_sandbox`]) and exit hand-back all call
//! [`Syncer::sync`]; tests call it directly on temporary directories.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use zeroize::Zeroizing;

use crate::agents::refresh as agent_refresh;
use crate::error::Result;
use crate::fsutil;
use crate::sync::credential::{self, AgentKind, Parsed, Rejection, content_hash};
use crate::sync::refresh::{self, Failure, Policy};
use crate::sync::truth::{Offer, Truth};
use crate::sync::watch::CLAUDE_REFRESH_LOCK;
use crate::sync::write::{AgentLock, write_shared};
use crate::vault::Backend;

/// One synced account: a shared directory and its source of truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSpec {
    /// Whose format.
    pub agent: String,
    /// The account name.
    pub account: String,
    /// Where the newest credential must end up.
    pub truth: Truth,
    /// The host directory bind-mounted into every sandbox of the account.
    pub shared_dir: PathBuf,
    /// Broker mode ([`crate::sync::broker`]): the shared directory holds the
    /// session without its refresh token; only airlock refreshes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub broker: bool,
}

impl AccountSpec {
    /// `<agent>-<account>`: the account's key in file names and maps.
    pub fn key(&self) -> String {
        account_key(&self.agent, &self.account)
    }

    /// The agent kind (checked when the account is added).
    pub fn kind(&self) -> Result<AgentKind> {
        AgentKind::from_name(&self.agent)
    }

    /// The credential file inside the shared directory.
    pub fn shared_file(&self) -> Result<PathBuf> {
        Ok(self.shared_dir.join(self.kind()?.file_name()))
    }
}

/// `<agent>-<account>`.
pub fn account_key(agent: &str, account: &str) -> String {
    format!("{agent}-{account}")
}

/// What one [`Syncer::sync`] did. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Both sides already agree (or the newer side could not be written).
    Unchanged,
    /// The change was airlock's own write: nothing to do.
    OwnWrite,
    /// A sandbox's credential was newer and was written to the truth.
    ToTruth {
        /// Its expiry.
        expiry: Timestamp,
    },
    /// The truth was newer and was written to the shared directory.
    ToShared {
        /// Its expiry.
        expiry: Timestamp,
    },
    /// The shared file is not a valid credential: left alone, not propagated.
    IgnoredShared(Rejection),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Unchanged => f.write_str("in step"),
            Outcome::OwnWrite => f.write_str("own write"),
            Outcome::ToTruth { expiry } => write!(f, "sandbox → truth (expires {expiry})"),
            Outcome::ToShared { expiry } => write!(f, "truth → sandboxes (expires {expiry})"),
            Outcome::IgnoredShared(r) => write!(f, "ignored a sandbox write: {r}"),
        }
    }
}

/// The non-secret record of an account's last sync, for `airlock status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Agent.
    pub agent: String,
    /// Account.
    pub account: String,
    /// The truth, described.
    pub truth: String,
    /// When a credential last moved.
    pub last_sync: Option<Timestamp>,
    /// Which way it moved (`to-truth`, `to-sandboxes`).
    pub direction: Option<String>,
    /// The newest expiry seen.
    pub expiry: Option<Timestamp>,
    /// The last rejected sandbox write, if any (reason only).
    pub last_rejected: Option<String>,
    /// When airlock last refreshed the session itself (pre-refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<Timestamp>,
    /// When airlock plans to refresh it next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh: Option<Timestamp>,
    /// Why the last refresh by airlock failed, if it did (no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_error: Option<String>,
    /// When that failure happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_failed_at: Option<Timestamp>,
    /// The first 8 bytes (hex) of the SHA-256 of a refresh token the server
    /// refused, so that a restarted watcher does not present it again (a
    /// one-way fingerprint of a random token, not the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// The short fingerprint [`SyncStatus::refused`] keeps.
fn short_fp(fp: &[u8; 32]) -> String {
    fp[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug)]
struct State {
    spec: AccountSpec,
    kind: AgentKind,
    /// Hash of the last bytes airlock wrote into the shared file.
    wrote_shared: Option<[u8; 32]>,
    /// Hash of the last bytes airlock wrote to the truth.
    wrote_truth: Option<[u8; 32]>,
    /// Refresh-token fingerprint of the truth at the last sync: tells
    /// whether the truth changed since.
    truth_fp: Option<[u8; 32]>,
    /// Expiry and refresh-token fingerprint of the newest valid credential
    /// seen on either side at the last sync.
    newest: Option<(Timestamp, [u8; 32])>,
    /// The lifetime of the last session airlock obtained itself.
    lifetime: Option<SignedDuration>,
    /// No refresh attempt before this (after a failure).
    retry_at: Option<Timestamp>,
    /// The refresh token the server refused: not tried again.
    spent_fp: Option<[u8; 32]>,
    /// Fingerprints of sessions airlock itself refreshed away (their
    /// refresh tokens are spent): never propagated again. The last few.
    spent: std::collections::VecDeque<[u8; 32]>,
    status: SyncStatus,
}

/// Keeps accounts' shared directories and sources of truth in step.
pub struct Syncer<'a> {
    accounts: BTreeMap<String, State>,
    vault: Option<&'a dyn Backend>,
    status_dir: Option<PathBuf>,
}

impl fmt::Debug for Syncer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Syncer")
            .field("accounts", &self.accounts.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<'a> Syncer<'a> {
    /// A syncer that writes vault truths through `vault` and, when
    /// `status_dir` is given, records each account's last sync there.
    pub fn new(vault: Option<&'a dyn Backend>, status_dir: Option<PathBuf>) -> Self {
        Syncer {
            accounts: BTreeMap::new(),
            vault,
            status_dir,
        }
    }

    /// Adds (or replaces) an account. Does not sync: call [`Syncer::sync`].
    pub fn add(&mut self, spec: AccountSpec) -> Result<String> {
        let kind = spec.kind()?;
        let key = spec.key();
        let status = self
            .status_dir
            .as_deref()
            .and_then(|d| read_status(d, &key))
            .unwrap_or_else(|| SyncStatus {
                agent: spec.agent.clone(),
                account: spec.account.clone(),
                truth: spec.truth.to_string(),
                last_sync: None,
                direction: None,
                expiry: None,
                last_rejected: None,
                refreshed_at: None,
                next_refresh: None,
                refresh_error: None,
                refresh_failed_at: None,
                refused: None,
            });
        self.accounts.insert(
            key.clone(),
            State {
                spec,
                kind,
                wrote_shared: None,
                wrote_truth: None,
                truth_fp: None,
                newest: None,
                lifetime: None,
                retry_at: None,
                spent_fp: None,
                spent: Default::default(),
                status,
            },
        );
        Ok(key)
    }

    /// Forgets an account.
    pub fn remove(&mut self, key: &str) -> Option<AccountSpec> {
        self.accounts.remove(key).map(|s| s.spec)
    }

    /// The accounts, by key.
    pub fn specs(&self) -> impl Iterator<Item = (&String, &AccountSpec)> {
        self.accounts.iter().map(|(k, s)| (k, &s.spec))
    }

    /// True when the shared file's current bytes are the ones airlock wrote
    /// last (the event is our own write).
    pub fn is_own_shared_write(&self, key: &str) -> bool {
        let Some(st) = self.accounts.get(key) else {
            return false;
        };
        let Some(h) = st.wrote_shared else {
            return false;
        };
        let file = st.spec.shared_dir.join(st.kind.file_name());
        matches!(credential::read_shared(&file), Ok(Some(Ok(b))) if content_hash(&b) == h)
    }

    /// Makes the newer valid credential win on both sides of account `key`.
    ///
    /// * shared newer than truth → written to the truth (compare-and-set);
    /// * truth newer than shared (or the shared file absent) → merged into
    ///   the shared file under the agent's lock;
    /// * an invalid shared file is never propagated and never overwritten
    ///   (it may be an agent's write in progress).
    pub fn sync(&mut self, key: &str) -> Result<Outcome> {
        let vault = self.vault;
        let Some(st) = self.accounts.get_mut(key) else {
            return Ok(Outcome::Unchanged);
        };
        let kind = st.kind;
        if !st.spec.shared_dir.is_dir() {
            // unregistered meanwhile: the hand-back already happened
            return Ok(Outcome::Unchanged);
        }
        if st.spec.broker {
            // One way only: truth → sandboxes (docs/broker.md).
            let b = crate::sync::broker::sync(&st.spec, vault, st.wrote_shared, &st.spent)?;
            st.wrote_shared = b.wrote_shared.or(st.wrote_shared);
            st.wrote_truth = b.wrote_truth.or(st.wrote_truth);
            st.newest = b.newest.or(st.newest);
            st.truth_fp = b.newest.map(|n| n.1).or(st.truth_fp);
            if let Some(r) = b.rejected {
                st.status.last_rejected = Some(r);
            }
            match &b.outcome {
                Outcome::ToShared { expiry } => st.record(*expiry, "to-sandboxes"),
                Outcome::ToTruth { expiry } => st.record(*expiry, "to-truth"),
                _ => {}
            }
            if let Some(d) = &self.status_dir {
                write_status(d, key, &st.status);
            }
            return Ok(b.outcome);
        }
        let shared_file = st.spec.shared_dir.join(kind.file_name());
        // The sandbox writes this file: read it as hostile input.
        let (shared_bytes, refused) = match credential::read_shared(&shared_file)? {
            Some(Ok(b)) => (Some(b), None),
            Some(Err(r)) => (None, Some(r)),
            None => (None, None),
        };
        let truth_bytes = st.spec.truth.read(vault)?;

        let own_shared =
            matches!((&shared_bytes, st.wrote_shared), (Some(b), Some(h)) if content_hash(b) == h);
        let own_truth =
            matches!((&truth_bytes, st.wrote_truth), (Some(b), Some(h)) if content_hash(b) == h);
        if own_shared && own_truth {
            return Ok(Outcome::OwnWrite);
        }

        let mut shared: Option<std::result::Result<Parsed, Rejection>> = refused
            .map(Err)
            .or_else(|| shared_bytes.as_deref().map(|b| credential::parse(kind, b)));
        let truth: Option<Parsed> = truth_bytes
            .as_deref()
            .and_then(|b| credential::parse(kind, b).ok());
        if let (Some(Ok(s)), Some(t)) = (&shared, &truth)
            && !s.same_account(t)
        {
            shared = Some(Err(Rejection::OtherAccount));
        }
        let shared_fp = match &shared {
            Some(Ok(p)) => Some(p.fingerprint),
            _ => None,
        };
        let shared_newest = match &shared {
            Some(Ok(p)) => Some((p.expiry, p.fingerprint)),
            _ => None,
        };

        // A session airlock refreshed away holds a spent refresh token:
        // whatever its expiry, it never wins again.
        let truth_spent = truth
            .as_ref()
            .map(|t| t.fingerprint)
            .filter(|f| st.spent.contains(f));
        let truth_changed = truth
            .as_ref()
            .is_some_and(|t| Some(t.fingerprint) != st.truth_fp);
        let mut keep_truth_fp = false;
        let outcome = match shared {
            Some(Err(r)) => {
                if r.is_refusal() {
                    // Hostile or foreign: said even when the truth replaces it.
                    tracing::warn!(account = %key, reason = %r, "refused the sandbox's shared file");
                    st.status.last_rejected = Some(r.to_string());
                }
                // A sandbox that is logged out (Claude wipes its tokens after
                // an invalid_grant) or holds garbage gets the truth again only
                // when the truth changed (a new login, a refresh elsewhere),
                // and never in the middle of a truncate + write.
                let in_progress = matches!(r, Rejection::Empty | Rejection::NotJson)
                    && recently_modified(&shared_file);
                let pushed = match &truth {
                    Some(t) if truth_changed && !in_progress => {
                        push_shared(st, &shared_file, t, true)?
                    }
                    _ => None,
                };
                match pushed {
                    Some(o) => o,
                    None => {
                        if in_progress {
                            keep_truth_fp = true;
                        }
                        tracing::warn!(account = %key, reason = %r, "ignored a sandbox write");
                        st.status.last_rejected = Some(r.to_string());
                        Outcome::IgnoredShared(r)
                    }
                }
            }
            Some(Ok(s))
                if !st.spent.contains(&s.fingerprint)
                    && (s.newer_than(truth.as_ref()) || truth_spent.is_some()) =>
            {
                match st.spec.truth.offer_replacing(&s, truth_spent, vault)? {
                    Offer::Written(h) => {
                        st.wrote_truth = Some(h);
                        Outcome::ToTruth { expiry: s.expiry }
                    }
                    Offer::NotNewer => Outcome::Unchanged,
                    Offer::Missing => {
                        tracing::warn!(account = %key, truth = %st.spec.truth, "the source of truth is gone; not recreating it");
                        Outcome::Unchanged
                    }
                }
            }
            Some(Ok(s)) => match &truth {
                Some(t)
                    if truth_spent.is_none()
                        && (t.newer_than(Some(&s)) || st.spent.contains(&s.fingerprint)) =>
                {
                    let replaces = Some(s.fingerprint).filter(|f| st.spent.contains(f));
                    push_shared_replacing(st, &shared_file, t, false, replaces)?
                        .unwrap_or(Outcome::Unchanged)
                }
                _ => Outcome::Unchanged,
            },
            None => match &truth {
                Some(t) if truth_spent.is_none() => {
                    push_shared(st, &shared_file, t, false)?.unwrap_or(Outcome::Unchanged)
                }
                Some(_) => Outcome::Unchanged,
                None => Outcome::Unchanged,
            },
        };
        let truth_newest = truth.as_ref().map(|t| (t.expiry, t.fingerprint));
        st.newest = match (shared_newest, truth_newest) {
            (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        if !keep_truth_fp {
            // what the truth holds now (after a write-back: the sandbox's session)
            st.truth_fp = match (&outcome, &truth) {
                (Outcome::ToTruth { .. }, _) => shared_fp,
                (_, Some(t)) => Some(t.fingerprint),
                (_, None) => st.truth_fp,
            };
        }
        match &outcome {
            Outcome::ToTruth { expiry } => st.record(*expiry, "to-truth"),
            Outcome::ToShared { expiry } => st.record(*expiry, "to-sandboxes"),
            _ => {}
        }
        if matches!(
            outcome,
            Outcome::ToTruth { .. } | Outcome::ToShared { .. } | Outcome::IgnoredShared(_)
        ) && let Some(d) = &self.status_dir
        {
            write_status(d, key, &st.status);
        }
        Ok(outcome)
    }
}

/// What one [`Syncer::refresh`] did. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Not due yet (or airlock does not refresh this account).
    NotDue,
    /// An agent holds its refresh lock: it is refreshing right now.
    Busy,
    /// airlock refreshed the session; both sides have it.
    Refreshed {
        /// The new expiry.
        expiry: Timestamp,
    },
    /// The attempt failed; see [`Failure`].
    Failed(Failure),
}

impl fmt::Display for RefreshOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshOutcome::NotDue => f.write_str("not due"),
            RefreshOutcome::Busy => f.write_str("an agent is refreshing"),
            RefreshOutcome::Refreshed { expiry } => write!(f, "refreshed (expires {expiry})"),
            RefreshOutcome::Failed(e) => write!(f, "refresh failed: {e}"),
        }
    }
}

impl Syncer<'_> {
    /// When airlock should refresh account `key` itself under `policy`:
    /// `lead` before the newest credential's expiry (half the session's
    /// lifetime when that is shorter), not before a retry time after a
    /// failure. `None`: never (pre-refresh off, an agent airlock does not
    /// refresh, no valid credential, or its refresh token was refused).
    pub fn refresh_at(&self, key: &str, policy: &Policy) -> Option<Timestamp> {
        if !policy.enabled {
            return None;
        }
        let st = self.accounts.get(key)?;
        agent_refresh::endpoint(&st.spec.agent)?;
        let (expiry, fp) = st.newest?;
        if st.spent_fp == Some(fp) || st.status.refused.as_deref() == Some(&short_fp(&fp)) {
            return None;
        }
        let mut lead =
            SignedDuration::try_from(policy.lead).unwrap_or(SignedDuration::from_secs(600));
        if st.spec.broker {
            // beyond the agents' own refresh window (docs/broker.md)
            let l = crate::sync::broker::lead(st.kind, policy.lead);
            lead = SignedDuration::try_from(l).unwrap_or(lead);
        }
        if let Some(l) = st.lifetime {
            lead = lead.min(l / 2);
        }
        let at = expiry.checked_sub(lead).unwrap_or(expiry);
        Some(match st.retry_at {
            Some(r) if r > at => r,
            _ => at,
        })
    }

    /// The lock directories [`Syncer::refresh`] takes for `key`: Claude's
    /// refresh lock in the shared directory and, for a host-file truth, in
    /// the host's config directory (the watcher must not mirror them).
    pub fn refresh_locks(&self, key: &str) -> Vec<PathBuf> {
        let Some(st) = self.accounts.get(key) else {
            return Vec::new();
        };
        if st.kind != AgentKind::Claude {
            // Codex's locks cover its commit, not its request: holding
            // them would not stop a request, and would block our own write.
            return Vec::new();
        }
        let mut v = vec![st.spec.shared_dir.join(CLAUDE_REFRESH_LOCK)];
        if let Truth::HostFile { path } = &st.spec.truth
            && let Some(d) = crate::sync::write::real_path(path)
                .ok()
                .as_deref()
                .and_then(Path::parent)
        {
            v.push(d.join(CLAUDE_REFRESH_LOCK));
        }
        v
    }

    /// Refreshes account `key` now if [`Syncer::refresh_at`] says it is due:
    /// [`Syncer::begin_refresh`], [`PendingRefresh::send`] and
    /// [`Syncer::finish_refresh`] in one go (the watcher sends on another
    /// thread, so that a slow token server never delays a sync).
    pub fn refresh(&mut self, key: &str, policy: &Policy) -> Result<RefreshOutcome> {
        match self.begin_refresh(key, policy)? {
            Begun::Done(o) => Ok(o),
            Begun::Send(p) => {
                let resp = p.send();
                self.finish_refresh(resp, policy)
            }
        }
    }

    /// The first half of a refresh of `key`, if it is due: takes the
    /// agents' refresh locks (see [`Syncer::refresh_locks`]), syncs (so the
    /// newest credential is used and an agent's own refresh that just
    /// happened is seen), checks again, and prepares the request. The
    /// returned [`PendingRefresh`] holds the locks until it is finished.
    pub fn begin_refresh(&mut self, key: &str, policy: &Policy) -> Result<Begun> {
        self.begin(key, policy, None)
    }

    /// [`Syncer::begin_refresh`] before the session is due, because an
    /// upstream refused its access token (`airlock proxy`,
    /// [`crate::sync::demand`]): only while the newest session still carries
    /// the access token whose hash is `refused` (else it was refreshed
    /// already), never for a session whose refresh token was refused, and
    /// not while a failed attempt waits for its retry time.
    pub fn begin_refresh_on_demand(
        &mut self,
        key: &str,
        policy: &Policy,
        refused: &str,
    ) -> Result<Begun> {
        self.begin(key, policy, Some(refused))
    }

    fn refresh_wanted(&self, key: &str, policy: &Policy, demand: bool) -> bool {
        let now = Timestamp::now();
        match self.refresh_at(key, policy) {
            None => false,
            Some(t) if !demand => t <= now,
            Some(_) => self
                .accounts
                .get(key)
                .is_some_and(|st| st.retry_at.is_none_or(|r| r <= now)),
        }
    }

    fn begin(&mut self, key: &str, policy: &Policy, demand: Option<&str>) -> Result<Begun> {
        if !self.refresh_wanted(key, policy, demand.is_some()) {
            return Ok(Begun::Done(RefreshOutcome::NotDue));
        }
        let Some(locks) = MkdirLocks::take(&self.refresh_locks(key)) else {
            return Ok(Begun::Done(RefreshOutcome::Busy));
        };
        self.sync(key)?;
        if !self.refresh_wanted(key, policy, demand.is_some()) {
            return Ok(Begun::Done(RefreshOutcome::NotDue));
        }
        let vault = self.vault;
        let Some(st) = self.accounts.get_mut(key) else {
            return Ok(Begun::Done(RefreshOutcome::NotDue));
        };
        let Some(ep) = agent_refresh::endpoint(&st.spec.agent) else {
            return Ok(Begun::Done(RefreshOutcome::NotDue));
        };
        let kind = st.kind;
        let shared_file = st.spec.shared_dir.join(kind.file_name());
        let cands = [
            if st.spec.broker {
                // the shared file has no refresh token: the host-only copy
                crate::sync::broker::read_held(&st.spec)?
            } else {
                credential::read_shared_bytes(&shared_file)?
            },
            st.spec.truth.read(vault)?,
        ];
        let Some(cur) = cands
            .iter()
            .flatten()
            .filter_map(|b| credential::parse(kind, b).ok())
            .max_by_key(|p| p.expiry)
        else {
            return Ok(Begun::Done(RefreshOutcome::NotDue));
        };
        if let Some(refused) = demand
            && cur.access_token_hash().as_deref() != Some(refused)
        {
            // refreshed since the upstream refused it: nothing to do
            return Ok(Begun::Done(RefreshOutcome::NotDue));
        }
        let url = match policy.url(ep) {
            Ok(u) => u,
            Err(e) => {
                // A refused URL override: recorded like a failed request
                // (status, retry time), so that `airlock run` stops waiting.
                let f = Failure::Transient(e.to_string());
                st.refresh_failed(&f, None, policy);
                if let Some(d) = &self.status_dir {
                    write_status(d, key, &st.status);
                }
                return Ok(Begun::Done(RefreshOutcome::Failed(f)));
            }
        };
        Ok(Begun::Send(Box::new(PendingRefresh {
            key: key.to_owned(),
            ep,
            url,
            timeout: policy.timeout,
            cur,
            locks,
        })))
    }

    /// The second half: writes a refreshed session to the shared directory
    /// and the truth (or records the failure), then releases the locks.
    pub fn finish_refresh(
        &mut self,
        resp: RefreshResponse,
        policy: &Policy,
    ) -> Result<RefreshOutcome> {
        let RefreshResponse {
            key,
            cur,
            result,
            locks,
        } = resp;
        let vault = self.vault;
        let status_dir = self.status_dir.clone();
        let Some(st) = self.accounts.get_mut(&key) else {
            // the account went away meanwhile: hand the result to nobody
            // but the log (its sandboxes are gone)
            return Ok(RefreshOutcome::NotDue);
        };
        let kind = st.kind;
        let shared_file = st.spec.shared_dir.join(kind.file_name());
        let result = result.and_then(|doc| {
            let bytes = Zeroizing::new(
                serde_json::to_vec(&serde_json::Value::Object(doc)).unwrap_or_default(),
            );
            credential::parse(kind, &bytes).map_err(|r| {
                Failure::Transient(format!("the refreshed session does not validate: {r}"))
            })
        });
        let outcome = match result {
            Ok(new) => {
                let now = Timestamp::now();
                // The refresh token of `cur` is spent now: the new session
                // replaces it on both sides even if it expires earlier.
                let spent = Some(cur.fingerprint);
                if st.spent.len() >= 16 {
                    st.spent.pop_front();
                }
                st.spent.push_back(cur.fingerprint);
                if st.spec.broker {
                    if let Err(e) = crate::sync::broker::hold(&st.spec, &new) {
                        tracing::warn!(account = %key, error = %e, "could not keep the refreshed session on the host");
                    }
                    if st.spec.shared_dir.is_dir() {
                        match crate::sync::broker::push(&st.spec, &new, st.wrote_shared) {
                            Ok((h, _)) => st.wrote_shared = h.or(st.wrote_shared),
                            Err(e) => {
                                tracing::warn!(account = %key, error = %e, "could not hand the new access token to the sandboxes")
                            }
                        }
                    }
                } else if st.spec.shared_dir.is_dir() {
                    push_shared_replacing(st, &shared_file, &new, true, spent)?;
                }
                match st.spec.truth.offer_replacing(&new, spent, vault) {
                    Ok(Offer::Written(h)) => st.wrote_truth = Some(h),
                    Ok(_) => {}
                    Err(e) => {
                        // The sandboxes have it; the next sync retries the truth.
                        tracing::warn!(account = %key, error = %e, "refreshed, but the truth could not be written yet");
                    }
                }
                // Both sides have it: agents waiting for the lock may go on
                // (they re-read and find the new session).
                drop(locks);
                st.truth_fp = Some(new.fingerprint);
                st.newest = Some((new.expiry, new.fingerprint));
                st.lifetime = Some(now.duration_until(new.expiry)).filter(|d| d.is_positive());
                st.retry_at = None;
                st.record(new.expiry, "refreshed");
                st.status.refreshed_at = Some(now);
                st.status.refresh_error = None;
                st.status.refresh_failed_at = None;
                RefreshOutcome::Refreshed { expiry: new.expiry }
            }
            Err(f) => {
                st.refresh_failed(&f, Some(cur.fingerprint), policy);
                RefreshOutcome::Failed(f)
            }
        };
        if let Some(d) = &status_dir {
            let next = self.refresh_at(&key, policy);
            if let Some(st) = self.accounts.get_mut(&key) {
                st.status.next_refresh = next;
                write_status(d, &key, &st.status);
            }
        }
        Ok(outcome)
    }
}

/// What [`Syncer::begin_refresh`] decided.
#[derive(Debug)]
pub enum Begun {
    /// Nothing to send: the outcome already.
    Done(RefreshOutcome),
    /// A request to send ([`PendingRefresh::send`]), then finish.
    Send(Box<PendingRefresh>),
}

/// A refresh request ready to be sent, holding the agents' refresh locks.
/// `Send`, so the network round trip can happen on another thread.
pub struct PendingRefresh {
    key: String,
    ep: &'static agent_refresh::TokenEndpoint,
    url: String,
    timeout: std::time::Duration,
    cur: Parsed,
    locks: MkdirLocks,
}

impl fmt::Debug for PendingRefresh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingRefresh")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl PendingRefresh {
    /// The account's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Sends the request (blocking, up to the policy's timeout).
    pub fn send(self) -> RefreshResponse {
        let result = refresh::post_refresh(self.ep, &self.url, self.timeout, self.cur.document());
        RefreshResponse {
            key: self.key,
            cur: self.cur,
            result,
            locks: self.locks,
        }
    }
}

/// The answer to a [`PendingRefresh`], for [`Syncer::finish_refresh`].
pub struct RefreshResponse {
    key: String,
    cur: Parsed,
    result: std::result::Result<serde_json::Map<String, serde_json::Value>, Failure>,
    locks: MkdirLocks,
}

impl fmt::Debug for RefreshResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshResponse")
            .field("key", &self.key)
            .field("ok", &self.result.is_ok())
            .finish_non_exhaustive()
    }
}

impl RefreshResponse {
    /// The account's key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Claude's refresh locks (`proper-lockfile` mkdir locks), held by
/// airlock during its own refresh, their mtime kept fresh so that Claude
/// does not break them as stale; removed on drop.
struct MkdirLocks {
    held: Vec<PathBuf>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    toucher: Option<std::thread::JoinHandle<()>>,
}

impl MkdirLocks {
    /// Takes every lock, or none (`None`: one is held by an agent).
    fn take(paths: &[PathBuf]) -> Option<MkdirLocks> {
        let mut held = Vec::new();
        for p in paths {
            let mut ok = std::fs::create_dir(p).is_ok();
            if !ok && lock_is_stale(p) {
                let _ = std::fs::remove_dir(p);
                ok = std::fs::create_dir(p).is_ok();
            }
            if !ok {
                for h in &held {
                    let _ = std::fs::remove_dir(h);
                }
                return None;
            }
            held.push(p.clone());
        }
        let (stop, toucher) = if held.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let paths = held.clone();
            let t = std::thread::spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(std::time::Duration::from_secs(3))
                {
                    for p in &paths {
                        if let Ok(f) = std::fs::File::open(p) {
                            let _ = f.set_modified(std::time::SystemTime::now());
                        }
                    }
                }
            });
            (Some(tx), Some(t))
        };
        Some(MkdirLocks {
            held,
            stop,
            toucher,
        })
    }
}

impl Drop for MkdirLocks {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.toucher.take() {
            let _ = t.join();
        }
        for p in &self.held {
            let _ = std::fs::remove_dir(p);
        }
    }
}

/// `proper-lockfile`'s rule, as Claude applies it to its refresh lock: not
/// touched for 10 s means its holder died.
fn lock_is_stale(p: &Path) -> bool {
    crate::sync::write::untouched_for(p, std::time::Duration::from_secs(10))
}

impl State {
    /// Records a failed refresh of the session whose refresh token has the
    /// fingerprint `fp`: a refused token is never presented again, anything
    /// else is retried after `policy.retry`; the status says why.
    fn refresh_failed(&mut self, f: &Failure, fp: Option<[u8; 32]>, policy: &Policy) {
        match (f, fp) {
            (Failure::Spent(_), Some(fp)) => {
                self.spent_fp = Some(fp);
                self.status.refused = Some(short_fp(&fp));
            }
            _ => {
                let wait =
                    SignedDuration::try_from(policy.retry).unwrap_or(SignedDuration::from_secs(60));
                self.retry_at = Timestamp::now().checked_add(wait).ok();
            }
        }
        self.status.refresh_error = Some(f.to_string());
        self.status.refresh_failed_at = Some(Timestamp::now());
    }

    fn record(&mut self, expiry: Timestamp, direction: &str) {
        self.status.last_sync = Some(Timestamp::now());
        self.status.direction = Some(direction.to_owned());
        self.status.expiry = Some(expiry);
    }
}

/// Writes `t` into the shared file under the agent's lock, re-checking
/// that it is still newer than what is there (an agent may have refreshed
/// meanwhile). `None` when it no longer is.
fn push_shared(
    st: &mut State,
    file: &Path,
    t: &Parsed,
    over_invalid: bool,
) -> Result<Option<Outcome>> {
    push_shared_replacing(st, file, t, over_invalid, None)
}

/// [`push_shared`], where `t` also wins over the session whose refresh
/// token has the fingerprint `replaces` (see [`Truth::offer_replacing`]).
fn push_shared_replacing(
    st: &mut State,
    file: &Path,
    t: &Parsed,
    over_invalid: bool,
    replaces: Option<[u8; 32]>,
) -> Result<Option<Outcome>> {
    let dir = st.spec.shared_dir.clone();
    let _lock = AgentLock::take(st.kind, &dir);
    let cur = match credential::read_shared(file)? {
        Some(Ok(b)) => Some(b),
        // not a file airlock reads (or writes through): replaced (the rename
        // replaces a FIFO or a link, never follows it) when the truth may go
        // over an invalid file, else left; a directory cannot be replaced
        Some(Err(Rejection::NotRegularFile("directory"))) => return Ok(None),
        Some(Err(_)) if over_invalid => None,
        Some(Err(_)) => return Ok(None),
        None => None,
    };
    if let Some(b) = &cur {
        match credential::parse(st.kind, b) {
            Ok(p) if !t.newer_than(Some(&p)) && Some(p.fingerprint) != replaces => {
                return Ok(None);
            }
            Ok(_) => {}
            Err(_) if over_invalid => {}
            // Changed to something invalid since we looked: leave it.
            Err(_) => return Ok(None),
        }
    }
    let bytes = t.merge_into(cur.as_deref().map(|v| v.as_slice()));
    write_shared(file, &bytes)?;
    st.wrote_shared = Some(content_hash(&bytes));
    Ok(Some(Outcome::ToShared { expiry: t.expiry }))
}

/// True when `path` changed within the last second (a write may be in progress).
fn recently_modified(path: &Path) -> bool {
    !crate::sync::write::untouched_for(path, std::time::Duration::from_secs(1))
}

/// Reads an account's status file.
pub fn read_status(dir: &Path, key: &str) -> Option<SyncStatus> {
    let b = std::fs::read(dir.join(format!("{key}.json"))).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Status is informational: written atomically (readers never see half a
/// file) but without `fsync`, which would slow every sync for nothing.
fn write_status(dir: &Path, key: &str, s: &SyncStatus) {
    let r = fsutil::ensure_private_dir(dir).and_then(|()| {
        let json = serde_json::to_vec_pretty(s).unwrap_or_default();
        let path = dir.join(format!("{key}.json"));
        let tmp = fsutil::temp_name(&path);
        let res = fsutil::write_private(&tmp, &json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| crate::error::Error::io("write", &path, e));
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    });
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not record the sync status");
    }
}
