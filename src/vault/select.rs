//! Choosing and opening a backend.

use std::path::PathBuf;
use std::time::Duration;

use super::{BackendKind, Vault, file};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::paths::Paths;

/// The environment variable that forces a backend.
pub const BACKEND_ENV: &str = "AIRLOCK_KEYRING_BACKEND";

/// How the backend was (or will be) chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    /// Named by `AIRLOCK_KEYRING_BACKEND`.
    Env(BackendKind),
    /// Named by the config file.
    Config(BackendKind),
    /// Chosen by platform and reachability.
    Auto,
}

impl BackendChoice {
    /// Reads the environment variable, then the config.
    pub fn from_env_and_config(config: &Config) -> Result<Self> {
        match std::env::var(BACKEND_ENV) {
            Ok(v) if !v.is_empty() => Ok(BackendChoice::Env(v.parse().map_err(|_| {
                Error::Usage(format!(
                    "{BACKEND_ENV}={v:?} is not a backend: use file, secret-service, keyutils, keychain or wincred"
                ))
            })?)),
            _ => Ok(match config.vault.backend {
                Some(k) => BackendChoice::Config(k),
                None => BackendChoice::Auto,
            }),
        }
    }
}

/// The file in the state directory that remembers an automatic choice.
pub const PIN_FILE: &str = "vault-backend";

/// Everything [`open`] needs.
#[derive(Debug)]
pub struct OpenOptions {
    /// How to choose.
    pub choice: BackendChoice,
    /// The encrypted file's path.
    pub file_path: PathBuf,
    /// Where the passphrase for the encrypted file comes from.
    pub passphrase: file::Passphrase,
    /// How long a derived file key may be cached; `None` disables the cache.
    pub key_cache: Option<Duration>,
    /// Where an automatic choice is remembered once something is stored, so
    /// that a later run in another session (an SSH login without the desktop
    /// keyring, say) does not silently open a different, empty vault.
    /// `None` never remembers.
    pub pin_file: Option<PathBuf>,
}

impl OpenOptions {
    /// Options from the environment, the config file and the paths.
    /// `interactive` allows a passphrase prompt on the terminal.
    pub fn new(paths: &Paths, config: &Config, interactive: bool) -> Result<Self> {
        let secs = config.vault.key_cache_seconds.unwrap_or(300);
        Ok(OpenOptions {
            choice: BackendChoice::from_env_and_config(config)?,
            file_path: config
                .vault
                .path
                .clone()
                .unwrap_or_else(|| paths.vault_file()),
            passphrase: file::Passphrase::from_env(interactive),
            key_cache: (secs > 0).then(|| Duration::from_secs(secs)),
            pin_file: Some(paths.state_dir.join(PIN_FILE)),
        })
    }
}

/// Opens the chosen backend. Nothing is unlocked or created yet: the file
/// backend asks for its passphrase on first use.
pub fn open(opts: OpenOptions) -> Result<Vault> {
    let mut pin_on_store = None;
    let (kind, why) = match &opts.choice {
        BackendChoice::Env(k) => (*k, format!("{BACKEND_ENV}={k}")),
        BackendChoice::Config(k) => (*k, format!("vault.backend = \"{k}\" in the config file")),
        BackendChoice::Auto => match opts.pin_file.as_deref().map(read_pin).transpose()? {
            Some(Some(k)) => (
                k,
                format!(
                    "chosen automatically when the first credential was stored, remembered in {} (set {BACKEND_ENV} or vault.backend to change)",
                    opts.pin_file
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ),
            ),
            _ => {
                pin_on_store = opts.pin_file.clone();
                auto()
            }
        },
    };
    tracing::debug!(backend = %kind, reason = %why, "selected vault backend");
    let backend: Box<dyn super::Backend> = match kind {
        BackendKind::File => Box::new(file::FileBackend::open(file::FileOptions {
            path: opts.file_path,
            passphrase: opts.passphrase,
            key_cache: opts.key_cache,
        })?),
        #[cfg(target_os = "linux")]
        BackendKind::SecretService => {
            Box::new(super::secret_service::SecretServiceBackend::connect()?)
        }
        #[cfg(target_os = "linux")]
        BackendKind::Keyutils => Box::new(super::keyutils::KeyutilsBackend::open()?),
        #[cfg(target_os = "macos")]
        BackendKind::Keychain => Box::new(super::keychain::KeychainBackend::new()),
        #[cfg(windows)]
        BackendKind::Wincred => Box::new(super::wincred::WincredBackend::new(opts.file_path)),
        BackendKind::Memory => Box::new(super::memory::MemoryBackend::default()),
        #[allow(unreachable_patterns)]
        other => {
            return Err(Error::Backend {
                backend: other.to_string(),
                detail: format!("it is not available on {}", std::env::consts::OS),
                fix: format!("set {BACKEND_ENV}=file to use the encrypted file"),
            });
        }
    };
    let backend = match pin_on_store {
        Some(path) if kind != BackendKind::Memory => Box::new(Pinning {
            inner: backend,
            path,
            done: std::sync::atomic::AtomicBool::new(false),
        }),
        _ => backend,
    };
    Ok(Vault::new(backend, why))
}

