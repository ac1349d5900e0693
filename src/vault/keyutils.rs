//! Linux kernel keyring backend. WORK IN PROGRESS.

use super::{Backend, BackendKind, CredentialId, Record};
use crate::error::{Error, Result};

/// Records stored as Secret Service items.
#[derive(Debug)]
pub struct KeyutilsBackend;

impl KeyutilsBackend {
    /// Connects to the session bus.
    pub fn open() -> Result<Self> {
        Err(unavailable())
    }
}

fn unavailable() -> Error {
    Error::Backend {
        backend: "keyutils".into(),
        detail: "not implemented yet".into(),
        fix: "set AIRLOCK_KEYRING_BACKEND=file".into(),
    }
}

impl Backend for KeyutilsBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Keyutils
    }
    fn location(&self) -> String {
        "kernel keyring".into()
    }
    fn get(&self, _id: &CredentialId) -> Result<Option<Record>> {
        Err(unavailable())
    }
    fn put(&self, _record: Record) -> Result<()> {
        Err(unavailable())
    }
    fn remove(&self, _id: &CredentialId) -> Result<bool> {
        Err(unavailable())
    }
    fn list(&self) -> Result<Vec<Record>> {
        Err(unavailable())
    }
}
