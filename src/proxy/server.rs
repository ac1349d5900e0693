//! The proxy itself: an HTTP/1.1 server for the sandboxes that swaps a
//! placeholder for the real credential and forwards the request over TLS
//! to the agent's own API, streaming both ways (docs/proxy.md).
//!
//! Per request: find a placeholder where the agent sends its credential
//! (`Authorization: Bearer`, `x-api-key`, `x-goog-api-key`, `?key=`), look
//! its hash up in the grants ([`super::registry`]), refuse unknown and
//! revoked ones (401), read the account's current credential where it is
//! kept (vault record or host login file), and send the request to the one
//! upstream allowed for that agent and method — never another host, never
//! following a redirect. Every request is audited ([`super::audit`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use tokio::net::TcpListener;

use super::audit::GrantNames;
use super::audit::{Audit, Entry};
use super::guard::{Guarded, Needle};
use super::registry::{self, Grant, Layout};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::sync::Truth;
use crate::vault::{Method, Vault};

/// Errors a body may end with (an upstream failure, or [`Guarded`] cutting
/// a response that carried the real credential).
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// The environment variable that replaces an agent's upstream
/// (`AIRLOCK_PROXY_UPSTREAM_CLAUDE=https://gateway.internal:8443`): still
/// one fixed origin per agent, still TLS. For tests and enterprise gateways.
/// A Gemini Google login (Code Assist, another API than Gemini's keys) has
/// its own: `AIRLOCK_PROXY_UPSTREAM_GEMINI_SESSION`.
pub const UPSTREAM_ENV_PREFIX: &str = "AIRLOCK_PROXY_UPSTREAM_";
/// The upstream override key of a Gemini Google login.
const GEMINI_SESSION: &str = "gemini_session";
/// A PEM file of extra CA certificates for the upstreams.
pub const CA_FILE_ENV: &str = "AIRLOCK_PROXY_CA_FILE";

/// The upstream origin for a grant: the agent's own API, by method.
pub fn default_upstream(agent: &str, method: Method) -> Option<&'static str> {
    match (agent, method) {
        ("claude", _) => Some("https://api.anthropic.com"),
        ("codex", Method::ApiKey) => Some("https://api.openai.com"),
        ("codex", Method::Session) => Some("https://chatgpt.com"),
        ("gemini", Method::ApiKey) => Some("https://generativelanguage.googleapis.com"),
        ("gemini", Method::Session) => Some("https://cloudcode-pa.googleapis.com"),
        _ => None,
    }
}

/// A file's modification time and length: re-read when it changes.
type FileStamp = (SystemTime, u64);

/// Opens the vault without a prompt (the key cache or the environment).
pub type VaultOpener = Box<dyn Fn() -> Result<Vault> + Send + Sync>;

/// What the proxy needs at hand for every request.
pub struct State {
    layout: Layout,
    vault: Mutex<Option<Vault>>,
    open_vault: VaultOpener,
    client: super::upstream::Upstream<ProxyBody>,
    upstreams: HashMap<String, Arc<str>>,
    grants: Mutex<GrantsRead>,
    /// `layout.grants()`, stat'ed for a request when [`State::changes`]
    /// cannot vouch for it.
    grants_file: std::path::PathBuf,
    /// Whether the grants file or the vault file may have changed since a
    /// request last checked (inotify on their directories, [`super::changes`]).
    changes: super::changes::Changes,
    /// Credentials already read, by where they are kept, with the stamp of
    /// the file they came from ([`Cached`]).
    cache: Mutex<HashMap<Arc<HashedKey>, Cached>>,
    audit: Audit,
    /// The sync watcher's layout, to ask for a refresh after a 401.
    sync: Option<crate::sync::Layout>,
    /// Refreshes after a 401, one at a time per account.
    refresh: super::refresh::Coordinator,
}

/// The grants as last read.
struct GrantsRead {
    /// The file's stamp when read (or when found unreadable).
    stamp: Option<FileStamp>,
    /// The [`super::changes::Changes`] generation at which the stamp was
    /// last found unchanged, when the file's directory is watched: the same
    /// generation later means no `stat` is needed.
    checked: Option<u64>,
    snap: Arc<Snapshot>,
}

/// Agent, method, where a credential is kept, and the secret reference
/// it is resolved from, if any.
type CacheKey = (String, String, Truth, Option<String>);

/// A [`CacheKey`] with its hash, computed once when the grants are read
/// (not per request); equal keys compare in full.
#[derive(PartialEq, Eq)]
struct HashedKey {
    hash: u64,
    key: CacheKey,
}

impl HashedKey {
    fn new(key: CacheKey) -> HashedKey {
        use std::hash::BuildHasher;
        HashedKey {
            hash: KEY_HASH.hash_one(&key),
            key,
        }
    }
}

impl std::hash::Hash for HashedKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The hasher of [`HashedKey`]s: one per process, so that keys made from
/// two reads of the grants hash alike.
static KEY_HASH: std::sync::LazyLock<std::collections::hash_map::RandomState> =
    std::sync::LazyLock::new(std::collections::hash_map::RandomState::new);

