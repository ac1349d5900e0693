//! Which sandboxes use which synced account: files under `<state>/sync/`.
//!
//! | path | what |
//! |---|---|
//! | `<state>/sync/sandboxes/<sandbox>.json` | one registered sandbox ([`SandboxEntry`], no secret) |
//! | `<state>/sync/accounts/<agent>-<account>.json` | last sync of an account ([`SyncStatus`]) |
//! | `<state>/sync/kick/<agent>-<account>` | touched when a vault record changed: re-read the truth |
//! | `<state>/sync/registry.lock` | `flock` held while registering or unregistering |
//! | `<state>/sync/daemon.lock`, `daemon.pid`, `daemon.log` | the watcher process |
//! | `<runtime>/sync/<agent>-<account>/` | the shared directory (tmpfs, 0700) |

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::paths::Paths;
use crate::sync::engine::{AccountSpec, Outcome, SyncStatus, Syncer, account_key, read_status};
use crate::sync::truth::Truth;
use crate::vault::{Backend, Handover, validate_name};

/// Where sync keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `<state>/sync`: registrations, status, daemon files.
    pub state: PathBuf,
    /// `<runtime>/sync`: the shared directories (secrets; should be a tmpfs).
    pub runtime: PathBuf,
}

impl Layout {
    /// The layout under airlock's state and runtime directories.
    pub fn new(paths: &Paths) -> Self {
        Layout {
            state: paths.state_dir.join("sync"),
            runtime: paths.runtime_dir.join("sync"),
        }
    }

    /// Registered sandboxes.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.state.join("sandboxes")
    }
    /// Per-account status files.
    pub fn accounts_dir(&self) -> PathBuf {
        self.state.join("accounts")
    }
    /// Truth-changed markers.
    pub fn kick_dir(&self) -> PathBuf {
        self.state.join("kick")
    }
    /// Held by the running watcher.
    pub fn daemon_lock(&self) -> PathBuf {
        self.state.join("daemon.lock")
    }
    /// The running watcher's pid.
    pub fn daemon_pid(&self) -> PathBuf {
        self.state.join("daemon.pid")
    }
    /// The background watcher's log.
    pub fn daemon_log(&self) -> PathBuf {
        self.state.join("daemon.log")
    }
    /// `on` or `off`: whether the running watcher refreshes sessions itself.
    pub fn daemon_refresh(&self) -> PathBuf {
        self.state.join("daemon.refresh")
    }
    fn registry_lock(&self) -> PathBuf {
        self.state.join("registry.lock")
    }
    /// The shared directory of an account.
    pub fn shared_dir(&self, agent: &str, account: &str) -> PathBuf {
        self.runtime.join(account_key(agent, account))
    }

    /// Whether the state directory exists: a background process whose
    /// directory was removed exits rather than make it again.
    pub fn present(&self) -> bool {
        self.state.is_dir()
    }

    /// Creates the private directories.
    pub fn ensure(&self) -> Result<()> {
        for d in [
            &self.state,
            &self.sandboxes_dir(),
            &self.accounts_dir(),
            &self.kick_dir(),
            &self.runtime,
        ] {
            fsutil::ensure_private_dir(d)?;
        }
        Ok(())
    }
}

/// A sandbox asking for its session to be synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The sandbox's id (container name): 1–64 of `a-z 0-9 . _ -`.
    pub sandbox: String,
    /// `claude`, `codex` or `gemini`.
    pub agent: String,
    /// The account name (sandboxes with the same agent and account share a directory).
    pub account: String,
    /// Where the session came from and must return to.
    pub truth: Truth,
    /// The process whose exit means the sandbox is gone (`airlock run`'s pid).
    pub pid: Option<u32>,
    /// Owner (uid, gid) to give the shared directory and file, so the
    /// container's user can use them; `None` keeps ours.
    pub owner: Option<(u32, u32)>,
}

/// One registered sandbox (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxEntry {
    /// The sandbox's id.
    pub sandbox: String,
    /// The account it uses.
    pub spec: AccountSpec,
    /// The process whose exit means the sandbox is gone.
    pub pid: Option<u32>,
    /// When it registered.
    pub registered_at: Timestamp,
}

fn entry_path(layout: &Layout, sandbox: &str) -> PathBuf {
    layout.sandboxes_dir().join(format!("{sandbox}.json"))
}

