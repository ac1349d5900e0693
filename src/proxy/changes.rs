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
use std::ffi::OsString;
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
    /// Watch descriptor → directory and the names in it that are watched,
    /// for the directories still trusted. Events for other names (the
    /// audit log beside the grants, the vault's lock file) are no change.
    dirs: Mutex<HashMap<i32, (PathBuf, Vec<OsString>)>>,
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
        let (Some(fd), Some(dir), Some(name)) = (&self.fd, file.parent(), file.file_name()) else {
            return false;
        };
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, names)) = dirs.values_mut().find(|(d, _)| d == dir) {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
                // what happened to it before was not looked for
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
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
        dirs.insert(wd, (dir.to_path_buf(), vec![name.to_owned()]));
        // what happened before the watch was not seen
        self.generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// True while `file`'s directory is watched and trusted.
    pub fn watched(&self, file: &Path) -> bool {
        let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
            return false;
        };
        let dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        dirs.values()
            .any(|(d, names)| d == dir && names.iter().any(|n| n == name))
    }

    /// The generation now, after reading the events queued so far: it is
    /// the same as an earlier one only when no watched directory saw an
    /// event in between.
    pub fn generation(&self) -> u64 {
        let Some(fd) = &self.fd else {
            return self.generation.load(Ordering::Acquire);
        };
        // aligned for the event headers read out of it; not zeroed (this
        // runs for every request, and nearly always reads nothing)
        let mut buf = std::mem::MaybeUninit::<[u64; 512]>::uninit();
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
            // SAFETY: the kernel wrote the first `n` bytes.
            let bytes =
                unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
            if self.relevant(bytes) {
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
        self.generation.load(Ordering::Acquire)
    }

    /// True when an event in `bytes` may concern a watched file: one of its
    /// names, the directory itself, or lost events (a queue overflow).
    /// Directories the events say are gone (removed, moved, unwatched) are
    /// no longer trusted.
    fn relevant(&self, bytes: &[u8]) -> bool {
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        let gone = libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_IGNORED | libc::IN_UNMOUNT;
        let mut relevant = false;
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let mut at = 0;
        while at + HEADER <= bytes.len() {
            // SAFETY: a whole header lies at `at`; read unaligned.
            let e: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(bytes[at..].as_ptr().cast()) };
            let end = (at + HEADER + e.len as usize).min(bytes.len());
            // the name, NUL-padded
            let name = &bytes[at + HEADER..end];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if e.mask & libc::IN_Q_OVERFLOW != 0 {
                relevant = true;
            } else if e.mask & gone != 0 {
                if let Some((dir, _)) = dirs.remove(&e.wd) {
                    tracing::debug!(dir = %dir.display(), "a watched directory went away: its files are stat'ed again");
                }
                relevant = true;
            } else if name.is_empty()
                || dirs.get(&e.wd).is_some_and(|(_, names)| {
                    names
                        .iter()
                        .any(|n| std::os::unix::ffi::OsStrExt::as_bytes(n.as_os_str()) == name)
                })
            {
                relevant = true;
            }
            at = end;
        }
        relevant
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
        let g3 = c.generation();
        assert_ne!(g3, g2, "a write in place");
        // another file beside it (the audit log): no change
        write(&dir.join("audit.jsonl"), "line");
        std::fs::write(dir.join("audit.jsonl"), "more").unwrap();
        assert_eq!(c.generation(), g3, "another file's events");
        assert!(!c.watched(&dir.join("audit.jsonl")));
        assert!(
            c.watch(&dir.join("vault")),
            "a second name in the directory"
        );
        let g4 = c.generation();
        assert_ne!(g4, g3, "a new name: what happened before was not watched");
        std::fs::write(dir.join("vault"), "v").unwrap();
        assert_ne!(c.generation(), g4);
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