/// The grants as last read, with what every request needs of a grant made
/// once per read rather than per request: its credential cache key and the
/// names its audit lines carry.
struct Snapshot {
    grants: Vec<Grant>,
    keys: Vec<Arc<HashedKey>>,
    names: Vec<GrantNames>,
    /// Each grant's upstream origin and its host (for the audit line).
    upstreams: Vec<Option<(Arc<str>, Arc<str>)>>,
}

impl Snapshot {
    fn new(grants: Vec<Grant>, upstream: impl Fn(&Grant) -> Option<Arc<str>>) -> Snapshot {
        let keys = grants
            .iter()
            .map(|g| {
                Arc::new(HashedKey::new((
                    g.agent.clone(),
                    g.method.as_str().to_owned(),
                    g.truth.clone(),
                    g.reference.as_ref().map(|r| r.text.clone()),
                )))
            })
            .collect();
        let names = grants.iter().map(GrantNames::of).collect();
        let upstreams = grants
            .iter()
            .map(|g| {
                let origin = upstream(g)?;
                let host = Arc::from(super::audit::upstream_host(&origin));
                Some((origin, host))
            })
            .collect();
        Snapshot {
            grants,
            keys,
            names,
            upstreams,
        }
    }
}

/// One grant of a [`Snapshot`]: a request holds it (and the snapshot) for
/// as long as it runs, without copying the grant.
#[derive(Clone)]
struct Granted {
    snap: Arc<Snapshot>,
    i: usize,
}

impl Granted {
    fn key(&self) -> &Arc<HashedKey> {
        &self.snap.keys[self.i]
    }

    fn names(&self) -> &GrantNames {
        &self.snap.names[self.i]
    }

    /// The upstream origin and its host ([`State::upstream`]).
    fn upstream(&self) -> Option<&(Arc<str>, Arc<str>)> {
        self.snap.upstreams[self.i].as_ref()
    }
}

impl std::ops::Deref for Granted {
    type Target = Grant;
    fn deref(&self) -> &Grant {
        &self.snap.grants[self.i]
    }
}

/// How long a credential is reused when no file says it changed: the OS
/// keyrings (a refresh reaches requests within that time).
const CREDENTIAL_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a credential from a file (a host login, the encrypted vault) is
/// reused while the file's stamp stays the same: a refresh written to the
/// file reaches the next request of every sandbox at once.
const STAMPED_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// A file's modification time, length and inode: an atomic rename changes
/// the inode even within one timestamp tick.
type SourceStamp = (SystemTime, u64, u64);

/// A credential read, when, the stamp its source file had just before,
/// and how long it is reused without a stamp.
struct Cached {
    at: Instant,
    stamp: Option<SourceStamp>,
    /// The [`super::changes::Changes`] generation at which `stamp` was last
    /// found current, when the source file's directory is watched.
    checked: Option<u64>,
    secret: Arc<Secret>,
    /// The response guard's search for it, set up once.
    needle: Arc<Needle>,
    ttl: std::time::Duration,
}

impl Cached {
    /// Still the credential `stamp` (the source file's stamp now) stands for.
    fn fresh(&self, stamp: &Option<SourceStamp>) -> bool {
        match (&self.stamp, stamp) {
            (Some(then), Some(now)) => then == now && self.at.elapsed() < STAMPED_TTL,
            (None, None) => self.at.elapsed() < self.ttl,
            _ => false,
        }
    }
}

/// How long a credential without a source file is reused: a `cmd:`
/// reference's own cache time (docs/secret-refs.md), else a second.
fn unstamped_ttl(g: &Grant) -> std::time::Duration {
    g.reference.as_ref().map_or(CREDENTIAL_TTL, |r| {
        std::time::Duration::from_millis(r.cache_ms)
    })
}

impl State {
    /// The proxy's state: grants under `layout`, credentials from the vault
    /// `open_vault` opens when first needed (and again after a failure:
    /// the key may reach the key cache later).
    pub fn new(layout: Layout, open_vault: VaultOpener) -> Result<State> {
        let mut upstreams = HashMap::new();
        for agent in ["claude", "codex", "gemini", GEMINI_SESSION] {
            let var = format!("{UPSTREAM_ENV_PREFIX}{}", agent.to_uppercase());
            if let Ok(v) = std::env::var(&var)
                && !v.trim().is_empty()
            {
                let v = v.trim().trim_end_matches('/').to_owned();
                let uri: Uri = v.parse().map_err(|_| {
                    Error::Usage(format!("{var} is not a URL: give https://host[:port]"))
                })?;
                if uri.scheme_str() != Some("https") || uri.host().is_none() || uri.path().len() > 1
                {
                    return Err(Error::Usage(format!(
                        "{var} must be an https:// origin (scheme, host, optional port, no path)"
                    )));
                }
                upstreams.insert(agent.to_owned(), Arc::from(v));
            }
        }
        let audit = Audit::new(layout.audit());
        let changes = super::changes::Changes::new();
        changes.watch(&layout.grants());
        Ok(State {
            client: super::upstream::Upstream::new(tls_config()?),
            grants_file: layout.grants(),
            layout,
            vault: Mutex::new(None),
            open_vault,
            upstreams,
            grants: Mutex::new(GrantsRead {
                stamp: None,
                checked: None,
                snap: Arc::new(Snapshot::new(Vec::new(), |_| None)),
            }),
            changes,
            cache: Mutex::new(HashMap::new()),
            audit,
            sync: None,
            refresh: super::refresh::Coordinator::default(),
        })
    }

