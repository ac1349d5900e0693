//! The proxy's grants: which placeholder (by SHA-256, never the value)
//! stands for which account's credential, for which sandbox. One JSON file,
//! `<state>/proxy/grants.json` (0600 in a 0700 directory), rewritten
//! atomically under `grants.lock`; the format is in docs/proxy.md.

use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::sync::Truth;
use crate::vault::Method;

/// The grants file's format version.
pub const VERSION: u32 = 1;

/// Where the proxy keeps its state (grants, audit log, daemon lock, port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `<state>/proxy`.
    pub dir: PathBuf,
}

impl Layout {
    /// The layout under airlock's state directory.
    pub fn new(paths: &crate::paths::Paths) -> Layout {
        Layout {
            dir: paths.state_dir.join("proxy"),
        }
    }
    /// Whether the directory exists: a daemon whose directory was removed
    /// exits rather than make it again.
    pub fn present(&self) -> bool {
        self.dir.is_dir()
    }
    /// The grants file.
    pub fn grants(&self) -> PathBuf {
        self.dir.join("grants.json")
    }
    fn lock(&self) -> PathBuf {
        self.dir.join("grants.lock")
    }
    /// The audit log (JSON lines).
    pub fn audit(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }
    /// Held by the running proxy.
    pub fn daemon_lock(&self) -> PathBuf {
        self.dir.join("daemon.lock")
    }
    /// The running proxy's port (written after it listens).
    pub fn port_file(&self) -> PathBuf {
        self.dir.join("port")
    }
    /// The background proxy's log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("proxy.log")
    }
    /// Creates the directory (0700).
    pub fn ensure(&self) -> Result<()> {
        fsutil::ensure_private_dir(&self.dir)
    }
}

/// One sandbox's right to one account's credential through the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The sandbox (airlock's sandbox id) the placeholder was minted for.
    pub sandbox: String,
    /// `claude`, `codex` or `gemini`.
    pub agent: String,
    /// The account whose credential is used.
    pub account: String,
    /// The real credential's method.
    pub method: Method,
    /// Lowercase hex SHA-256 of the placeholder.
    pub placeholder_sha256: String,
    /// Where the real credential is read.
    pub truth: Truth,
    /// The container, once known (the grant dies with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Its engine (`docker`, `podman`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// When it was granted.
    pub created: Timestamp,
    /// When it was revoked (`airlock revoke`): refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// The account's secret reference, resolved by the proxy itself; then
    /// `truth` only names the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<crate::plan::ProxyReference>,
    /// When it expires (`airlock k8s --grant-ttl`): refused from then on,
    /// dropped [`EXPIRED_KEPT`] later. None: it lives as long as its
    /// sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// How long an expired grant stays in the file (refused, audited as
/// expired, still renewable) before it is dropped.
pub const EXPIRED_KEPT: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

impl Grant {
    /// Whether it has expired at `now` (refused).
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Whether it expired more than [`EXPIRED_KEPT`] before `now`: dropped,
    /// as if its sandbox were gone.
    pub fn stale(&self, now: Timestamp) -> bool {
        self.expires_at
            .is_some_and(|t| t.checked_add(EXPIRED_KEPT).is_ok_and(|k| k <= now))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    grants: Vec<Grant>,
}

/// Every grant, revoked ones included. A missing file is no grants.
pub fn load(layout: &Layout) -> Result<Vec<Grant>> {
    let path = layout.grants();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    // serde's message may quote the file's content: only where it failed
    let f: File = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Other(format!(
            "{} is not a grants file airlock can read (line {}, column {}); stop the proxy and remove it",
            path.display(),
            e.line(),
            e.column()
        ))
    })?;
    if f.version != VERSION {
        return Err(Error::Other(format!(
            "{} has format version {}, this airlock reads {VERSION}: use the airlock that wrote it",
            path.display(),
            f.version
        )));
    }
    Ok(f.grants)
}

/// Holds the grants' lock until the value is dropped: no grant is added
/// or removed meanwhile (the proxy decides to exit under it).
pub fn hold(layout: &Layout) -> Result<FileLock> {
    layout.ensure()?;
    FileLock::exclusive(&layout.lock())
}

/// Changes the grants under the lock; returns what `change` returned.
fn update<T>(layout: &Layout, change: impl FnOnce(&mut Vec<Grant>) -> T) -> Result<T> {
    layout.ensure()?;
    let _lock = FileLock::exclusive(&layout.lock())?;
    let mut grants = load(layout)?;
    let out = change(&mut grants);
    let bytes = serde_json::to_vec_pretty(&File {
        version: VERSION,
        grants,
    })
    .map_err(|e| Error::Other(format!("cannot encode the grants: {e}")))?;
    fsutil::write_atomic(&layout.grants(), &bytes, 0o600)?;
    Ok(out)
}

/// Adds a grant (replacing one with the same placeholder).
pub fn add(layout: &Layout, grant: &Grant) -> Result<()> {
    update(layout, |g| {
        g.retain(|x| x.placeholder_sha256 != grant.placeholder_sha256);
        g.push(grant.clone());
    })
}

