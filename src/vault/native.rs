//! What the macOS Keychain and Windows Credential Manager backends share.
//!
//! Those stores keep one secret under a name and cannot be searched the same
//! way on both systems, so [`NativeBackend`] adds, in airlock's data
//! directory:
//!
//! * `keyring-index.json`: the non-secret list of stored ids (agent and
//!   account), written atomically under the lock file `keyring.lock`. Every
//!   `put`, `remove` and `update` holds that lock from the store write to
//!   the index write, so concurrent processes lose nothing; a record deleted
//!   behind airlock's back is simply skipped by `list`.
//! * `keyring-blobs/` (Windows only): records larger than the store allows
//!   (Credential Manager: 2,560 bytes). Such a record is encrypted with
//!   XChaCha20-Poly1305 under a fresh random data key into a 0600 file named
//!   `<agent>@<account>.<random>.blob` (`nonce || ciphertext`, the id bound
//!   as associated data), and the OS store holds only
//!   `airlock-sealed-v1 <file name> <base64 key>`. A new file is written
//!   before the store entry is switched to it, so a reader sees the old pair
//!   or the new one.
//!
//! The OS-specific part is the small [`NativeStore`] trait. This module is
//! compiled on Linux for its tests, which use an in-memory store.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Backend, BackendKind, CredentialId, Record, SecretBytes, codec, validate_name};
use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};

/// The service name airlock's entries are filed under in the OS store.
pub(crate) const SERVICE: &str = "airlock";

const INDEX_FILE: &str = "keyring-index.json";
const LOCK_FILE: &str = "keyring.lock";
const BLOB_DIR: &str = "keyring-blobs";
const SEALED_MARKER: &str = "airlock-sealed-v1";

/// One secret per name in an OS credential store.
pub(crate) trait NativeStore: Send + Sync + fmt::Debug {
    /// Stores `secret` under `user` (creating or replacing it).
    fn set(&self, user: &str, secret: &[u8]) -> Result<()>;
    /// The secret under `user`, if any.
    fn get(&self, user: &str) -> Result<Option<SecretBytes>>;
    /// Deletes the secret under `user`; whether it existed.
    fn delete(&self, user: &str) -> Result<bool>;
}

/// Settings of a [`NativeBackend`].
#[derive(Debug)]
pub(crate) struct NativeOptions {
    /// Which backend this is.
    pub kind: BackendKind,
    /// For humans: where the secrets live.
    pub location: String,
    /// Holds the index, the lock and large blobs; `Err` says why there is none.
    pub data_dir: std::result::Result<PathBuf, String>,
    /// The largest secret the store takes, if it has a limit.
    pub max_secret: Option<usize>,
}

/// A [`Backend`] over a [`NativeStore`] plus the index in the data dir.
#[derive(Debug)]
pub(crate) struct NativeBackend<S> {
    store: S,
    opts: NativeOptions,
}

#[derive(Default, Serialize, Deserialize)]
struct Index {
    version: u16,
    ids: BTreeSet<CredentialId>,
}

/// The store name of a record: `<agent>:<account>`.
fn user_of(id: &CredentialId) -> String {
    id.to_string()
}

impl<S: NativeStore> NativeBackend<S> {
    pub(crate) fn new(store: S, opts: NativeOptions) -> Self {
        NativeBackend { store, opts }
    }

    fn backend_error(&self, detail: impl Into<String>, fix: impl Into<String>) -> Error {
        Error::Backend {
            backend: self.opts.kind.to_string(),
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    fn dir(&self) -> Result<&Path> {
        self.opts.data_dir.as_deref().map_err(|why| {
            self.backend_error(
                format!("airlock has no data directory for its index ({why})"),
                "set AIRLOCK_DATA_DIR",
            )
        })
    }

    fn index_path(&self) -> Result<PathBuf> {
        Ok(self.dir()?.join(INDEX_FILE))
    }

    /// Holds the write lock; creates the data directory.
    fn lock(&self) -> Result<FileLock> {
        let dir = self.dir()?;
        fsutil::ensure_private_dir(dir)?;
        FileLock::exclusive(&dir.join(LOCK_FILE))
    }

    fn read_index(&self) -> Result<Index> {
        let path = self.index_path()?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: path.clone(),
            detail: format!(
                "not a valid index (line {}, column {}); it lists ids only and can be deleted, airlock then lists nothing until credentials are stored again",
                e.line(),
                e.column()
            ),
        })?;
        if index.version != 1 {
            return Err(Error::UnsupportedVersion {
                path,
                found: index.version,
                supported: 1,
            });
        }
        Ok(index)
    }