    /// The stamp of the file `truth` is read from (the host login, or the
    /// vault file of the encrypted-file backend once the vault is open);
    /// `None` where there is no such file (the OS keyrings).
    fn source_stamp(&self, grant: &Grant) -> Option<SourceStamp> {
        use std::os::unix::fs::MetadataExt;
        if let Some(r) = &grant.reference {
            // a `file:` reference is a file like any other; a command has none
            let path = r.text.strip_prefix("file:")?;
            let m = std::fs::metadata(path).ok()?;
            return Some((m.modified().ok()?, m.len(), m.ino()));
        }
        let m = match &grant.truth {
            Truth::HostFile { path } => std::fs::metadata(path).ok()?,
            Truth::Vault { .. } => {
                let path = {
                    let v = self.vault.lock().unwrap_or_else(|e| e.into_inner());
                    v.as_ref()?.backend().change_marker()?
                };
                std::fs::metadata(path).ok()?
            }
        };
        Some((m.modified().ok()?, m.len(), m.ino()))
    }

    /// Asks the sync watcher of `sync` for a refresh when the upstream
    /// refuses a session's access token (HTTP 401).
    pub fn with_sync(mut self, sync: Option<crate::sync::Layout>) -> State {
        self.sync = sync;
        self
    }

    /// True when `grant`'s source file (with stamp `stamp`) is one whose
    /// changes [`super::changes`] reports: the vault file of the
    /// encrypted-file backend. Host login files and `file:` references are
    /// the user's (links, other writers): `stat`ed every time.
    fn watched_source(&self, grant: &Grant, stamp: &Option<SourceStamp>) -> bool {
        if stamp.is_none() || grant.reference.is_some() {
            return false;
        }
        let Truth::Vault { .. } = &grant.truth else {
            return false;
        };
        let path = {
            let v = self.vault.lock().unwrap_or_else(|e| e.into_inner());
            v.as_ref().and_then(|v| v.backend().change_marker())
        };
        path.is_some_and(|p| self.changes.watch(&p))
    }

    /// The grants, re-read when the file changed.
    fn grants(&self, generation: u64) -> Arc<Snapshot> {
        let mut g = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        if g.checked == Some(generation) {
            // no event in the grants' directory since the last look
            return g.snap.clone();
        }
        let stamp = std::fs::metadata(&self.grants_file)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if g.stamp != stamp || stamp.is_none() {
            match registry::load(&self.layout) {
                Ok(list) => g.snap = Arc::new(Snapshot::new(list, |g| self.upstream(g))),
                // once per change of the file (its stamp is kept below), not
                // for every request
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the grants; keeping the last ones until the file changes")
                }
            }
            g.stamp = stamp;
        }
        g.checked =
            (stamp.is_some() && self.changes.watched(&self.grants_file)).then_some(generation);
        g.snap.clone()
    }

    fn upstream(&self, g: &Grant) -> Option<Arc<str>> {
        let key = match (g.agent.as_str(), g.method) {
            ("gemini", Method::Session) => GEMINI_SESSION,
            (agent, _) => agent,
        };
        if let Some(o) = self.upstreams.get(key) {
            return Some(o.clone());
        }
        default_upstream(&g.agent, g.method).map(Arc::from)
    }
}

/// TLS to the upstreams: the web PKI's roots, and those of
/// [`CA_FILE_ENV`] if set.
fn tls_config() -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Ok(path) = std::env::var(CA_FILE_ENV)
        && !path.is_empty()
    {
        let pem =
            std::fs::read(&path).map_err(|e| Error::io("read", std::path::Path::new(&path), e))?;
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| {
                Error::Usage(format!(
                    "{CA_FILE_ENV}: {path} is not a PEM certificate file: {e}"
                ))
            })?;
            roots
                .add(cert)
                .map_err(|e| Error::Usage(format!("{CA_FILE_ENV}: {path}: {e}")))?;
            n += 1;
        }
        if n == 0 {
            return Err(Error::Usage(format!(
                "{CA_FILE_ENV}: {path} holds no PEM certificate"
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Other(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Serves `listener` until the process ends.
/// Connections that open with a TLS handshake are served over TLS with
/// `tls` ([`super::tls`]).
pub async fn serve(listener: TcpListener, state: Arc<State>, tls: Option<Arc<super::tls::Tls>>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Streamed events go to the sandbox as they arrive, not after its
        // delayed ACK (Nagle would hold a small write for up to 40 ms).
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(st.clone(), peer, req));
            super::tls::serve_connection(stream, tls, svc).await;
        });
    }
}

/// Where the placeholder was found, so the real credential goes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Bearer,
    ApiKey,
    GoogKey,
    Query,
}

