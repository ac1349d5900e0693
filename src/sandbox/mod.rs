//! Sandbox directories on the host, and their garbage collection.
//!
//! A sandbox is `<runtime_dir>/sandboxes/<id>/` (0700, on a tmpfs: the
//! default runtime directory is `$XDG_RUNTIME_DIR/airlock` or
//! `/dev/shm/airlock-<uid>`), holding
//!
//! * `env/<n>`: one file per secret environment variable (0400);
//! * `files/<n>`: the content of each planned file (0400);
//! * `init.sh`: the entrypoint [`shim`] (0500; no secret values);
//! * `meta.json`: id, engine, creation time and owning process (no secrets).
//!
//! The directory is bind-mounted read-only at [`crate::plan::IN_DIR`]. It
//! must be readable by the container's user and by nobody else; see
//! [`Access`] for how that is arranged when the container user differs from
//! the host user. [`Sandbox`] removes the directory when dropped unless it was
//! handed over ([`Sandbox::persist`]) to a waiter or a later [`gc`].

pub mod launch;
pub mod shim;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineKind};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::plan::{SandboxPlan, Value};

pub use shim::Exec;

/// The label every sandbox container carries: `airlock.sandbox=<id>`.
pub const LABEL: &str = "airlock.sandbox";

/// How long a sandbox directory that no running container uses is kept
/// (a `docker-flags` or `compose` directory waits for its container).
pub const UNUSED_GRACE_SECS: u64 = 3600;

/// The container's user, numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerUser {
    /// User id.
    pub uid: u32,
    /// Group id, when known.
    pub gid: Option<u32>,
}

impl ContainerUser {
    /// Root.
    pub const ROOT: ContainerUser = ContainerUser {
        uid: 0,
        gid: Some(0),
    };

    /// Parses a numeric `--user`/`USER` value (`""`, `root`, `1000`,
    /// `1000:1000`). Returns `None` when it names a user or group, which
    /// must then be looked up in the image.
    pub fn parse_numeric(spec: &str) -> Option<ContainerUser> {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let uid = match u {
            "" | "root" => 0,
            n => n.parse().ok()?,
        };
        let gid = match g {
            None => (uid == 0).then_some(0),
            Some("root") => Some(0),
            Some(n) => Some(n.parse().ok()?),
        };
        Some(ContainerUser { uid, gid })
    }
}

/// How the container's user gets to read the sandbox directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The directory is owned by the container's uid (same uid as the host
    /// user, a root container, or chowned by a root airlock). Nothing to add.
    Owner,
    /// The directory is group-readable (0750/0440) by the host user's group,
    /// which the container joins with `--group-add <gid>`.
    GroupAdd(u32),
    /// The engine maps the host user onto the container user with these
    /// run flags (rootless Podman: `--userns=keep-id:uid=…,gid=…`).
    MapUser(Vec<String>),
}

/// Non-secret facts about a sandbox, stored in its `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Sandbox id.
    pub id: String,
    /// Engine that runs it.
    pub engine: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// A process whose life keeps the directory (airlock run, the waiter).
    pub owner_pid: Option<u32>,
}

/// A sandbox directory on the host. Removed on drop unless persisted.
#[derive(Debug)]
pub struct Sandbox {
    id: String,
    dir: PathBuf,
    access: Access,
    user: ContainerUser,
    engine: EngineKind,
    keep: bool,
}

/// What a sandbox is created from.
#[derive(Debug)]
pub struct SandboxSpec<'a> {
    /// The plan (secrets included).
    pub plan: &'a SandboxPlan,
    /// What the shim finally executes.
    pub exec: Exec,
    /// The container's user.
    pub user: ContainerUser,
    /// The engine (for user mapping).
    pub engine: &'a dyn Engine,
    /// The process that owns the directory while it lives, if any.
    pub owner_pid: Option<u32>,
}

impl Sandbox {
    /// Writes the sandbox directory under `<runtime_dir>/sandboxes/`.
    pub fn create(runtime_dir: &Path, spec: SandboxSpec<'_>) -> Result<Sandbox> {
        Sandbox::create_in(runtime_dir, "sandboxes", spec)
    }