/// Reads a remembered choice; a missing file is `None`, a damaged one an error.
fn read_pin(path: &std::path::Path) -> Result<Option<BackendKind>> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map(Some).map_err(|_| {
            Error::Usage(format!(
                "{} does not name a vault backend; delete it to choose again automatically, or set {BACKEND_ENV}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Wraps an automatically chosen backend and remembers the choice the first
/// time something is stored in it.
#[derive(Debug)]
struct Pinning {
    inner: Box<dyn super::Backend>,
    path: PathBuf,
    done: std::sync::atomic::AtomicBool,
}

impl Pinning {
    fn pin(&self) {
        use std::sync::atomic::Ordering;
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        let kind = self.inner.kind();
        let res = self
            .path
            .parent()
            .map(crate::fsutil::ensure_private_dir)
            .unwrap_or(Ok(()))
            .and_then(|()| {
                crate::fsutil::write_atomic(&self.path, format!("{kind}\n").as_bytes(), 0o600)
            });
        match res {
            Ok(()) => {
                tracing::info!(backend = %kind, file = %self.path.display(), "remembered the vault backend")
            }
            // Not fatal: the credential is stored; the next run chooses again.
            Err(e) => tracing::warn!("could not remember the vault backend: {e}"),
        }
    }
}

impl super::Backend for Pinning {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, id: &super::CredentialId) -> Result<Option<super::Record>> {
        self.inner.get(id)
    }
    fn put(&self, record: super::Record) -> Result<()> {
        self.inner.put(record)?;
        self.pin();
        Ok(())
    }
    fn remove(&self, id: &super::CredentialId) -> Result<bool> {
        self.inner.remove(id)
    }
    fn list(&self) -> Result<Vec<super::Record>> {
        self.inner.list()
    }
    fn update(
        &self,
        id: &super::CredentialId,
        f: &mut dyn FnMut(Option<super::Record>) -> Result<Option<super::Record>>,
    ) -> Result<()> {
        self.inner.update(id, f)?;
        self.pin();
        Ok(())
    }
    fn lock(&self) -> Result<()> {
        self.inner.lock()
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
}

/// The automatic choice: the platform keyring when it answers, else the file.
fn auto() -> (BackendKind, String) {
    #[cfg(target_os = "macos")]
    {
        (BackendKind::Keychain, "macOS: the login Keychain".into())
    }
    #[cfg(windows)]
    {
        (BackendKind::Wincred, "Windows: Credential Manager".into())
    }
    #[cfg(target_os = "linux")]
    {
        match super::secret_service::probe() {
            Ok(()) => (
                BackendKind::SecretService,
                "a Secret Service (GNOME Keyring/KWallet) answered on the D-Bus session bus".into(),
            ),
            Err(reason) => (
                BackendKind::File,
                format!("no OS keyring reachable ({reason}): using the encrypted file"),
            ),
        }
    }
    #[cfg(not(any(target_os = "macos", windows, target_os = "linux")))]
    {
        (
            BackendKind::File,
            "no OS keyring on this platform: using the encrypted file".into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &std::path::Path, choice: BackendChoice) -> OpenOptions {
        OpenOptions {
            choice,
            file_path: dir.join("vault.airlock"),
            passphrase: file::Passphrase::Unavailable,
            key_cache: None,
            pin_file: Some(dir.join(PIN_FILE)),
        }
    }

    #[test]
    fn a_remembered_choice_wins_over_detection() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(PIN_FILE), "memory\n").unwrap();
        let v = open(opts(d.path(), BackendChoice::Auto)).unwrap();
        assert_eq!(v.kind(), BackendKind::Memory);
        assert!(v.why().contains("remembered"), "{}", v.why());
        // an explicit choice still wins over the pin
        let v = open(opts(d.path(), BackendChoice::Env(BackendKind::File))).unwrap();
        assert_eq!(v.kind(), BackendKind::File);
    }

    #[test]
    fn a_damaged_pin_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(PIN_FILE), "gpg").unwrap();
        let e = open(opts(d.path(), BackendChoice::Auto)).unwrap_err();
        assert!(e.to_string().contains("delete it"), "{e}");
    }

    #[test]
    fn the_choice_is_remembered_on_first_store_only() {
        use crate::vault::{CredentialId, Metadata, Method, Record};
        let d = tempfile::tempdir().unwrap();
        let pin = d.path().join("state").join(PIN_FILE);
        let inner: Box<dyn super::super::Backend> =
            Box::new(super::super::memory::MemoryBackend::default());
        let p = Pinning {
            inner,
            path: pin.clone(),
            done: std::sync::atomic::AtomicBool::new(false),
        };
        use super::super::Backend;
        p.list().unwrap();
        assert!(!pin.exists(), "reading must not pin");
        p.put(Record {
            id: CredentialId::new("claude", "default").unwrap(),
            method: Method::ApiKey,
            secret: crate::Secret::from("k"),
            meta: Metadata::new("test"),
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&pin).unwrap(), "memory\n");
        crate::fsutil::check_private_file(&pin).unwrap();
    }
}
