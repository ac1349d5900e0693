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
        })
    }
}

/// Opens the chosen backend. Nothing is unlocked or created yet: the file
/// backend asks for its passphrase on first use.
pub fn open(opts: OpenOptions) -> Result<Vault> {
    let (kind, why) = match &opts.choice {
        BackendChoice::Env(k) => (*k, format!("{BACKEND_ENV}={k}")),
        BackendChoice::Config(k) => (*k, format!("vault.backend = \"{k}\" in the config file")),
        BackendChoice::Auto => auto(),
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
    Ok(Vault::new(backend, why))
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