fn candidates(req: &Request<Incoming>) -> Vec<(Slot, &str)> {
    let h = req.headers();
    let mut v = Vec::new();
    if let Some(t) = h
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.strip_prefix("Bearer "))
    {
        v.push((Slot::Bearer, t.trim()));
    }
    if let Some(t) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        v.push((Slot::ApiKey, t.trim()));
    }
    if let Some(t) = h.get("x-goog-api-key").and_then(|v| v.to_str().ok()) {
        v.push((Slot::GoogKey, t.trim()));
    }
    if let Some(q) = req.uri().query() {
        for pair in q.split('&') {
            if let Some(k) = pair.strip_prefix("key=") {
                v.push((Slot::Query, k));
            }
        }
    }
    v
}

fn error_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "type": "error",
        "error": {"type": "airlock_proxy", "message": message},
    })
    .to_string();
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Hop-by-hop headers and every credential header: never forwarded as sent.
const DROP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "accept-encoding",
    // a slice of an echoed credential would pass the guard
    "range",
    "if-range",
];

async fn handle(
    st: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> std::result::Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let mut entry = Entry::new(peer, req.method().as_str(), req.uri().path());
    let generation = st.changes.generation();
    let grants = st.grants(generation);
    let cands = candidates(&req);
    let found = cands.iter().find_map(|(slot, ph)| {
        registry::position(&grants.grants, ph).map(|i| {
            let g = Granted {
                snap: grants.clone(),
                i,
            };
            (*slot, g)
        })
    });
    let Some((slot, grant)) = found else {
        return Ok(st.audit.refuse(entry, start, StatusCode::UNAUTHORIZED, "unknown placeholder", error_response(
            StatusCode::UNAUTHORIZED,
            "airlock proxy: no valid airlock placeholder in this request (the sandbox is gone, or it was never granted one)",
        )));
    };
    entry.names(grant.names());
    if super::hostile::another_grant(&grants.grants, req.headers(), &cands, &grant) {
        return Ok(st.audit.refuse(
            entry,
            start,
            StatusCode::BAD_REQUEST,
            "two placeholders",
            error_response(
                StatusCode::BAD_REQUEST,
                "airlock proxy: the request carries the placeholders of two grants; send one",
            ),
        ));
    }
    if grant.revoked_at.is_some() {
        return Ok(st.audit.refuse(
            entry,
            start,
            StatusCode::UNAUTHORIZED,
            "revoked",
            error_response(
                StatusCode::UNAUTHORIZED,
                "airlock proxy: this sandbox's access was revoked (`airlock revoke`)",
            ),
        ));
    }
    if grant.expired(jiff::Timestamp::now()) {
        let message = format!(
            "airlock proxy: this grant expired (`airlock k8s renew {}` extends it)",
            grant.sandbox
        );
        return Ok(st.audit.refuse(
            entry,
            start,
            StatusCode::UNAUTHORIZED,
            "expired",
            error_response(StatusCode::UNAUTHORIZED, &message),
        ));
    }
    if req.headers().contains_key(hyper::header::UPGRADE) {
        // WebSockets are not proxied; the agents fall back to HTTP
        return Ok(st.audit.refuse(
            entry,
            start,
            StatusCode::NOT_IMPLEMENTED,
            "upgrade refused",
            error_response(
                StatusCode::NOT_IMPLEMENTED,
                "airlock proxy: protocol upgrades (WebSocket) are not proxied; use HTTP",
            ),
        ));
    }
    if super::hostile::refused_method(req.method()) {
        return Ok(st.audit.refuse(
            entry,
            start,
            StatusCode::METHOD_NOT_ALLOWED,
            "method refused",
            error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "airlock proxy: CONNECT and TRACE are not proxied",
            ),
        ));
    }
    let Some((origin, host)) = grant.upstream() else {
        return Ok(st.audit.refuse(
            entry,
            start,
            StatusCode::FORBIDDEN,
            "no upstream",
            error_response(
                StatusCode::FORBIDDEN,
                "airlock proxy: no upstream is allowed for this agent and credential",
            ),
        ));
    };
    entry.upstream = Some(host.clone());
    let key = grant.key();
    // no event in the source file's directory since it was last found
    // unchanged: no `stat` (super::changes)
    let quick = {
        let c = st.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.get(&**key)
            .filter(|c| c.checked == Some(generation) && c.at.elapsed() < STAMPED_TTL)
            .map(|c| (c.secret.clone(), c.needle.clone()))
    };
    let (cached, stamp, checked) = match quick {
        Some(q) => (Some(q), None, None),
        None => {
            let stamp = st.source_stamp(&grant);
            let checked = st.watched_source(&grant, &stamp).then_some(generation);
            let mut c = st.cache.lock().unwrap_or_else(|e| e.into_inner());
            let hit = c.get_mut(&**key).filter(|c| c.fresh(&stamp)).map(|c| {
                c.checked = checked;
                (c.secret.clone(), c.needle.clone())
            });
            (hit, stamp, checked)
        }
    };
    let real = match cached {
        Some(s) => Ok(s),
        None => {
            let st2 = st.clone();
            let g = grant.clone();
            let r = tokio::task::spawn_blocking(move || credential(&st2, &g))
                .await
                .unwrap_or_else(|_| Err(Error::Other("the credential reader panicked".into())))
                .map(|s| {
                    let needle = Arc::new(Needle::new(s.expose().as_bytes()));
                    (Arc::new(s), needle)
                });
            if let Ok((s, needle)) = &r {
                let mut c = st.cache.lock().unwrap_or_else(|e| e.into_inner());
                c.retain(|_, c| c.at.elapsed() < STAMPED_TTL.max(c.ttl));
                c.insert(
                    key.clone(),
                    Cached {
                        at: Instant::now(),
                        stamp,
                        checked,
                        secret: s.clone(),
                        needle: needle.clone(),
                        ttl: unstamped_ttl(&grant),
                    },
                );
            }
            r
        }
    };
    let (real, needle) = match real {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(sandbox = %grant.sandbox, agent = %grant.agent, error = %e, "no credential for a grant");
            return Ok(st.audit.refuse(
                entry,
                start,
                StatusCode::BAD_GATEWAY,
                "credential unavailable",
                error_response(
                    StatusCode::BAD_GATEWAY,
                    // why (host paths, the secret reference, the vault)
                    // is for the user's log, not for the sandbox
                    &format!(
                        "airlock proxy: the credential of {}:{} is not available on the host; the proxy's log there says why",
                        grant.agent, grant.account
                    ),
                ),
            ));
        }
    };

    let (parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let pq = if slot == Slot::Query {
        replace_query_key(&pq, real.expose())
    } else {
        pq
    };
    let uri: Uri = match super::hostile::target(&pq) {
        Some(u) => u,
        None => {
            return Ok(st.audit.refuse(
                entry,
                start,
                StatusCode::BAD_REQUEST,
                "bad path",
                error_response(
                    StatusCode::BAD_REQUEST,
                    "airlock proxy: the request path is not valid",
                ),
            ));
        }
    };
    // A session's access token may be refused (401) before its expiry:
    // the proxy then has it refreshed and sends the request again, for
    // which it keeps a small body (docs/proxy.md).
    let refreshable = grant.method == Method::Session
        && matches!(grant.agent.as_str(), "claude" | "codex" | "gemini")
        && st.sync.is_some();
    let mut up = Arc::new(AtomicU64::new(0));
    // kept within a budget shared by every request (docs/proxy.md)
    let permit = replayable(&parts.headers)
        .filter(|_| refreshable)
        .and_then(super::hostile::ReplayPermit::take);
    let (first, replay) = match permit.as_ref().map(|p| p.len()) {
        Some(len) => {
            match http_body_util::Limited::new(body, len as usize)
                .collect()
                .await
            {
                Ok(c) => {
                    let bytes = c.to_bytes();
                    up.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    (full(bytes.clone()), Some(bytes))
                }
                Err(_) => {
                    return Ok(st.audit.refuse(
                        entry,
                        start,
                        StatusCode::BAD_REQUEST,
                        "body unreadable",
                        error_response(
                            StatusCode::BAD_REQUEST,
                            "airlock proxy: the request body did not arrive as announced",
                        ),
                    ));
                }
            }
        }
        _ => (Counted::new(body, up.clone(), None).boxed(), None),
    };
    let codex_session = grant.agent == "codex" && grant.method == Method::Session;
    // The upstream request is put together as a header map, not with a
    // request builder (which re-checks and moves the whole request for
    // every header).
    let host_value = HeaderValue::from_str(host).ok();
    let build =
        |real: &Secret, body: ProxyBody| -> std::result::Result<Request<ProxyBody>, &'static str> {
            // a ChatGPT session: the account its access token is for, never
            // the one the sandbox names (docs/proxy.md)
            let account = codex_session.then(|| chatgpt_account(real)).flatten();
            let mut h = hyper::HeaderMap::with_capacity(parts.headers.len() + 3);
            // the upstream's Host: the origin's authority (the request
            // itself carries only the path)
            if let Some(host) = &host_value {
                h.insert(hyper::header::HOST, host.clone());
            }
            for (k, v) in &parts.headers {
                let replaced = account.is_some() && k.as_str() == CHATGPT_ACCOUNT;
                if !DROP.contains(&k.as_str()) && !replaced {
                    h.append(k.clone(), v.clone());
                }
            }
            if let Some(a) = account {
                h.insert(HeaderName::from_static(CHATGPT_ACCOUNT), a);
            }
            h.insert(
                hyper::header::ACCEPT_ENCODING,
                HeaderValue::from_static(super::hostile::ACCEPT_ENCODING),
            );
            let (name, prefix) = match slot {
                Slot::Bearer => (hyper::header::AUTHORIZATION, "Bearer "),
                Slot::ApiKey => (HeaderName::from_static("x-api-key"), ""),
                Slot::GoogKey | Slot::Query => (HeaderName::from_static("x-goog-api-key"), ""),
            };
            // one allocation, handed to the header value without a copy
            let mut value = Vec::with_capacity(prefix.len() + real.expose().len());
            value.extend_from_slice(prefix.as_bytes());
            value.extend_from_slice(real.expose().as_bytes());
            let Ok(mut value) = HeaderValue::from_maybe_shared(Bytes::from(value)) else {
                return Err("credential unusable");
            };
            value.set_sensitive(true);
            h.insert(name, value);
            let mut out = Request::new(body);
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri.clone();
            *out.headers_mut() = h;
            Ok(out)
        };
    let out = match build(&real, first) {
        Ok(o) => o,
        Err(why) => return Ok(unsendable(&st, entry, start, why)),
    };
    let mut result = st.client.send(origin, out).await;
    // what the response must never carry to the sandbox: the credential
    // last sent (after a refresh, the new one)
    let mut needle_sent = needle;
    if refreshable
        && let Ok(resp) = &result
        && resp.status() == StatusCode::UNAUTHORIZED
    {
        let waited = Instant::now();
        let (st2, g) = (st.clone(), grant.clone());
        let (outcome, new) = st
            .refresh
            .after_401(
                st.sync.as_ref(),
                &grant.agent,
                &grant.account,
                &real,
                move || credential(&st2, &g),
            )
            .await;
        entry.refresh = Some(outcome.describe());
        entry.refresh_ms = Some(waited.elapsed().as_millis() as u64);
        tracing::info!(sandbox = %grant.sandbox, agent = %grant.agent, account = %grant.account, outcome = %outcome.describe(), "the upstream refused the access token (401)");
        if let Some(new) = new {
            let new_needle = Arc::new(Needle::new(new.expose().as_bytes()));
            st.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
                key.clone(),
                Cached {
                    at: Instant::now(),
                    // Read inside the refresh: the next request takes
                    // the file's stamp with a fresh read.
                    stamp: None,
                    checked: None,
                    secret: new.clone(),
                    needle: new_needle.clone(),
                    ttl: unstamped_ttl(&grant),
                },
            );
            if let Some(bytes) = replay {
                up = Arc::new(AtomicU64::new(bytes.len() as u64));
                match build(&new, full(bytes)) {
                    Ok(o) => {
                        entry.retried = true;
                        needle_sent = new_needle;
                        result = st.client.send(origin, o).await;
                    }
                    Err(why) => return Ok(unsendable(&st, entry, start, why)),
                }
            }
        }
    }
    drop(real);
    match result {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            super::hostile::clean_response_head(&mut parts);
            if super::hostile::encoded(&parts.headers) {
                tracing::warn!(upstream = %origin, "the upstream encoded its response though asked not to: not forwarded");
                return Ok(st.audit.refuse(
                    entry,
                    start,
                    StatusCode::BAD_GATEWAY,
                    "response encoded",
                    error_response(
                        StatusCode::BAD_GATEWAY,
                        "airlock proxy: the API answered with a compressed body, which the proxy cannot check for the credential; it was not forwarded",
                    ),
                ));
            }
            if needle_sent.in_headers(&parts.headers) {
                tracing::error!(sandbox = %grant.sandbox, agent = %grant.agent, upstream = %origin, "the upstream's response headers carried the real credential: not forwarded");
                return Ok(st.audit.refuse(
                    entry,
                    start,
                    StatusCode::BAD_GATEWAY,
                    "response carried the credential",
                    error_response(
                        StatusCode::BAD_GATEWAY,
                        "airlock proxy: the API's response carried the real credential; it was not forwarded",
                    ),
                ));
            }
            entry.status = parts.status.as_u16();
            let mut resp = Response::from_parts(parts, ());
            resp.headers_mut().retain_fn(|k| {
                !matches!(
                    k.as_str(),
                    "connection" | "keep-alive" | "transfer-encoding"
                )
            });
            let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
            super::metrics::GLOBAL.stream_opened();
            let done = Done {
                audit: st.audit.clone(),
                entry: Some(entry),
                start,
                up,
                cut: cut.clone(),
            };
            let guarded = Guarded::new(body, needle_sent, cut);
            let body = Counted::new(guarded, Arc::new(AtomicU64::new(0)), Some(done)).boxed();
            Ok(resp.map(|()| body))
        }
        Err(e) => {
            tracing::warn!(error = %e, upstream = %origin, "upstream request failed");
            super::metrics::GLOBAL.upstream_error(&e);
            Ok(st.audit.refuse(
                entry,
                start,
                StatusCode::BAD_GATEWAY,
                "upstream unreachable",
                error_response(
                    StatusCode::BAD_GATEWAY,
                    "airlock proxy: the agent's API could not be reached",
                ),
            ))
        }
    }
}

