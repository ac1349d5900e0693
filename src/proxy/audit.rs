//! The proxy's audit log: one JSON line per request, `<state>/proxy/
//! audit.jsonl`, rotated to `audit.jsonl.1` past [`MAX_BYTES`]. A line
//! names the time, sandbox, agent, account, upstream host and path, status,
//! latency and bytes each way; never a header value, a query string or a
//! body (docs/proxy.md).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hyper::StatusCode;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::registry::Grant;

/// The size at which the log is rotated (one previous file is kept).
pub const MAX_BYTES: u64 = 8 << 20;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When it arrived.
    pub time: Timestamp,
    /// The sandbox whose placeholder it carried (none: refused unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The client's address.
    pub client: String,
    /// HTTP method.
    pub method: String,
    /// The upstream host (none when refused before choosing one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The path, without the query string.
    pub path: String,
    /// The status returned to the sandbox.
    pub status: u16,
    /// Why the proxy refused it, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Until the last response byte (or the client's disconnect).
    pub latency_ms: u64,
    /// Request body bytes forwarded.
    pub bytes_up: u64,
    /// Response body bytes returned.
    pub bytes_down: u64,
    /// The upstream refused the session's access token (401) and the proxy
    /// had the session refreshed: `refreshed`, `already refreshed` (by
    /// another request or the watcher), or why not (docs/proxy.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    /// How long the request waited for that refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_ms: Option<u64>,
    /// Sent again with the refreshed access token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retried: bool,
}

impl Entry {
    /// A request from `client` for `path`.
    pub fn new(client: SocketAddr, method: &str, path: &str) -> Entry {
        Entry {
            time: Timestamp::now(),
            sandbox: None,
            agent: None,
            account: None,
            client: client.ip().to_string(),
            method: method.to_owned(),
            upstream: None,
            path: path.chars().take(512).collect(),
            status: 0,
            refused: None,
            latency_ms: 0,
            bytes_up: 0,
            bytes_down: 0,
            refresh: None,
            refresh_ms: None,
            retried: false,
        }
    }

    /// Names the grant the request carried.
    pub fn grant(&mut self, g: &Grant) {
        self.sandbox = Some(g.sandbox.clone());
        self.agent = Some(g.agent.clone());
        self.account = Some(g.account.clone());
    }

    /// Names the upstream origin's host.
    pub fn upstream(&mut self, origin: &str) {
        let host = origin
            .split("://")
            .nth(1)
            .unwrap_or(origin)
            .trim_end_matches('/');
        self.upstream = Some(host.to_owned());
    }
}

/// The log, shared by every request.
#[derive(Debug, Clone)]
pub struct Audit {
    path: PathBuf,
    /// The open log and its size (opened on first write, again after a
    /// rotation).
    file: Arc<Mutex<Option<(std::fs::File, u64)>>>,
}

impl Audit {
    /// The log at `path`.
    pub fn new(path: PathBuf) -> Audit {
        Audit {
            path,
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// Appends `e` (0600), rotating first when the file is too big.
    pub fn write(&self, e: &Entry) {
        super::metrics::GLOBAL.record(e);
        let Ok(mut line) = serde_json::to_vec(e) else {
            return;
        };
        line.push(b'\n');
        let mut g = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if g.as_ref()
            .is_some_and(|(_, len)| len + line.len() as u64 > MAX_BYTES)
        {
            *g = None;
            let _ = std::fs::rename(&self.path, self.path.with_extension("jsonl.1"));
        }
        if g.is_none() {
            let mut opts = std::fs::OpenOptions::new();
            opts.create(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
            }
            match opts.open(&self.path) {
                Ok(f) => {
                    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                    *g = Some((f, len));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot write the audit log");
                    return;
                }
            }
        }
        if let Some((f, len)) = g.as_mut()
            && f.write_all(&line).is_ok()
        {
            *len += line.len() as u64;
        }
    }

    /// Audits a refused request and returns `resp`.
    pub fn refuse<T>(
        &self,
        mut e: Entry,
        start: Instant,
        status: StatusCode,
        why: &str,
        resp: T,
    ) -> T {
        e.status = status.as_u16();
        e.refused = Some(why.to_owned());
        e.latency_ms = start.elapsed().as_millis() as u64;
        self.write(&e);
        resp
    }
}

/// Every entry in the log (the rotated file first), oldest first. Lines
/// that do not parse are skipped.
pub fn read(path: &std::path::Path) -> Vec<Entry> {
    let mut out = Vec::new();
    for p in [path.with_extension("jsonl.1"), path.to_path_buf()] {
        if let Ok(text) = std::fs::read_to_string(&p) {
            out.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Entry>(l).ok()),
            );
        }
    }
    out
}