    fn write_index(&self, index: &mut Index) -> Result<()> {
        index.version = 1;
        let path = self.index_path()?;
        let bytes = serde_json::to_vec_pretty(index)
            .map_err(|e| Error::Other(format!("could not encode the keyring index: {e}")))?;
        fsutil::write_atomic(&path, &bytes, 0o600)
    }

    fn blob_dir(&self) -> Result<PathBuf> {
        Ok(self.dir()?.join(BLOB_DIR))
    }

    /// Reads the record stored under `id`, opening a sealed blob if needed.
    fn load(&self, id: &CredentialId) -> Result<Option<Record>> {
        let Some(stored) = self.store.get(&user_of(id))? else {
            return Ok(None);
        };
        let plain = match parse_sealed(&stored) {
            Some(sealed) => {
                let sealed = sealed.map_err(|detail| self.corrupt_entry(id, detail))?;
                self.open_blob(id, &sealed)?
            }
            None => stored,
        };
        let record =
            codec::decode_record(&plain).map_err(|e| self.corrupt_entry(id, e.to_string()))?;
        if record.id != *id {
            return Err(self.corrupt_entry(id, format!("it holds the record of {}", record.id)));
        }
        Ok(Some(record))
    }

    fn corrupt_entry(&self, id: &CredentialId, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            path: PathBuf::from(format!(
                "{} entry {SERVICE}/{}",
                self.opts.kind,
                user_of(id)
            )),
            detail: detail.into(),
        }
    }

    fn open_blob(&self, id: &CredentialId, sealed: &Sealed) -> Result<SecretBytes> {
        let path = self.blob_dir()?.join(&sealed.file);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Corrupt {
                    path,
                    detail: format!(
                        "the {} entry for {id} points to this file, which is missing",
                        self.opts.kind
                    ),
                });
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        if bytes.len() < 24 {
            return Err(Error::Corrupt {
                path,
                detail: "too short to hold a sealed record".into(),
            });
        }
        let (nonce, ct) = bytes.split_at(24);
        let mut n = [0u8; 24];
        n.copy_from_slice(nonce);
        let cipher = XChaCha20Poly1305::new_from_slice(&sealed.key[..])
            .map_err(|_| self.corrupt_entry(id, "the data key has the wrong length"))?;
        let aad = blob_aad(id);
        let plain = cipher
            .decrypt(&XNonce::from(n), Payload { msg: ct, aad: &aad })
            .map_err(|_| Error::Corrupt {
                path: path.clone(),
                detail: format!(
                    "it does not decrypt with the data key in the {} entry for {id} (tampered with, or from another entry)",
                    self.opts.kind
                ),
            })?;
        Ok(SecretBytes::new(plain))
    }

    /// Writes `record`; the caller holds the lock. A blob the previous
    /// version used is deleted once the entry no longer points to it.
    fn store_locked(&self, record: &Record) -> Result<()> {
        // The fields are public: re-check what becomes an entry and a file name.
        validate_name("agent", &record.id.agent)?;
        validate_name("account", &record.id.account)?;
        let user = user_of(&record.id);
        let old_blob = self.current_blob(&record.id);
        let bytes = codec::encode_record(record);
        let fits = self.opts.max_secret.is_none_or(|max| bytes.len() <= max);
        if fits {
            self.store.set(&user, &bytes)?;
        } else {
            let entry = self.seal(&record.id, &bytes)?;
            self.store.set(&user, entry.as_bytes())?;
        }
        if let Some(old) = old_blob {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// The blob file the current entry for `id` points to, if it is sealed.
    fn current_blob(&self, id: &CredentialId) -> Option<PathBuf> {
        let stored = self.store.get(&user_of(id)).ok()??;
        let sealed = parse_sealed(&stored)?.ok()?;
        Some(self.blob_dir().ok()?.join(sealed.file))
    }

    /// Encrypts `plain` into a new blob file; returns the store entry.
    fn seal(&self, id: &CredentialId, plain: &[u8]) -> Result<Zeroizing<String>> {
        let dir = self.blob_dir()?;
        fsutil::ensure_private_dir(&dir)?;
        let mut key = Zeroizing::new([0u8; 32]);
        let mut nonce = [0u8; 24];
        let mut tag = [0u8; 8];
        for buf in [&mut key[..], &mut nonce[..], &mut tag[..]] {
            getrandom::fill(buf)
                .map_err(|e| Error::Other(format!("the system random generator failed: {e}")))?;
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&key[..])
            .map_err(|_| Error::Other("internal error: bad data key length".into()))?;
        let aad = blob_aad(id);
        let ct = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Other("internal error: encryption failed".into()))?;
        let mut file_bytes = Vec::with_capacity(24 + ct.len());
        file_bytes.extend_from_slice(&nonce);
        file_bytes.extend_from_slice(&ct);
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("{}@{}.{hex}.blob", id.agent, id.account);
        fsutil::write_atomic(&dir.join(&name), &file_bytes, 0o600)?;
        Ok(Zeroizing::new(format!(
            "{SEALED_MARKER} {name} {}",
            Zeroizing::new(B64.encode(&key[..])).as_str()
        )))
    }

    fn remove_locked(&self, id: &CredentialId) -> Result<bool> {
        let blob = self.current_blob(id);
        let existed = self.store.delete(&user_of(id))?;
        if let Some(b) = blob {
            let _ = std::fs::remove_file(b);
        }
        Ok(existed)
    }

    fn index_add(&self, id: &CredentialId) -> Result<()> {
        let mut index = self.read_index()?;
        if index.ids.insert(id.clone()) {
            self.write_index(&mut index)?;
        }
        Ok(())
    }

    fn index_remove(&self, id: &CredentialId) -> Result<()> {
        let mut index = self.read_index()?;
        if index.ids.remove(id) {
            self.write_index(&mut index)?;
        }
        Ok(())
    }
}

