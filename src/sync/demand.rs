//! Refresh on demand: `airlock proxy` asks the watcher to refresh a
//! session whose access token the upstream refused (HTTP 401), instead of
//! refreshing it itself (docs/proxy.md, "Refreshing sessions").
//!
//! The watcher stays the single refresher of every account: the same
//! [`Syncer`](super::Syncer) refresh code, the same per-account in-flight
//! bookkeeping and the agents' refresh locks, the same write-back to the
//! truth. The proxy writes `<state>/sync/kick/.refresh.<agent>-<account>`
//! holding the hex SHA-256 of the refused access token (a one-way
//! fingerprint of a token, never the token); the watcher refreshes the
//! account only while its newest session still carries that access token,
//! so a request that arrives after a refresh (the watcher's own, or one an
//! earlier demand caused) never causes a second one, and at most once per
//! [`MIN_INTERVAL`] per account, so an upstream that refuses every token
//! cannot cause a refresh storm.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;

use super::engine::account_key;
use super::registry::Layout;

/// The kick-directory name prefix of a demand.
pub const PREFIX: &str = ".refresh.";

/// The least time between two refreshes on demand of one account.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// The hex SHA-256 of an access token, as a demand names it.
pub fn token_hash(access_token: &str) -> String {
    super::credential::content_hash(access_token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The demand file of an account.
pub fn path(layout: &Layout, agent: &str, account: &str) -> PathBuf {
    layout
        .kick_dir()
        .join(format!("{PREFIX}{}", account_key(agent, account)))
}

/// Asks a running watcher to refresh `agent:account` because the upstream
/// refused `access_token`.
pub fn request(layout: &Layout, agent: &str, account: &str, access_token: &str) -> Result<()> {
    layout.ensure()?;
    let p = path(layout, agent, account);
    crate::fsutil::write_atomic(&p, token_hash(access_token).as_bytes(), 0o600)
}

/// The account key a kick-directory entry demands a refresh of, if it is a
/// demand.
pub fn key_of(name: &str) -> Option<&str> {
    name.strip_prefix(PREFIX).filter(|k| !k.is_empty())
}

/// The refused token's hash a demand file holds (`None`: gone or not a
/// hash).
pub fn read(layout: &Layout, key: &str) -> Option<String> {
    let p = layout.kick_dir().join(format!("{PREFIX}{key}"));
    let meta = std::fs::symlink_metadata(&p).ok()?;
    if !meta.is_file() || meta.len() > 128 {
        return None;
    }
    let s = std::fs::read_to_string(&p).ok()?;
    let s = s.trim();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// Removes a handled demand (a newer one written meanwhile is kept when it
/// names another token).
pub fn done(layout: &Layout, key: &str, hash: &str) {
    if read(layout, key).as_deref() == Some(hash) {
        let _ = std::fs::remove_file(layout.kick_dir().join(format!("{PREFIX}{key}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demand_round_trips_and_holds_no_token() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout {
            state: d.path().join("sync"),
            runtime: d.path().join("run"),
        };
        request(&l, "claude", "work", "sk-ant-oat01-secret").unwrap();
        let p = path(&l, "claude", "work");
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(key_of(&name), Some("claude-work"));
        assert_eq!(key_of("claude-work"), None);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("secret"));
        let h = read(&l, "claude-work").unwrap();
        assert_eq!(h, token_hash("sk-ant-oat01-secret"));
        done(&l, "claude-work", &token_hash("other"));
        assert!(p.exists(), "a demand for another token is kept");
        done(&l, "claude-work", &h);
        assert!(!p.exists());
        std::fs::write(&p, "not a hash").unwrap();
        assert_eq!(read(&l, "claude-work"), None);
    }
}