/// Registers a sandbox: creates (or reuses) its account's shared directory,
/// brings it in step with the truth (seeding it on first use), and records
/// the sandbox. Returns the shared directory to bind-mount **as a directory**
/// at the agent's config directory in the container.
///
/// Fails when the truth holds no valid session (nothing to sync).
pub fn register_sandbox(
    layout: &Layout,
    vault: Option<&dyn Backend>,
    reg: Registration,
) -> Result<PathBuf> {
    register_sandbox_mode(layout, vault, reg, false)
}

/// [`register_sandbox`] in sync mode (`broker = false`) or broker mode
/// (`true`, [`crate::sync::broker`]: the shared directory gets the session
/// without its refresh token). All sandboxes of an account use one mode.
pub fn register_sandbox_mode(
    layout: &Layout,
    vault: Option<&dyn Backend>,
    reg: Registration,
    broker: bool,
) -> Result<PathBuf> {
    validate_name("sandbox", &reg.sandbox)?;
    validate_name("account", &reg.account)?;
    let kind = crate::sync::AgentKind::from_name(&reg.agent)?;
    layout.ensure()?;
    let _g = FileLock::exclusive(&layout.registry_lock())?;
    let dir = layout.shared_dir(&reg.agent, &reg.account);
    crate::sync::broker::check_mode(layout, vault, &reg, broker)?;
    if fs::symlink_metadata(&dir).is_err() {
        fsutil::ensure_private_dir(&dir)?;
    }
    check_shared_dir(&dir, reg.owner.map(|o| o.0))?;
    let spec = AccountSpec {
        agent: reg.agent.clone(),
        account: reg.account.clone(),
        truth: reg.truth.clone(),
        shared_dir: dir.clone(),
        broker,
    };
    let mut s = Syncer::new(vault, Some(layout.accounts_dir()));
    let key = s.add(spec.clone())?;
    let outcome = s.sync(&key)?;
    tracing::info!(account = %key, sandbox = %reg.sandbox, %outcome, "registered");
    if kind == crate::sync::AgentKind::Codex
        && let Some(Ok(p)) =
            crate::sync::credential::read_shared_bytes(&dir.join(kind.file_name()))?
                .map(|b| crate::sync::credential::parse(kind, &b))
        && p.expiry <= Timestamp::now() + jiff::SignedDuration::from_mins(5)
    {
        // docs/rotation.md §5, residual 1: Codex does not lock around its
        // refresh request, and every sandbox starting now will refresh.
        tracing::warn!(account = %key, "this Codex session is due for refresh: Codex sandboxes starting together may refresh at once and invalidate each other; start one first and let it refresh");
    }
    let file = dir.join(kind.file_name());
    if !file.exists() {
        return Err(Error::invalid(
            format!(
                "{} holds no valid {} session to share",
                reg.truth, reg.agent
            ),
            "log in again (or store the session with airlock), then retry",
        ));
    }
    #[cfg(unix)]
    if let Some((uid, gid)) = reg.owner {
        for p in [&dir, &file] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))
                .map_err(|e| Error::io("change the owner of", p, e))?;
        }
    }
    let entry = SandboxEntry {
        sandbox: reg.sandbox.clone(),
        spec,
        pid: reg.pid,
        registered_at: Timestamp::now(),
    };
    let json = serde_json::to_vec_pretty(&entry).map_err(|e| Error::Other(e.to_string()))?;
    fsutil::write_atomic(&entry_path(layout, &reg.sandbox), &json, 0o600)?;
    Ok(dir)
}

/// Hands a registered sandbox to another process: `pid`'s exit now means
/// the sandbox is gone (the waiter of `airlock run -d` takes over from
/// `airlock run`). Does nothing for a sandbox that is not registered.
pub fn set_pid(layout: &Layout, sandbox: &str, pid: Option<u32>) -> Result<()> {
    validate_name("sandbox", sandbox)?;
    if !layout.present() {
        return Ok(());
    }
    layout.ensure()?;
    let _g = FileLock::exclusive(&layout.registry_lock())?;
    let path = entry_path(layout, sandbox);
    let Some(mut entry) = read_entry(&path) else {
        return Ok(());
    };
    entry.pid = pid;
    let json = serde_json::to_vec_pretty(&entry).map_err(|e| Error::Other(e.to_string()))?;
    fsutil::write_atomic(&path, &json, 0o600)
}

