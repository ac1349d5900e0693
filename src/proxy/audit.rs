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
    #[serde(default, skip_serializing_if = "Option::is_none", with = "shared")]
    pub sandbox: Option<Arc<str>>,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "shared")]
    pub agent: Option<Arc<str>>,
    /// The account.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "shared")]
    pub account: Option<Arc<str>>,
    /// The client's address.
    pub client: std::net::IpAddr,
    /// HTTP method.
    pub method: String,
    /// The upstream host (none when refused before choosing one).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "shared")]
    pub upstream: Option<Arc<str>>,
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

/// A grant's names as its requests' lines carry them: made once when the
/// grants are read, shared (not copied) by every line.
#[derive(Debug, Clone)]
pub struct GrantNames {
    /// The grant's sandbox.
    pub sandbox: Arc<str>,
    /// Its agent.
    pub agent: Arc<str>,
    /// Its account.
    pub account: Arc<str>,
}

impl GrantNames {
    /// `g`'s names, copied once.
    pub fn of(g: &Grant) -> GrantNames {
        GrantNames {
            sandbox: Arc::from(g.sandbox.as_str()),
            agent: Arc::from(g.agent.as_str()),
            account: Arc::from(g.account.as_str()),
        }
    }
}

/// (De)serialises an `Option<Arc<str>>` as an optional string (serde's
/// `rc` feature is not enabled).
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&**v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Arc::from))
    }
}

impl Entry {
    /// A request from `client` for `path`.
    pub fn new(client: SocketAddr, method: &str, path: &str) -> Entry {
        Entry {
            time: Timestamp::now(),
            sandbox: None,
            agent: None,
            account: None,
            client: client.ip(),
            method: method.to_owned(),
            upstream: None,
            path: match path.char_indices().nth(512) {
                Some((end, _)) => path[..end].to_owned(),
                None => path.to_owned(),
            },
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
        self.names(&GrantNames::of(g));
    }

    /// Names the grant the request carried, sharing its names.
    pub fn names(&mut self, n: &GrantNames) {
        self.sandbox = Some(n.sandbox.clone());
        self.agent = Some(n.agent.clone());
        self.account = Some(n.account.clone());
    }

    /// Names the upstream origin's host.
    pub fn upstream(&mut self, origin: &str) {
        self.upstream = Some(Arc::from(upstream_host(origin)));
    }
}

/// The host (and port) of an upstream origin, as an audit line names it.
pub fn upstream_host(origin: &str) -> &str {
    origin
        .split("://")
        .nth(1)
        .unwrap_or(origin)
        .trim_end_matches('/')
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
    /// The last second a line was written in, and its text.
    second: Second,
}

/// A second's text (`2026-12-04T10:12:33`), made once per second.
#[derive(Debug, Default)]
struct Second {
    at: i64,
    text: String,
}

/// Appends `e` to `out` as one JSON line: what `serde_json` would write
/// for it (the same keys, in the same order, skipped the same way; a unit
/// test holds them equal), by hand, for it is written for every request.
fn line(out: &mut Vec<u8>, second: &mut Second, e: &Entry) {
    let mut n = itoa::Buffer::new();
    let secs = e.time.as_second();
    if second.text.is_empty() || second.at != secs {
        let t = Timestamp::from_second(secs).unwrap_or(e.time).to_string();
        second.text = t.trim_end_matches('Z').to_owned();
        second.at = secs;
    }
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(second.text.as_bytes());
    let nanos = e.time.subsec_nanosecond();
    if nanos > 0 {
        // as jiff writes it: nine digits, trailing zeros dropped
        let mut digits = [b'0'; 9];
        let mut v = nanos as u32;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        let end = 9 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        out.push(b'.');
        out.extend_from_slice(&digits[..end]);
    }
    out.extend_from_slice(b"Z\"");
    let text = |out: &mut Vec<u8>, key: &str, v: &str| {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        json_string(out, v);
    };
    for (key, v) in [
        ("sandbox", &e.sandbox),
        ("agent", &e.agent),
        ("account", &e.account),
    ] {
        if let Some(v) = v {
            text(out, key, v);
        }
    }
    out.extend_from_slice(b",\"client\":\"");
    match e.client {
        std::net::IpAddr::V4(a) => {
            for (i, o) in a.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(n.format(*o).as_bytes());
            }
        }
        a @ std::net::IpAddr::V6(_) => out.extend_from_slice(a.to_string().as_bytes()),
    }
    out.push(b'"');
    text(out, "method", &e.method);
    if let Some(u) = &e.upstream {
        text(out, "upstream", u);
    }
    text(out, "path", &e.path);
    let mut number = |out: &mut Vec<u8>, key: &str, v: u64| {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(n.format(v).as_bytes());
    };
    number(out, "status", u64::from(e.status));
    if let Some(r) = &e.refused {
        text(out, "refused", r);
    }
    number(out, "latency_ms", e.latency_ms);
    number(out, "bytes_up", e.bytes_up);
    number(out, "bytes_down", e.bytes_down);
    if let Some(r) = &e.refresh {
        text(out, "refresh", r);
    }
    if let Some(ms) = e.refresh_ms {
        number(out, "refresh_ms", ms);
    }
    if e.retried {
        out.extend_from_slice(b",\"retried\":true");
    }
    out.extend_from_slice(b"}\n");
}

/// `s` as a JSON string, escaped as `serde_json` escapes it.
fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 15)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
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
                second: Second::default(),
            })),
        }
    }

    /// Appends `e`: written with the other lines of this turn of the
    /// runtime (see [`Audit`]).
    pub fn write(&self, e: &Entry) {
        super::metrics::GLOBAL.record(e);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let g = &mut *g;
        line(&mut g.pending, &mut g.second, e);
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
    fn a_line_is_what_serde_json_writes() {
        let mut second = Second::default();
        let mut full = entry("/v1/messages");
        full.names(&GrantNames {
            sandbox: Arc::from("sb-1"),
            agent: Arc::from("claude"),
            account: Arc::from("work \"quoted\" \\ back\u{1}\n\t é"),
        });
        full.upstream = Some(Arc::from("api.anthropic.com"));
        full.status = 401;
        full.refused = Some("revoked".into());
        full.latency_ms = 12;
        full.bytes_up = 1234;
        full.bytes_down = u64::MAX;
        full.refresh = Some("refreshed".into());
        full.refresh_ms = Some(0);
        full.retried = true;
        let mut v6 = entry("/");
        v6.client = "fd00::1".parse().unwrap();
        let mut times = Vec::new();
        for t in [
            "2026-12-04T10:12:33Z",
            "2026-12-04T10:12:33.5Z",
            "2026-12-04T10:12:33.000000001Z",
            "2026-12-04T10:12:34.123456789Z",
            "1999-01-01T00:00:00.12Z",
        ] {
            let mut e = entry("/a");
            e.time = t.parse().unwrap();
            times.push(e);
        }
        for e in [entry("/"), full, v6].iter().chain(&times) {
            let mut out = Vec::new();
            line(&mut out, &mut second, e);
            let mut want = serde_json::to_vec(e).unwrap();
            want.push(b'\n');
            assert_eq!(
                String::from_utf8(out.clone()).unwrap(),
                String::from_utf8(want).unwrap()
            );
            assert_eq!(&serde_json::from_slice::<Entry>(&out).unwrap(), e);
        }
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
