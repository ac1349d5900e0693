//! The encrypted-file backend: every record in one file, encrypted with
//! XChaCha20-Poly1305 under a key derived from a passphrase with Argon2id.
//!
//! The format is specified in `docs/vault-format.md`; [`format`](mod@format) implements
//! it. This module adds the file handling around it:
//!
//! * reads need no lock (writers replace the file with an atomic rename);
//! * every write takes an advisory lock on `<vault>.lock`, re-reads the file,
//!   applies its change and writes atomically, so concurrent writers lose
//!   nothing and a crash leaves the old file or the new one;
//! * a vault file or directory that is a symlink, accessible by others, or
//!   owned by another user is refused ([`Error::Unsafe`]) and left alone;
//! * the passphrase comes from [`Passphrase`]: `AIRLOCK_KEYRING_PASSWORD`, or
//!   a hidden prompt on the terminal; never a command-line argument;
//! * the derived key is cached for a bounded time ([`keycache`]) so that warm
//!   commands do not pay for Argon2id again; [`Backend::lock`] forgets it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Backend, BackendKind, CredentialId, Handover, Record, codec};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::secret::Secret;

pub mod format;
pub mod keycache;
mod prompt;

use format::{FormatError, Header, KdfParams, Keys};
use keycache::KeyCache;

/// The environment variable holding the vault passphrase.
pub const PASSPHRASE_ENV: &str = "AIRLOCK_KEYRING_PASSWORD";

/// The environment variable that sets the Argon2id cost of **newly created**
/// vaults: `m=<KiB>,t=<passes>,p=<lanes>`, refused below `m=1024,t=1`. Meant
/// for test suites; existing vaults keep the cost stored in their header.
pub const KDF_ENV: &str = "AIRLOCK_VAULT_KDF";

/// How long a derived key is cached when the caller does not say.
pub const DEFAULT_KEY_CACHE: Duration = Duration::from_secs(300);

/// Where the passphrase comes from.
#[derive(Debug)]
pub enum Passphrase {
    /// Given (from `AIRLOCK_KEYRING_PASSWORD`, or by a library caller).
    Provided(Secret),
    /// Ask on the terminal when needed.
    Prompt,
    /// None available: opening a locked vault fails with a clear error.
    Unavailable,
}

impl Passphrase {
    /// `AIRLOCK_KEYRING_PASSWORD` if set, else a prompt when `interactive`.
    pub fn from_env(interactive: bool) -> Self {
        match std::env::var(PASSPHRASE_ENV) {
            Ok(v) if !v.is_empty() => Passphrase::Provided(Secret::new(v)),
            _ if interactive => Passphrase::Prompt,
            _ => Passphrase::Unavailable,
        }
    }
}

/// Options for [`FileBackend::open`].
#[derive(Debug)]
pub struct FileOptions {
    /// The vault file.
    pub path: PathBuf,
    /// The passphrase source.
    pub passphrase: Passphrase,
    /// Derived-key cache lifetime; `None` disables caching.
    pub key_cache: Option<Duration>,
}

/// The encrypted file.
#[derive(Debug)]
pub struct FileBackend {
    path: PathBuf,
    lock_path: PathBuf,
    passphrase: Passphrase,
    key_cache: Option<Duration>,
    cache: KeyCache,
    new_params: Option<KdfParams>,
    /// Keys of the vault last opened by this process, so one command derives
    /// (or prompts) at most once.
    unlocked: Mutex<Option<Unlocked>>,
}

#[derive(Debug, Clone)]
struct Unlocked {
    salt: [u8; format::SALT_LEN],
    params: KdfParams,
    keys: Keys,
}

/// A decrypted vault: its header (kept for rewriting) and records.
struct Opened {
    header: Header,
    keys: Keys,
    records: BTreeMap<CredentialId, Record>,
}