/// Revokes every grant of `sandbox` (or of the container of that name or
/// id); returns how many were live.
pub fn revoke(layout: &Layout, sandbox: &str, now: Timestamp) -> Result<usize> {
    update(layout, |g| {
        let mut n = 0;
        for x in g.iter_mut().filter(|x| matches_sandbox(x, sandbox)) {
            if x.revoked_at.is_none() {
                x.revoked_at = Some(now);
                n += 1;
            }
        }
        n
    })
}

/// Gives every grant of `sandbox` that has an expiry (expired ones
/// included, unless [`Grant::stale`] at `now`) the new expiry `until`;
/// returns how many. Revoked grants are left alone (they stay refused).
pub fn renew(layout: &Layout, sandbox: &str, now: Timestamp, until: Timestamp) -> Result<usize> {
    update(layout, |g| {
        let mut n = 0;
        for x in g.iter_mut().filter(|x| {
            x.sandbox == sandbox
                && x.expires_at.is_some()
                && x.revoked_at.is_none()
                && !x.stale(now)
        }) {
            x.expires_at = Some(until);
            n += 1;
        }
        n
    })
}

/// Records the container a sandbox's grants belong to.
pub fn set_container(layout: &Layout, sandbox: &str, container: &str, engine: &str) -> Result<()> {
    update(layout, |g| {
        for x in g.iter_mut().filter(|x| x.sandbox == sandbox) {
            x.container = Some(container.to_owned());
            x.engine = Some(engine.to_owned());
        }
    })
}

/// Removes every grant of `sandbox`; returns how many there were.
pub fn remove(layout: &Layout, sandbox: &str) -> Result<usize> {
    update(layout, |g| {
        let before = g.len();
        g.retain(|x| x.sandbox != sandbox);
        before - g.len()
    })
}

/// Removes the grants that are [`Grant::stale`] at `now`, judged under the
/// lock (a grant renewed or rendered again meanwhile stays, and so does
/// every other grant of the same sandbox); returns the sandboxes of those
/// removed.
pub fn remove_stale(layout: &Layout, now: Timestamp) -> Result<Vec<String>> {
    update(layout, |g| {
        let mut gone = Vec::new();
        g.retain(|x| {
            let stale = x.stale(now);
            if stale && !gone.contains(&x.sandbox) {
                gone.push(x.sandbox.clone());
            }
            !stale
        });
        gone
    })
}

/// Removes the grants with these placeholder hashes; returns how many.
pub fn remove_hashes(layout: &Layout, hashes: &[String]) -> Result<usize> {
    if hashes.is_empty() {
        return Ok(0);
    }
    update(layout, |g| {
        let before = g.len();
        g.retain(|x| !hashes.contains(&x.placeholder_sha256));
        before - g.len()
    })
}

fn matches_sandbox(g: &Grant, name: &str) -> bool {
    g.sandbox == name
        || g.container
            .as_deref()
            .is_some_and(|c| c == name || (name.len() >= 12 && c.starts_with(name)))
}

/// The grant a placeholder belongs to, if any (revoked ones included: the
/// caller refuses them). Compares hashes in constant time.
pub fn lookup<'a>(grants: &'a [Grant], placeholder: &str) -> Option<&'a Grant> {
    position(grants, placeholder).map(|i| &grants[i])
}

