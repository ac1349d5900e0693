//! macOS Keychain backend (compiled on macOS only).
//!
//! Each record is a generic password in the login keychain with service
//! `airlock` and account `<agent>:<account>`, holding the record as
//! [`codec`](super::codec) JSON. The Keychain has no practical size limit.
//! Listing uses a non-secret index of ids in airlock's data directory (see
//! the `native` module), because keychain search is not portable across the
//! two native stores. Inspect an entry with
//! `security find-generic-password -s airlock -a claude:default -w`.
//!
//! This file is deliberately thin: the logic it relies on (index, locking)
//! is shared with Windows and tested on Linux. It cannot be compiled or run
//! on the Linux machines airlock is developed on.

use std::path::PathBuf;

use super::BackendKind;
use super::native::{CoreStore, NativeBackend, NativeOptions};
use crate::paths::Paths;

/// Records stored as generic passwords in the login Keychain.
#[derive(Debug)]
pub struct KeychainBackend(NativeBackend<CoreStore>);

impl KeychainBackend {
    /// The login Keychain; the index lives in airlock's data directory.
    pub fn new() -> Self {
        let data_dir = Paths::from_env()
            .map(|p| p.data_dir)
            .map_err(|e| e.to_string());
        Self::with_data_dir(data_dir)
    }

    /// The login Keychain, with the index in `data_dir`.
    pub fn with_data_dir(data_dir: std::result::Result<PathBuf, String>) -> Self {
        let store = apple_native_keyring_store::keychain::Store::new()
            .map(|s| s as std::sync::Arc<keyring_core::CredentialStore>)
            .map_err(|e| e.to_string());
        KeychainBackend(NativeBackend::new(
            CoreStore {
                store,
                modifiers: &[],
                kind: BackendKind::Keychain,
                access_fix: "unlock the login keychain (Keychain Access) and allow airlock access when macOS asks, or set AIRLOCK_KEYRING_BACKEND=file",
            },
            NativeOptions {
                kind: BackendKind::Keychain,
                location: "macOS login Keychain, service \"airlock\"".into(),
                data_dir,
                max_secret: None,
            },
        ))
    }
}

impl Default for KeychainBackend {
    fn default() -> Self {
        Self::new()
    }
}

super::native::delegate_backend!(KeychainBackend);
