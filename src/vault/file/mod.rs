//! The encrypted-file backend (format: docs/vault-format.md). WORK IN PROGRESS.

use std::path::PathBuf;
use std::time::Duration;

use super::{Backend, BackendKind, CredentialId, Record};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The environment variable holding the vault passphrase.
pub const PASSPHRASE_ENV: &str = "AIRLOCK_KEYRING_PASSWORD";

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
    opts: FileOptions,
}

impl FileBackend {
    /// Prepares the backend; nothing is read or unlocked yet.
    pub fn open(opts: FileOptions) -> Result<Self> {
        Ok(FileBackend { opts })
    }
    fn todo(&self) -> Error {
        Error::Other(format!("file vault {} not implemented yet", self.opts.path.display()))
    }
}

impl Backend for FileBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::File
    }
    fn location(&self) -> String {
        self.opts.path.display().to_string()
    }
    fn get(&self, _id: &CredentialId) -> Result<Option<Record>> {
        Err(self.todo())
    }
    fn put(&self, _record: Record) -> Result<()> {
        Err(self.todo())
    }
    fn remove(&self, _id: &CredentialId) -> Result<bool> {
        Err(self.todo())
    }
    fn list(&self) -> Result<Vec<Record>> {
        Err(self.todo())
    }
}