/// A shared directory must be a real directory (not a link), private
/// (no group/other bits), and owned by us or by the sandbox user we gave
/// it to.
fn check_shared_dir(dir: &Path, owner: Option<u32>) -> Result<()> {
    let md = fs::symlink_metadata(dir).map_err(|e| Error::io("inspect", dir, e))?;
    if !md.file_type().is_dir() {
        return Err(Error::unsafe_path(
            dir,
            "it is not a directory (or is a symbolic link)",
            "remove it; airlock recreates it",
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = md.uid();
        if uid != fsutil::euid() && Some(uid) != owner {
            return Err(Error::unsafe_path(
                dir,
                format!("it is owned by uid {uid}, neither airlock's nor the sandbox user's"),
                "remove it; airlock recreates it",
            ));
        }
        if md.mode() & 0o077 != 0 {
            return Err(Error::unsafe_path(
                dir,
                format!("its permissions are {:04o}", md.mode() & 0o777),
                format!("run: chmod 700 '{}'", dir.display()),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = owner;
    Ok(())
}

/// Unregisters a sandbox that exited: hands its account's latest credential
/// back to the truth, then, if no other sandbox uses the account, removes
/// the shared directory. Returns what the hand-back did (`None` when the
/// sandbox was not registered).
///
/// When the hand-back fails, the shared directory is kept (nothing is lost:
/// the next registration or the watcher syncs it) and the error returned.
pub fn unregister(
    layout: &Layout,
    vault: Option<&dyn Backend>,
    sandbox: &str,
) -> Result<Option<Outcome>> {
    validate_name("sandbox", sandbox)?;
    if !layout.present() {
        // nothing is registered where there is no registry
        return Ok(None);
    }
    layout.ensure()?;
    let _g = FileLock::exclusive(&layout.registry_lock())?;
    unregister_locked(layout, vault, sandbox)
}

fn unregister_locked(
    layout: &Layout,
    vault: Option<&dyn Backend>,
    sandbox: &str,
) -> Result<Option<Outcome>> {
    let path = entry_path(layout, sandbox);
    let Some(entry) = read_entry(&path) else {
        return Ok(None);
    };
    let mut s = Syncer::new(vault, Some(layout.accounts_dir()));
    let key = s.add(entry.spec.clone())?;
    let handed = s.sync(&key);
    fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
    let outcome = handed?;
    tracing::info!(account = %key, %sandbox, %outcome, "unregistered");
    let others = list_sandboxes(layout)?.iter().any(|e| e.spec.key() == key);
    if !others {
        remove_shared_dir(&entry.spec.shared_dir)?;
        if entry.spec.broker {
            crate::sync::broker::release(&entry.spec, vault)?;
        }
    }
    Ok(Some(outcome))
}

/// Removes a shared directory. A watcher may be writing into it at this
/// very moment (a temp file, the agent lock), so a "not empty" is retried.
fn remove_shared_dir(dir: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(Error::io("remove", dir, e)),
        }
    }
}

/// Unregisters a sandbox when dropped (hand-back included), so that every
/// exit path of `airlock run` (errors, panics unwinding) hands the session
/// back. Errors are logged, never raised from `drop`.
#[derive(Debug)]
pub struct Guard<'a> {
    layout: Layout,
    vault: Option<&'a dyn Backend>,
    sandbox: String,
    armed: bool,
}

impl<'a> Guard<'a> {
    /// A guard for a registered sandbox.
    pub fn new(layout: &Layout, vault: Option<&'a dyn Backend>, sandbox: &str) -> Self {
        Guard {
            layout: layout.clone(),
            vault,
            sandbox: sandbox.to_owned(),
            armed: true,
        }
    }

    /// Leaves the registration in place for another process (the waiter
    /// of `airlock run -d`, see [`set_pid`]) to finish.
    pub fn disarm(mut self) {
        self.armed = false;
    }

    /// Unregisters now and reports the result.
    pub fn finish(mut self) -> Result<Option<Outcome>> {
        self.armed = false;
        unregister(&self.layout, self.vault, &self.sandbox)
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = unregister(&self.layout, self.vault, &self.sandbox)
        {
            tracing::warn!(sandbox = %self.sandbox, error = %e, "could not hand the session back");
        }
    }
}

/// Unregisters sandboxes whose process is gone (crashed `airlock run`).
/// Returns their ids.
pub fn reap_dead(layout: &Layout, vault: Option<&dyn Backend>) -> Result<Vec<String>> {
    let _g = FileLock::exclusive(&layout.registry_lock())?;
    let mut gone = Vec::new();
    for e in list_sandboxes(layout)? {
        if e.pid.is_some_and(|p| !process_alive(p)) {
            match unregister_locked(layout, vault, &e.sandbox) {
                Ok(_) => gone.push(e.sandbox),
                Err(err) => {
                    tracing::warn!(sandbox = %e.sandbox, error = %err, "could not hand back a dead sandbox's session")
                }
            }
        }
    }
    Ok(gone)
}

fn read_entry(path: &Path) -> Option<SandboxEntry> {
    let b = fs::read(path).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Every registered sandbox, sorted by id. Unreadable entries are skipped.
pub fn list_sandboxes(layout: &Layout) -> Result<Vec<SandboxEntry>> {
    let dir = layout.sandboxes_dir();
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", &dir, e)),
    };
    let mut out: Vec<SandboxEntry> = rd
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.ends_with(".json") && !n.starts_with('.')
        })
        .filter_map(|e| read_entry(&e.path()))
        .collect();
    out.sort_by(|a, b| a.sandbox.cmp(&b.sandbox));
    Ok(out)
}

/// What `airlock status` shows about sync (no secret): whether the watcher
/// runs, the registered sandboxes, and each used account's last sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// A watcher holds the daemon lock.
    pub watcher_running: bool,
    /// Registered sandboxes.
    pub sandboxes: Vec<SandboxEntry>,
    /// One entry per account in use.
    pub accounts: Vec<SyncStatus>,
}

