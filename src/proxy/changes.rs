//! Tells the proxy whether a file it relies on may have changed, without a
//! `stat` per request (docs/proxy.md, "Performance").
//!
//! The proxy checks the grants file and the vault file before every
//! request, so that a revoke or a new credential reaches the very next
//! request. It used to `stat` both each time. Now it watches their
//! directories with inotify, and reads the pending events once per request
//! (one non-blocking `read`, which finds none nearly always): a file is
//! `stat`ed again only after an event in its directory. The kernel queues an
//! event within the write or rename itself, so a change finished before a
//! request is read is seen by that request, as before.
//!
//! Only directories airlock owns are watched, and only when their path holds
//! no symbolic link (a link pointed elsewhere would not be noticed); a
//! directory removed or moved stops being trusted, and a queue overflow
//! counts as a change everywhere. Anything not watched is `stat`ed every
//! time, as before.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// inotify events that may mean a file in the directory changed, or that the
/// directory itself is gone.
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// Watched directories and a counter that moves on with every event.
pub struct Changes {
    fd: Option<OwnedFd>,
    generation: AtomicU64,
    /// Watch descriptor → directory, for the directories still trusted.
    dirs: Mutex<HashMap<i32, PathBuf>>,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("inotify", &self.fd.is_some())
            .finish()
    }
}

impl Default for Changes {
    fn default() -> Self {
        Changes::new()
    }
}

impl Changes {
    /// A new set of watches (none yet). Without inotify every file is
    /// simply never [`watched`](Changes::watched).
    pub fn new() -> Changes {
        // SAFETY: inotify_init1 takes flags only; a non-negative result is
        // a new descriptor that nothing else owns.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        Changes {
            fd: (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) }),
            generation: AtomicU64::new(0),
            dirs: Mutex::new(HashMap::new()),
        }
    }

    /// Watches the directory of `file`. False when it cannot be trusted to
    /// tell of `file`'s changes (no inotify, a symbolic link on the way, no
    /// such directory): then `file` must be `stat`ed every time.
    pub fn watch(&self, file: &Path) -> bool {
        let (Some(fd), Some(dir)) = (&self.fd, file.parent()) else {
            return false;
        };
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if dirs.values().any(|d| d == dir) {
            return true;
        }
        // the path must be what it says: no link to be pointed elsewhere,
        // and the file itself no link either
        if std::fs::canonicalize(dir).ok().as_deref() != Some(dir)
            || std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink())
        {
            return false;
        }
        let Ok(c) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()))
        else {
            return false;
        };
        // SAFETY: a valid descriptor and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), MASK) };
        if wd < 0 {
            return false;
        }
        dirs.insert(wd, dir.to_path_buf());
        // what happened before the watch was not seen
        self.generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// True while `file`'s directory is watched and trusted.
    pub fn watched(&self, file: &Path) -> bool {
        let Some(dir) = file.parent() else {
            return false;
        };
        let dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        dirs.values().any(|d| d == dir)
    }

    /// The generation now, after reading the events queued so far: it is
    /// the same as an earlier one only when no watched directory saw an
    /// event in between.
    pub fn generation(&self) -> u64 {
        let Some(fd) = &self.fd else {
            return self.generation.load(Ordering::Acquire);
        };
        // aligned for the event headers read out of it
        let mut buf = [0u64; 512];
        loop {
            // SAFETY: reads at most the buffer's size into it.
            let n = unsafe {
                libc::read(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    std::mem::size_of_val(&buf),
                )
            };
            if n <= 0 {
                break;
            }
            self.generation.fetch_add(1, Ordering::AcqRel);
            let bytes = unsafe {
                // SAFETY: the kernel wrote `n` bytes.
                std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize)
            };
            self.forget_gone(bytes);
        }
        self.generation.load(Ordering::Acquire)
    }

    /// Stops trusting the directories the events in `bytes` say are gone
    /// (removed, moved, unwatched), or every one after a queue overflow.
    fn forget_gone(&self, bytes: &[u8]) {
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        let mut at = 0;
        while at + HEADER <= bytes.len() {
            // SAFETY: a whole header lies at `at`; read unaligned.
            let e: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(bytes[at..].as_ptr().cast()) };
            let gone =
                libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_IGNORED | libc::IN_UNMOUNT;
            if e.mask & libc::IN_Q_OVERFLOW != 0 {
                // events were lost: nothing is known; watches stay
            } else if e.mask & gone != 0 {
                let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(dir) = dirs.remove(&e.wd) {
                    tracing::debug!(dir = %dir.display(), "a watched directory went away: its files are stat'ed again");
                }
            }
            at += HEADER + e.len as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_change_in_a_watched_directory_moves_the_generation_on() {
        let t = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(t.path()).unwrap();
        let file = dir.join("grants.json");
        write(&file, "1");
        let c = Changes::new();
        assert!(c.watch(&file));
        assert!(c.watched(&file));
        let g = c.generation();
        assert_eq!(c.generation(), g, "nothing happened");
        std::fs::metadata(&file).unwrap();
        std::fs::read(&file).unwrap();
        assert_eq!(c.generation(), g, "reading is no change");
        write(&file, "2");
        let g2 = c.generation();
        assert_ne!(g2, g, "a replacing rename");
        assert_eq!(c.generation(), g2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"3"))
            .unwrap();
        assert_ne!(c.generation(), g2, "a write in place");
    }

    #[test]
    fn a_directory_removed_or_behind_a_link_is_not_trusted() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let dir = root.join("state");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("grants.json");
        let c = Changes::new();
        assert!(c.watch(&file), "the file need not exist yet");
        let g = c.generation();
        std::fs::remove_dir(&dir).unwrap();
        assert_ne!(c.generation(), g);
        assert!(!c.watched(&file), "gone: stat'ed from now on");

        let real = root.join("real");
        std::fs::create_dir(&real).unwrap();
        let link = root.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(!c.watch(&link.join("grants.json")));
        write(&real.join("target"), "x");
        std::os::unix::fs::symlink(real.join("target"), real.join("vault")).unwrap();
        assert!(!c.watch(&real.join("vault")), "the file is a link");
        assert!(!c.watch(Path::new("/nonexistent-airlock-dir/x")));
    }
}
