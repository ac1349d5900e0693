//! The credential vault: records, the [`Backend`] trait, and backend selection.
//!
//! A [`Record`] is one stored credential: which agent and account it belongs
//! to, how it was obtained ([`Method`]), the secret payload (a token or a
//! whole credential JSON document), and non-secret [`Metadata`].
//!
//! Backends store whole records. Each lives in its own module:
//!
//! | backend | module | where |
//! |---|---|---|
//! | encrypted file | [`file`](mod@file) | everywhere; the default when no OS keyring is reachable |
//! | Secret Service | `secret_service` | Linux desktops (GNOME Keyring, KWallet) |
//! | kernel keyring | `keyutils` | Linux; does not survive a reboot |
//! | macOS Keychain | `keychain` | macOS |
//! | Windows Credential Manager | `wincred` | Windows |
//! | memory | [`memory`] | tests |
//!
//! [`open`] picks one: `AIRLOCK_KEYRING_BACKEND`, else the config file's
//! `vault.backend`, else the platform's keyring when it answers, else the
//! encrypted file. The reason is kept in [`Vault::why`] and logged at `-v`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::Secret;

pub mod codec;
pub mod file;
#[cfg(target_os = "macos")]
pub mod keychain;
#[cfg(target_os = "linux")]
pub mod keyutils;
pub mod memory;
#[cfg(any(target_os = "macos", windows, test))]
mod native;
#[cfg(target_os = "linux")]
pub mod secret_service;
mod select;
#[cfg(windows)]
pub mod wincred;

pub use select::{BackendChoice, OpenOptions, open};

/// The account used when none is named.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Which stored credential: an agent and one of its accounts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CredentialId {
    /// `claude`, `codex`, `gemini`, or a custom agent's name.
    pub agent: String,
    /// The account name; [`DEFAULT_ACCOUNT`] unless the user named one.
    pub account: String,
}

impl CredentialId {
    /// Builds an id after checking both names (see [`validate_name`]).
    pub fn new(agent: &str, account: &str) -> Result<Self> {
        validate_name("agent", agent)?;
        validate_name("account", account)?;
        Ok(CredentialId {
            agent: agent.to_owned(),
            account: account.to_owned(),
        })
    }

    /// Parses `agent` or `agent:account`.
    pub fn parse(spec: &str) -> Result<Self> {
        match spec.split_once(':') {
            Some((a, acc)) => Self::new(a, acc),
            None => Self::new(spec, DEFAULT_ACCOUNT),
        }
    }
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.agent, self.account)
    }
}

/// Agent and account names: 1–64 characters of `a-z 0-9 . _ -`, starting
/// with a letter or digit. They appear in file names, keyring attributes and
/// container paths, so nothing else is allowed.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid {what} name {}: use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
            crate::secret::shown(name)
        )))
    }
}

/// How a credential was obtained; decides how it reaches a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// A long-lived, non-rotating token (`claude setup-token`).
    SetupToken,
    /// A login session: the agent's own credential file (may rotate).
    Session,
    /// A static API key.
    ApiKey,
}

impl Method {
    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::SetupToken => "setup-token",
            Method::Session => "session",
            Method::ApiKey => "api-key",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "setup-token" | "token" => Ok(Method::SetupToken),
            "session" => Ok(Method::Session),
            "api-key" | "apikey" => Ok(Method::ApiKey),
            _ => Err(Error::Usage(format!(
                "unknown method {}: use token, session or api-key",
                crate::secret::shown(s)
            ))),
        }
    }
}

/// Non-secret facts about a stored credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// When airlock first stored it.
    pub created_at: Timestamp,
    /// When airlock last changed it.
    pub updated_at: Timestamp,
    /// When it stops working, when known (setup-tokens: created + 365 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Where it came from: `stdin`, `file:/path`, `env:NAME`, `host:/path`, `prompt`, …
    pub source: String,
    /// When a sandbox last confirmed it works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<Timestamp>,
    /// A free-form label chosen by the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Non-secret settings that travel with the credential (for example
    /// Vertex AI `project` and `location` for Gemini).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// The host agent file this session shares its refresh-token family
    /// with (`~/.claude/.credentials.json`, …): a linked record follows that
    /// file and every refresh lands there (`docs/rotation.md` §5.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_link: Option<String>,
    /// The account the host agent named when the link was made or last
    /// followed (Claude: `oauthAccount.accountUuid` in `.claude.json`;
    /// Codex: `tokens.account_id`): a host login of another account is a
    /// new family, and unlinks the record instead of being followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_account: Option<String>,
}