impl FileBackend {
    /// Prepares the backend; nothing is read, created or unlocked yet.
    pub fn open(opts: FileOptions) -> Result<Self> {
        let name = opts
            .path
            .file_name()
            .ok_or_else(|| {
                Error::Usage(format!(
                    "the vault path {} does not name a file: set vault.path to a file such as ~/.local/share/airlock/vault.airlock",
                    opts.path.display()
                ))
            })?
            .to_string_lossy()
            .into_owned();
        let lock_path = opts.path.with_file_name(format!("{name}.lock"));
        let cache = KeyCache::new(&opts.path, opts.key_cache.unwrap_or(DEFAULT_KEY_CACHE));
        Ok(FileBackend {
            path: opts.path,
            lock_path,
            passphrase: opts.passphrase,
            key_cache: opts.key_cache,
            cache,
            new_params: None,
            unlocked: Mutex::new(None),
        })
    }

    /// Uses `params` instead of the defaults (or [`KDF_ENV`]) if this backend
    /// creates the vault. Existing vaults keep their own parameters.
    pub fn with_new_vault_params(mut self, params: KdfParams) -> Self {
        self.new_params = Some(params);
        self
    }

    /// The vault file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Argon2id parameters of the vault on disk, read from its header
    /// without a passphrase; `None` if there is no vault yet.
    pub fn stored_params(&self) -> Result<Option<KdfParams>> {
        match self.read_bytes()? {
            None => Ok(None),
            Some(bytes) => {
                let (h, _) = format::parse(&bytes).map_err(|e| self.format_error(e))?;
                Ok(Some(h.params))
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, Option<Unlocked>> {
        // The guarded value is replaced whole, so a panic elsewhere cannot
        // leave it half-written.
        self.unlocked.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn format_error(&self, e: FormatError) -> Error {
        match e {
            FormatError::Corrupt(detail) => Error::Corrupt {
                path: self.path.clone(),
                detail,
            },
            FormatError::UnsupportedVersion(found) => Error::UnsupportedVersion {
                path: self.path.clone(),
                found,
                supported: format::VERSION,
            },
            FormatError::WrongKey => Error::WrongPassphrase {
                path: self.path.clone(),
            },
        }
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The file's bytes, or `None` when there is no vault yet. Refuses an
    /// unsafe directory or file without touching it.
    fn read_bytes(&self) -> Result<Option<Vec<u8>>> {
        let dir = self.dir();
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("inspect", &dir, e)),
            // Exists: this only checks it (a symlink, other owner or open
            // permissions are refused).
            Ok(_) => fsutil::ensure_private_dir(&dir)?,
        }
        match fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("inspect", &self.path, e)),
            Ok(_) => fsutil::check_private_file(&self.path)?,
        }
        let mut opts = fs::OpenOptions::new();
        opts.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        }
        let file = match opts.open(&self.path) {
            Ok(f) => f,
            // Removed between the check and the open.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                // A symlink swapped in after the check fails with ELOOP: say so.
                fsutil::check_private_file(&self.path)?;
                return Err(Error::io("open", &self.path, e));
            }
        };
        // The file may have been replaced since the check (a writer's rename
        // is normal): check what was actually opened.
        let md = file
            .metadata()
            .map_err(|e| Error::io("inspect", &self.path, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if !md.is_file() || md.uid() != fsutil::euid() || md.mode() & 0o077 != 0 {
                fsutil::check_private_file(&self.path)?;
                return Err(Error::unsafe_path(
                    &self.path,
                    "it changed while being opened and is no longer a private regular file",
                    "check who else writes to this directory",
                ));
            }
        }
        if md.len() > format::MAX_FILE_LEN {
            return Err(self.format_error(FormatError::Corrupt(format!(
                "the file is {} bytes, larger than any vault airlock writes",
                md.len()
            ))));
        }
        let mut bytes = Vec::with_capacity(md.len() as usize);
        file.take(format::MAX_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("read", &self.path, e))?;
        Ok(Some(bytes))
    }