/// What a sealed store entry says.
struct Sealed {
    file: String,
    key: Zeroizing<Vec<u8>>,
}

/// `None`: not a sealed entry (a plain record). `Some(Err)`: a damaged one.
fn parse_sealed(stored: &[u8]) -> Option<std::result::Result<Sealed, String>> {
    let rest = stored.strip_prefix(SEALED_MARKER.as_bytes())?;
    let text = std::str::from_utf8(rest).ok();
    let parsed = text.and_then(|t| {
        let mut parts = t.trim_start().split(' ');
        let file = parts.next()?;
        let key = parts.next()?;
        let ok_name = !file.is_empty()
            && file.ends_with(".blob")
            && file
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@._-".contains(&b));
        if !ok_name || parts.next().is_some() {
            return None;
        }
        let key = Zeroizing::new(B64.decode(key).ok()?);
        Some(Sealed {
            file: file.to_owned(),
            key,
        })
    });
    Some(parsed.ok_or_else(|| "its sealed-record reference is malformed".to_owned()))
}

fn blob_aad(id: &CredentialId) -> Vec<u8> {
    format!("{SEALED_MARKER}:{id}").into_bytes()
}

impl<S: NativeStore> Backend for NativeBackend<S> {
    fn kind(&self) -> BackendKind {
        self.opts.kind
    }

    fn location(&self) -> String {
        match &self.opts.data_dir {
            Ok(d) => format!(
                "{} (index in {})",
                self.opts.location,
                d.join(INDEX_FILE).display()
            ),
            Err(_) => self.opts.location.clone(),
        }
    }