impl Metadata {
    /// Metadata for a credential stored now from `source`.
    pub fn new(source: impl Into<String>) -> Self {
        let now = Timestamp::now();
        Metadata {
            created_at: now,
            updated_at: now,
            expires_at: None,
            source: source.into(),
            last_verified: None,
            label: None,
            settings: BTreeMap::new(),
            host_link: None,
            host_account: None,
        }
    }
}

/// One stored credential. Not `Serialize`: see [`codec`] for the one place
/// that writes it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Agent and account.
    pub id: CredentialId,
    /// How it was obtained.
    pub method: Method,
    /// The token, key, or credential JSON document.
    pub secret: Secret,
    /// Everything else.
    pub meta: Metadata,
}

/// The storage backends airlock knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// The encrypted file.
    File,
    /// Linux Secret Service over D-Bus.
    SecretService,
    /// Linux kernel keyring.
    Keyutils,
    /// macOS Keychain.
    Keychain,
    /// Windows Credential Manager.
    Wincred,
    /// In memory, for tests.
    Memory,
}

impl BackendKind {
    /// The name used by `AIRLOCK_KEYRING_BACKEND` and the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::File => "file",
            BackendKind::SecretService => "secret-service",
            BackendKind::Keyutils => "keyutils",
            BackendKind::Keychain => "keychain",
            BackendKind::Wincred => "wincred",
            BackendKind::Memory => "memory",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "file" => BackendKind::File,
            "secret-service" | "secretservice" => BackendKind::SecretService,
            "keyutils" | "keyctl" => BackendKind::Keyutils,
            "keychain" => BackendKind::Keychain,
            "wincred" => BackendKind::Wincred,
            "memory" => BackendKind::Memory,
            _ => {
                return Err(Error::Usage(format!(
                    "unknown keyring backend {s:?}: use file, secret-service, keyutils, keychain or wincred"
                )));
            }
        })
    }
}

/// A place that stores whole [`Record`]s.
///
/// Implementations must make `put`, `remove` and `update` atomic: a reader
/// sees the old record or the new one, and concurrent writers (threads or
/// processes) lose nothing.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Where the data lives, for humans (`/home/u/.local/share/airlock/vault.airlock`).
    fn location(&self) -> String;

    /// The record for `id`, if stored.
    fn get(&self, id: &CredentialId) -> Result<Option<Record>>;

    /// Stores `record`, replacing any record with the same id.
    fn put(&self, record: Record) -> Result<()>;

    /// Removes the record for `id`; returns whether one existed.
    fn remove(&self, id: &CredentialId) -> Result<bool>;

    /// Every stored record, sorted by id.
    fn list(&self) -> Result<Vec<Record>>;

    /// Atomic read-modify-write of one record: `f` receives the current
    /// record and returns the new one (`None` removes it). The default
    /// implementation is only atomic within one process; backends that can
    /// do better override it.
    fn update(
        &self,
        id: &CredentialId,
        f: &mut dyn FnMut(Option<Record>) -> Result<Option<Record>>,
    ) -> Result<()> {
        let cur = self.get(id)?;
        match f(cur)? {
            Some(r) => self.put(r),
            None => self.remove(id).map(|_| ()),
        }
    }

    /// A file whose metadata (modification time, size, inode) changes
    /// whenever any record changes: the encrypted vault file. A reader that
    /// caches records (the proxy) re-reads when it changes. `None` (the
    /// default, the OS keyrings): no such file, the reader re-reads on a timer.
    fn change_marker(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// Forgets any cached unlock key (`airlock lock`). Default: nothing cached.
    fn lock(&self) -> Result<()> {
        Ok(())
    }

    /// Unlocks now, for a long-running helper (the sync watcher, the `-d`
    /// waiter), and keeps the key for the life of this backend. Never
    /// prompts: the key comes from the key cache or a provided passphrase,
    /// else this fails ([`Error::NoPassphrase`]). Default: nothing to unlock.
    fn unlock_unattended(&self) -> Result<()> {
        Ok(())
    }

    /// Drops the key held in this process (not the key cache): the next
    /// access unlocks again. Default: nothing held.
    fn forget_key(&self) {}

    /// Prepares helper processes started right after this call to unlock
    /// with [`Backend::unlock_unattended`], and says how they will get the
    /// key. Default: [`Handover::Nothing`].
    fn hand_over(&self) -> Handover {
        Handover::Nothing
    }

    /// Whether stored data survives a reboot (false for the kernel keyring).
    fn persistent(&self) -> bool {
        true
    }
}

