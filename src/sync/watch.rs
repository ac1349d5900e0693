//! The watcher behind `airlock sync`: inotify (through `notify`) on every
//! shared directory, every host truth file's directory, the registry and
//! the kick directory; a short debounce; [`Syncer::sync`] per account.
//!
//! It blocks in the kernel while nothing happens: the only timeouts are the
//! debounce of pending events and the linger before exiting when no
//! sandbox is registered. Directories are watched, never files: a watch on
//! a file dies at the first atomic rename.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::error::{Error, Result};
use crate::sync::credential::AgentKind;
use crate::sync::engine::{Begun, Outcome, RefreshOutcome, RefreshResponse, Syncer};
use crate::sync::refresh::Policy;
use crate::sync::registry::{LOCK_SIGNAL, Layout, list_sandboxes, open_lock, reap_dead};
use crate::sync::truth::Truth;
use crate::vault::Backend;

/// How the watcher behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Quiet time after an event before the file is read (coalesces a
    /// truncate + write or a burst of renames).
    pub debounce: Duration,
    /// Never wait longer than this after the first event of a burst.
    pub max_delay: Duration,
    /// Exit after this long with no registered sandbox (`None`: never).
    pub linger: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            debounce: Duration::from_millis(3),
            max_delay: Duration::from_millis(20),
            linger: Some(Duration::from_secs(5)),
        }
    }
}

/// The longest sleep before a pending refresh time is compared with the
/// wall clock again (see [`Daemon::refresh_deadline`]).
const WALL_CLOCK_CHECK: Duration = Duration::from_secs(300);

/// At most this many refresh requests on their way at once.
const MAX_IN_FLIGHT: usize = 8;

/// Claude Code's cross-process refresh lock in its config directory.
pub const CLAUDE_REFRESH_LOCK: &str = ".oauth_refresh.lock";

enum Msg {
    Fs(notify::Result<Event>),
    /// A registered sandbox's process exited.
    Exited,
    /// Mirrored locks up to this sequence number may be released once the
    /// events before this message have been synced.
    Release(u64),
    Stop,
    /// A refresh request sent on a worker thread came back.
    Refreshed(Box<RefreshResponse>),
}

/// Stops a running [`Daemon`] from another thread.
#[derive(Debug, Clone)]
pub struct StopHandle(Sender<Msg>);

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl StopHandle {
    /// Asks the daemon to finish its current work and return.
    pub fn stop(&self) {
        let _ = self.0.send(Msg::Stop);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Account,
    Registry,
    /// `airlock lock` ran: drop the vault key.
    Lock,
    /// The proxy asks for a refresh ([`crate::sync::demand`]).
    Demand,
}

/// Mirrors of Claude's refresh lock (see [`LockMirror::handle`]).
#[derive(Debug, Default)]
struct LockMirror {
    /// A refresh lock → the same lock on the other side.
    peers: HashMap<PathBuf, PathBuf>,
    /// Refresh locks airlock created as mirrors.
    mirrors: BTreeSet<PathBuf>,
    /// Mirrors whose origin was released, to remove after the next sync.
    releasing: Vec<(u64, PathBuf)>,
    /// Sequence numbers for `releasing`.
    seq: u64,
    /// Locks airlock takes itself for its own refresh: never mirrored.
    own: BTreeSet<PathBuf>,
}

impl LockMirror {
    /// Mirrors Claude's refresh lock between the host's config directory
    /// and the shared directory, so that the host's own Claude and the
    /// sandboxes' exclude each other too (`docs/rotation.md` §5). Called on
    /// the notify thread for every event path, without debounce: the race
    /// it closes is milliseconds wide.
    ///
    /// `lock` is one side's `.oauth_refresh.lock` (a `proper-lockfile`
    /// mkdir lock). While it exists, the peer lock exists too (created by
    /// airlock, its mtime kept fresh); when it goes, airlock removes the
    /// peer it created. Never touches a lock an agent created.
    fn handle(&mut self, lock: &Path) -> Option<u64> {
        if self.own.contains(lock) {
            return None;
        }
        let peer = self.peers.get(lock).cloned()?;
        if self.mirrors.contains(lock) {
            // an event about our own mirror; if it vanished (broken as
            // stale), forget it
            if !lock.exists() {
                self.mirrors.remove(lock);
            }
            return None;
        }
        if lock.is_dir() {
            match std::fs::create_dir(&peer) {
                Ok(()) => {
                    self.mirrors.insert(peer.clone());
                    tracing::debug!(lock = %lock.display(), "refresh lock mirrored");
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if self.mirrors.contains(&peer) {
                        // taken again before we released: keep holding
                        self.releasing.retain(|(_, p)| *p != peer);
                        // the holder refreshed its lock's mtime: so do we
                        if let Ok(f) = File::open(&peer) {
                            let _ = f.set_modified(std::time::SystemTime::now());
                        }
                    } else {
                        tracing::warn!(lock = %lock.display(), "a refresh started on the host and in a sandbox at the same moment");
                    }
                }
                Err(e) => {
                    tracing::warn!(lock = %peer.display(), error = %e, "cannot mirror the refresh lock")
                }
            }
        } else if self.mirrors.contains(&peer) && !self.releasing.iter().any(|(_, p)| *p == peer) {
            // Not yet: the holder has just written its new credential, and
            // the other side must not take the lock before that credential
            // reached it. The main loop releases after syncing every event
            // received before this one (see `Msg::Release`).
            self.seq += 1;
            self.releasing.push((self.seq, peer));
            return Some(self.seq);
        }
        None
    }

    /// Removes the mirrors queued up to `upto` whose origin was released
    /// (called once the credential written under the lock has been synced).
    fn release(&mut self, upto: u64) {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.releasing)
            .into_iter()
            .partition(|(n, _)| *n <= upto);
        self.releasing = later;
        for (_, peer) in now {
            self.mirrors.remove(&peer);
            let _ = std::fs::remove_dir(&peer);
            tracing::debug!(lock = %peer.display(), "mirrored refresh lock released");
        }
    }
}

