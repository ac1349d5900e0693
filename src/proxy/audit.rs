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
///
/// A served request's line is written in a batch: it goes to a buffer, and
/// a task the runtime runs once the requests ready at that moment have been
/// served writes the whole buffer with one `write` (under load, several
/// lines per system call instead of one each; when idle, within
/// microseconds). A refused request's line is written at once, with the
/// buffer. The buffer is written out too when it grows past
/// [`BATCH_BYTES`], when the last handle is dropped (the proxy exits), and
/// at once outside a tokio runtime.
#[derive(Debug, Clone)]
pub struct Audit {
    inner: Arc<Mutex<Inner>>,
}

/// Past this many buffered bytes, a line is written at once.
const BATCH_BYTES: usize = 64 << 10;

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// The open log and its size (opened on first write, again after a
    /// rotation).
    file: Option<(std::fs::File, u64)>,
    /// Lines not written yet.
    pending: Vec<u8>,
    /// A task to write `pending` is on its way.
    scheduled: bool,
}

impl Inner {
    /// Writes the pending lines (0600), rotating first when the file would
    /// grow past [`MAX_BYTES`].
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let n = self.pending.len() as u64;
        if self
            .file
            .as_ref()
            .is_some_and(|(_, len)| len + n > MAX_BYTES)
        {
            self.file = None;
            let _ = std::fs::rename(&self.path, self.path.with_extension("jsonl.1"));
        }
        if self.file.is_none() {
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
                    self.file = Some((f, len));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot write the audit log");
                    self.pending.clear();
                    return;
                }
            }
        }
        if let Some((f, len)) = self.file.as_mut()
            && f.write_all(&self.pending).is_ok()
        {
            *len += n;
        }
        self.pending.clear();
    }
}

/// Writes the pending lines when dropped.
struct Batch(Audit);

impl Drop for Batch {
    fn drop(&mut self) {
        let mut g = self.0.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.scheduled = false;
        g.flush();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Audit {
    /// The log at `path`.
    pub fn new(path: PathBuf) -> Audit {
        Audit {
            inner: Arc::new(Mutex::new(Inner {
                path,
                file: None,
                pending: Vec::new(),
                scheduled: false,
            })),
        }
    }

    /// Appends `e`: written with the other lines of this turn of the
    /// runtime (see [`Audit`]).
    pub fn write(&self, e: &Entry) {
        super::metrics::GLOBAL.record(e);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let before = g.pending.len();
        if serde_json::to_writer(&mut g.pending, e).is_err() {
            g.pending.truncate(before);
            return;
        }
        g.pending.push(b'\n');
        if e.refused.is_some() {
            // a refusal (or a cut response) is on disk before the sandbox
            // hears of it, with the lines before it
            g.flush();
            return;
        }
        if g.scheduled {
            if g.pending.len() >= BATCH_BYTES {
                g.flush();
            }
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if g.pending.len() < BATCH_BYTES => {
                g.scheduled = true;
                // written when the task runs, or when it is dropped unrun
                // (the runtime shutting down)
                let batch = Batch(self.clone());
                rt.spawn(async move { drop(batch) });
            }
            _ => g.flush(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry {
        Entry::new("127.0.0.1:1".parse().unwrap(), "GET", path)
    }

    #[test]
    fn lines_of_one_turn_are_written_together_and_none_is_lost() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("audit.jsonl");
        // outside a runtime: at once
        let a = Audit::new(path.clone());
        a.write(&entry("/a"));
        assert_eq!(read(&path).len(), 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            a.write(&entry("/b"));
            a.write(&entry("/c"));
            // still this turn: buffered
            assert_eq!(read(&path).len(), 1);
            tokio::task::yield_now().await;
            let paths: Vec<String> = read(&path).into_iter().map(|e| e.path).collect();
            assert_eq!(paths, ["/a", "/b", "/c"]);
            a.write(&entry("/d"));
            // a refusal: at once, with the line before it
            let mut refused = entry("/r");
            refused.refused = Some("revoked".into());
            a.write(&refused);
            assert_eq!(read(&path).len(), 5);
            a.write(&entry("/d2"));
        });
        // the runtime ends before its batch ran: written when it is dropped
        drop(rt);
        assert_eq!(read(&path).len(), 6);
        a.write(&entry("/e"));
        drop(a);
        assert_eq!(read(&path).len(), 7);
    }
}
