//! Linux kernel keyring backend, for headless hosts without a Secret Service.
//!
//! **Nothing stored here survives a reboot**: the kernel keeps keys in
//! memory only. [`Backend::persistent`] is `false`, and `airlock` is never
//! chosen automatically for this backend: ask for it with
//! `AIRLOCK_KEYRING_BACKEND=keyutils`.
//!
//! Layout: a keyring named `airlock` linked into the session keyring, holding
//! one key of type `user` per record, described `airlock:<agent>:<account>`,
//! whose payload is the record as [`codec::encode_record`] JSON. Listing reads
//! the links of the `airlock` keyring, so there is no index to keep in step,
//! and writers of different accounts never touch the same key. A `user` key
//! is replaced atomically by `add_key`.
//!
//! The keys are readable only by processes that *possess* them, that is,
//! that share this session keyring (the login session and its children).
//! Which session that is depends on PAM: with `pam_keyinit` each login gets
//! its own session keyring; without it, every process of the user shares the
//! per-user session keyring. `keyctl session - cmd` runs `cmd` in a new, empty
//! one (what the tests do).
//!
//! Inspect with `keyctl show @s` and `keyctl print <id>`.
//!
//! Limits: a `user` key holds at most 32,767 bytes, and the kernel's per-user
//! quota (`/proc/sys/kernel/keys/maxkeys`, `maxbytes`: 200 keys and 20,000
//! bytes for non-root users by default) caps the total.
//!
//! The system calls are made directly (`add_key`, `keyctl`) so that payload
//! buffers are zeroized and link lists are read with their exact size.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

use super::{Backend, BackendKind, CredentialId, Record, SecretBytes, codec, validate_name};
use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::paths::Paths;

/// The name of airlock's keyring inside the session keyring.
pub const KEYRING_NAME: &str = "airlock";

/// The largest payload of a kernel `user` key, in bytes.
pub const MAX_PAYLOAD: usize = 32_767;

/// Prefix of every key description: `airlock:<agent>:<account>`.
const DESC_PREFIX: &str = "airlock:";

const NAME: &str = "keyutils";

/// Serializes writers across processes (in airlock's runtime directory).
const WRITE_LOCK: &str = "keyutils.lock";

/// Records stored in the kernel keyring (lost at reboot).
#[derive(Debug)]
pub struct KeyutilsBackend {
    lock_dir: Option<PathBuf>,
}

impl KeyutilsBackend {
    /// Checks that the kernel keyring is usable from this process. The
    /// `airlock` keyring is created at the first `put`. Writes (`put`,
    /// `remove`, `update`) are serialized across processes with a lock file in airlock's
    /// runtime directory.
    pub fn open() -> Result<Self> {
        let lock_dir = Paths::from_env().ok().map(|p| p.runtime_dir);
        Self::open_with_lock_dir(lock_dir)
    }

    /// Like [`open`](Self::open), with the directory that holds the lock
    /// files (`None`: no locking, so concurrent `update`s of one record may
    /// lose changes, and two processes creating the keyring at once may race).
    pub fn open_with_lock_dir(lock_dir: Option<PathBuf>) -> Result<Self> {
        let backend = KeyutilsBackend { lock_dir };
        session_keyring()?;
        backend.ring(false)?;
        Ok(backend)
    }

    /// The `airlock` keyring, created (under the lock) when `create`.
    fn ring(&self, create: bool) -> Result<Option<i32>> {
        let session = session_keyring()?;
        match sys::search(session, c"keyring", KEYRING_NAME) {
            Ok(id) => return Ok(Some(id)),
            Err(e) if is_absent(e) => {}
            Err(e) => return Err(sys_error("look up the airlock keyring", e)),
        }
        if !create {
            return Ok(None);
        }
        // Two processes creating the keyring at once would each link a new
        // one, the second displacing the first and the keys put into it.
        let _guard = self.lock("keyutils-create.lock")?;
        match sys::search(session, c"keyring", KEYRING_NAME) {
            Ok(id) => Ok(Some(id)),
            Err(e) if is_absent(e) => sys::add_key(c"keyring", KEYRING_NAME, &[], session)
                .map(Some)
                .map_err(|e| sys_error("create the airlock keyring", e)),
            Err(e) => Err(sys_error("look up the airlock keyring", e)),
        }
    }

    fn lock(&self, name: &str) -> Result<Option<FileLock>> {
        let Some(dir) = &self.lock_dir else {
            return Ok(None);
        };
        fsutil::ensure_private_dir(dir)?;
        FileLock::exclusive(&dir.join(name)).map(Some)
    }