    /// Like [`Sandbox::create`], under `<runtime_dir>/<sub>/` (a directory
    /// [`gc`] does not collect: `airlock devcontainer` keeps its own).
    pub fn create_in(runtime_dir: &Path, sub: &str, spec: SandboxSpec<'_>) -> Result<Sandbox> {
        let root = runtime_dir.join(sub);
        fsutil::ensure_private_dir(runtime_dir)?;
        fsutil::ensure_private_dir(&root)?;
        if let Some(s) = root.to_str()
            && (s.contains(',') || s.contains('"') || s.contains('\n'))
        {
            return Err(Error::unsafe_path(
                &root,
                "the path contains a comma, quote or newline, which engine --mount flags cannot carry",
                "point AIRLOCK_RUNTIME_DIR at a plain path",
            ));
        }
        warn_if_not_tmpfs(&root);
        let layout = shim::Layout::for_plan(spec.plan)?;
        let id = new_id();
        let dir = root.join(&id);
        let mut b = fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        // From here on, drop removes the directory on any error.
        let mut sb = Sandbox {
            id: id.clone(),
            dir: dir.clone(),
            access: Access::Owner,
            user: spec.user,
            engine: spec.engine.kind(),
            keep: false,
        };
        let (access, dmode, fmode) = decide_access(spec.user, spec.engine);
        for sub in ["env", "files"] {
            let p = dir.join(sub);
            b.create(&p)
                .map_err(|e| Error::io("create directory", &p, e))?;
        }
        let secret_env = spec.plan.env.iter().filter(|e| e.value.is_secret());
        for (e, (_, rel)) in secret_env.zip(&layout.secret_env) {
            write_new(&dir.join(rel), value_bytes(&e.value), fmode)?;
        }
        for (f, (rel, _, _)) in spec.plan.files.iter().zip(&layout.files) {
            write_new(&dir.join(rel), value_bytes(&f.content), fmode)?;
        }
        let script = shim::script(spec.plan, &layout, &spec.exec, &id);
        // Executable where readable: `docker-flags` runs it as the entrypoint.
        write_new(
            &dir.join("init.sh"),
            script.as_bytes(),
            fmode | ((fmode & 0o444) >> 2),
        )?;
        let meta = Meta {
            id: id.clone(),
            engine: spec.engine.kind().as_str().into(),
            created: now(),
            owner_pid: spec.owner_pid,
        };
        let meta_json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| Error::Other(format!("could not encode sandbox metadata: {e}")))?;
        write_new(&dir.join("meta.json"), &meta_json, 0o600)?;
        apply_access(&dir, &access, spec.user, dmode)?;
        sb.access = access;
        tracing::debug!(id = %sb.id, dir = %dir.display(), access = ?sb.access, "sandbox directory written");
        Ok(sb)
    }

    /// The sandbox id (also the container label's value).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The host directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How the container user reads the directory.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The container user the sandbox was prepared for.
    pub fn user(&self) -> ContainerUser {
        self.user
    }

    /// The engine the sandbox was prepared for.
    pub fn engine_kind(&self) -> EngineKind {
        self.engine
    }

    /// Why a session synced through a read-write shared directory
    /// (`--rotation sync`) cannot work with this sandbox; `None` when it
    /// can. airlock, when not root, cannot give the directory to another
    /// user (Docker, a container uid that is not ours), and under a rootful
    /// Docker daemon a root container's files are the host root's: the
    /// refreshed session would be unreadable and lost (broker mode, which
    /// writes nothing back, works there). Root airlock `chown`s; rootless
    /// Podman maps (docs/sandbox.md).
    pub fn sync_refusal(&self) -> Option<SyncRefusal> {
        let me = fsutil::euid();
        let fix = "run the container as your own user (`-- -u $(id -u):$(id -g) …`), use rootless Podman, or pass --rotation access-only";
        if me == 0 {
            return None;
        }
        if self.user.uid == 0
            && self.engine == EngineKind::Docker
            && !crate::engine::docker::is_rootless()
        {
            return Some(SyncRefusal {
                problem: format!(
                    "the container runs as root, and Docker's root is the host's root: a session it refreshes in the directory shared with the host would be root's, unreadable by airlock (uid {me}), and the refresh would be lost"
                ),
                fix: "run the container as your own user (`-- -u $(id -u):$(id -g) …`), use rootless Podman, --rotation broker (what `airlock run` uses by default here), or --rotation access-only".into(),
                root_under_docker: true,
            });
        }
        if let Access::GroupAdd(_) = self.access {
            return Some(SyncRefusal {
                problem: format!(
                    "the container runs as uid {}, which could not write the session directory shared with the host (uid {me})",
                    self.user.uid
                ),
                fix: fix.into(),
                root_under_docker: false,
            });
        }
        None
    }

    /// Keeps the directory after this value is dropped (a waiter or [`gc`]
    /// removes it later). Returns its path.
    pub fn persist(mut self) -> PathBuf {
        self.keep = true;
        self.dir.clone()
    }

    /// Records a new owning process in `meta.json`.
    pub fn set_owner(&self, pid: Option<u32>) -> Result<()> {
        set_owner(&self.dir, pid)
    }

    /// Removes the directory now.
    pub fn remove(mut self) -> Result<()> {
        self.keep = true;
        remove_dir(&self.dir)
    }
}

