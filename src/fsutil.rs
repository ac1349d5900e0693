//! Careful file handling for secrets.
//!
//! * [`write_atomic`]: temp file in the same directory (created `O_EXCL` with
//!   the final mode), write, `fsync`, `rename` over the target, `fsync` the
//!   directory. A crash leaves the old file or the new one, never a torn or
//!   empty one.
//! * [`ensure_private_dir`] / [`check_private_file`]: 0700 directories and
//!   0600 files owned by us, no symlinks.
//! * [`FileLock`]: an advisory lock (`flock`) on a side file, held for a
//!   read-modify-write so that concurrent writers lose nothing.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The effective user id (0 on non-Unix targets).
pub fn euid() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// Creates `dir` (and missing parents) with mode 0700, then checks that it is a
/// real directory owned by us with no group/other access.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            b.create(dir)
                .map_err(|e| Error::io("create directory", dir, e))?;
        }
        Err(e) => return Err(Error::io("inspect", dir, e)),
    }
    check_private(dir, true)
}

/// Checks that `path` is a regular file (not a symlink), owned by us, with no
/// group/other permission bits.
pub fn check_private_file(path: &Path) -> Result<()> {
    check_private(path, false)
}

fn check_private(path: &Path, want_dir: bool) -> Result<()> {
    let md = fs::symlink_metadata(path).map_err(|e| Error::io("inspect", path, e))?;
    let ft = md.file_type();
    if ft.is_symlink() {
        return Err(Error::unsafe_path(
            path,
            "it is a symbolic link, which could point anywhere",
            format!(
                "replace it with a real {} (or point AIRLOCK_*_DIR at one)",
                if want_dir { "directory" } else { "file" }
            ),
        ));
    }
    if want_dir && !ft.is_dir() {
        return Err(Error::unsafe_path(
            path,
            "it is not a directory",
            "move it away so airlock can create the directory",
        ));
    }
    if !want_dir && !ft.is_file() {
        return Err(Error::unsafe_path(
            path,
            "it is not a regular file",
            "move it away",
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = euid();
        if md.uid() != me {
            return Err(Error::unsafe_path(
                path,
                format!(
                    "it is owned by uid {} but airlock runs as uid {me}",
                    md.uid()
                ),
                format!("chown it to your user (chown {me} '{}')", path.display()),
            ));
        }
        let mode = md.mode() & 0o777;
        if mode & 0o077 != 0 {
            let want = if want_dir { "700" } else { "600" };
            return Err(Error::unsafe_path(
                path,
                format!("its permissions are {mode:04o}, so other users may read it"),
                format!(
                    "run: chmod {want} '{}' (and check nobody copied it)",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically with the given mode (ignored off Unix).
///
/// The parent directory must exist. On any error the target is untouched and
/// the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = parent_of(path);
    let tmp = temp_name(path);
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = opts.open(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        // The umask may have removed bits we asked for; set the mode exactly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("set permissions on", &tmp, e))?;
        }
        f.write_all(bytes)
            .map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("flush", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| Error::io("replace", path, e))?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Opens `path` for writing, private to us (0600, whatever the umask; an
/// existing file is made 0600 too): truncated, or appended to with
/// `append`. For airlock's own small state files and logs (pid files,
/// markers, status), which need no atomic replace.
pub fn open_private(path: &Path, append: bool) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true);
    if append {
        opts.append(true);
    } else {
        opts.truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// Writes `bytes` to `path` with [`open_private`] (not atomic).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    open_private(path, false)?.write_all(bytes)
}

/// `fsync`s a directory so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
        d.sync_all()
            .map_err(|e| Error::io("flush directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A unique temporary name next to `path`: `.<name>.tmp.<pid>.<random>`.
pub fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut r = [0u8; 6];
    let _ = getrandom::fill(&mut r);
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    parent_of(path).join(format!(".{name}.tmp.{}.{hex}", std::process::id()))
}

/// Removes temporary files left by [`write_atomic`] for `path` by processes
/// that died mid-write. Only files older than a minute are removed, so a
/// concurrent writer's temp file is never touched.
pub fn clean_stale_temps(path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.tmp.");
    let Ok(entries) = fs::read_dir(parent_of(path)) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 60);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// An exclusive advisory lock on a side file, released on drop.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Blocks until the exclusive lock on `path` (created 0600 if missing) is held.
    pub fn exclusive(path: &Path) -> Result<FileLock> {
        let file = Self::open(path)?;
        file.lock().map_err(|e| Error::io("lock", path, e))?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Blocks until a shared lock is held.
    pub fn shared(path: &Path) -> Result<FileLock> {
        let file = Self::open(path)?;
        file.lock_shared().map_err(|e| Error::io("lock", path, e))?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens (creating it 0600, never through a symbolic link) a lock file
    /// without locking it.
    pub(crate) fn open(path: &Path) -> Result<File> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        opts.open(path)
            .map_err(|e| Error::io("open lock file", path, e))
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        check_private_file(&p).unwrap();
        // no temp files left behind
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn open_permissions_and_symlinks_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, b"x").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_private_file(&p).unwrap_err();
        assert!(e.to_string().contains("0644"), "{e}");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        let l = d.path().join("l");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        let e = check_private_file(&l).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn private_dir_is_created_0700() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b");
        ensure_private_dir(&p).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(ensure_private_dir(&p).is_err());
    }

    #[test]
    fn lock_excludes_other_holders() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let g = FileLock::exclusive(&p).unwrap();
        let other = File::open(&p).unwrap();
        assert!(other.try_lock().is_err());
        drop(g);
        assert!(other.try_lock().is_ok());
    }
}