/// The watcher process's state.
pub struct Daemon<'a> {
    layout: Layout,
    vault: Option<&'a dyn Backend>,
    opts: Options,
    syncer: Syncer<'a>,
    watcher: RecommendedWatcher,
    rx: Receiver<Msg>,
    tx: Sender<Msg>,
    /// Watched directories and the identity (device, inode) they had when
    /// the watch was set: a directory removed and created again (the last
    /// sandbox of an account left and a new one came) needs a new watch.
    watched: BTreeMap<PathBuf, (u64, u64)>,
    /// directory → [(file name, account key)]
    index: HashMap<PathBuf, Vec<(OsString, String)>>,
    /// Claude refresh-lock mirroring, shared with the notify thread.
    locks: Arc<Mutex<LockMirror>>,
    /// Sandbox processes whose exit is being waited for.
    pids: BTreeSet<u32>,
    pending: BTreeMap<String, (Instant, Instant)>,
    registry_dirty: Option<Instant>,
    idle_since: Option<Instant>,
    /// airlock's own refresh of sessions ([`crate::sync::refresh`]).
    refresh: Policy,
    /// No refresh attempt of an account before this: one second after the
    /// last attempt whatever its outcome (an agent holding its lock, no
    /// credential, …), the policy's retry time after an error that kept
    /// the attempt from starting (an unreadable truth, a bad token URL).
    attempted: HashMap<String, Instant>,
    /// Accounts whose refresh request is on a worker thread, with the
    /// lock paths claimed for it.
    in_flight: HashMap<String, Vec<PathBuf>>,
    /// Refreshes asked for by the proxy: account → hash of the access
    /// token the upstream refused ([`crate::sync::demand`]).
    demanded: HashMap<String, String>,
    /// When each account was last refreshed on demand.
    demand_at: HashMap<String, Instant>,
    /// Whether the vault is unlocked for the watcher's life (see
    /// [`Daemon::unlock`]).
    unlocked: bool,
    /// Whether an unlock failure was already reported at info level.
    unlock_failed: bool,
    _lock: File,
}

impl std::fmt::Debug for Daemon<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("layout", &self.layout)
            .field("watched", &self.watched)
            .finish_non_exhaustive()
    }
}