/// Why sync mode cannot work with a sandbox ([`Sandbox::sync_refusal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRefusal {
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
    /// A root container under rootful Docker: broker mode works instead.
    pub root_under_docker: bool,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.keep
            && let Err(e) = remove_dir(&self.dir)
        {
            tracing::warn!("{e}");
        }
    }
}

/// Rewrites the owner in a sandbox's `meta.json`.
pub fn set_owner(dir: &Path, pid: Option<u32>) -> Result<()> {
    let p = dir.join("meta.json");
    let text = fs::read_to_string(&p).map_err(|e| Error::io("read", &p, e))?;
    let mut meta: Meta = serde_json::from_str(&text).map_err(|e| {
        Error::Other(format!(
            "{} is not valid sandbox metadata: {e}",
            p.display()
        ))
    })?;
    meta.owner_pid = pid;
    let json = serde_json::to_vec_pretty(&meta)
        .map_err(|e| Error::Other(format!("could not encode sandbox metadata: {e}")))?;
    fsutil::write_atomic(&p, &json, 0o600)
}

/// Removes a sandbox directory (missing is fine).
pub fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", dir, e)),
    }
}

fn value_bytes(v: &Value) -> &[u8] {
    match v {
        Value::Plain(s) => s.as_bytes(),
        Value::Secret(s) => s.expose().as_bytes(),
    }
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode).custom_flags(libc::O_NOFOLLOW);
    }
    let mut f = o.open(path).map_err(|e| Error::io("create", path, e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io("write", path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("set permissions on", path, e))?;
    }
    Ok(())
}

/// Chooses how the container user reads the directory, with the directory
/// and file modes that go with it.
fn decide_access(user: ContainerUser, engine: &dyn Engine) -> (Access, u32, u32) {
    let me = fsutil::euid();
    if user.uid == me || me == 0 || user.uid == 0 {
        // Same user; or we are root and chown below; or a root container,
        // which reads anything under a root daemon and is the host user
        // under rootless Podman.
        return (Access::Owner, 0o700, 0o400);
    }
    let gid = user.gid.unwrap_or(user.uid);
    if let Some(flags) = engine.map_host_user(user.uid, gid) {
        return (Access::MapUser(flags), 0o700, 0o400);
    }
    (Access::GroupAdd(egid()), 0o750, 0o440)
}

fn apply_access(dir: &Path, access: &Access, user: ContainerUser, dmode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let chown = fsutil::euid() == 0 && user.uid != 0 && *access == Access::Owner;
        let walk = |p: &Path| -> Result<()> {
            if chown {
                std::os::unix::fs::lchown(p, Some(user.uid), user.gid)
                    .map_err(|e| Error::io("change the owner of", p, e))?;
            }
            Ok(())
        };
        for sub in ["env", "files"] {
            let d = dir.join(sub);
            for entry in fs::read_dir(&d).map_err(|e| Error::io("read", &d, e))? {
                let entry = entry.map_err(|e| Error::io("read", &d, e))?;
                walk(&entry.path())?;
            }
            fs::set_permissions(&d, fs::Permissions::from_mode(dmode))
                .map_err(|e| Error::io("set permissions on", &d, e))?;
            walk(&d)?;
        }
        walk(&dir.join("init.sh"))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(dmode))
            .map_err(|e| Error::io("set permissions on", dir, e))?;
        walk(dir)?;
    }
    #[cfg(not(unix))]
    let _ = (dir, access, user, dmode);
    Ok(())
}