    fn get(&self, id: &CredentialId) -> Result<Option<Record>> {
        match self.load(id) {
            // A writer may have replaced a sealed record between our reading
            // the entry and its blob: read once more.
            Err(Error::Corrupt { .. }) if self.opts.max_secret.is_some() => self.load(id),
            other => other,
        }
    }

    fn put(&self, record: Record) -> Result<()> {
        let _lock = self.lock()?;
        self.store_locked(&record)?;
        self.index_add(&record.id)
    }

    fn remove(&self, id: &CredentialId) -> Result<bool> {
        let _lock = self.lock()?;
        let existed = self.remove_locked(id)?;
        self.index_remove(id)?;
        Ok(existed)
    }

    fn list(&self) -> Result<Vec<Record>> {
        let index = self.read_index()?;
        let mut out = Vec::with_capacity(index.ids.len());
        for id in &index.ids {
            if let Some(r) = self.get(id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn update(
        &self,
        id: &CredentialId,
        f: &mut dyn FnMut(Option<Record>) -> Result<Option<Record>>,
    ) -> Result<()> {
        let _lock = self.lock()?;
        let current = self.load(id)?;
        match f(current)? {
            Some(r) => {
                if r.id != *id {
                    return Err(Error::Other(format!(
                        "internal error: an update of {id} returned a record for {}",
                        r.id
                    )));
                }
                self.store_locked(&r)?;
                self.index_add(id)
            }
            None => {
                self.remove_locked(id)?;
                self.index_remove(id)
            }
        }
    }
}

/// A [`NativeStore`] over a `keyring-core` credential store (the macOS
/// Keychain and Windows Credential Manager crates implement that API).
#[cfg(any(target_os = "macos", windows, test))]
pub(crate) struct CoreStore {
    /// The store, or why it could not be opened.
    pub store: std::result::Result<std::sync::Arc<keyring_core::CredentialStore>, String>,
    /// Creation-time modifiers for every entry.
    pub modifiers: &'static [(&'static str, &'static str)],
    /// The backend's name, for errors.
    pub kind: BackendKind,
    /// What to do when the store cannot be accessed.
    pub access_fix: &'static str,
}

#[cfg(any(target_os = "macos", windows, test))]
impl fmt::Debug for CoreStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoreStore")
            .field("kind", &self.kind)
            .finish()
    }
}

#[cfg(any(target_os = "macos", windows, test))]
impl CoreStore {
    fn error(&self, what: &str, e: keyring_core::Error) -> Error {
        use keyring_core::Error as K;
        // Never `{e:?}`: some variants carry the secret's bytes. Their
        // Display does not.
        let fix = match &e {
            K::NoStorageAccess(_) => self.access_fix,
            K::TooLong(..) => {
                "the record is too large for this store: set AIRLOCK_KEYRING_BACKEND=file"
            }
            _ => "set AIRLOCK_KEYRING_BACKEND=file to use the encrypted file instead",
        };
        Error::Backend {
            backend: self.kind.to_string(),
            detail: format!("could not {what}: {e}"),
            fix: fix.into(),
        }
    }

    fn entry(&self, user: &str) -> Result<keyring_core::Entry> {
        let store = self.store.as_ref().map_err(|why| Error::Backend {
            backend: self.kind.to_string(),
            detail: format!("the credential store cannot be opened: {why}"),
            fix: "set AIRLOCK_KEYRING_BACKEND=file to use the encrypted file instead".into(),
        })?;
        let mods: std::collections::HashMap<&str, &str> = self.modifiers.iter().copied().collect();
        store
            .build(SERVICE, user, (!mods.is_empty()).then_some(&mods))
            .map_err(|e| self.error("name an entry", e))
    }
}

#[cfg(any(target_os = "macos", windows, test))]
impl NativeStore for CoreStore {
    fn set(&self, user: &str, secret: &[u8]) -> Result<()> {
        self.entry(user)?
            .set_secret(secret)
            .map_err(|e| self.error("store an entry", e))
    }

    fn get(&self, user: &str) -> Result<Option<SecretBytes>> {
        match self.entry(user)?.get_secret() {
            Ok(bytes) => Ok(Some(SecretBytes::new(bytes))),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(self.error("read an entry", e)),
        }
    }

