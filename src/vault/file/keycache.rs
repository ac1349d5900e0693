//! Caching the derived vault key for a bounded time, as sudo keeps its
//! timestamp (see "The key cache" in `docs/vault-format.md`).
//!
//! On Linux the master key is kept in the kernel keyring as a `user` key with
//! a kernel timeout: in the session keyring, else the user keyring, else
//! nowhere. Elsewhere nothing is cached. Every failure here is soft: the cache
//! is an optimisation, so problems are logged at debug level and the caller
//! falls back to deriving the key.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::format::{KdfParams, MasterKey, SALT_LEN};

/// Salt and three u32 parameters.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const PREFIX_LEN: usize = SALT_LEN + 12;
/// The prefix, then the key.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const PAYLOAD_LEN: usize = PREFIX_LEN + 32;

/// The cache entry for one vault file.
#[derive(Debug, Clone)]
pub struct KeyCache {
    description: String,
    ttl: Duration,
}

impl KeyCache {
    /// The cache for the vault at `path` (made absolute here), keeping keys
    /// for `ttl`.
    pub fn new(path: &Path, ttl: Duration) -> Self {
        KeyCache {
            description: description(path),
            ttl,
        }
    }

    /// The kernel key description (not secret).
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// `airlock:vault-key:<hex of the first 16 bytes of SHA-256 of the absolute path>`.
pub fn description(path: &Path) -> String {
    let abs = absolute(path);
    let digest = Sha256::digest(abs.as_os_str().as_encoded_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("airlock:vault-key:{hex}")
}

/// The path with its directory resolved (the file itself may not exist yet).
fn absolute(path: &Path) -> std::path::PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or(abs.clone()),
        _ => abs,
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use linux_keyutils::{Key, KeyPermissionsBuilder, KeyRing, KeyRingIdentifier, Permission};
    use zeroize::Zeroizing;

    use super::{KdfParams, KeyCache, MasterKey, PAYLOAD_LEN, PREFIX_LEN, SALT_LEN};

    const RINGS: [(KeyRingIdentifier, &str); 2] = [
        (KeyRingIdentifier::Session, "session"),
        (KeyRingIdentifier::User, "user"),
    ];

    /// What identifies the vault a key belongs to: salt and parameters.
    fn prefix(salt: &[u8; SALT_LEN], p: KdfParams) -> [u8; PREFIX_LEN] {
        let mut b = [0u8; PREFIX_LEN];
        b[..16].copy_from_slice(salt);
        b[16..20].copy_from_slice(&p.m_cost.to_le_bytes());
        b[20..24].copy_from_slice(&p.t_cost.to_le_bytes());
        b[24..28].copy_from_slice(&p.p_cost.to_le_bytes());
        b
    }

    fn payload(
        salt: &[u8; SALT_LEN],
        p: KdfParams,
        key: &MasterKey,
    ) -> Zeroizing<[u8; PAYLOAD_LEN]> {
        let mut b = Zeroizing::new([0u8; PAYLOAD_LEN]);
        b[..PREFIX_LEN].copy_from_slice(&prefix(salt, p));
        b[PREFIX_LEN..].copy_from_slice(key.expose());
        b
    }

    fn find(desc: &str) -> Option<(Key, &'static str)> {
        RINGS.iter().find_map(|(id, name)| {
            let ring = KeyRing::from_special_id(*id, false).ok()?;
            ring.search(desc).ok().map(|k| (k, *name))
        })
    }

    impl KeyCache {
        /// The cached key for a vault with this salt and these parameters.
        /// An entry for anything else (the vault was re-created) is dropped.
        pub fn get(&self, salt: &[u8; SALT_LEN], params: KdfParams) -> Option<MasterKey> {
            let (key, ring) = find(&self.description)?;
            let mut buf = Zeroizing::new([0u8; PAYLOAD_LEN + 1]);
            let n = match key.read(&mut *buf) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(ring, error = %e, "cached vault key unreadable; ignoring it");
                    return None;
                }
            };
            if n != PAYLOAD_LEN || buf[..PREFIX_LEN] != prefix(salt, params) {
                tracing::debug!(
                    ring,
                    "cached vault key belongs to another vault file; dropping it"
                );
                let _ = key.invalidate();
                return None;
            }
            let mut k = Zeroizing::new([0u8; 32]);
            k.copy_from_slice(&buf[PREFIX_LEN..PAYLOAD_LEN]);
            tracing::debug!(ring, "vault key taken from the kernel keyring cache");
            Some(MasterKey::from_bytes(*k))
        }

