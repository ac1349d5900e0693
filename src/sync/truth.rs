//! The source of truth of a synced account, and compare-and-set writes to it.
//!
//! A sandbox's session came either from an airlock vault record or from the
//! host agent's own file (macOS keychain items: not yet, see
//! `docs/rotation.md`). [`Truth::offer`] writes a candidate there only if
//! it is still newer (by expiry) than what the truth holds at that moment,
//! re-read under the same lock the write takes.

use std::fmt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::sync::credential::{self, AgentKind, Parsed, content_hash};
use crate::sync::write::{self, AgentLock};
use crate::vault::{Backend, CredentialId, Method};

/// Where an account's newest credential must end up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Truth {
    /// The host agent's credential file (`~/.claude/.credentials.json`, …).
    HostFile {
        /// The file (a symbolic link is followed when writing).
        path: PathBuf,
    },
    /// An airlock vault record (method `session`).
    Vault {
        /// The record's id.
        id: CredentialId,
    },
}

impl fmt::Display for Truth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Truth::HostFile { path } => write!(f, "host file {}", path.display()),
            Truth::Vault { id } => write!(f, "vault record {id}"),
        }
    }
}

/// What [`Truth::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The candidate was written; the hash of the bytes now stored.
    Written([u8; 32]),
    /// The truth already holds something as new or newer.
    NotNewer,
    /// The truth is gone (host file deleted): nothing was written.
    Missing,
}

impl Truth {
    /// The current raw contents (secret), or `None` when absent.
    pub fn read(&self, vault: Option<&dyn Backend>) -> Result<Option<Zeroizing<Vec<u8>>>> {
        match self {
            Truth::HostFile { path } => read_file(path),
            Truth::Vault { id } => {
                let v = need_vault(vault, id)?;
                Ok(v.get(id)?.map(|r| vault_view(id, r.secret.expose())))
            }
        }
    }

    /// Writes `cand` if it is newer than what the truth holds now (compare
    /// and set, under the agent's lock or the vault's atomic update).
    pub fn offer(&self, cand: &Parsed, vault: Option<&dyn Backend>) -> Result<Offer> {
        self.offer_replacing(cand, None, vault)
    }

    /// [`Truth::offer`], but `cand` also wins over a credential whose
    /// refresh-token fingerprint is `replaces`, whatever its expiry: airlock's
    /// own refresh result replaces the session it was refreshed from (that
    /// refresh token is spent at the server, so keeping it would log the
    /// user out even when the new session happens to expire earlier).
    pub fn offer_replacing(
        &self,
        cand: &Parsed,
        replaces: Option<[u8; 32]>,
        vault: Option<&dyn Backend>,
    ) -> Result<Offer> {
        let wins = |p: &Parsed| cand.newer_than(Some(p)) || Some(p.fingerprint) == replaces;
        match self {
            Truth::HostFile { path } => offer_file(path, cand, &wins),
            Truth::Vault { id } => offer_vault(need_vault(vault, id)?, id, cand, &wins),
        }
    }

    /// The directories whose events can mean the truth changed (the file's
    /// directory, and its link target's when it is a symbolic link).
    pub fn watch_dirs(&self) -> Vec<PathBuf> {
        let Truth::HostFile { path } = self else {
            return Vec::new();
        };
        let mut dirs = Vec::new();
        for p in [Some(path.clone()), write::real_path(path).ok()]
            .into_iter()
            .flatten()
        {
            if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty())
                && !dirs.iter().any(|x: &PathBuf| x == d)
            {
                dirs.push(d.to_path_buf());
            }
        }
        dirs
    }

    /// The file names in [`Truth::watch_dirs`] that matter.
    pub fn watch_names(&self) -> Vec<std::ffi::OsString> {
        let Truth::HostFile { path } = self else {
            return Vec::new();
        };
        let mut names: Vec<_> = path.file_name().map(|n| n.to_owned()).into_iter().collect();
        if let Some(n) = write::real_path(path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_owned()))
            && !names.contains(&n)
        {
            names.push(n);
        }
        names
    }
}

fn need_vault<'a>(vault: Option<&'a dyn Backend>, id: &CredentialId) -> Result<&'a dyn Backend> {
    vault.ok_or_else(|| Error::Backend {
        backend: "vault".into(),
        detail: format!("the session {id} is stored in the vault, which is not open"),
        fix: "make the vault reachable to airlock sync (for the file vault: AIRLOCK_KEYRING_PASSWORD)"
            .into(),
    })
}