impl<'a> Daemon<'a> {
    /// Takes the daemon lock (failing if another watcher holds it) and sets
    /// up the watches. `vault` is needed for accounts whose truth is a vault
    /// record.
    pub fn new(layout: Layout, vault: Option<&'a dyn Backend>, opts: Options) -> Result<Self> {
        layout.ensure()?;
        let lock = open_lock(&layout.daemon_lock())?;
        if lock.try_lock().is_err() {
            let pid = std::fs::read_to_string(layout.daemon_pid()).unwrap_or_default();
            return Err(Error::Other(format!(
                "another airlock sync is already running (pid {})",
                pid.trim()
            )));
        }
        let pid_path = layout.daemon_pid();
        if let Ok(mut f) = crate::fsutil::open_private(&pid_path, false) {
            let _ = write!(f, "{}", std::process::id());
        }
        let (tx, rx) = mpsc::channel();
        let fs_tx = tx.clone();
        let locks = Arc::new(Mutex::new(LockMirror::default()));
        let cb_locks = locks.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<Event>| {
            // Lock events are handled right here, on the thread that reads
            // inotify, so that a busy sync cannot delay them.
            let mut release = None;
            if let Ok(ev) = &res {
                let mut m = cb_locks.lock().unwrap_or_else(|e| e.into_inner());
                for p in &ev.paths {
                    release = m.handle(p).or(release);
                }
            }
            let _ = fs_tx.send(Msg::Fs(res));
            if let Some(n) = release {
                let _ = fs_tx.send(Msg::Release(n));
            }
        })
        .map_err(|e| Error::Other(format!("cannot start the file watcher: {e}")))?;
        let syncer = Syncer::new(vault, Some(layout.accounts_dir()));
        let mut d = Daemon {
            layout,
            vault,
            opts,
            syncer,
            watcher,
            rx,
            tx,
            watched: BTreeMap::new(),
            index: HashMap::new(),
            locks,
            pids: BTreeSet::new(),
            pending: BTreeMap::new(),
            registry_dirty: None,
            idle_since: None,
            refresh: Policy::disabled(),
            attempted: HashMap::new(),
            in_flight: HashMap::new(),
            demanded: HashMap::new(),
            demand_at: HashMap::new(),
            unlocked: false,
            unlock_failed: false,
            _lock: lock,
        };
        for dir in [d.layout.sandboxes_dir(), d.layout.kick_dir()] {
            d.watch(&dir)?;
        }
        Ok(d)
    }

    /// Lets the watcher refresh sessions itself under `policy` (the default
    /// is [`Policy::disabled`]: only the agents refresh).
    pub fn with_refresh(mut self, policy: Policy) -> Self {
        self.refresh = policy;
        self
    }

    /// When the next refresh of `key` should be tried, if any, on the
    /// clock of `now` (an overdue refresh is due at `now` itself, so that
    /// a caller comparing with the same `now` sees it due).
    fn refresh_deadline(&self, key: &str, now: Instant) -> Option<Instant> {
        let at = self.syncer.refresh_at(key, &self.refresh)?;
        let wait = Timestamp::now().duration_until(at);
        let mut t = now + Duration::try_from(wait).unwrap_or(Duration::ZERO);
        if let Some(not_before) = self.attempted.get(key) {
            t = t.max(*not_before);
        }
        // `Instant` stops while the machine sleeps: look at the wall clock
        // again at least every few minutes, so a laptop that wakes up after
        // the session's refresh time refreshes it before the agents do.
        Some(t.min(now + WALL_CLOCK_CHECK))
    }

    /// Refreshes the accounts the proxy asked for ([`crate::sync::demand`]):
    /// one at a time per account (an account whose refresh is on its way
    /// waits for it, and is then not refreshed again, its access token
    /// being new), at most once per [`crate::sync::demand::MIN_INTERVAL`].
    fn refresh_demanded(&mut self) {
        let now = Instant::now();
        let keys: Vec<String> = self.demanded.keys().cloned().collect();
        for k in keys {
            if self.in_flight.contains_key(&k) || self.in_flight.len() >= MAX_IN_FLIGHT {
                continue;
            }
            let Some(hash) = self.demanded.remove(&k) else {
                continue;
            };
            crate::sync::demand::done(&self.layout, &k, &hash);
            if !self.refresh.enabled || self.syncer.specs().all(|(kk, _)| *kk != k) {
                tracing::info!(account = %k, "a refresh was asked for an account airlock does not refresh");
                continue;
            }
            if self
                .demand_at
                .get(&k)
                .is_some_and(|t| now.duration_since(*t) < crate::sync::demand::MIN_INTERVAL)
            {
                tracing::warn!(account = %k, "the upstream refused the access token again right after a refresh: not refreshing again so soon");
                continue;
            }
            let locks = self.syncer.refresh_locks(&k);
            self.claim(&locks, true);
            match self
                .syncer
                .begin_refresh_on_demand(&k, &self.refresh, &hash)
            {
                Ok(Begun::Send(p)) => {
                    tracing::info!(account = %k, "the upstream refused the access token: refreshing");
                    self.demand_at.insert(k.clone(), now);
                    self.attempted
                        .insert(k.clone(), now + Duration::from_secs(1));
                    self.in_flight.insert(k, locks);
                    let tx = self.tx.clone();
                    std::thread::spawn(move || {
                        let _ = tx.send(Msg::Refreshed(Box::new(p.send())));
                    });
                }
                Ok(Begun::Done(o)) => self.refresh_done(&k, &locks, Ok(o)),
                Err(e) => self.refresh_done(&k, &locks, Err(e)),
            }
        }
    }

    /// Refreshes every account that is due.
    fn refresh_due(&mut self) {
        self.refresh_demanded();
        if !self.refresh.enabled {
            return;
        }
        let now = Instant::now();
        let keys: Vec<String> = self.syncer.specs().map(|(k, _)| k.clone()).collect();
        for k in keys {
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                break;
            }
            if self.in_flight.contains_key(&k)
                || self.refresh_deadline(&k, now).is_none_or(|t| t > now)
            {
                continue;
            }
            self.attempted
                .insert(k.clone(), now + Duration::from_secs(1));
            let locks = self.syncer.refresh_locks(&k);
            self.claim(&locks, true);
            match self.syncer.begin_refresh(&k, &self.refresh) {
                Ok(Begun::Send(p)) => {
                    // The round trip happens on its own thread: a slow or
                    // unreachable token server never delays a sync.
                    self.in_flight.insert(k, locks);
                    let tx = self.tx.clone();
                    std::thread::spawn(move || {
                        let _ = tx.send(Msg::Refreshed(Box::new(p.send())));
                    });
                }
                Ok(Begun::Done(o)) => self.refresh_done(&k, &locks, Ok(o)),
                Err(e) => {
                    self.attempted.insert(k.clone(), now + self.refresh.retry);
                    self.refresh_done(&k, &locks, Err(e));
                }
            }
        }
    }

    /// Writes a refresh result that came back from a worker thread.
    fn refresh_returned(&mut self, resp: RefreshResponse) {
        let k = resp.key().to_owned();
        let locks = self.in_flight.remove(&k).unwrap_or_default();
        let r = self.syncer.finish_refresh(resp, &self.refresh);
        self.refresh_done(&k, &locks, r);
    }

    /// After a refresh attempt: the locks are airlock's no more; an agent
    /// that took one while airlock tried to (`Busy`) was not mirrored
    /// meanwhile, so mirror it now; log the outcome.
    fn refresh_done(&mut self, k: &str, locks: &[PathBuf], r: Result<RefreshOutcome>) {
        self.claim(locks, false);
        self.mirror_existing(locks);
        match r {
            Ok(RefreshOutcome::NotDue) => {}
            Ok(RefreshOutcome::Busy) => {
                tracing::debug!(account = %k, "an agent is refreshing; not refreshing now")
            }
            Ok(o @ RefreshOutcome::Refreshed { .. }) => {
                tracing::info!(account = %k, outcome = %o, "refreshed")
            }
            Ok(RefreshOutcome::Failed(f)) => {
                tracing::warn!(account = %k, error = %f, "could not refresh the session; the agents will refresh it themselves")
            }
            Err(e) => tracing::warn!(account = %k, error = %e, "refresh failed"),
        }
    }

    /// Before exiting: waits for the refresh requests on their way (a
    /// refreshed session must not be lost: its old refresh token is spent).
    fn drain_refreshes(&mut self) {
        let limit = Instant::now() + self.refresh.timeout + Duration::from_secs(2);
        while !self.in_flight.is_empty() {
            match self
                .rx
                .recv_timeout(limit.saturating_duration_since(Instant::now()))
            {
                Ok(Msg::Refreshed(r)) => self.refresh_returned(*r),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    /// Mirrors those of `locks` that an agent holds right now (see
    /// [`LockMirror::handle`]).
    fn mirror_existing(&self, locks: &[PathBuf]) {
        let mut m = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        for l in locks {
            if l.is_dir() {
                m.handle(l);
            }
        }
    }

    /// Marks (or unmarks) lock paths as airlock's own, so that the lock
    /// mirror ignores them.
    fn claim(&self, locks: &[PathBuf], on: bool) {
        if locks.is_empty() {
            return;
        }
        let mut m = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        for l in locks {
            if on {
                m.own.insert(l.clone());
            } else {
                m.own.remove(l);
            }
        }
    }

    /// A handle that stops [`Daemon::run`].
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.tx.clone())
    }

    fn watch(&mut self, dir: &Path) -> Result<()> {
        let id = dir_identity(dir);
        if let Some(old) = self.watched.get(dir) {
            if Some(*old) == id {
                return Ok(());
            }
            let _ = self.watcher.unwatch(dir);
            self.watched.remove(dir);
        }
        let Some(id) = id else {
            return Err(Error::Other(format!(
                "cannot watch {}: it does not exist",
                dir.display()
            )));
        };
        self.watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| Error::Other(format!("cannot watch {}: {e}", dir.display())))?;
        self.watched.insert(dir.to_path_buf(), id);
        Ok(())
    }

    /// Unlocks the vault for the rest of the watcher's life, without a
    /// prompt (from the key cache, or a passphrase in the environment), so
    /// that sandbox writes reach vault records after the key cache expired.
    /// Tried at start and again whenever a sandbox registers (its
    /// `airlock run` has just unlocked the vault, so the cache is warm).
    fn unlock(&mut self) {
        let Some(v) = self.vault else {
            return;
        };
        if self.unlocked {
            return;
        }
        match v.unlock_unattended() {
            Ok(()) => {
                self.unlocked = true;
                self.unlock_failed = false;
                tracing::info!(
                    "vault unlocked: its key is kept while sandboxes run (`airlock lock` drops it)"
                );
            }
            Err(e) if !self.unlock_failed => {
                self.unlock_failed = true;
                tracing::info!(error = %e, "vault still locked: trying again when a sandbox registers");
            }
            Err(e) => tracing::debug!(error = %e, "vault still locked"),
        }
    }

    /// `airlock lock` ran: forget the vault key until a sandbox registers
    /// again.
    fn drop_key(&mut self) {
        if let Some(v) = self.vault {
            v.forget_key();
            if self.unlocked {
                tracing::info!("airlock lock: vault key dropped");
            }
            self.unlocked = false;
            self.unlock_failed = false;
        }
    }

    /// Re-reads the registry: adds new accounts (watching their directories
    /// and syncing them once: this is also what makes a restart lose
    /// nothing), drops accounts no sandbox uses any more.
    fn rescan(&mut self) -> Result<()> {
        if let Ok(gone) = reap_dead(&self.layout, self.vault) {
            for s in gone {
                tracing::info!(sandbox = %s, "sandbox process gone: session handed back");
            }
        }
        let entries = list_sandboxes(&self.layout)?;
        let mut specs = BTreeMap::new();
        for pid in entries.iter().filter_map(|e| e.pid) {
            if self.pids.insert(pid) {
                watch_exit(pid, self.tx.clone());
            }
        }
        for e in entries {
            specs.insert(e.spec.key(), e.spec);
        }
        let old: Vec<String> = self.syncer.specs().map(|(k, _)| k.clone()).collect();
        for k in old {
            if !specs.contains_key(&k) {
                self.syncer.remove(&k);
                self.pending.remove(&k);
                tracing::info!(account = %k, "no sandbox uses this account any more");
            }
        }
        let mut fresh = Vec::new();
        for (k, spec) in specs {
            let known = self.syncer.specs().any(|(kk, s)| *kk == k && *s == spec);
            if !known {
                self.syncer.add(spec)?;
                fresh.push(k);
            }
        }
        self.rebuild_index()?;
        if !fresh.is_empty() {
            self.unlock();
        }
        for k in fresh {
            self.sync_logged(&k);
        }
        let empty = self.syncer.specs().next().is_none();
        self.idle_since = match (empty, self.idle_since) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
        Ok(())
    }

    fn rebuild_index(&mut self) -> Result<()> {
        let mut index: HashMap<PathBuf, Vec<(OsString, String)>> = HashMap::new();
        for (k, spec) in self.syncer.specs() {
            let kind = spec.kind()?;
            index
                .entry(spec.shared_dir.clone())
                .or_default()
                .push((kind.file_name().into(), k.clone()));
            let names = spec.truth.watch_names();
            for d in spec.truth.watch_dirs() {
                for n in &names {
                    index
                        .entry(d.clone())
                        .or_default()
                        .push((n.clone(), k.clone()));
                }
            }
        }
        let mut lock_peers = HashMap::new();
        for (_, spec) in self.syncer.specs() {
            if let (AgentKind::Claude, Truth::HostFile { path }) = (spec.kind()?, &spec.truth)
                && let Some(host_dir) = path.parent()
            {
                let a = spec.shared_dir.join(CLAUDE_REFRESH_LOCK);
                let b = host_dir.join(CLAUDE_REFRESH_LOCK);
                lock_peers.insert(a.clone(), b.clone());
                lock_peers.insert(b, a);
            }
        }
        let existing: Vec<PathBuf> = lock_peers.keys().cloned().collect();
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).peers = lock_peers;
        let want: BTreeSet<PathBuf> = index
            .keys()
            .cloned()
            .chain([self.layout.sandboxes_dir(), self.layout.kick_dir()])
            .collect();
        let stale: Vec<PathBuf> = self
            .watched
            .keys()
            .filter(|d| !want.contains(*d))
            .cloned()
            .collect();
        for d in stale {
            let _ = self.watcher.unwatch(&d);
            self.watched.remove(&d);
        }
        for d in &want {
            if let Err(e) = self.watch(d) {
                tracing::warn!(error = %e, "not watching a directory");
            }
        }
        // A refresh already under way when the watcher starts (or when the
        // account is added) is mirrored too: after the directories are
        // watched, so that its release cannot fall between the two.
        self.mirror_existing(&existing);
        self.index = index;
        Ok(())
    }

    fn sync_logged(&mut self, key: &str) {
        match self.syncer.sync(key) {
            Ok(Outcome::Unchanged | Outcome::OwnWrite) => {
                tracing::debug!(account = %key, "in step");
            }
            Ok(o) => tracing::info!(account = %key, outcome = %o, "synced"),
            Err(e) => tracing::warn!(account = %key, error = %e, "sync failed"),
        }
    }

    fn route(&mut self, ev: Event) {
        if ev.need_rescan() {
            tracing::warn!("the kernel dropped events: resyncing everything");
            self.registry_dirty = Some(Instant::now());
            let keys: Vec<String> = self.syncer.specs().map(|(k, _)| k.clone()).collect();
            for k in keys {
                self.mark(k);
            }
            return;
        }
        let relevant = matches!(
            ev.kind,
            EventKind::Create(_)
                | EventKind::Modify(_)
                | EventKind::Remove(_)
                | EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Any
        );
        if !relevant {
            return;
        }
        for p in &ev.paths {
            if matches!(ev.kind, EventKind::Remove(_)) && self.watched.contains_key(p) {
                // A watched directory itself went away (the last sandbox of
                // an account left): its watch is gone; if the directory
                // comes back (a new sandbox), the rescan watches it again.
                self.watched.remove(p);
                self.registry_dirty.get_or_insert_with(Instant::now);
                continue;
            }
            if p.file_name().is_some_and(|n| n == CLAUDE_REFRESH_LOCK) {
                // handled on the notify thread
                continue;
            }
            let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
                continue;
            };
            match self.classify(dir, name) {
                Some((Target::Registry, _)) => {
                    self.registry_dirty.get_or_insert_with(Instant::now);
                }
                Some((Target::Lock, _)) => self.drop_key(),
                Some((Target::Demand, keys)) => {
                    for k in keys {
                        if let Some(h) = crate::sync::demand::read(&self.layout, &k) {
                            self.demanded.insert(k, h);
                        }
                    }
                }
                Some((Target::Account, keys)) => {
                    for k in keys {
                        self.mark(k);
                    }
                }
                None => {}
            }
        }
    }

    fn classify(&self, dir: &Path, name: &std::ffi::OsStr) -> Option<(Target, Vec<String>)> {
        if dir == self.layout.sandboxes_dir() {
            let n = name.to_string_lossy();
            return (n.ends_with(".json") && !n.starts_with('.'))
                .then(|| (Target::Registry, Vec::new()));
        }
        if dir == self.layout.kick_dir() {
            if name == LOCK_SIGNAL {
                return Some((Target::Lock, Vec::new()));
            }
            if let Some(k) = name.to_str().and_then(crate::sync::demand::key_of) {
                return Some((Target::Demand, vec![k.to_owned()]));
            }
            if name.to_string_lossy().starts_with('.') {
                // a temporary file of an atomic write (no account key
                // starts with a dot)
                return None;
            }
            let k = name.to_string_lossy().into_owned();
            return Some((Target::Account, vec![k]));
        }
        let keys: Vec<String> = self
            .index
            .get(dir)?
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, k)| k.clone())
            .collect();
        (!keys.is_empty()).then_some((Target::Account, keys))
    }

    fn mark(&mut self, key: String) {
        let now = Instant::now();
        let e = self.pending.entry(key).or_insert((now, now));
        e.1 = now;
    }

    fn next_deadline(&self) -> Option<Instant> {
        let o = self.opts;
        let mut best: Option<Instant> = None;
        let mut consider = |t: Instant| best = Some(best.map_or(t, |b| b.min(t)));
        for (first, last) in self.pending.values() {
            consider((*last + o.debounce).min(*first + o.max_delay));
        }
        if let Some(t) = self.registry_dirty {
            consider(t + o.debounce);
        }
        if self
            .demanded
            .keys()
            .any(|k| !self.in_flight.contains_key(k))
        {
            consider(Instant::now());
        }
        if let (Some(t), Some(l)) = (self.idle_since, o.linger) {
            consider(t + l);
        }
        if self.refresh.enabled {
            let now = Instant::now();
            for (k, _) in self.syncer.specs() {
                if self.in_flight.contains_key(k) {
                    continue;
                }
                if let Some(t) = self.refresh_deadline(k, now) {
                    consider(t);
                }
            }
        }
        best
    }

    fn process_due(&mut self) -> Result<()> {
        let now = Instant::now();
        let o = self.opts;
        if self.registry_dirty.is_some_and(|t| t + o.debounce <= now) {
            self.registry_dirty = None;
            self.rescan()?;
        }
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (first, last))| (*last + o.debounce).min(*first + o.max_delay) <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.pending.remove(&k);
            self.sync_logged(&k);
        }
        self.refresh_due();
        Ok(())
    }

    /// Runs until stopped, or until no sandbox has been registered for the
    /// linger time. Reconciles every registered account first.
    pub fn run(mut self) -> Result<()> {
        // For `airlock run`, which waits for a due session's refresh only
        // when this watcher does refresh (`sync::await_fresh`).
        let _ = crate::fsutil::write_private(
            &self.layout.daemon_refresh(),
            if self.refresh.enabled {
                b"on\n"
            } else {
                b"off\n"
            },
        );
        self.unlock();
        self.rescan()?;
        // refresh demands written before the kick directory was watched
        if let Ok(rd) = std::fs::read_dir(self.layout.kick_dir()) {
            for e in rd.flatten() {
                let name = e.file_name();
                if let Some(k) = name.to_str().and_then(crate::sync::demand::key_of)
                    && let Some(h) = crate::sync::demand::read(&self.layout, k)
                {
                    self.demanded.insert(k.to_owned(), h);
                }
            }
        }
        // Accounts that were already known (none at start) are synced by
        // rescan; a restart therefore picks up anything written while no
        // watcher ran.
        tracing::info!(accounts = self.syncer.specs().count(), "watching");
        let mut release_upto = 0u64;
        loop {
            // at least every PRESENCE_CHECK: whether the state directory is still there
            let t = self
                .next_deadline()
                .map_or(PRESENCE_CHECK, |t| {
                    t.saturating_duration_since(Instant::now())
                })
                .min(PRESENCE_CHECK);
            let msg = self.rx.recv_timeout(t);
            if !self.layout.present() {
                // removed (by the user, or a test that is done): go away
                // rather than make it again
                tracing::info!("the state directory is gone: exiting");
                break;
            }
            match msg {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(Msg::Exited) => {
                    self.registry_dirty.get_or_insert_with(Instant::now);
                }
                Ok(Msg::Release(n)) => release_upto = release_upto.max(n),
                Ok(Msg::Refreshed(r)) => self.refresh_returned(*r),
                Ok(Msg::Fs(Ok(ev))) => {
                    self.route(ev);
                    // Drain what is already queued before sleeping again.
                    let mut stop = false;
                    while let Ok(m) = self.rx.try_recv() {
                        match m {
                            Msg::Stop => {
                                stop = true;
                                break;
                            }
                            Msg::Refreshed(r) => self.refresh_returned(*r),
                            Msg::Exited => {
                                self.registry_dirty.get_or_insert_with(Instant::now);
                            }
                            Msg::Release(n) => release_upto = release_upto.max(n),
                            Msg::Fs(Ok(ev)) => self.route(ev),
                            Msg::Fs(Err(e)) => tracing::warn!(error = %e, "watch error"),
                        }
                    }
                    if stop {
                        break;
                    }
                }
                Ok(Msg::Fs(Err(e))) => tracing::warn!(error = %e, "watch error"),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.process_due()?;
            if self.pending.is_empty() && release_upto > 0 {
                self.locks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .release(release_upto);
            }
            if let (Some(t), Some(l)) = (self.idle_since, self.opts.linger)
                && t.elapsed() >= l
                && list_sandboxes(&self.layout)?.is_empty()
            {
                tracing::info!("no sandbox left: exiting");
                break;
            }
        }
        self.drain_refreshes();
        Ok(())
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let mirrors =
            std::mem::take(&mut self.locks.lock().unwrap_or_else(|e| e.into_inner()).mirrors);
        for m in mirrors {
            let _ = std::fs::remove_dir(m);
        }
        let _ = std::fs::remove_file(self.layout.daemon_pid());
        let _ = std::fs::remove_file(self.layout.daemon_refresh());
    }
}

