//! The proxy's Prometheus metrics (docs/proxy.md, "Metrics").
//!
//! Counted on the hot path with relaxed atomics only, no lock: every
//! request's audit entry ([`super::audit::Audit::write`]) adds itself to
//! [`GLOBAL`] (by agent and outcome, bytes, latency), the server marks the
//! streams it opens and closes and classifies upstream failures. What the
//! files say (live grants, accounts whose refresh token was refused) is
//! read when the metrics are asked for.
//!
//! Served on the admin side only, never on the addresses sandboxes reach:
//! a 0600 unix socket `<state>/proxy/metrics.sock` (`airlock proxy
//! metrics` prints what it answers) and, when asked for with
//! `--metrics-listen`, plain HTTP `GET /metrics` on a loopback address.
//! Nothing here holds a credential, a placeholder or a hash of one: the
//! labels are agents, account names, outcomes and error kinds.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::audit::Entry;
use super::registry::{self, Layout};
use crate::error::{Error, Result};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The agents a request is counted under (`none`: no placeholder found).
const AGENTS: [&str; 5] = ["claude", "codex", "gemini", "other", "none"];

/// Why the proxy refused a request (the `reason` label).
const REASONS: [&str; 10] = [
    "unknown_placeholder",
    "revoked",
    "expired",
    "forbidden_host",
    "response_guard",
    "hostile",
    "upstream_error",
    "credential_unavailable",
    "upgrade",
    "other",
];

/// The kinds of upstream failure (the `kind` label).
const UPSTREAM_ERRORS: [&str; 4] = ["connect", "tls", "timeout", "other"];

/// What came of a refresh asked for after an upstream 401.
const REFRESHES: [&str; 4] = [
    "refreshed",
    "already_refreshed",
    "failed",
    "credential_dead",
];

/// The latency buckets' upper bounds, in milliseconds (the audit log's
/// unit); exposed in seconds.
const BUCKETS_MS: [u64; 14] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000,
];

/// The counters of one proxy process (they start at zero with it).
#[derive(Debug)]
pub struct Metrics {
    /// Forwarded, by agent and status class returned (1xx..5xx).
    forwarded: [[AtomicU64; 5]; AGENTS.len()],
    refused: [[AtomicU64; REASONS.len()]; AGENTS.len()],
    upstream_errors: [AtomicU64; UPSTREAM_ERRORS.len()],
    refreshes: [AtomicU64; REFRESHES.len()],
    open_streams: AtomicI64,
    bytes_up: [AtomicU64; AGENTS.len()],
    bytes_down: [AtomicU64; AGENTS.len()],
    /// Not cumulative; the last one is `+Inf`.
    latency: [AtomicU64; BUCKETS_MS.len() + 1],
    latency_sum_ms: AtomicU64,
}