/// The most airlock reads of a credential file: real ones are a few KiB.
pub const MAX_CREDENTIAL_BYTES: u64 = 1 << 20;

/// Reads a credential file (a symbolic link is followed: the host's own
/// file may be one); `None` when it does not exist. A FIFO, device or
/// directory, or more than [`MAX_CREDENTIAL_BYTES`], is an error, never a
/// hang or an unbounded read.
pub fn read_file(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>> {
    match read_bounded(path, true)? {
        Ok(b) => Ok(b),
        Err(r) => Err(Error::Other(format!("{}: {r}", path.display()))),
    }
}

fn read_bounded(
    path: &Path,
    follow: bool,
) -> Result<std::result::Result<Option<Zeroizing<Vec<u8>>>, credential::Rejection>> {
    use credential::Rejection::{NotRegularFile, TooLarge};
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    let meta = if follow {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(None)),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let kind = |t: std::fs::FileType| -> Option<&'static str> {
        if t.is_file() {
            None
        } else if t.is_symlink() {
            Some("a symbolic link")
        } else if t.is_dir() {
            Some("a directory")
        } else if t.is_fifo() {
            Some("a FIFO")
        } else if t.is_socket() {
            Some("a socket")
        } else {
            Some("a device or other special file")
        }
    };
    if let Some(what) = kind(meta.file_type()) {
        return Ok(Err(NotRegularFile(what)));
    }
    if meta.len() > MAX_CREDENTIAL_BYTES {
        return Ok(Err(TooLarge));
    }
    let mut opts = std::fs::OpenOptions::new();
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    opts.read(true).custom_flags(flags);
    let f = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(None)),
        // swapped for a symbolic link since the lstat
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Err(NotRegularFile("a symbolic link")));
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let opened = f.metadata().map_err(|e| Error::io("read", path, e))?;
    if let Some(what) = kind(opened.file_type()) {
        return Ok(Err(NotRegularFile(what)));
    }
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Ok(Err(NotRegularFile("being replaced while read")));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(
        opened.len().min(MAX_CREDENTIAL_BYTES) as usize
    ));
    f.take(MAX_CREDENTIAL_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("read", path, e))?;
    if buf.len() as u64 > MAX_CREDENTIAL_BYTES {
        return Ok(Err(TooLarge));
    }
    Ok(Ok(Some(buf)))
}

fn offer_file(path: &Path, cand: &Parsed, wins: &dyn Fn(&Parsed) -> bool) -> Result<Offer> {
    let real = write::real_path(path)?;
    let dir = real.parent().map(Path::to_path_buf).unwrap_or_default();
    let _lock = AgentLock::take(cand.kind, &dir);
    let Some(cur) = read_file(&real)? else {
        return Ok(Offer::Missing);
    };
    if let Ok(p) = credential::parse(cand.kind, &cur)
        && !wins(&p)
    {
        return Ok(Offer::NotNewer);
    }
    let bytes = cand.merge_into(Some(&cur));
    write::write_preserving(&real, &bytes)?;
    Ok(Offer::Written(content_hash(&bytes)))
}

fn offer_vault(
    v: &dyn Backend,
    id: &CredentialId,
    cand: &Parsed,
    wins: &dyn Fn(&Parsed) -> bool,
) -> Result<Offer> {
    // A cheap check first, so that an unchanged vault is not rewritten.
    match v.get(id)? {
        None => return Ok(Offer::Missing),
        Some(r) => {
            if let Ok(p) = credential::parse(cand.kind, &vault_view(id, r.secret.expose()))
                && !wins(&p)
            {
                return Ok(Offer::NotNewer);
            }
        }
    }
    let mut outcome = Offer::NotNewer;
    v.update(id, &mut |cur| {
        let Some(mut rec) = cur else {
            outcome = Offer::Missing;
            return Ok(None);
        };
        let cur_bytes = vault_view(id, rec.secret.expose());
        let still_newer = match credential::parse(cand.kind, &cur_bytes) {
            Ok(p) => wins(&p),
            Err(_) => true,
        };
        if !still_newer {
            outcome = Offer::NotNewer;
            return Ok(Some(rec));
        }
        let bytes = cand.merge_into(Some(&cur_bytes));
        let text = vault_store(id, rec.secret.expose(), &bytes)?;
        outcome = Offer::Written(content_hash(&vault_view(id, &text)));
        rec.secret = Secret::new(text);
        rec.method = Method::Session;
        rec.meta.expires_at = Some(cand.expiry);
        rec.meta.updated_at = Timestamp::now();
        Ok(Some(rec))
    })?;
    Ok(outcome)
}

