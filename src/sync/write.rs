//! Writing credential files the way their owners expect, and the agents'
//! own write locks.
//!
//! [`write_preserving`] replaces a file atomically (temp file in the same
//! directory, `fsync`, `rename`, `fsync` of the directory) while keeping
//! what users rely on: the path (a symbolic link stays a link, its target
//! is written), the mode, and the owner and group (the temp file is
//! `fchown`ed when they differ from ours and we are allowed to). The inode
//! changes, on purpose: see `docs/rotation.md` §4.
//!
//! [`AgentLock`] takes the lock an agent itself takes before changing its
//! credential store, so that airlock's compare-and-set cannot interleave
//! with the agent's own read-modify-write:
//!
//! * Claude Code: the `proper-lockfile` mkdir lock `.storage-write.lock` in
//!   the config directory (stale after 15 s);
//! * Codex CLI: `flock` on `auth.lock` in `CODEX_HOME`;
//! * Gemini CLI: takes no lock, so neither do we.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::sync::credential::AgentKind;

/// How long to wait for an agent's lock before writing anyway (with a
/// warning): losing an update is worse than a lock the agent holds far
/// longer than any write takes.
const LOCK_WAIT: Duration = Duration::from_secs(3);
/// `proper-lockfile` considers a lock stale when its mtime is this old (Claude uses 15 s).
const CLAUDE_STALE: Duration = Duration::from_secs(15);

/// The file that is really written for `path`: the target of a symbolic
/// link, or `path` itself.
pub fn real_path(path: &Path) -> Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|e| Error::io("resolve", path, e))
        }
        _ => Ok(path.to_path_buf()),
    }
}

/// Atomically replaces `path` with `bytes`, keeping its mode, owner and
/// group (a new file gets mode 0600 and its directory's owner, when we may
/// give it away). Follows a symbolic link at `path`.
pub fn write_preserving(path: &Path, bytes: &[u8]) -> Result<()> {
    replace(&real_path(path)?, bytes)
}

/// [`write_preserving`] for a file in a directory a sandbox can write (an
/// account's shared directory): a symbolic link at `path` is replaced by
/// the file, never followed, so a sandbox cannot point airlock's write at
/// a host file.
pub fn write_shared(path: &Path, bytes: &[u8]) -> Result<()> {
    replace(path, bytes)
}

fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let path = path.to_path_buf();
    // the file's own metadata: never a link's target's
    let old = fs::symlink_metadata(&path)
        .ok()
        .filter(|m| m.file_type().is_file());
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = fsutil::temp_name(&path);
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let mut f = opts.open(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        // A new file takes its directory's owner (a shared directory belongs
        // to the sandbox user) and mode 0600.
        let owner_md = old.clone().or_else(|| fs::metadata(&dir).ok());
        #[cfg(not(unix))]
        let _ = &owner_md;
        #[cfg(unix)]
        if let Some(md) = &owner_md {
            use std::os::unix::fs::MetadataExt;
            if md.uid() != fsutil::euid() || md.gid() != egid() {
                // Only root (or CAP_CHOWN) may give a file away; without that
                // the file keeps our ownership and the mode below still applies.
                if let Err(e) = std::os::unix::fs::fchown(&f, Some(md.uid()), Some(md.gid())) {
                    tracing::debug!(file = %path.display(), error = %e, "could not keep the owner");
                }
            }
        }
        #[cfg(unix)]
        if let Some(md) = &old {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            f.set_permissions(fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(|e| Error::io("set permissions on", &tmp, e))?;
        }
        f.write_all(bytes)
            .map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("flush", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| Error::io("replace", &path, e))?;
        fsutil::sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn egid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// An agent's own write lock on its credential directory, released on drop.
#[derive(Debug)]
pub struct AgentLock {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    None,
    MkdirLock(PathBuf),
    Flock(File),
}

impl AgentLock {
    /// Takes `kind`'s lock in `dir` (the directory holding the credential
    /// file), waiting up to a few seconds; after that, returns without the
    /// lock and logs a warning.
    pub fn take(kind: AgentKind, dir: &Path) -> AgentLock {
        let inner = match kind {
            AgentKind::Claude => mkdir_lock(&dir.join(".storage-write.lock")),
            AgentKind::Codex => flock(&dir.join("auth.lock")),
            AgentKind::Gemini => Inner::None,
        };
        AgentLock { inner }
    }

    /// Whether the lock is really held (false for Gemini and on timeout).
    pub fn held(&self) -> bool {
        !matches!(self.inner, Inner::None)
    }
}

impl Drop for AgentLock {
    fn drop(&mut self) {
        match &self.inner {
            Inner::None => {}
            Inner::MkdirLock(p) => {
                let _ = fs::remove_dir(p);
            }
            Inner::Flock(f) => {
                let _ = f.unlock();
            }
        }
    }
}

/// `proper-lockfile`'s staleness rule for a mkdir lock: not touched (its
/// mtime) for `limit` means its holder died.
pub(crate) fn untouched_for(path: &Path, limit: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > limit)
}

fn mkdir_lock(path: &Path) -> Inner {
    let start = Instant::now();
    loop {
        match fs::create_dir(path) {
            Ok(()) => return Inner::MkdirLock(path.to_path_buf()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if untouched_for(path, CLAUDE_STALE) {
                    // proper-lockfile's own rule: a lock not refreshed for
                    // the stale period belongs to a dead process.
                    let _ = fs::remove_dir(path);
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(lock = %path.display(), error = %e, "cannot take the agent's lock; writing without it");
                return Inner::None;
            }
        }
        if start.elapsed() > LOCK_WAIT {
            tracing::warn!(lock = %path.display(), "the agent's lock is busy; writing without it");
            return Inner::None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn flock(path: &Path) -> Inner {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let f = match opts.open(path) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(lock = %path.display(), error = %e, "cannot open the agent's lock; writing without it");
            return Inner::None;
        }
    };
    let start = Instant::now();
    loop {
        match f.try_lock() {
            Ok(()) => return Inner::Flock(f),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => {
                tracing::warn!(lock = %path.display(), "the agent's lock is busy; writing without it");
                return Inner::None;
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn a_shared_write_replaces_a_planted_link_and_leaves_its_target_alone() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"host file").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        let shared = d.path().join("shared");
        fs::create_dir(&shared).unwrap();
        let f = shared.join(".credentials.json");
        std::os::unix::fs::symlink(&victim, &f).unwrap();
        write_shared(&f, b"session").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"host file");
        let md = fs::symlink_metadata(&f).unwrap();
        assert!(md.file_type().is_file());
        // not the link target's mode
        assert_eq!(md.mode() & 0o777, 0o600);
        assert_eq!(fs::read(&f).unwrap(), b"session");
    }

    #[test]
    fn keeps_mode_and_follows_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.json");
        fs::write(&real, b"old").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).unwrap();
        let link = d.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_preserving(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(fs::metadata(&real).unwrap().mode() & 0o777, 0o640);
        // no temp file left
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn root_keeps_the_owner() {
        if fsutil::euid() != 0 {
            eprintln!("skipping: needs root to chown");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"old").unwrap();
        std::os::unix::fs::chown(&f, Some(1234), Some(4321)).unwrap();
        write_preserving(&f, b"new").unwrap();
        let md = fs::metadata(&f).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 4321));
    }

    #[test]
    fn a_new_file_takes_the_directory_owner() {
        if fsutil::euid() != 0 {
            eprintln!("skipping: needs root to chown");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(d.path(), Some(1000), Some(1000)).unwrap();
        let f = d.path().join("new");
        write_preserving(&f, b"x").unwrap();
        let md = fs::metadata(&f).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o777), (1000, 1000, 0o600));
    }

    #[test]
    fn claude_lock_excludes_and_breaks_stale() {
        let d = tempfile::tempdir().unwrap();
        let a = AgentLock::take(AgentKind::Claude, d.path());
        assert!(a.held());
        assert!(d.path().join(".storage-write.lock").is_dir());
        drop(a);
        assert!(!d.path().join(".storage-write.lock").exists());
        // a stale lock (mtime 1 min ago) is broken
        let p = d.path().join(".storage-write.lock");
        fs::create_dir(&p).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(60);
        File::open(&p).unwrap().set_modified(old).unwrap();
        let b = AgentLock::take(AgentKind::Claude, d.path());
        assert!(b.held());
    }

    #[test]
    fn codex_lock_is_flock() {
        let d = tempfile::tempdir().unwrap();
        let a = AgentLock::take(AgentKind::Codex, d.path());
        assert!(a.held());
        let other = File::open(d.path().join("auth.lock")).unwrap();
        assert!(other.try_lock().is_err());
        drop(a);
        assert!(other.try_lock().is_ok());
    }
}