    fn delete(&self, user: &str) -> Result<bool> {
        match self.entry(user)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(self.error("delete an entry", e)),
        }
    }
}

/// `impl Backend for $wrapper` by delegating every method to `self.0`, a
/// [`NativeBackend`]: the OS backends (keychain, Credential Manager) are
/// such wrappers.
macro_rules! delegate_backend {
    ($wrapper:ty) => {
        impl $crate::vault::Backend for $wrapper {
            fn kind(&self) -> $crate::vault::BackendKind {
                $crate::vault::Backend::kind(&self.0)
            }
            fn location(&self) -> String {
                $crate::vault::Backend::location(&self.0)
            }
            fn get(
                &self,
                id: &$crate::vault::CredentialId,
            ) -> $crate::error::Result<Option<$crate::vault::Record>> {
                $crate::vault::Backend::get(&self.0, id)
            }
            fn put(&self, record: $crate::vault::Record) -> $crate::error::Result<()> {
                $crate::vault::Backend::put(&self.0, record)
            }
            fn remove(&self, id: &$crate::vault::CredentialId) -> $crate::error::Result<bool> {
                $crate::vault::Backend::remove(&self.0, id)
            }
            fn list(&self) -> $crate::error::Result<Vec<$crate::vault::Record>> {
                $crate::vault::Backend::list(&self.0)
            }
            fn update(
                &self,
                id: &$crate::vault::CredentialId,
                f: &mut dyn FnMut(
                    Option<$crate::vault::Record>,
                ) -> $crate::error::Result<Option<$crate::vault::Record>>,
            ) -> $crate::error::Result<()> {
                $crate::vault::Backend::update(&self.0, id, f)
            }
        }
    };
}
// Used by keychain.rs and wincred.rs, which compile on macOS and Windows only.
#[cfg_attr(not(any(target_os = "macos", windows)), allow(unused_imports))]
pub(crate) use delegate_backend;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::secret::Secret;
    use crate::vault::{Metadata, Method};

    const CANARY: &str = "CANARYx7Q2zV9";

    /// Stands in for an OS store, with Credential Manager's size limit.
    #[derive(Debug, Default, Clone)]
    struct MemStore(Arc<Mutex<HashMap<String, Vec<u8>>>>);

    impl NativeStore for MemStore {
        fn set(&self, user: &str, secret: &[u8]) -> Result<()> {
            assert!(secret.len() <= 2560, "the store would refuse this");
            self.0.lock().unwrap().insert(user.into(), secret.to_vec());
            Ok(())
        }
        fn get(&self, user: &str) -> Result<Option<SecretBytes>> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .get(user)
                .cloned()
                .map(SecretBytes::new))
        }
        fn delete(&self, user: &str) -> Result<bool> {
            Ok(self.0.lock().unwrap().remove(user).is_some())
        }
    }

    /// The data dir, created 0700 by the backend (a tempdir is 0755).
    struct Data(PathBuf);
    impl Data {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    fn backend(store: &MemStore, dir: &Path) -> NativeBackend<MemStore> {
        NativeBackend::new(
            store.clone(),
            NativeOptions {
                kind: BackendKind::Wincred,
                location: "test store".into(),
                data_dir: Ok(dir.to_path_buf()),
                max_secret: Some(2560),
            },
        )
    }

    fn record(account: &str, secret: String) -> Record {
        Record {
            id: CredentialId::new("claude", account).unwrap(),
            method: Method::Session,
            secret: Secret::new(secret),
            meta: Metadata::new("test"),
        }
    }

    /// What the OS backends are: a wrapper that delegates.
    #[derive(Debug)]
    struct Wrapper(NativeBackend<MemStore>);
    delegate_backend!(Wrapper);

    #[test]
    fn a_delegating_wrapper_is_the_backend_it_wraps() {
        let t = tempfile::tempdir().unwrap();
        let store = MemStore::default();
        let w = Wrapper(backend(&store, &t.path().join("data")));
        let r = record("wrapped", format!("{CANARY}-w"));
        w.put(r.clone()).unwrap();
        assert_eq!(w.kind(), BackendKind::Wincred);
        assert_eq!(w.location(), w.0.location());
        assert!(w.location().starts_with("test store"));
        assert_eq!(w.get(&r.id).unwrap().as_ref(), Some(&r));
        assert_eq!(w.list().unwrap(), vec![r.clone()]);
        assert!(w.remove(&r.id).unwrap());
        assert_eq!(w.get(&r.id).unwrap(), None);
    }

    #[test]
    fn small_and_large_records_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let d = Data(t.path().join("data"));
        let store = MemStore::default();
        let b = backend(&store, d.path());
        let small = record("small", format!("{CANARY}-small"));
        let large = record("large", format!("{CANARY}{}", "x".repeat(10_000)));
        b.put(small.clone()).unwrap();
        b.put(large.clone()).unwrap();
        assert_eq!(b.get(&small.id).unwrap().as_ref(), Some(&small));
        assert_eq!(b.get(&large.id).unwrap().as_ref(), Some(&large));
        assert_eq!(b.list().unwrap(), vec![large.clone(), small.clone()]);

        // The store holds a reference and a key, the file only ciphertext.
        let entry = store.get("claude:large").unwrap().unwrap();
        assert!(entry.starts_with(SEALED_MARKER.as_bytes()));
        assert!(!String::from_utf8_lossy(&entry).contains(CANARY));
        let blobs: Vec<_> = std::fs::read_dir(d.path().join(BLOB_DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(blobs.len(), 1);
        let file = std::fs::read(&blobs[0]).unwrap();
        assert!(!String::from_utf8_lossy(&file).contains(CANARY));
        #[cfg(unix)]
        crate::fsutil::check_private_file(&blobs[0]).unwrap();
        // The index lists ids only.
        let index = std::fs::read_to_string(d.path().join(INDEX_FILE)).unwrap();
        assert!(
            index.contains("large") && !index.contains(CANARY),
            "{index}"
        );

        // Shrinking a large record removes its blob; growing makes one.
        let shrunk = record("large", "tiny".into());
        b.put(shrunk.clone()).unwrap();
        assert_eq!(b.get(&shrunk.id).unwrap().as_ref(), Some(&shrunk));
        assert_eq!(
            std::fs::read_dir(d.path().join(BLOB_DIR)).unwrap().count(),
            0
        );
        b.put(large.clone()).unwrap();
        let again = record("large", format!("{CANARY}{}", "y".repeat(9_000)));
        b.put(again.clone()).unwrap();
        assert_eq!(b.get(&again.id).unwrap().as_ref(), Some(&again));
        assert_eq!(
            std::fs::read_dir(d.path().join(BLOB_DIR)).unwrap().count(),
            1
        );

        assert!(b.remove(&again.id).unwrap());
        assert!(!b.remove(&again.id).unwrap());
        assert_eq!(
            std::fs::read_dir(d.path().join(BLOB_DIR)).unwrap().count(),
            0
        );
        assert_eq!(b.list().unwrap(), vec![small]);
    }

    #[test]
    fn tampering_is_detected_without_leaking() {
        let t = tempfile::tempdir().unwrap();
        let d = Data(t.path().join("data"));
        let store = MemStore::default();
        let b = backend(&store, d.path());
        let large = record("large", format!("{CANARY}{}", "x".repeat(5_000)));
        b.put(large.clone()).unwrap();
        let blob = std::fs::read_dir(d.path().join(BLOB_DIR))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&blob).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&blob, &bytes).unwrap();
        let e = b.get(&large.id).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert!(!format!("{e} {e:?}").contains(CANARY));

        // A blob moved to another id does not open there.
        b.put(record("other", format!("{CANARY}{}", "z".repeat(5_000))))
            .unwrap();
        let entry = store.get("claude:other").unwrap().unwrap();
        store.set("claude:large", &entry).unwrap();
        let e = b.get(&large.id).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");

        // A damaged plain entry.
        store
            .set("claude:large", format!("{{\"{CANARY}\"").as_bytes())
            .unwrap();
        let e = b.get(&large.id).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert!(!format!("{e} {e:?}").contains(CANARY));
    }

    #[test]
    fn entries_deleted_elsewhere_are_skipped_and_update_is_serialized() {
        let t = tempfile::tempdir().unwrap();
        let d = Data(t.path().join("data"));
        let store = MemStore::default();
        let b = backend(&store, d.path());
        b.put(record("gone", "x".into())).unwrap();
        store.delete("claude:gone").unwrap();
        assert_eq!(b.list().unwrap(), vec![]);

        let id = CredentialId::new("claude", "counter").unwrap();
        b.put(record("counter", "0".into())).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                let dir = d.path().to_path_buf();
                let id = id.clone();
                std::thread::spawn(move || {
                    let b = backend(&store, &dir);
                    for i in 0..5 {
                        b.put(record(&format!("w{t}-{i}"), "v".into())).unwrap();
                        b.update(&id, &mut |cur| {
                            let mut r = cur.unwrap();
                            let n: u32 = r.secret.expose().parse().unwrap();
                            r.secret = Secret::new((n + 1).to_string());
                            Ok(Some(r))
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.get(&id).unwrap().unwrap().secret.expose(), "20");
        assert_eq!(b.list().unwrap().len(), 21);
    }

    /// The keyring-core adapter, against keyring-core's in-memory mock store.
    #[test]
    fn core_store_adapter_maps_entries_and_absence() {
        let store = CoreStore {
            store: Ok(
                keyring_core::mock::Store::new().unwrap() as Arc<keyring_core::CredentialStore>
            ),
            modifiers: &[],
            kind: BackendKind::Keychain,
            access_fix: "unlock it",
        };
        assert!(store.get("claude:work").unwrap().is_none());
        assert!(!store.delete("claude:work").unwrap());
        store.set("claude:work", CANARY.as_bytes()).unwrap();
        assert_eq!(
            &store.get("claude:work").unwrap().unwrap()[..],
            CANARY.as_bytes()
        );
        assert!(store.delete("claude:work").unwrap());
        assert!(store.get("claude:work").unwrap().is_none());

        let t = tempfile::tempdir().unwrap();
        let b = NativeBackend::new(
            store,
            NativeOptions {
                kind: BackendKind::Keychain,
                location: "mock".into(),
                data_dir: Ok(t.path().join("data")),
                max_secret: None,
            },
        );
        let r = record("work", format!("{CANARY}{}", "x".repeat(5_000)));
        b.put(r.clone()).unwrap();
        assert_eq!(b.list().unwrap(), vec![r]);

        // A store that cannot be opened: a backend error, at use time.
        let broken = CoreStore {
            store: Err("no keychain".into()),
            modifiers: &[],
            kind: BackendKind::Keychain,
            access_fix: "unlock it",
        };
        let e = broken.get("claude:work").unwrap_err();
        assert_eq!(e.exit_code(), crate::error::ExitCode::Backend);
        assert!(e.to_string().contains("no keychain"), "{e}");
    }

    #[test]
    fn ids_built_by_hand_are_checked_before_they_become_names() {
        let t = tempfile::tempdir().unwrap();
        let b = backend(&MemStore::default(), &t.path().join("data"));
        let mut r = record("x", "y".repeat(5_000));
        r.id.account = "../../escape".into();
        assert!(b.put(r).is_err());
        assert!(!t.path().join("escape").exists());
    }

    #[test]
    fn sealed_references_are_parsed_strictly() {
        assert!(parse_sealed(b"{\"agent\":1}").is_none());
        assert!(
            parse_sealed(b"airlock-sealed-v1 ../x.blob AAAA")
                .unwrap()
                .is_err()
        );
        assert!(parse_sealed(b"airlock-sealed-v1 a.blob").unwrap().is_err());
        assert!(
            parse_sealed(b"airlock-sealed-v1 a.blob !!")
                .unwrap()
                .is_err()
        );
        let ok = parse_sealed(b"airlock-sealed-v1 claude@w.0a.blob AAAA")
            .unwrap()
            .unwrap();
        assert_eq!(ok.file, "claude@w.0a.blob");
    }
}