    fn put_unlocked(&self, record: Record) -> Result<()> {
        // The fields are public: re-check what becomes the key description.
        validate_name("agent", &record.id.agent)?;
        validate_name("account", &record.id.account)?;
        let bytes = codec::encode_record(&record);
        if bytes.len() > MAX_PAYLOAD {
            return Err(backend_error(
                format!(
                    "the record for {} is {} bytes, more than the {MAX_PAYLOAD} bytes a kernel key can hold",
                    record.id,
                    bytes.len()
                ),
                "store it with another backend (AIRLOCK_KEYRING_BACKEND=file)",
            ));
        }
        let ring = self
            .ring(true)?
            .ok_or_else(|| backend_error("the airlock keyring vanished", "try again"))?;
        sys::add_key(c"user", &description(&record.id), &bytes, ring)
            .map_err(|e| sys_error("store a key", e))?;
        Ok(())
    }

    fn remove_unlocked(&self, id: &CredentialId) -> Result<bool> {
        let Some(key) = self.find(id)? else {
            return Ok(false);
        };
        match sys::invalidate(key) {
            Ok(()) => Ok(true),
            Err(e) if is_absent(e) => Ok(false),
            Err(e) => Err(sys_error("remove a key", e)),
        }
    }

    fn find(&self, id: &CredentialId) -> Result<Option<i32>> {
        let Some(ring) = self.ring(false)? else {
            return Ok(None);
        };
        match sys::search(ring, c"user", &description(id)) {
            Ok(key) => Ok(Some(key)),
            Err(e) if is_absent(e) => Ok(None),
            Err(e) => Err(sys_error("look up a key", e)),
        }
    }