/// How often the watcher looks whether its state directory still exists.
const PRESENCE_CHECK: Duration = Duration::from_secs(1);

/// (device, inode) of a directory, or `None` when it does not exist.
fn dir_identity(dir: &Path) -> Option<(u64, u64)> {
    let md = std::fs::metadata(dir).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((md.dev(), md.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = md;
        Some((0, 0))
    }
}

/// Tells the daemon when process `pid` exits, without polling: a small
/// thread blocks in `poll(2)` on a pidfd (Linux 5.3+). Elsewhere, or when
/// pidfds are unavailable, dead sandboxes are found at the next registry
/// change instead.
fn watch_exit(pid: u32, tx: Sender<Msg>) {
    #[cfg(target_os = "linux")]
    {
        let Ok(p) = libc::pid_t::try_from(pid) else {
            return;
        };
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p, 0) };
        let Ok(fd) = i32::try_from(fd) else {
            return;
        };
        if fd < 0 {
            return;
        }
        // SAFETY: fd was just returned by pidfd_open and is owned by nobody else.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let spawned = std::thread::Builder::new()
            .name(format!("pid-{pid}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                use std::os::fd::AsRawFd;
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                loop {
                    // SAFETY: one valid pollfd, infinite timeout.
                    let r = unsafe { libc::poll(&mut pfd, 1, -1) };
                    if r > 0
                        || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                    {
                        break;
                    }
                }
                let _ = tx.send(Msg::Exited);
            });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "cannot wait for a sandbox process");
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (pid, tx);
    }
}