fn egid() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: getegid has no preconditions and cannot fail.
        unsafe { libc::getegid() }
    }
    #[cfg(not(unix))]
    {
        0
    }
}

fn new_id() -> String {
    let mut r = [0u8; 8];
    let _ = getrandom::fill(&mut r);
    r.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether `dir` is on a tmpfs (Linux; `None` when unknown).
pub fn is_tmpfs(dir: &Path) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: c is a valid NUL-terminated path and st a writable statfs.
        let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
        if rc != 0 {
            return None;
        }
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        const RAMFS_MAGIC: i64 = 0x8584_58f6;
        #[allow(clippy::unnecessary_cast)]
        let t = st.f_type as i64;
        Some(t == TMPFS_MAGIC || t == RAMFS_MAGIC)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        None
    }
}

fn warn_if_not_tmpfs(dir: &Path) {
    if is_tmpfs(dir) == Some(false) {
        tracing::warn!(
            "{} is not on a tmpfs: sandbox secrets will touch the disk; set AIRLOCK_RUNTIME_DIR to a directory on a tmpfs (/dev/shm, $XDG_RUNTIME_DIR)",
            dir.display()
        );
    }
}

fn pid_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(p) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: kill with signal 0 only checks for existence.
        let rc = unsafe { libc::kill(p, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Removes sandbox directories nobody uses any more: no living owner process,
/// and no running container labelled with their id (asked of each engine
/// only when there is such a candidate), or older than
/// [`UNUSED_GRACE_SECS`]. Errors are logged, never fatal. Returns the ids removed.
pub fn gc(runtime_dir: &Path) -> Vec<String> {
    let root = runtime_dir.join("sandboxes");
    let Ok(entries) = fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut candidates: Vec<(PathBuf, Meta)> = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let meta = fs::read_to_string(dir.join("meta.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Meta>(&t).ok());
        let Some(meta) = meta else {
            // A directory being created right now has no meta.json yet.
            let young = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() < 60);
            if !young {
                let _ = remove_dir(&dir);
            }
            continue;
        };
        if meta.owner_pid.is_some_and(pid_alive) {
            continue;
        }
        candidates.push((dir, meta));
    }
    let mut removed = Vec::new();
    if candidates.is_empty() {
        return removed;
    }
    let mut running: std::collections::HashMap<String, Option<std::collections::HashSet<String>>> =
        Default::default();
    for (dir, meta) in candidates {
        let set = running.entry(meta.engine.clone()).or_insert_with(|| {
            EngineKind::parse(&meta.engine)
                .ok()
                .and_then(|k| k.engine().running_sandboxes().ok())
        });
        let in_use = match set {
            Some(s) => s.contains(&meta.id),
            // Engine unreachable: keep young directories, drop old ones.
            None => true,
        };
        let age = now().saturating_sub(meta.created);
        let unused_too_long = !in_use && (meta.owner_pid.is_some() || age > UNUSED_GRACE_SECS);
        let stale_unknown = set.is_none() && age > 24 * 3600;
        if unused_too_long || stale_unknown {
            match remove_dir(&dir) {
                Ok(()) => {
                    tracing::info!(id = %meta.id, "removed unused sandbox directory");
                    removed.push(meta.id);
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_users_parse() {
        assert_eq!(ContainerUser::parse_numeric(""), Some(ContainerUser::ROOT));
        assert_eq!(
            ContainerUser::parse_numeric("1000"),
            Some(ContainerUser {
                uid: 1000,
                gid: None
            })
        );
        assert_eq!(
            ContainerUser::parse_numeric("1000:50"),
            Some(ContainerUser {
                uid: 1000,
                gid: Some(50)
            })
        );
        assert_eq!(ContainerUser::parse_numeric("agent"), None);
        assert_eq!(ContainerUser::parse_numeric("1000:staff"), None);
    }
}