/// The header Codex names its ChatGPT account (workspace) in.
const CHATGPT_ACCOUNT: &str = "chatgpt-account-id";

/// The ChatGPT account a session's access token is for (its claims), if it
/// says.
fn chatgpt_account(access_token: &Secret) -> Option<HeaderValue> {
    let claims = crate::agents::jwt::claims(access_token.expose()).ok()?;
    HeaderValue::from_str(&crate::agents::jwt::chatgpt_account(&claims)?).ok()
}

/// A request the proxy could not build: audited, with a clear answer.
fn unsendable(st: &State, entry: Entry, start: Instant, why: &str) -> Response<ProxyBody> {
    let (status, message) = if why == "credential unusable" {
        (
            StatusCode::BAD_GATEWAY,
            "airlock proxy: the stored credential cannot be sent in a header",
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            "airlock proxy: the request could not be forwarded",
        )
    };
    st.audit
        .refuse(entry, start, status, why, error_response(status, message))
}

/// The length of a request body the proxy keeps for a retry: announced by
/// `Content-Length` and at most [`super::refresh::REPLAY_LIMIT`], or none
/// at all. `None`: streamed, not kept.
fn replayable(h: &hyper::HeaderMap) -> Option<u64> {
    if h.contains_key(hyper::header::TRANSFER_ENCODING) {
        return None;
    }
    match h.get(hyper::header::CONTENT_LENGTH) {
        None => Some(0),
        Some(v) => v
            .to_str()
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= super::refresh::REPLAY_LIMIT),
    }
}

