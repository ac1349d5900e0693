//! After an upstream 401 to a request sent with a session's access token
//! (Claude subscription, Codex ChatGPT): have the session refreshed once,
//! and hand the new access token to the request for one retry
//! (docs/proxy.md, "Refreshing sessions").
//!
//! The proxy does not refresh by itself: it asks the sync watcher, the
//! single refresher of every account ([`crate::sync::demand`]), and waits
//! until the account's truth holds another access token. Within the proxy,
//! requests of one account that are refused together queue on one lock:
//! the first asks, the others find the new token when they get the lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::secret::Secret;
use crate::sync::demand;

/// How long a request waits for the watcher's refresh (its token request
/// may take up to 15 s).
pub const WAIT: Duration = Duration::from_secs(20);

/// How often the truth is read again while waiting.
const POLL: Duration = Duration::from_millis(5);

/// The largest request body kept for a retry after a refresh; a request
/// with a larger body (or a body of unknown length) is streamed and its
/// 401 returned as it came (the next request uses the new token).
pub const REPLAY_LIMIT: u64 = 1 << 20;

/// What came of a refresh asked for after a 401. Never holds a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This request had the watcher refresh the session.
    Refreshed,
    /// The truth already held another access token (refreshed meanwhile).
    AlreadyRefreshed,
    /// No refresh: why.
    Not(String),
}

impl Outcome {
    /// The audit log's words.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Refreshed => "refreshed".into(),
            Outcome::AlreadyRefreshed => "already refreshed".into(),
            Outcome::Not(why) => format!("not refreshed: {why}"),
        }
    }
}

/// Per account: a lock the refused requests queue on, and when the proxy
/// last asked for a refresh of it.
#[derive(Debug, Default)]
pub struct Coordinator {
    accounts: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
}

impl Coordinator {
    /// Has account `agent:account` refreshed after the upstream refused
    /// `refused`, reading its current access token with `read` (blocking:
    /// run on the blocking pool). Returns the new access token, if any.
    pub async fn after_401<R>(
        &self,
        sync: Option<&crate::sync::Layout>,
        agent: &str,
        account: &str,
        refused: &Secret,
        read: R,
    ) -> (Outcome, Option<Arc<Secret>>)
    where
        R: Fn() -> crate::error::Result<Secret> + Send + Sync + Clone + 'static,
    {
        let key = crate::sync::engine::account_key(agent, account);
        let lock = {
            let mut m = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(key.clone()).or_default().clone()
        };
        let mut last_ask = lock.lock().await;
        let current = || {
            let read = read.clone();
            async move {
                tokio::task::spawn_blocking(read).await.unwrap_or_else(|_| {
                    Err(crate::error::Error::Other(
                        "the credential reader panicked".into(),
                    ))
                })
            }
        };
        match current().await {
            Ok(cur) if cur.expose() != refused.expose() => {
                return (Outcome::AlreadyRefreshed, Some(Arc::new(cur)));
            }
            Ok(_) => {}
            Err(e) => {
                return (
                    Outcome::Not(format!("the session cannot be read: {e}")),
                    None,
                );
            }
        }
        let Some(sync) = sync else {
            return (Outcome::Not("no sync watcher configured".into()), None);
        };
        if last_ask.is_some_and(|t| t.elapsed() < demand::MIN_INTERVAL) {
            return (
                Outcome::Not("the upstream refused the token again right after a refresh".into()),
                None,
            );
        }
        if !crate::sync::daemon_running(sync) {
            return (Outcome::Not("the sync watcher is not running".into()), None);
        }
        if std::fs::read_to_string(sync.daemon_refresh()).is_ok_and(|s| s.trim() == "off") {
            return (
                Outcome::Not("the sync watcher runs with pre-refresh off".into()),
                None,
            );
        }
        let status = || crate::sync::engine::read_status(&sync.accounts_dir(), &key);
        if status().is_some_and(|s| s.refused.is_some()) {
            return (
                Outcome::Not("the session's refresh token was refused: log in again".into()),
                None,
            );
        }
        let asked = Timestamp::now();
        if let Err(e) = demand::request(sync, agent, account, refused.expose()) {
            return (Outcome::Not(format!("cannot ask the watcher: {e}")), None);
        }
        *last_ask = Some(Instant::now());
        let until = Instant::now() + WAIT;
        loop {
            tokio::time::sleep(POLL).await;
            match current().await {
                Ok(cur) if cur.expose() != refused.expose() => {
                    return (Outcome::Refreshed, Some(Arc::new(cur)));
                }
                Ok(_) => {}
                Err(e) => {
                    return (
                        Outcome::Not(format!("the session cannot be read: {e}")),
                        None,
                    );
                }
            }
            if let Some(s) = status()
                && s.refresh_failed_at.is_some_and(|t| t >= asked)
            {
                let why = s.refresh_error.unwrap_or_else(|| "unknown".into());
                return (Outcome::Not(format!("the refresh failed: {why}")), None);
            }
            if Instant::now() > until {
                return (
                    Outcome::Not(format!("no new access token within {} s", WAIT.as_secs())),
                    None,
                );
            }
        }
    }
}