    fn read(&self, key: i32, expect: &CredentialId) -> Result<Option<Record>> {
        let bytes = match sys::read(key) {
            Ok(b) => b,
            // Removed between the lookup and the read.
            Err(e) if is_absent(e) => return Ok(None),
            Err(e) => return Err(sys_error("read a key", e)),
        };
        let corrupt = |detail: String| Error::Corrupt {
            path: PathBuf::from(format!("kernel key {key} ({})", description(expect))),
            detail,
        };
        let record = codec::decode_record(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if record.id != *expect {
            return Err(corrupt(format!(
                "its description says {expect} but it holds {}",
                record.id
            )));
        }
        Ok(Some(record))
    }
}

/// `airlock:<agent>:<account>`.
pub fn description(id: &CredentialId) -> String {
    format!("{DESC_PREFIX}{}:{}", id.agent, id.account)
}

fn parse_description(desc: &str) -> Option<CredentialId> {
    let rest = desc.strip_prefix(DESC_PREFIX)?;
    let (agent, account) = rest.split_once(':')?;
    CredentialId::new(agent, account).ok()
}

fn session_keyring() -> Result<i32> {
    // `create = false`: a process without a session keyring gets the
    // per-user session keyring. Creating one here would make an anonymous
    // keyring that dies with this process, taking the records with it.
    sys::get_keyring_id(sys::KEY_SPEC_SESSION_KEYRING, false).map_err(|e| {
        backend_error(
            format!("the kernel keyring is not usable here: {}", errno_text(e)),
            "containers often block keyctl (Docker's default seccomp profile does): run on the host, or set AIRLOCK_KEYRING_BACKEND=file",
        )
    })
}

/// The payload of the `user` key described `desc` inside the keyring named
/// `ring` that this process reaches from its session keyring (or, failing
/// that, from the user keyring): another application's keys, read only,
/// for `airlock import`. `Ok(None)` when the keyring or the key is absent.
pub fn read_foreign(ring: &str, desc: &str) -> Result<Option<SecretBytes>> {
    let mut roots = vec![session_keyring()?];
    if let Ok(user) = sys::get_keyring_id(sys::KEY_SPEC_USER_KEYRING, false) {
        roots.push(user);
    }
    for root in roots {
        let named = match sys::search(root, c"keyring", ring) {
            Ok(id) => id,
            Err(e) if is_absent(e) => continue,
            Err(e) => return Err(sys_error(&format!("look up the {ring} keyring"), e)),
        };
        let key = match sys::search(named, c"user", desc) {
            Ok(id) => id,
            Err(e) if is_absent(e) => continue,
            Err(e) => return Err(sys_error(&format!("look up the key {ring}/{desc}"), e)),
        };
        return match sys::read(key) {
            Ok(b) => Ok(Some(b)),
            Err(e) if is_absent(e) => Ok(None),
            Err(e) => Err(sys_error(&format!("read the key {ring}/{desc}"), e)),
        };
    }
    Ok(None)
}

fn is_absent(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOKEY | libc::EKEYREVOKED | libc::EKEYEXPIRED | libc::ENOENT
    )
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

fn backend_error(detail: impl Into<String>, fix: impl Into<String>) -> Error {
    Error::Backend {
        backend: NAME.into(),
        detail: detail.into(),
        fix: fix.into(),
    }
}

fn sys_error(what: &str, errno: i32) -> Error {
    let fix = match errno {
        libc::EDQUOT => {
            "the per-user key quota is full: raise it (sysctl kernel.keys.maxbytes=200000 kernel.keys.maxkeys=2000) or remove unused keys (`keyctl show @s`), or set AIRLOCK_KEYRING_BACKEND=file"
        }
        libc::EACCES | libc::EPERM => {
            "the key belongs to another session or user: run airlock in the session that stored it (`keyctl show @s`), or set AIRLOCK_KEYRING_BACKEND=file"
        }
        _ => "check `keyctl show @s`, or set AIRLOCK_KEYRING_BACKEND=file",
    };
    backend_error(format!("could not {what}: {}", errno_text(errno)), fix)
}

impl Backend for KeyutilsBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Keyutils
    }

    fn location(&self) -> String {
        format!(
            "kernel keyring (lost at reboot): keyring \"{KEYRING_NAME}\" in the session keyring"
        )
    }

    fn get(&self, id: &CredentialId) -> Result<Option<Record>> {
        match self.find(id)? {
            Some(key) => self.read(key, id),
            None => Ok(None),
        }
    }

    fn put(&self, record: Record) -> Result<()> {
        let _guard = self.lock(WRITE_LOCK)?;
        self.put_unlocked(record)
    }

    fn remove(&self, id: &CredentialId) -> Result<bool> {
        let _guard = self.lock(WRITE_LOCK)?;
        self.remove_unlocked(id)
    }

    fn list(&self) -> Result<Vec<Record>> {
        let Some(ring) = self.ring(false)? else {
            return Ok(Vec::new());
        };
        let links = match sys::links(ring) {
            Ok(l) => l,
            Err(e) if is_absent(e) => return Ok(Vec::new()),
            Err(e) => return Err(sys_error("read the airlock keyring", e)),
        };
        let mut out = Vec::new();
        for key in links {
            let Ok((ktype, desc)) = sys::describe(key) else {
                // Gone since the links were read, or not ours to see.
                continue;
            };
            if ktype != "user" {
                continue;
            }
            let Some(id) = parse_description(&desc) else {
                continue;
            };
            if let Some(r) = self.read(key, &id)? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out.dedup_by(|a, b| a.id == b.id);
        Ok(out)
    }

    fn update(
        &self,
        id: &CredentialId,
        f: &mut dyn FnMut(Option<Record>) -> Result<Option<Record>>,
    ) -> Result<()> {
        let _guard = self.lock(WRITE_LOCK)?;
        let current = self.get(id)?;
        match f(current)? {
            Some(r) => {
                if r.id != *id {
                    return Err(Error::Other(format!(
                        "internal error: an update of {id} returned a record for {}",
                        r.id
                    )));
                }
                self.put_unlocked(r)
            }
            None => self.remove_unlocked(id).map(|_| ()),
        }
    }

    fn persistent(&self) -> bool {
        false
    }
}

/// Thin wrappers over `add_key(2)` and `keyctl(2)`. Errors are errno values.
mod sys {
    use super::*;

    pub const KEY_SPEC_SESSION_KEYRING: i32 = -3;
    pub const KEY_SPEC_USER_KEYRING: i32 = -4;
    const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
    const KEYCTL_DESCRIBE: libc::c_long = 6;
    const KEYCTL_SEARCH: libc::c_long = 10;
    const KEYCTL_READ: libc::c_long = 11;
    const KEYCTL_INVALIDATE: libc::c_long = 21;

    fn errno() -> i32 {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    }

    fn check(ret: libc::c_long) -> std::result::Result<libc::c_long, i32> {
        if ret < 0 { Err(errno()) } else { Ok(ret) }
    }

    fn cstring(s: &str) -> std::result::Result<CString, i32> {
        CString::new(s).map_err(|_| libc::EINVAL)
    }

    fn serial(ret: libc::c_long) -> std::result::Result<i32, i32> {
        i32::try_from(ret).map_err(|_| libc::EINVAL)
    }