/// Builds the [`Report`] from the state directory.
pub fn report(layout: &Layout) -> Result<Report> {
    let sandboxes = list_sandboxes(layout)?;
    let mut accounts: Vec<SyncStatus> = Vec::new();
    for e in &sandboxes {
        let key = e.spec.key();
        if accounts
            .iter()
            .any(|s| account_key(&s.agent, &s.account) == key)
        {
            continue;
        }
        accounts.push(
            read_status(&layout.accounts_dir(), &key).unwrap_or_else(|| SyncStatus {
                agent: e.spec.agent.clone(),
                account: e.spec.account.clone(),
                truth: e.spec.truth.to_string(),
                ..SyncStatus::default()
            }),
        );
    }
    Ok(Report {
        watcher_running: daemon_running(layout),
        sandboxes,
        accounts,
    })
}

/// Tells a running watcher that an account's truth changed (for example
/// after `airlock add` replaced a vault record): it re-reads the truth and
/// hands a newer session to the account's sandboxes.
pub fn kick(layout: &Layout, agent: &str, account: &str) -> Result<()> {
    layout.ensure()?;
    let p = layout.kick_dir().join(account_key(agent, account));
    fsutil::write_private(&p, Timestamp::now().to_string().as_bytes())
        .map_err(|e| Error::io("write", &p, e))
}

/// The marker `airlock lock` writes in the kick directory: running
/// watchers and waiters drop the vault key they hold.
pub const LOCK_SIGNAL: &str = ".vault-locked";

/// Tells running watchers and `-d` waiters that the vault was locked
/// (`airlock lock`): they drop the vault key they hold. Does nothing when
/// sync was never used here (no kick directory).
pub fn signal_lock(layout: &Layout) -> Result<bool> {
    let dir = layout.kick_dir();
    if !dir.is_dir() {
        return Ok(false);
    }
    let p = dir.join(LOCK_SIGNAL);
    fsutil::write_private(&p, Timestamp::now().to_string().as_bytes())
        .map_err(|e| Error::io("write", &p, e))?;
    Ok(true)
}

/// Whether a watcher holds the daemon lock.
pub fn daemon_running(layout: &Layout) -> bool {
    match open_lock(&layout.daemon_lock()) {
        Ok(f) => match f.try_lock() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(_) => true,
        },
        Err(_) => false,
    }
}

pub(crate) fn open_lock(path: &Path) -> Result<File> {
    FileLock::open(path)
}