    /// Reads and decrypts the vault; `None` when there is none yet.
    fn load(&self) -> Result<Option<Opened>> {
        let Some(bytes) = self.read_bytes()? else {
            return Ok(None);
        };
        let (header, body) = format::parse(&bytes).map_err(|e| self.format_error(e))?;
        let keys = self.keys_for(&header)?;
        let plaintext = format::open(&header, body, &keys).map_err(|e| self.format_error(e))?;
        let list = codec::decode_set(&plaintext).map_err(|_| Error::Corrupt {
            path: self.path.clone(),
            detail: "the decrypted contents are not a valid record set".into(),
        })?;
        let records = list.into_iter().map(|r| (r.id.clone(), r)).collect();
        Ok(Some(Opened {
            header,
            keys,
            records,
        }))
    }

    /// The keys for `header`: from this process, from the key cache, or
    /// derived from the passphrase.
    fn keys_for(&self, header: &Header) -> Result<Keys> {
        self.keys_for_with(header, true)
    }

    /// [`Self::keys_for`]; without `may_prompt`, a passphrase that would be
    /// asked for on the terminal is treated as unavailable.
    fn keys_for_with(&self, header: &Header, may_prompt: bool) -> Result<Keys> {
        if let Some(u) = self.state().as_ref()
            && u.salt == header.salt
            && u.params == header.params
            && header.key_matches(&u.keys)
        {
            return Ok(u.keys.clone());
        }
        if self.key_cache.is_some()
            && let Some(master) = self.cache.get(&header.salt, header.params)
        {
            let keys = master.subkeys();
            if header.key_matches(&keys) {
                self.remember(header, &keys, false);
                return Ok(keys);
            }
            tracing::debug!("cached vault key does not open this vault; dropping it");
            self.cache.forget();
        }
        if !may_prompt && !matches!(self.passphrase, Passphrase::Provided(_)) {
            return Err(Error::NoPassphrase {
                path: self.path.clone(),
            });
        }
        // At a prompt, a typo gets two more tries (as sudo does).
        let attempts = if matches!(self.passphrase, Passphrase::Prompt) {
            3
        } else {
            1
        };
        for attempt in 1..=attempts {
            let pass = self.passphrase(false)?;
            let started = Instant::now();
            let master = header
                .params
                .derive(pass.expose().as_bytes(), &header.salt)
                .map_err(|detail| self.format_error(FormatError::Corrupt(detail)))?;
            tracing::debug!(
                params = %header.params,
                ms = started.elapsed().as_millis() as u64,
                "derived the vault key"
            );
            let keys = master.subkeys();
            if header.key_matches(&keys) {
                self.remember(header, &keys, true);
                return Ok(keys);
            }
            if attempt < attempts {
                prompt::notice("Wrong passphrase, try again.\n");
            }
        }
        Err(self.format_error(FormatError::WrongKey))
    }

    /// Keeps keys for the rest of this process and, when `to_cache`, in the
    /// key cache.
    fn remember(&self, header: &Header, keys: &Keys, to_cache: bool) {
        *self.state() = Some(Unlocked {
            salt: header.salt,
            params: header.params,
            keys: keys.clone(),
        });
        if to_cache && self.key_cache.is_some() {
            self.cache.put(&header.salt, header.params, keys.master());
        }
    }

    /// The passphrase; asked twice on the terminal when creating a vault.
    fn passphrase(&self, new_vault: bool) -> Result<Secret> {
        match &self.passphrase {
            Passphrase::Provided(s) => Ok(s.clone()),
            Passphrase::Unavailable => Err(Error::NoPassphrase {
                path: self.path.clone(),
            }),
            Passphrase::Prompt => {
                let first = self.ask(if new_vault {
                    format!(
                        "New passphrase for the airlock vault at {}: ",
                        self.path.display()
                    )
                } else {
                    format!(
                        "Passphrase for the airlock vault at {}: ",
                        self.path.display()
                    )
                })?;
                if new_vault {
                    let again = self.ask("Type it again: ".into())?;
                    if again != first {
                        return Err(Error::Usage(
                            "the two passphrases differ; nothing was created: run the command again"
                                .into(),
                        ));
                    }
                }
                Ok(first)
            }
        }
    }