/// What sync sees of a vault record's secret `text`: the session document
/// itself, except for a Gemini record, which holds the wrapper
/// `{"oauth_creds": …, "google_accounts": …}` (docs/agents.md): then its
/// `oauth_creds` part, as Gemini's own file holds it (pretty-printed).
fn vault_view(id: &CredentialId, text: &str) -> Zeroizing<Vec<u8>> {
    if id.agent == "gemini"
        && let Ok(serde_json::Value::Object(m)) = serde_json::from_str(text)
        && let Some(creds @ serde_json::Value::Object(_)) =
            m.get(crate::agents::gemini::capture::WRAP_OAUTH)
    {
        let mut b = serde_json::to_vec_pretty(creds).unwrap_or_default();
        b.push(b'\n');
        return Zeroizing::new(b);
    }
    Zeroizing::new(text.as_bytes().to_vec())
}

/// The record text holding `merged` (what [`vault_view`] showed, updated):
/// `merged` itself, or for a Gemini wrapper, the wrapper with `merged` as
/// its `oauth_creds` and everything else kept.
fn vault_store(id: &CredentialId, cur: &str, merged: &[u8]) -> Result<String> {
    if id.agent == "gemini"
        && let Ok(serde_json::Value::Object(mut m)) = serde_json::from_str(cur)
        && m.contains_key(crate::agents::gemini::capture::WRAP_OAUTH)
    {
        let creds: serde_json::Value = serde_json::from_slice(merged)
            .map_err(|_| Error::Other("merged credential is not JSON".into()))?;
        m.insert(crate::agents::gemini::capture::WRAP_OAUTH.into(), creds);
        return Ok(serde_json::Value::Object(m).to_string());
    }
    String::from_utf8(merged.to_vec())
        .map_err(|_| Error::Other("merged credential is not UTF-8".into()))
}

/// The agent of a vault truth, for checks (`claude:work` → Claude).
pub fn agent_of(truth: &Truth) -> Option<AgentKind> {
    match truth {
        Truth::Vault { id } => AgentKind::from_name(&id.agent).ok(),
        Truth::HostFile { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::memory::MemoryBackend;
    use crate::vault::{Metadata, Record};

    #[test]
    fn a_gemini_vault_record_is_synced_through_its_wrapper() {
        let v = MemoryBackend::default();
        let id = CredentialId::parse("gemini").unwrap();
        let wrapper = r#"{"oauth_creds":{"access_token":"ya29.old","refresh_token":"1//rt","scope":"s","expiry_date":1000,"zz":1},"google_accounts":{"active":"a@example.com","old":[]}}"#;
        v.put(Record {
            id: id.clone(),
            method: Method::Session,
            secret: Secret::new(wrapper.to_owned()),
            meta: Metadata::new("stdin"),
        })
        .unwrap();
        let truth = Truth::Vault { id: id.clone() };
        // sync sees the oauth_creds part, as Gemini's own file holds it
        let seen = truth.read(Some(&v)).unwrap().unwrap();
        let cur = credential::parse(AgentKind::Gemini, &seen).unwrap();
        assert_eq!(cur.expiry.as_millisecond(), 1000);
        let newer = credential::parse(
            AgentKind::Gemini,
            br#"{"access_token":"ya29.new","refresh_token":"1//rt","expiry_date":5000}"#,
        )
        .unwrap();
        let Offer::Written(h) = truth.offer(&newer, Some(&v)).unwrap() else {
            panic!("not written")
        };
        // the hash is of what the next read sees ("did we write this?")
        assert_eq!(h, content_hash(&truth.read(Some(&v)).unwrap().unwrap()));
        let rec = v.get(&id).unwrap().unwrap();
        let w: serde_json::Value = serde_json::from_str(rec.secret.expose()).unwrap();
        assert_eq!(w["oauth_creds"]["access_token"], "ya29.new");
        assert_eq!(w["oauth_creds"]["expiry_date"], 5000);
        assert_eq!(
            w["oauth_creds"]["scope"], "s",
            "keys the new one lacks are kept"
        );
        assert_eq!(w["oauth_creds"]["zz"], 1);
        assert_eq!(w["google_accounts"]["active"], "a@example.com");
        assert_eq!(rec.meta.expires_at.unwrap().as_millisecond(), 5000);
        // an older one is not written
        assert_eq!(truth.offer(&cur, Some(&v)).unwrap(), Offer::NotNewer);
    }
}