/// Starts `exe sync` in the background unless a watcher is running. The
/// child inherits the environment (never argv), except the vault
/// passphrase unless `handover` says it needs it (from
/// [`Backend::hand_over`], called just before), and logs to
/// `<state>/sync/daemon.log`. Returns whether one was started. Two callers
/// racing start two processes; the second exits at once (the daemon lock).
pub fn ensure_daemon(layout: &Layout, exe: &Path, handover: &Handover) -> Result<bool> {
    layout.ensure()?;
    if daemon_running(layout) {
        return Ok(false);
    }
    let log_path = layout.daemon_log();
    let log = fsutil::open_private(&log_path, true).map_err(|e| Error::io("open", &log_path, e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::io("open", &log_path, e))?;
    let mut cmd = std::process::Command::new(exe);
    if !handover.passes_passphrase() {
        // It takes the key from the key cache (or needs none).
        cmd.env_remove(crate::vault::file::PASSPHRASE_ENV);
    }
    cmd.args(["sync", "--foreground", "-v"])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own process group: a Ctrl-C in the terminal of `airlock run`
        // must not kill the watcher other sandboxes rely on.
        cmd.process_group(0);
    }
    cmd.spawn().map_err(|e| Error::io("start", exe, e))?;
    Ok(true)
}

/// Whether process `pid` exists.
pub fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(p) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: kill with signal 0 only checks for existence/permission.
        let r = unsafe { libc::kill(p, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// What [`await_fresh`] found for one synced account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Not due for a refresh: the agents will not refresh it soon.
    Fresh,
    /// It was due, and the watcher (or an agent) refreshed it meanwhile.
    Refreshed,
    /// The watcher tried and failed (its reason, no secret).
    Failed(String),
    /// Still due after the timeout (no watcher refreshing it?).
    TimedOut,
    /// The running watcher does not refresh sessions itself (it was started
    /// with pre-refresh off): nothing to wait for.
    NotRefreshing,
}

/// Waits until every synced session of the registrations `names` is fresh:
/// not within `policy.lead` of its expiry, or refreshed since the call.
///
/// `airlock run` calls it before starting the container: sandboxes that
/// start with a session already in (or past) its refresh window would all
/// refresh it at once (Codex does not lock around its refresh request),
/// and the watcher's own refresh of a due session takes one round trip to
/// the token server. Returns at once when `policy` is disabled or the
/// session is fresh; returns one entry per account (`<agent>-<account>`).
pub fn await_fresh(
    layout: &Layout,
    names: &[String],
    policy: &crate::sync::refresh::Policy,
    timeout: std::time::Duration,
) -> Vec<(String, Freshness)> {
    use crate::sync::credential::{self, AgentKind};
    let mut out: Vec<(String, Freshness)> = Vec::new();
    if !policy.enabled {
        return out;
    }
    let lead = jiff::SignedDuration::try_from(policy.lead).unwrap_or_default();
    let started = std::time::Instant::now();
    let since = Timestamp::now();
    for name in names {
        let Some(e) = read_entry(&entry_path(layout, name)) else {
            continue;
        };
        let key = e.spec.key();
        if out.iter().any(|(k, _)| *k == key)
            || crate::agents::refresh::endpoint(&e.spec.agent).is_none()
        {
            continue;
        }
        let Ok(kind) = AgentKind::from_name(&e.spec.agent) else {
            continue;
        };
        let file = e.spec.shared_dir.join(kind.file_name());
        let read = || {
            credential::read_shared_bytes(&file)
                .ok()
                .flatten()
                .and_then(|b| {
                    credential::parse(kind, &b).ok().or_else(|| {
                        e.spec
                            .broker
                            .then(|| crate::sync::broker::parse_shared(kind, &b))
                            .flatten()
                    })
                })
        };
        let due = |p: &credential::Parsed| {
            p.expiry
                .checked_sub(lead)
                .is_ok_and(|t| t <= Timestamp::now())
        };
        let Some(first) = read() else {
            continue;
        };
        if !due(&first) {
            out.push((key, Freshness::Fresh));
            continue;
        }
        if fs::read_to_string(layout.daemon_refresh()).is_ok_and(|s| s.trim() == "off") {
            out.push((key, Freshness::NotRefreshing));
            continue;
        }
        tracing::info!(account = %key, "the session is due for a refresh: waiting for the watcher");
        let result = loop {
            if let Some(p) = read() {
                if p.fingerprint != first.fingerprint {
                    break Freshness::Refreshed;
                }
                if !due(&p) {
                    break Freshness::Fresh;
                }
            }
            if let Some(s) = read_status(&layout.accounts_dir(), &key)
                && let (Some(err), Some(at)) = (s.refresh_error, s.refresh_failed_at)
                && at >= since
            {
                break Freshness::Failed(err);
            }
            if started.elapsed() >= timeout {
                break Freshness::TimedOut;
            }
            if fs::read_to_string(layout.daemon_refresh()).is_ok_and(|s| s.trim() == "off") {
                break Freshness::NotRefreshing;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        out.push((key, result));
    }
    out
}