/// The proxy process's metrics.
pub static GLOBAL: Metrics = Metrics::new();

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO5: [AtomicU64; 5] = [ZERO; 5];
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_REASONS: [AtomicU64; REASONS.len()] = [ZERO; REASONS.len()];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All zero.
    pub const fn new() -> Metrics {
        Metrics {
            forwarded: [ZERO5; AGENTS.len()],
            refused: [ZERO_REASONS; AGENTS.len()],
            upstream_errors: [ZERO; UPSTREAM_ERRORS.len()],
            refreshes: [ZERO; REFRESHES.len()],
            open_streams: AtomicI64::new(0),
            bytes_up: [ZERO; AGENTS.len()],
            bytes_down: [ZERO; AGENTS.len()],
            latency: [ZERO; BUCKETS_MS.len() + 1],
            latency_sum_ms: ZERO,
        }
    }

    /// Counts one request as the audit log records it.
    pub fn record(&self, e: &Entry) {
        let a = agent_index(e.agent.as_deref());
        let answered = match &e.refused {
            Some(why) => {
                let r = reason_index(why);
                self.refused[a][r].fetch_add(1, Ordering::Relaxed);
                // the API answered, but the guard kept the answer back
                REASONS[r] == "response_guard"
            }
            None => {
                let class = usize::from(e.status / 100).clamp(1, 5) - 1;
                self.forwarded[a][class].fetch_add(1, Ordering::Relaxed);
                true
            }
        };
        if answered {
            // it reached the API: its time counts
            let b = BUCKETS_MS
                .iter()
                .position(|&b| e.latency_ms <= b)
                .unwrap_or(BUCKETS_MS.len());
            self.latency[b].fetch_add(1, Ordering::Relaxed);
            self.latency_sum_ms
                .fetch_add(e.latency_ms, Ordering::Relaxed);
        }
        if e.bytes_up > 0 {
            self.bytes_up[a].fetch_add(e.bytes_up, Ordering::Relaxed);
        }
        if e.bytes_down > 0 {
            self.bytes_down[a].fetch_add(e.bytes_down, Ordering::Relaxed);
        }
        if let Some(r) = &e.refresh {
            self.refreshes[refresh_index(r)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A response starts streaming to a sandbox.
    pub fn stream_opened(&self) {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
    }

    /// A response stream ended (or its client went away).
    pub fn stream_closed(&self) {
        self.open_streams.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts an upstream request that failed, by kind.
    pub fn upstream_error(&self, e: &(dyn std::error::Error + 'static)) {
        self.upstream_errors[upstream_error_index(e)].fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition format of these counters and of `files`.
    pub fn render(&self, files: &FileState) -> String {
        let mut out = String::with_capacity(4096);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);

        family(
            &mut out,
            "airlock_proxy_requests_total",
            "counter",
            "Requests forwarded to the agent's API, by agent and the status class returned.",
        );
        for (a, row) in self.forwarded.iter().enumerate() {
            for (c, n) in row.iter().enumerate() {
                let n = get(n);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "airlock_proxy_requests_total{{agent=\"{}\",class=\"{}xx\"}} {n}",
                        AGENTS[a],
                        c + 1
                    );
                }
            }
        }
        family(
            &mut out,
            "airlock_proxy_refused_total",
            "counter",
            "Requests the proxy answered itself, by agent and reason.",
        );
        for (a, row) in self.refused.iter().enumerate() {
            for (r, n) in row.iter().enumerate() {
                let n = get(n);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "airlock_proxy_refused_total{{agent=\"{}\",reason=\"{}\"}} {n}",
                        AGENTS[a], REASONS[r]
                    );
                }
            }
        }
        family(
            &mut out,
            "airlock_proxy_upstream_errors_total",
            "counter",
            "Requests to the agent's API that failed before a response, by kind.",
        );
        for (k, n) in self.upstream_errors.iter().enumerate() {
            let _ = writeln!(
                out,
                "airlock_proxy_upstream_errors_total{{kind=\"{}\"}} {}",
                UPSTREAM_ERRORS[k],
                get(n)
            );
        }
        family(
            &mut out,
            "airlock_proxy_refreshes_total",
            "counter",
            "Session refreshes asked for after an upstream 401, by outcome.",
        );
        for (k, n) in self.refreshes.iter().enumerate() {
            let _ = writeln!(
                out,
                "airlock_proxy_refreshes_total{{outcome=\"{}\"}} {}",
                REFRESHES[k],
                get(n)
            );
        }
        family(
            &mut out,
            "airlock_proxy_credential_dead",
            "gauge",
            "1 when the account's refresh token was refused (log in again), else 0; per account with a grant.",
        );
        for (agent, account, dead) in &files.accounts {
            let _ = writeln!(
                out,
                "airlock_proxy_credential_dead{{agent=\"{}\",account=\"{}\"}} {}",
                label(agent),
                label(&account_label(account)),
                u8::from(*dead)
            );
        }
        family(
            &mut out,
            "airlock_proxy_grants",
            "gauge",
            "Sandbox grants: live (answered), expired (refused until renewed) or revoked.",
        );
        let _ = writeln!(
            out,
            "airlock_proxy_grants{{state=\"live\"}} {}",
            files.live_grants
        );
        let _ = writeln!(
            out,
            "airlock_proxy_grants{{state=\"expired\"}} {}",
            files.expired_grants
        );
        let _ = writeln!(
            out,
            "airlock_proxy_grants{{state=\"revoked\"}} {}",
            files.revoked_grants
        );
        family(
            &mut out,
            "airlock_proxy_grants_file_unreadable",
            "gauge",
            "1 when the grants file cannot be read: the proxy answers with the grants it read last, new sandboxes get nothing (its log says why), else 0.",
        );
        let _ = writeln!(
            out,
            "airlock_proxy_grants_file_unreadable {}",
            u8::from(files.grants_unreadable)
        );
        family(
            &mut out,
            "airlock_proxy_open_streams",
            "gauge",
            "Responses streaming to sandboxes now.",
        );
        let _ = writeln!(
            out,
            "airlock_proxy_open_streams {}",
            self.open_streams.load(Ordering::Relaxed).max(0)
        );
        for (name, what, arr) in [
            (
                "airlock_proxy_bytes_up_total",
                "Request body bytes forwarded, by agent.",
                &self.bytes_up,
            ),
            (
                "airlock_proxy_bytes_down_total",
                "Response body bytes returned, by agent.",
                &self.bytes_down,
            ),
        ] {
            family(&mut out, name, "counter", what);
            for (a, n) in arr.iter().enumerate() {
                let n = get(n);
                if n > 0 {
                    let _ = writeln!(out, "{name}{{agent=\"{}\"}} {n}", AGENTS[a]);
                }
            }
        }
        let name = "airlock_proxy_request_duration_seconds";
        family(
            &mut out,
            name,
            "histogram",
            "Time from a request's arrival to its last response byte, for requests that reached the API (whole milliseconds).",
        );
        let mut cumulative = 0;
        for (i, n) in self.latency.iter().enumerate() {
            cumulative += get(n);
            let le = BUCKETS_MS
                .get(i)
                .map_or("+Inf".to_owned(), |ms| seconds(*ms));
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum {}", seconds(get(&self.latency_sum_ms)));
        let _ = writeln!(out, "{name}_count {cumulative}");
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Milliseconds as seconds in decimal (`1500` → `1.5`).
fn seconds(ms: u64) -> String {
    let (s, rest) = (ms / 1000, ms % 1000);
    if rest == 0 {
        s.to_string()
    } else {
        format!("{s}.{}", format!("{rest:03}").trim_end_matches('0'))
    }
}

/// A label value escaped as the exposition format wants.
fn label(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// An account name, unless it (or a word of it) looks like a credential.
fn account_label(account: &str) -> String {
    if crate::secret::shown(account).starts_with('"') {
        account.to_owned()
    } else {
        "(hidden)".to_owned()
    }
}

fn agent_index(agent: Option<&str>) -> usize {
    match agent {
        None => 4,
        Some(a) => AGENTS[..3].iter().position(|x| *x == a).unwrap_or(3),
    }
}

/// The reason label for an audit entry's `refused` text (the words
/// server.rs writes).
fn reason_index(why: &str) -> usize {
    let r = match why {
        "unknown placeholder" => "unknown_placeholder",
        "revoked" => "revoked",
        "expired" => "expired",
        "no upstream" => "forbidden_host",
        "two placeholders" | "method refused" => "hostile",
        "response encoded" => "response_guard",
        "upstream unreachable" => "upstream_error",
        "upgrade refused" => "upgrade",
        "credential unavailable" | "credential unusable" => "credential_unavailable",
        w if w.starts_with("response carried the credential") => "response_guard",
        w if w.contains("expired") => "expired",
        w if w.contains("forbidden") || w.contains("not allowed") => "forbidden_host",
        _ => "other",
    };
    REASONS
        .iter()
        .position(|x| *x == r)
        .unwrap_or(REASONS.len() - 1)
}

/// The outcome label for an audit entry's `refresh` text
/// ([`super::refresh::Outcome::describe`]).
fn refresh_index(r: &str) -> usize {
    let o = if r == "refreshed" {
        "refreshed"
    } else if r == "already refreshed" {
        "already_refreshed"
    } else if r.contains("refresh token was refused") {
        "credential_dead"
    } else {
        "failed"
    };
    REFRESHES.iter().position(|x| *x == o).unwrap_or(2)
}

/// connect, tls, timeout or other, from the error's chain.
fn upstream_error_index(e: &(dyn std::error::Error + 'static)) -> usize {
    let mut kind = "other";
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(u) = err.downcast_ref::<super::upstream::Error>() {
            kind = u.kind();
            break;
        }
        if err.is::<rustls::Error>() {
            kind = "tls";
            break;
        }
        let mut next = err.source();
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                kind = "timeout";
                break;
            }
            // an io::Error's source skips the error it wraps: look inside
            if let Some(inner) = io.get_ref() {
                next = Some(inner as &(dyn std::error::Error + 'static));
            }
        }
        if err.is::<tokio::time::error::Elapsed>() {
            kind = "timeout";
            break;
        }
        cur = next;
    }
    UPSTREAM_ERRORS
        .iter()
        .position(|x| *x == kind)
        .unwrap_or(UPSTREAM_ERRORS.len() - 1)
}

/// What the files say at the time of a scrape.
#[derive(Debug, Clone, Default)]
pub struct FileState {
    /// Grants neither revoked nor expired (answered).
    pub live_grants: usize,
    /// Grants past their expiry, not revoked (refused, still renewable).
    pub expired_grants: usize,
    /// The grants file could not be read (the counts are then zero).
    pub grants_unreadable: bool,
    /// Grants revoked and not yet forgotten.
    pub revoked_grants: usize,
    /// Each account with a grant: agent, account, whether its refresh
    /// token was refused (the sync watcher's record).
    pub accounts: Vec<(String, String, bool)>,
}

impl FileState {
    /// Reads the grants under `layout` and the sync watcher's account
    /// records under `sync`.
    pub fn read(layout: &Layout, sync: Option<&crate::sync::Layout>) -> FileState {
        let mut s = FileState::default();
        let grants = registry::load(layout).unwrap_or_else(|_| {
            s.grants_unreadable = true;
            Vec::new()
        });
        let now = jiff::Timestamp::now();
        for g in &grants {
            if g.revoked_at.is_some() {
                s.revoked_grants += 1;
            } else if g.expired(now) {
                s.expired_grants += 1;
            } else {
                s.live_grants += 1;
            }
            if s.accounts
                .iter()
                .any(|(a, b, _)| *a == g.agent && *b == g.account)
            {
                continue;
            }
            let dead = sync.is_some_and(|sync| {
                let key = crate::sync::engine::account_key(&g.agent, &g.account);
                crate::sync::engine::read_status(&sync.accounts_dir(), &key)
                    .is_some_and(|st| st.refused.is_some())
            });
            s.accounts.push((g.agent.clone(), g.account.clone(), dead));
        }
        s.accounts.sort();
        s
    }
}

/// The unix socket the running proxy answers with its metrics.
pub fn socket(layout: &Layout) -> PathBuf {
    layout.dir.join("metrics.sock")
}

/// The running proxy's metrics, read through its socket (`airlock proxy
/// metrics`).
pub fn scrape(layout: &Layout) -> Result<String> {
    use std::io::Read;
    let path = socket(layout);
    if !super::daemon::running(layout) {
        return Err(Error::NotFound {
            what: "a running airlock proxy".into(),
            fix: "start one with `airlock proxy` (or `airlock run --rotation proxy`)".into(),
        });
    }
    let mut s = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        Error::Other(format!(
            "the running proxy does not answer on its metrics socket {} ({e}); its log says why (a proxy started by an older airlock has none: restart it)",
            path.display()
        ))
    })?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| Error::io("read", &path, e))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| Error::io("read", &path, e))?;
    Ok(text)
}