    pub fn get_keyring_id(special: i32, create: bool) -> std::result::Result<i32, i32> {
        // SAFETY: KEYCTL_GET_KEYRING_ID takes two integers.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_GET_KEYRING_ID,
                special as libc::c_long,
                libc::c_long::from(create),
            )
        };
        serial(check(ret)?)
    }

    /// Creates or updates the key `ktype`/`desc` in `ring`.
    pub fn add_key(
        ktype: &CStr,
        desc: &str,
        payload: &[u8],
        ring: i32,
    ) -> std::result::Result<i32, i32> {
        let desc = cstring(desc)?;
        let ptr = if payload.is_empty() {
            std::ptr::null()
        } else {
            payload.as_ptr()
        };
        // SAFETY: the strings are NUL-terminated and outlive the call; the
        // payload pointer and length describe a live slice (or are NULL/0).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_add_key,
                ktype.as_ptr(),
                desc.as_ptr(),
                ptr,
                payload.len(),
                ring as libc::c_long,
            )
        };
        serial(check(ret)?)
    }

    /// Searches `ring` (recursively) for a key of `ktype` described `desc`.
    pub fn search(ring: i32, ktype: &CStr, desc: &str) -> std::result::Result<i32, i32> {
        let desc = cstring(desc)?;
        // SAFETY: NUL-terminated strings that outlive the call; destination 0
        // means "link nowhere".
        let ret = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_SEARCH,
                ring as libc::c_long,
                ktype.as_ptr(),
                desc.as_ptr(),
                0 as libc::c_long,
            )
        };
        serial(check(ret)?)
    }

    /// `KEYCTL_READ` into a zeroizing buffer of exactly the right size.
    fn read_raw(key: i32) -> std::result::Result<SecretBytes, i32> {
        let mut buf = SecretBytes::new(Vec::new());
        loop {
            let cap = buf.len();
            // SAFETY: the pointer and length describe `buf`'s initialized
            // bytes (a NULL pointer with length 0 asks for the size).
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_keyctl,
                    KEYCTL_READ,
                    key as libc::c_long,
                    if cap == 0 {
                        std::ptr::null_mut()
                    } else {
                        buf.as_mut_ptr()
                    },
                    cap,
                )
            };
            let size = usize::try_from(check(ret)?).map_err(|_| libc::EINVAL)?;
            if size <= cap && cap > 0 {
                buf.truncate(size);
                return Ok(buf);
            }
            if size == 0 {
                return Ok(buf);
            }
            // First call, or the key grew in between: size the buffer and
            // read again. Growing a Zeroizing<Vec> could leave a copy behind,
            // so allocate a fresh one.
            buf = SecretBytes::new(vec![0; size]);
        }
    }

    /// A key's payload.
    pub fn read(key: i32) -> std::result::Result<SecretBytes, i32> {
        read_raw(key)
    }

    /// The serial numbers linked from keyring `ring`.
    pub fn links(ring: i32) -> std::result::Result<Vec<i32>, i32> {
        let raw = read_raw(ring)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// A key's type and description.
    pub fn describe(key: i32) -> std::result::Result<(String, String), i32> {
        let mut buf = vec![0u8; 512];
        loop {
            // SAFETY: the pointer and length describe `buf`.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_keyctl,
                    KEYCTL_DESCRIBE,
                    key as libc::c_long,
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            let size = usize::try_from(check(ret)?).map_err(|_| libc::EINVAL)?;
            if size > buf.len() {
                buf = vec![0u8; size];
                continue;
            }
            // "type;uid;gid;perm;description\0"
            let text = CStr::from_bytes_until_nul(&buf[..size])
                .map_err(|_| libc::EINVAL)?
                .to_str()
                .map_err(|_| libc::EINVAL)?;
            let mut parts = text.splitn(5, ';');
            let ktype = parts.next().ok_or(libc::EINVAL)?.to_owned();
            let desc = parts.nth(3).ok_or(libc::EINVAL)?.to_owned();
            return Ok((ktype, desc));
        }
    }

    /// Destroys a key at once, removing it from every keyring.
    pub fn invalidate(key: i32) -> std::result::Result<(), i32> {
        // SAFETY: KEYCTL_INVALIDATE takes one integer.
        let ret =
            unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, key as libc::c_long) };
        check(ret).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_round_trip_and_foreign_ones_are_ignored() {
        let id = CredentialId::new("claude", "work").unwrap();
        assert_eq!(description(&id), "airlock:claude:work");
        assert_eq!(parse_description("airlock:claude:work"), Some(id));
        for other in [
            "airlock",
            "airlock:",
            "airlock:claude",
            "other:claude:work",
            "airlock:Bad:x",
        ] {
            assert_eq!(parse_description(other), None, "{other}");
        }
    }
}