/// Calls `on_lock` on a watcher thread whenever `airlock lock` signals
/// ([`crate::sync::signal_lock`]); for processes that hold the vault key
/// but no [`Daemon`] (the `-d` waiter). Keep the returned watcher alive.
pub fn on_lock_signal(
    layout: &Layout,
    on_lock: impl Fn() + Send + 'static,
) -> Result<RecommendedWatcher> {
    layout.ensure()?;
    let mut w = notify::recommended_watcher(move |res: notify::Result<Event>| {
        if let Ok(ev) = res
            && matches!(ev.kind, EventKind::Create(_) | EventKind::Modify(_))
            && ev
                .paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| n == LOCK_SIGNAL))
        {
            on_lock();
        }
    })
    .map_err(|e| Error::Other(format!("cannot start the file watcher: {e}")))?;
    let dir = layout.kick_dir();
    w.watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| Error::Other(format!("cannot watch {}: {e}", dir.display())))?;
    Ok(w)
}

/// Runs a watcher on `layout` in this thread (what `airlock sync` does).
pub fn run(
    layout: Layout,
    vault: Option<&dyn Backend>,
    opts: Options,
    refresh: Policy,
) -> Result<()> {
    Daemon::new(layout, vault, opts)?
        .with_refresh(refresh)
        .run()
}