/// Checks a `--metrics-listen` address: loopback only (the sandboxes'
/// bridges and the network never see the metrics).
pub fn check_listen(addr: SocketAddr) -> Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--metrics-listen {addr}: the metrics are served on a loopback address only (127.0.0.1 or ::1), never where sandboxes or the network reach"
        )))
    }
}

/// Serves the metrics on the admin side: the unix socket always, HTTP on
/// `listen` when given. Call inside the proxy's runtime.
pub fn serve_admin(
    layout: &Layout,
    sync: Option<crate::sync::Layout>,
    listen: Option<SocketAddr>,
) -> Result<()> {
    let files = Arc::new((layout.clone(), sync));
    let path = socket(layout);
    let _ = std::fs::remove_file(&path);
    // The socket is made in the proxy's 0700 directory, then set to 0600.
    // Without it (a path too long for a socket, say) the proxy still runs.
    let unix = tokio::net::UnixListener::bind(&path)
        .map_err(|e| Error::io("listen on", &path, e))
        .and_then(|l| set_private(&path).map(|()| l));
    match unix {
        Ok(unix) => {
            let f = files.clone();
            tokio::spawn(async move {
                loop {
                    let mut s = match unix.accept().await {
                        Ok((s, _)) => s,
                        Err(_) => {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let f = f.clone();
                    tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        let text = exposition(f).await;
                        let _ = s.write_all(text.as_bytes()).await;
                        let _ = s.shutdown().await;
                    });
                }
            });
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            tracing::warn!(error = %e, "no metrics socket: `airlock proxy metrics` cannot read this proxy's metrics");
        }
    }
    if let Some(addr) = listen {
        check_listen(addr)?;
        let std = std::net::TcpListener::bind(addr)
            .map_err(|e| Error::Other(format!("cannot listen on {addr} for metrics: {e}")))?;
        std.set_nonblocking(true)
            .map_err(|e| Error::Other(format!("cannot listen on {addr} for metrics: {e}")))?;
        let l = tokio::net::TcpListener::from_std(std)
            .map_err(|e| Error::Other(format!("cannot listen on {addr} for metrics: {e}")))?;
        tracing::info!(address = %addr, "metrics served over HTTP (GET /metrics)");
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let f = files.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| http(f.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    }
    Ok(())
}

type Files = Arc<(Layout, Option<crate::sync::Layout>)>;

async fn exposition(f: Files) -> String {
    let files = tokio::task::spawn_blocking(move || FileState::read(&f.0, f.1.as_ref()))
        .await
        .unwrap_or_default();
    GLOBAL.render(&files)
}

async fn http(
    f: Files,
    req: hyper::Request<hyper::body::Incoming>,
) -> std::result::Result<
    hyper::Response<http_body_util::Full<bytes::Bytes>>,
    std::convert::Infallible,
> {
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
    if req.method() != hyper::Method::GET || req.uri().path() != "/metrics" {
        *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
        *resp.body_mut() = http_body_util::Full::new(bytes::Bytes::from_static(
            b"airlock proxy: the metrics are at GET /metrics\n",
        ));
        return Ok(resp);
    }
    let text = exposition(f).await;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    *resp.body_mut() = http_body_util::Full::new(bytes::Bytes::from(text));
    Ok(resp)
}

fn set_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("set permissions on", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(agent: Option<&str>, status: u16, refused: Option<&str>) -> Entry {
        let mut e = Entry::new("127.0.0.1:1".parse().unwrap(), "POST", "/v1/messages");
        e.agent = agent.map(Arc::from);
        e.status = status;
        e.refused = refused.map(str::to_owned);
        e
    }

    #[test]
    fn entries_are_counted_by_agent_and_outcome() {
        let m = Metrics::new();
        let mut e = entry(Some("claude"), 200, None);
        e.upstream = Some("api.anthropic.com".into());
        e.latency_ms = 3;
        e.bytes_up = 10;
        e.bytes_down = 20;
        m.record(&e);
        m.record(&entry(None, 401, Some("unknown placeholder")));
        m.record(&entry(Some("codex"), 401, Some("revoked")));
        m.record(&entry(Some("gemini"), 403, Some("no upstream")));
        m.record(&entry(
            Some("claude"),
            200,
            Some("response carried the credential: cut"),
        ));
        let mut r = entry(Some("claude"), 401, None);
        r.refresh =
            Some("not refreshed: the session's refresh token was refused: log in again".into());
        m.record(&r);
        let text = m.render(&FileState {
            live_grants: 2,
            revoked_grants: 1,
            expired_grants: 0,
            grants_unreadable: false,
            accounts: vec![
                ("claude".into(), "work".into(), true),
                ("codex".into(), "sk-ant-oat01-looks-secret".into(), false),
            ],
        });
        for line in [
            "airlock_proxy_requests_total{agent=\"claude\",class=\"2xx\"} 1",
            "airlock_proxy_requests_total{agent=\"claude\",class=\"4xx\"} 1",
            "airlock_proxy_refused_total{agent=\"none\",reason=\"unknown_placeholder\"} 1",
            "airlock_proxy_refused_total{agent=\"codex\",reason=\"revoked\"} 1",
            "airlock_proxy_refused_total{agent=\"gemini\",reason=\"forbidden_host\"} 1",
            "airlock_proxy_refused_total{agent=\"claude\",reason=\"response_guard\"} 1",
            "airlock_proxy_refreshes_total{outcome=\"credential_dead\"} 1",
            "airlock_proxy_credential_dead{agent=\"claude\",account=\"work\"} 1",
            "airlock_proxy_credential_dead{agent=\"codex\",account=\"(hidden)\"} 0",
            "airlock_proxy_grants{state=\"live\"} 2",
            "airlock_proxy_bytes_up_total{agent=\"claude\"} 10",
            "airlock_proxy_bytes_down_total{agent=\"claude\"} 20",
            // the forwarded ones and the one the guard cut; not the refused
            "airlock_proxy_request_duration_seconds_bucket{le=\"0.002\"} 2",
            "airlock_proxy_request_duration_seconds_bucket{le=\"0.005\"} 3",
            "airlock_proxy_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "airlock_proxy_request_duration_seconds_sum 0.003",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("looks-secret"));
    }

    /// Every refusal server.rs audits has a reason of its own (a new
    /// refusal there shows up here, not silently as `other`).
    #[test]
    fn every_refusal_of_the_server_has_a_reason() {
        let src = include_str!("server.rs");
        let mut found = Vec::new();
        for (i, _) in src.match_indices(".refuse(") {
            // the why is the first string literal after the call
            let rest = &src[i..];
            // up to its response: a call passing a variable has none
            let rest = &rest[..rest.find("error_response").unwrap_or(0)];
            let Some(q) = rest.find('"') else { continue };
            let lit = &rest[q + 1..];
            let why = &lit[..lit.find('"').unwrap_or(0)];
            found.push(why.to_owned());
        }
        for w in [
            "unknown placeholder",
            "revoked",
            "expired",
            "upstream unreachable",
        ] {
            assert!(found.iter().any(|f| f == w), "{w} not found in {found:?}");
        }
        let generic = ["bad path", "body unreadable"];
        for why in &found {
            let r = REASONS[reason_index(why)];
            assert!(
                r != "other" || generic.contains(&why.as_str()),
                "the refusal {why:?} has no reason label: add it to reason_index"
            );
        }
    }

    /// A pods' grant past its expiry is refused: not counted live. A grants
    /// file that cannot be read shows as such, not as no grants.
    #[test]
    fn expired_grants_are_not_live() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout {
            dir: d.path().join("proxy"),
        };
        let now = jiff::Timestamp::now();
        let hour = jiff::SignedDuration::from_hours(1);
        let grant = |sandbox: &str, expires_at, revoked_at| registry::Grant {
            expires_at,
            revoked_at,
            ..registry::tests::grant(sandbox, sandbox)
        };
        registry::add(&l, &grant("k8s-a-live", Some(now + hour), None)).unwrap();
        registry::add(&l, &grant("k8s-a-expired", Some(now - hour / 2), None)).unwrap();
        registry::add(&l, &grant("k8s-a-revoked", Some(now + hour), Some(now))).unwrap();
        registry::add(&l, &grant("sb-plain", None, None)).unwrap();
        let files = FileState::read(&l, None);
        let text = Metrics::new().render(&files);
        for line in [
            "airlock_proxy_grants{state=\"live\"} 2",
            "airlock_proxy_grants{state=\"expired\"} 1",
            "airlock_proxy_grants{state=\"revoked\"} 1",
            "airlock_proxy_grants_file_unreadable 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // a damaged grants file is not zero grants in silence
        std::fs::write(l.grants(), "{not json").unwrap();
        let text = Metrics::new().render(&FileState::read(&l, None));
        assert!(
            text.lines()
                .any(|l| l == "airlock_proxy_grants_file_unreadable 1"),
            "{text}"
        );
    }

    #[test]
    fn streams_are_a_gauge() {
        let m = Metrics::new();
        m.stream_opened();
        m.stream_opened();
        m.stream_closed();
        let text = m.render(&FileState::default());
        assert!(text.lines().any(|l| l == "airlock_proxy_open_streams 1"));
    }

    #[test]
    fn upstream_errors_are_classified() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::General("bad certificate".into()),
        );
        assert_eq!(UPSTREAM_ERRORS[upstream_error_index(&tls)], "tls");
        // as hyper-rustls hands it on: wrapped once more
        let nested = std::io::Error::other(tls);
        assert_eq!(UPSTREAM_ERRORS[upstream_error_index(&nested)], "tls");
        let t = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(UPSTREAM_ERRORS[upstream_error_index(&t)], "timeout");
        let o = std::io::Error::other("x");
        assert_eq!(UPSTREAM_ERRORS[upstream_error_index(&o)], "other");
        use super::super::upstream::Error as Up;
        let refused = Up::Connect(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(UPSTREAM_ERRORS[upstream_error_index(&refused)], "connect");
        assert_eq!(
            UPSTREAM_ERRORS[upstream_error_index(&Up::Timeout("connect"))],
            "timeout"
        );
        let handshake = Up::Tls(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::General("bad certificate".into()),
        ));
        assert_eq!(UPSTREAM_ERRORS[upstream_error_index(&handshake)], "tls");
    }

    #[test]
    fn seconds_and_labels_are_written_as_prometheus_reads_them() {
        assert_eq!(seconds(1500), "1.5");
        assert_eq!(seconds(1), "0.001");
        assert_eq!(seconds(60_000), "60");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_metrics_address_must_be_loopback() {
        assert!(check_listen("127.0.0.1:9100".parse().unwrap()).is_ok());
        assert!(check_listen("[::1]:9100".parse().unwrap()).is_ok());
        assert!(check_listen("0.0.0.0:9100".parse().unwrap()).is_err());
        assert!(check_listen("172.17.0.1:9100".parse().unwrap()).is_err());
    }
}
