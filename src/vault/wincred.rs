//! Windows Credential Manager backend (compiled on Windows only).
//!
//! Each record is a generic credential with target name
//! `<agent>:<account>.airlock`, local persistence (it does not roam), holding
//! the record as [`codec`](super::codec) JSON.
//!
//! Credential Manager limits a secret to 2,560 bytes, and an OAuth session
//! document can be larger. Such a record is encrypted (XChaCha20-Poly1305)
//! under a fresh random data key into a 0600 file in
//! `<data dir>\keyring-blobs\`, and Credential Manager keeps only the data
//! key and the file name. Listing uses a non-secret index of ids in the data
//! directory. Both are implemented, and tested on Linux, in the `native`
//! module. Inspect entries in Control Panel → Credential Manager →
//! Windows Credentials, or with `cmdkey /list`.
//!
//! This file is deliberately thin: it cannot be compiled or run on the Linux
//! machines airlock is developed on.

use std::path::PathBuf;

use super::BackendKind;
use super::native::{CoreStore, NativeBackend, NativeOptions};

/// The largest secret Credential Manager stores (`CRED_MAX_CREDENTIAL_BLOB_SIZE`).
pub const MAX_SECRET: usize = 2560;

/// Records stored in Windows Credential Manager.
#[derive(Debug)]
pub struct WincredBackend(NativeBackend<CoreStore>);

impl WincredBackend {
    /// Credential Manager; the index and large records live next to
    /// `vault_file` (the encrypted file's path, in airlock's data directory).
    pub fn new(vault_file: PathBuf) -> Self {
        let data_dir = match vault_file.parent() {
            Some(d) if !d.as_os_str().is_empty() => Ok(d.to_path_buf()),
            _ => Err(format!("{} has no parent directory", vault_file.display())),
        };
        let store = windows_native_keyring_store::Store::new()
            .map(|s| s as std::sync::Arc<keyring_core::CredentialStore>)
            .map_err(|e| e.to_string());
        WincredBackend(NativeBackend::new(
            CoreStore {
                store,
                modifiers: &[("persistence", "local")],
                kind: BackendKind::Wincred,
                access_fix: "log in to Windows interactively (Credential Manager is per user), or set AIRLOCK_KEYRING_BACKEND=file",
            },
            NativeOptions {
                kind: BackendKind::Wincred,
                location: "Windows Credential Manager, targets *.airlock".into(),
                data_dir,
                max_secret: Some(MAX_SECRET),
            },
        ))
    }
}

super::native::delegate_backend!(WincredBackend);