        /// Caches `key` for the configured time. Never fails: if no keyring
        /// accepts the key, nothing is cached and the reason is logged.
        pub fn put(&self, salt: &[u8; SALT_LEN], params: KdfParams, key: &MasterKey) {
            let secs = self.ttl.as_secs().max(1) as usize;
            let data = payload(salt, params, key);
            let perms = KeyPermissionsBuilder::builder()
                .posessor(
                    Permission::VIEW
                        | Permission::READ
                        | Permission::WRITE
                        | Permission::SEARCH
                        | Permission::SETATTR,
                )
                .user(Permission::VIEW)
                .build();
            let mut why = Vec::new();
            for (id, name) in RINGS {
                let attempt = (|| {
                    let ring = KeyRing::from_special_id(id, false)?;
                    let k = ring.add_key(&self.description, &data[..])?;
                    // Until the timeout is set the key would live forever:
                    // if either step fails, remove it again.
                    let ok = k.set_timeout(secs).and_then(|_| k.set_perms(perms));
                    if let Err(e) = ok {
                        let _ = k.invalidate();
                        return Err(e);
                    }
                    // A key we cannot find and read back (not possessed
                    // through this keyring) is no use as a cache.
                    let mut back = Zeroizing::new([0u8; PAYLOAD_LEN]);
                    match ring
                        .search(&self.description)
                        .and_then(|f| f.read(&mut *back))
                    {
                        Ok(PAYLOAD_LEN) if back[..] == data[..] => Ok(()),
                        Ok(_) | Err(_) => {
                            let _ = k.invalidate();
                            Err(linux_keyutils::KeyError::AccessDenied)
                        }
                    }
                })();
                match attempt {
                    Ok(()) => {
                        tracing::debug!(
                            ring = name,
                            seconds = secs,
                            "vault key cached in the kernel keyring"
                        );
                        return;
                    }
                    Err(e) => why.push(format!("{name} keyring: {e}")),
                }
            }
            tracing::debug!(reasons = %why.join("; "), "vault key not cached");
        }

        /// Removes the cached key; returns whether one was found.
        pub fn forget(&self) -> bool {
            let mut found = false;
            // A key may be linked from both keyrings; a few rounds suffice.
            for _ in 0..4 {
                let Some((key, ring)) = find(&self.description) else {
                    break;
                };
                found = true;
                if let Err(e) = key.invalidate() {
                    tracing::debug!(ring, error = %e, "could not invalidate the cached vault key");
                    break;
                }
                tracing::debug!(ring, "cached vault key invalidated");
            }
            found
        }
    }
}

#[cfg(not(target_os = "linux"))]
impl KeyCache {
    /// No key cache on this platform.
    pub fn get(&self, _salt: &[u8; SALT_LEN], _params: KdfParams) -> Option<MasterKey> {
        None
    }
    /// No key cache on this platform.
    pub fn put(&self, _salt: &[u8; SALT_LEN], _params: KdfParams, _key: &MasterKey) {
        tracing::debug!("no vault key cache on this platform");
    }
    /// No key cache on this platform.
    pub fn forget(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_names_the_path_not_a_secret() {
        let d = tempfile::tempdir().unwrap();
        let a = description(&d.path().join("vault.airlock"));
        assert!(a.starts_with("airlock:vault-key:"), "{a}");
        assert_eq!(a.len(), "airlock:vault-key:".len() + 32);
        assert_ne!(a, description(&d.path().join("other.airlock")));
        // Relative and absolute spellings of the same file agree.
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            description(Path::new("x.airlock")),
            description(&cwd.join("x.airlock"))
        );
    }
}