/// How helper processes started by this one (the sync watcher, the `-d`
/// waiter) get the key of a locked vault; see [`Backend::hand_over`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// Nothing to hand over: the backend needs no key of airlock's, or this
    /// process has not unlocked it.
    Nothing,
    /// The key cache holds the key now: helpers take it from there, and the
    /// passphrase is not passed on.
    KeyCache,
    /// Helpers need the passphrase from the environment they inherit
    /// (`AIRLOCK_KEYRING_PASSWORD`): the key cache is off or unavailable.
    Passphrase,
    /// Helpers cannot unlock: why, and the fix.
    Impossible(String),
}

impl Handover {
    /// Whether helpers must inherit `AIRLOCK_KEYRING_PASSWORD`.
    pub fn passes_passphrase(&self) -> bool {
        matches!(self, Handover::Passphrase)
    }
}

/// An opened backend plus the reason it was chosen.
#[derive(Debug)]
pub struct Vault {
    backend: Box<dyn Backend>,
    why: String,
}

impl Vault {
    /// Wraps a backend.
    pub fn new(backend: Box<dyn Backend>, why: impl Into<String>) -> Self {
        Vault {
            backend,
            why: why.into(),
        }
    }

    /// An in-memory vault (tests, examples).
    pub fn in_memory() -> Self {
        Vault::new(Box::new(memory::MemoryBackend::default()), "in-memory")
    }

    /// Why this backend was selected.
    pub fn why(&self) -> &str {
        &self.why
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }
}

impl std::ops::Deref for Vault {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

/// Bytes that hold secret material; zeroized on drop.
pub type SecretBytes = Zeroizing<Vec<u8>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(CredentialId::new("claude", "work").is_ok());
        assert!(CredentialId::new("my-agent", "a.b_c-1").is_ok());
        for bad in ["", "Claude", "-x", "a/b", "a b", "a:b", &"x".repeat(65)] {
            assert!(CredentialId::new(bad, "default").is_err(), "{bad:?}");
            assert!(CredentialId::new("claude", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parse_agent_and_account() {
        assert_eq!(
            CredentialId::parse("codex").unwrap().to_string(),
            "codex:default"
        );
        assert_eq!(
            CredentialId::parse("claude:work").unwrap().to_string(),
            "claude:work"
        );
        assert!(CredentialId::parse("claude:").is_err());
    }

    #[test]
    fn methods_and_backends_round_trip() {
        for m in [Method::SetupToken, Method::Session, Method::ApiKey] {
            assert_eq!(m.as_str().parse::<Method>().unwrap(), m);
        }
        assert_eq!("token".parse::<Method>().unwrap(), Method::SetupToken);
        for k in [
            BackendKind::File,
            BackendKind::SecretService,
            BackendKind::Keyutils,
            BackendKind::Keychain,
            BackendKind::Wincred,
        ] {
            assert_eq!(k.as_str().parse::<BackendKind>().unwrap(), k);
        }
        assert!("gpg".parse::<BackendKind>().is_err());
    }
}