    fn ask(&self, prompt: String) -> Result<Secret> {
        prompt::read_hidden(&prompt).map_err(|e| match e {
            prompt::PromptError::NoTerminal => Error::NoPassphrase {
                path: self.path.clone(),
            },
            prompt::PromptError::Empty => Error::Usage(
                "no passphrase was typed: type the vault passphrase, or set AIRLOCK_KEYRING_PASSWORD"
                    .into(),
            ),
            prompt::PromptError::Io(err) => Error::io("read the passphrase from", Path::new("/dev/tty"), err),
        })
    }

    /// Parameters for a vault created now.
    fn params_for_new_vault(&self) -> Result<KdfParams> {
        if let Some(p) = self.new_params {
            return Ok(p);
        }
        match std::env::var(KDF_ENV) {
            Ok(v) if !v.trim().is_empty() => {
                let p = KdfParams::parse(&v).map_err(|why| {
                    Error::Usage(format!(
                        "{KDF_ENV}={v:?} is not usable ({why}): use m=<KiB>,t=<passes>,p=<lanes>, or unset it"
                    ))
                })?;
                tracing::debug!(params = %p, "new vault uses the key-derivation cost from {KDF_ENV}");
                Ok(p)
            }
            _ => Ok(KdfParams::DEFAULT),
        }
    }

    /// A read-modify-write under the lock. `change` returns its result and
    /// whether it changed anything (nothing is written otherwise).
    fn modify<R>(
        &self,
        change: impl FnOnce(&mut BTreeMap<CredentialId, Record>) -> Result<(R, bool)>,
    ) -> Result<R> {
        fsutil::ensure_private_dir(&self.dir())?;
        if fs::symlink_metadata(&self.path).is_ok() {
            // Refuse before creating the lock file next to it.
            fsutil::check_private_file(&self.path)?;
        }
        let _guard = fsutil::FileLock::exclusive(&self.lock_path)?;
        fsutil::clean_stale_temps(&self.path);
        let (out, written) = match self.load()? {
            Some(o) => {
                let mut records = o.records;
                let (out, changed) = change(&mut records)?;
                if changed {
                    self.write(&o.header, &o.keys, records)?;
                }
                (out, None)
            }
            None => {
                let mut records = BTreeMap::new();
                let (out, changed) = change(&mut records)?;
                if !changed {
                    // Nothing to store: do not create a vault (or ask for a
                    // passphrase) just to remove nothing.
                    return Ok(out);
                }
                let (header, keys) = self.create_keys()?;
                self.write(&header, &keys, records)?;
                (out, Some((header, keys)))
            }
        };
        if let Some((header, keys)) = written {
            self.remember(&header, &keys, true);
        }
        Ok(out)
    }

    fn write(
        &self,
        header: &Header,
        keys: &Keys,
        records: BTreeMap<CredentialId, Record>,
    ) -> Result<()> {
        let list: Vec<Record> = records.into_values().collect();
        let plaintext = codec::encode_set(&list);
        let bytes = format::seal(header, &plaintext, keys).map_err(Error::Other)?;
        fsutil::write_atomic(&self.path, &bytes, 0o600)?;
        tracing::debug!(records = list.len(), bytes = bytes.len(), "vault written");
        Ok(())
    }