/// Where in `grants` the grant of `placeholder` is ([`lookup`]).
pub fn position(grants: &[Grant], placeholder: &str) -> Option<usize> {
    let h = super::placeholder::hash_hex(placeholder);
    grants
        .iter()
        .position(|g| constant_time_eq(g.placeholder_sha256.as_bytes(), &h))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vault::CredentialId;

    /// A Claude setup-token grant of `sandbox` for placeholder `ph` (also
    /// for the daemon's and the metrics' tests).
    pub(crate) fn grant(sandbox: &str, ph: &str) -> Grant {
        Grant {
            sandbox: sandbox.into(),
            agent: "claude".into(),
            account: "default".into(),
            method: Method::SetupToken,
            placeholder_sha256: super::super::placeholder::hash(ph),
            truth: Truth::Vault {
                id: CredentialId::parse("claude").unwrap(),
            },
            container: None,
            engine: None,
            created: Timestamp::now(),
            revoked_at: None,
            reference: None,
            expires_at: None,
        }
    }

    #[test]
    fn an_expiring_grant_is_refused_then_dropped_and_renewal_extends_it() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout {
            dir: d.path().join("proxy"),
        };
        let now = Timestamp::now();
        let hour = jiff::SignedDuration::from_hours(1);
        let mut g = grant("k8s-team-dev", "ph-k8s");
        g.expires_at = Some(now + hour);
        add(&l, &g).unwrap();
        add(&l, &grant("sb-plain", "ph-plain")).unwrap();
        let loaded = load(&l).unwrap();
        let k = lookup(&loaded, "ph-k8s").unwrap();
        assert_eq!(k.expires_at, Some(now + hour), "kept in the file");
        assert!(!k.expired(now) && !k.stale(now));
        assert!(k.expired(now + hour) && !k.stale(now + hour));
        assert!(k.stale(now + hour + EXPIRED_KEPT));
        let plain = lookup(&loaded, "ph-plain").unwrap();
        assert!(!plain.expired(now + hour * 10_000) && !plain.stale(now + hour * 10_000));
        // renewal moves the expiry of that sandbox's grants only
        let later = now + hour * 2 + EXPIRED_KEPT;
        assert_eq!(
            renew(&l, "k8s-team-dev", later, later + hour).unwrap(),
            0,
            "a stale grant is not revived"
        );
        assert_eq!(renew(&l, "k8s-team-dev", now, now + hour * 48).unwrap(), 1);
        assert_eq!(
            renew(&l, "sb-plain", now, now + hour).unwrap(),
            0,
            "no expiry to renew"
        );
        assert_eq!(renew(&l, "nobody", now, now + hour).unwrap(), 0);
        assert_eq!(revoke(&l, "k8s-team-dev", now).unwrap(), 1);
        assert_eq!(
            renew(&l, "k8s-team-dev", now, now + hour * 96).unwrap(),
            0,
            "a revoked grant stays refused"
        );
        let loaded = load(&l).unwrap();
        assert!(!lookup(&loaded, "ph-k8s").unwrap().expired(now + hour * 47));
        assert_eq!(lookup(&loaded, "ph-plain").unwrap().expires_at, None);
        // a grants file written before expiries existed is read as before
        let text = std::fs::read_to_string(l.grants()).unwrap();
        assert_eq!(text.matches("expires_at").count(), 1, "{text}");
    }

    /// `airlock k8s renew` between the proxy's read and its drop of a
    /// stale grant: the drop, judged under the lock, keeps the renewed one.
    #[test]
    fn a_grant_renewed_after_the_proxy_read_it_is_not_dropped() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout {
            dir: d.path().join("proxy"),
        };
        let now = Timestamp::now();
        let hour = jiff::SignedDuration::from_hours(1);
        let mut g = grant("k8s-team-dev", "ph-k8s");
        g.expires_at = Some(now - hour / 2);
        add(&l, &g).unwrap();
        let mut s = grant("k8s-team-old", "ph-old");
        s.expires_at = Some(now - hour * 2);
        add(&l, &s).unwrap();
        // the proxy reads at `now`; the renewal lands before its drop, a
        // little later (the proxy judges with its own `now`)
        assert_eq!(renew(&l, "k8s-team-dev", now, now + hour).unwrap(), 1);
        let later = now + hour;
        assert_eq!(
            remove_stale(&l, later).unwrap(),
            vec!["k8s-team-old".to_owned()]
        );
        let left = load(&l).unwrap();
        assert!(lookup(&left, "ph-k8s").is_some() && lookup(&left, "ph-old").is_none());
    }

    #[test]
    fn add_lookup_revoke_remove() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout {
            dir: d.path().join("proxy"),
        };
        add(&l, &grant("sb1", "ph-one")).unwrap();
        add(&l, &grant("sb2", "ph-two")).unwrap();
        let g = load(&l).unwrap();
        assert_eq!(lookup(&g, "ph-one").unwrap().sandbox, "sb1");
        assert!(lookup(&g, "ph-three").is_none());
        let text = std::fs::read_to_string(l.grants()).unwrap();
        assert!(!text.contains("ph-one"), "only hashes are stored");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(l.grants()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        set_container(&l, "sb1", "0123456789abcdef", "docker").unwrap();
        assert_eq!(revoke(&l, "0123456789ab", Timestamp::now()).unwrap(), 1);
        assert_eq!(
            revoke(&l, "sb1", Timestamp::now()).unwrap(),
            0,
            "already revoked"
        );
        let g = load(&l).unwrap();
        assert!(lookup(&g, "ph-one").unwrap().revoked_at.is_some());
        assert!(lookup(&g, "ph-two").unwrap().revoked_at.is_none());
        assert_eq!(remove(&l, "sb1").unwrap(), 1);
        assert_eq!(load(&l).unwrap().len(), 1);
        let h = super::super::placeholder::hash("ph-two");
        assert_eq!(remove_hashes(&l, &["f00".into()]).unwrap(), 0);
        assert_eq!(remove_hashes(&l, &[h]).unwrap(), 1);
        assert!(load(&l).unwrap().is_empty());
    }

    #[test]
    fn a_foreign_file_is_refused_with_a_fix() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout {
            dir: d.path().to_path_buf(),
        };
        std::fs::write(l.grants(), r#"{"version": 9, "grants": []}"#).unwrap();
        assert!(load(&l).unwrap_err().to_string().contains("version 9"));
        std::fs::write(l.grants(), "garbage").unwrap();
        assert!(load(&l).unwrap_err().to_string().contains("remove it"));
    }
}