fn full(b: Bytes) -> ProxyBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

trait RetainFn {
    fn retain_fn(&mut self, keep: impl Fn(&HeaderName) -> bool);
}

impl RetainFn for hyper::HeaderMap {
    fn retain_fn(&mut self, keep: impl Fn(&HeaderName) -> bool) {
        let drop: Vec<HeaderName> = self.keys().filter(|k| !keep(k)).cloned().collect();
        for k in drop {
            self.remove(k);
        }
    }
}

fn replace_query_key(pq: &str, real: &str) -> String {
    let Some((path, q)) = pq.split_once('?') else {
        return pq.to_owned();
    };
    let rest: Vec<&str> = q.split('&').filter(|p| !p.starts_with("key=")).collect();
    // the key goes in a header instead: never in a URL (logs, proxies)
    let _ = real;
    if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", rest.join("&"))
    }
}

/// The grant account's current credential, as the agent sends it.
fn credential(st: &State, g: &Grant) -> Result<Secret> {
    let doc = match (&g.reference, &g.truth) {
        (Some(r), _) => {
            // resolved here, as `airlock run` resolved it (its paths are
            // absolute: `~` was expanded when the reference was read)
            let reference = crate::secretref::Reference::parse(&r.text, std::path::Path::new("/"))?;
            crate::secretref::fetch(&reference, std::time::Duration::from_millis(r.timeout_ms))?
        }
        (None, truth) => match truth {
            Truth::Vault { id } => {
                let mut v = st.vault.lock().unwrap_or_else(|e| e.into_inner());
                if v.is_none() {
                    *v = Some((st.open_vault)().map_err(|e| {
                        Error::Other(format!("the proxy cannot open the vault ({e})"))
                    })?);
                }
                let vault = v.as_ref().ok_or_else(|| Error::Other("no vault".into()))?;
                vault
                    .backend()
                    .get(id)?
                    .ok_or_else(|| Error::Other(format!("{id} is no longer stored")))?
                    .secret
            }
            Truth::HostFile { path } => {
                let meta = std::fs::metadata(path).map_err(|e| Error::io("read", path, e))?;
                if !meta.is_file() || meta.len() > 1 << 20 {
                    return Err(Error::Other(format!(
                        "{} is not a credential file (not a regular file of at most 1 MiB)",
                        path.display()
                    )));
                }
                let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
                Secret::new(
                    String::from_utf8(bytes)
                        .map_err(|_| Error::Other(format!("{} is not UTF-8", path.display())))?,
                )
            }
        },
    };
    let text = doc.trimmed();
    let pick = |v: &serde_json::Value, ptr: &str| -> Result<Secret> {
        v.pointer(ptr)
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty())
            .map(|s| Secret::new(s.to_owned()))
            .ok_or_else(|| Error::Other(format!("the stored session has no {ptr}")))
    };
    match (g.agent.as_str(), g.method) {
        ("claude", Method::Session) => {
            let v: serde_json::Value = serde_json::from_str(text.expose())
                .map_err(|_| Error::Other("the stored Claude session is not JSON".into()))?;
            pick(&v, "/claudeAiOauth/accessToken")
        }
        ("codex", Method::Session) => {
            let v: serde_json::Value = serde_json::from_str(text.expose())
                .map_err(|_| Error::Other("the stored Codex session is not JSON".into()))?;
            pick(&v, "/tokens/access_token")
        }
        ("gemini", Method::Session) => {
            // the vault's wrapper, or the host's own oauth_creds.json
            let v: serde_json::Value = serde_json::from_str(text.expose())
                .map_err(|_| Error::Other("the stored Gemini session is not JSON".into()))?;
            pick(&v, "/oauth_creds/access_token").or_else(|_| pick(&v, "/access_token"))
        }
        _ => Ok(text),
    }
}