    /// Keys and header for a new vault (no file is written here).
    fn create_keys(&self) -> Result<(Header, Keys)> {
        let params = self.params_for_new_vault()?;
        let pass = self.passphrase(true)?;
        if pass.is_empty() {
            return Err(Error::Usage(format!(
                "refusing to create the vault at {} with an empty passphrase: set {PASSPHRASE_ENV}",
                self.path.display()
            )));
        }
        let salt = format::new_salt().map_err(Error::Other)?;
        let master = params
            .derive(pass.expose().as_bytes(), &salt)
            .map_err(Error::Other)?;
        let keys = master.subkeys();
        let header = Header::new(params, salt, &keys);
        tracing::debug!(params = %params, path = %self.path.display(), "creating a new vault");
        Ok((header, keys))
    }
}

impl Backend for FileBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::File
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn change_marker(&self) -> Option<std::path::PathBuf> {
        Some(self.path.clone())
    }

    fn get(&self, id: &CredentialId) -> Result<Option<Record>> {
        Ok(self.load()?.and_then(|mut o| o.records.remove(id)))
    }

    fn put(&self, record: Record) -> Result<()> {
        self.modify(|m| {
            m.insert(record.id.clone(), record);
            Ok(((), true))
        })
    }

    fn remove(&self, id: &CredentialId) -> Result<bool> {
        self.modify(|m| {
            let existed = m.remove(id).is_some();
            Ok((existed, existed))
        })
    }

    fn list(&self) -> Result<Vec<Record>> {
        Ok(self
            .load()?
            .map(|o| o.records.into_values().collect())
            .unwrap_or_default())
    }

    fn update(
        &self,
        id: &CredentialId,
        f: &mut dyn FnMut(Option<Record>) -> Result<Option<Record>>,
    ) -> Result<()> {
        self.modify(|m| {
            let before = m.get(id).cloned();
            let after = f(before.clone())?;
            let changed = before != after;
            match after {
                Some(r) => {
                    m.insert(id.clone(), r);
                }
                None => {
                    m.remove(id);
                }
            }
            Ok(((), changed))
        })
    }

    fn unlock_unattended(&self) -> Result<()> {
        let Some(bytes) = self.read_bytes()? else {
            // No vault yet: nothing to unlock.
            return Ok(());
        };
        let (header, _) = format::parse(&bytes).map_err(|e| self.format_error(e))?;
        self.keys_for_with(&header, false)?;
        tracing::debug!("vault unlocked for this process's life");
        Ok(())
    }

    fn forget_key(&self) {
        *self.state() = None;
    }

    fn hand_over(&self) -> Handover {
        let provided = matches!(self.passphrase, Passphrase::Provided(_));
        let held = self.state().clone();
        let Some(u) = held else {
            // Not unlocked by this process: its helpers need no key now (a
            // later command that unlocks warms the cache for them).
            return Handover::Nothing;
        };
        if self.key_cache.is_some() {
            // The cache may have expired since this command unlocked (it is
            // counted from the unlock): put the key back so that helpers
            // started now find it.
            let cached = self
                .cache
                .get(&u.salt, u.params)
                .is_some_and(|m| m.expose() == u.keys.master().expose());
            if !cached {
                self.cache.put(&u.salt, u.params, u.keys.master());
            }
            if cached || self.cache.get(&u.salt, u.params).is_some() {
                return Handover::KeyCache;
            }
        }
        if provided {
            return Handover::Passphrase;
        }
        let (why, fix) = if self.key_cache.is_none() {
            (
                "the vault key cache is off (vault.key_cache_seconds = 0)",
                " or set vault.key_cache_seconds above 0",
            )
        } else {
            (
                "the vault key cache is not available here (no kernel keyring)",
                "",
            )
        };
        Handover::Impossible(format!(
            "{why}, so the sync watcher and the sandbox waiter cannot unlock the vault and a refreshed session reaches the vault only when a foreground `airlock run` exits: export {PASSPHRASE_ENV} before starting sandboxes{fix}"
        ))
    }

    fn lock(&self) -> Result<()> {
        *self.state() = None;
        let found = self.cache.forget();
        tracing::debug!(
            found,
            key = self.cache.description(),
            "vault key cache cleared"
        );
        Ok(())
    }
}
