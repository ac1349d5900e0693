//! Linux Secret Service backend. WORK IN PROGRESS.

use super::{Backend, BackendKind, CredentialId, Record};
use crate::error::{Error, Result};

/// Checks quickly whether a Secret Service answers; `Err` says why not.
pub fn probe() -> std::result::Result<(), String> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return Err("DBUS_SESSION_BUS_ADDRESS is not set".into());
    }
    Err("Secret Service support is not implemented yet".into())
}

/// Records stored as Secret Service items.
#[derive(Debug)]
pub struct SecretServiceBackend;

impl SecretServiceBackend {
    /// Connects to the session bus.
    pub fn connect() -> Result<Self> {
        Err(unavailable())
    }
}

fn unavailable() -> Error {
    Error::Backend {
        backend: "secret-service".into(),
        detail: "not implemented yet".into(),
        fix: "set AIRLOCK_KEYRING_BACKEND=file".into(),
    }
}

impl Backend for SecretServiceBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::SecretService
    }
    fn location(&self) -> String {
        "Secret Service".into()
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