/// Sent when a response body ends (or is dropped: the client went away).
struct Done {
    audit: Audit,
    entry: Option<Entry>,
    start: Instant,
    up: Arc<AtomicU64>,
    /// Set when [`Guarded`] cut the response.
    cut: Arc<std::sync::atomic::AtomicBool>,
}

/// A body passed through frame by frame (never buffered), counting bytes.
struct Counted<B> {
    inner: B,
    bytes: Arc<AtomicU64>,
    done: Option<Done>,
}

impl<B> Counted<B> {
    fn new(inner: B, bytes: Arc<AtomicU64>, done: Option<Done>) -> Self {
        Counted { inner, bytes, done }
    }
}

impl<B> Drop for Counted<B> {
    fn drop(&mut self) {
        if let Some(mut d) = self.done.take()
            && let Some(mut e) = d.entry.take()
        {
            super::metrics::GLOBAL.stream_closed();
            e.bytes_up = d.up.load(Ordering::Relaxed);
            e.bytes_down = self.bytes.load(Ordering::Relaxed);
            e.latency_ms = d.start.elapsed().as_millis() as u64;
            if d.cut.load(Ordering::Relaxed) {
                e.refused = Some("response carried the credential: cut".into());
            }
            d.audit.write(&e);
        }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            self.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        r.map(|o| o.map(|x| x.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_of(path: &std::path::Path) -> Option<SourceStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    }

    /// A proxy state over `dir`, no vault.
    fn state(dir: &std::path::Path) -> State {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let layout = Layout {
            dir: std::fs::canonicalize(dir).unwrap(),
        };
        State::new(layout, Box::new(|| Err(Error::Other("no vault".into())))).unwrap()
    }

    fn add_grant(st: &State, sandbox: &str) {
        registry::add(
            &st.layout,
            &registry::tests::grant(sandbox, &format!("ph-{sandbox}")),
        )
        .unwrap();
    }

    #[test]
    fn grants_are_re_read_after_a_change_and_only_then() {
        let t = tempfile::tempdir().unwrap();
        let st = state(t.path());
        assert!(
            st.changes.watched(&st.grants_file),
            "its directory is watched"
        );
        add_grant(&st, "a");
        let g0 = st.changes.generation();
        let s1 = st.grants(g0);
        assert_eq!(s1.grants.len(), 1);
        // nothing happened: the same snapshot, without looking at the file
        let g1 = st.changes.generation();
        assert_eq!(g1, g0);
        assert!(Arc::ptr_eq(&s1, &st.grants(g1)));
        // a revoke or a new sandbox: seen by the very next request
        add_grant(&st, "b");
        let g2 = st.changes.generation();
        assert_ne!(g2, g1);
        assert_eq!(st.grants(g2).grants.len(), 2);
    }

    #[test]
    fn a_damaged_grants_file_keeps_the_last_grants_and_is_reported_once() {
        use std::sync::Mutex as M;
        let t = tempfile::tempdir().unwrap();
        let st = state(t.path());
        add_grant(&st, "a");
        assert_eq!(st.grants(st.changes.generation()).grants.len(), 1);
        std::fs::write(&st.grants_file, "{damaged").unwrap();
        let log = Arc::new(M::new(Vec::<u8>::new()));
        let w = log.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || Writer(w.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(sub, || {
            for _ in 0..5 {
                // as if every request saw an event (no quick path)
                let g = st.changes.generation() + 1000;
                assert_eq!(st.grants(g).grants.len(), 1, "the last grants are kept");
            }
        });
        let text = String::from_utf8(log.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("cannot read the grants").count(), 1, "{text}");
        // gone (fixed by hand): read again
        std::fs::remove_file(&st.grants_file).unwrap();
        assert!(st.grants(st.changes.generation()).grants.is_empty());
    }

    struct Writer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Writer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_credential_from_a_file_is_reused_until_the_file_changes() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("creds.json");
        std::fs::write(&f, "old").unwrap();
        let cached = Cached {
            at: Instant::now(),
            stamp: stamp_of(&f),
            checked: None,
            secret: Arc::new(Secret::new("old".to_owned())),
            needle: Arc::new(Needle::new(b"old")),
            ttl: CREDENTIAL_TTL,
        };
        assert!(cached.fresh(&stamp_of(&f)));
        // Replaced as airlock and the agents write it: temp + rename, same
        // length, possibly within the same timestamp tick.
        let tmp = t.path().join("creds.json.tmp");
        std::fs::write(&tmp, "new").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert!(!cached.fresh(&stamp_of(&f)));
        // Gone, or only now readable: never the cached value.
        assert!(!cached.fresh(&None));
    }

    #[test]
    fn a_credential_without_a_file_is_reused_for_a_second() {
        let mut cached = Cached {
            at: Instant::now(),
            stamp: None,
            checked: None,
            secret: Arc::new(Secret::new("k".to_owned())),
            needle: Arc::new(Needle::new(b"k")),
            ttl: CREDENTIAL_TTL,
        };
        assert!(cached.fresh(&None));
        cached.at = Instant::now() - CREDENTIAL_TTL;
        assert!(!cached.fresh(&None));
    }
}
