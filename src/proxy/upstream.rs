//! The proxy's client to the agents' APIs: HTTP/1.1 over TLS, with kept-alive
//! connections pooled per origin (docs/proxy.md).
//!
//! Where a request goes is decided here, by the origin it is given (one of
//! the allow-listed upstreams), never by the request: the request carries
//! only a path (origin-form), so nothing in it can send it to another host.
//!
//! A connection is made with a connect and a TLS handshake timeout, used for
//! one request at a time, and offered again once its response has ended;
//! one closed by the API between requests is retried once on a new
//! connection (the request had not been sent). Built directly on hyper's
//! connection API: a request is handed to the connection's task, without
//! a general-purpose pool's bookkeeping (bench/README.md).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

/// The longest a TCP connect to an API may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a TLS handshake with an API may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle connection older than this is closed rather than reused (the
/// APIs close theirs after about a minute or more).
const IDLE: Duration = Duration::from_secs(90);
/// Connections kept per origin, busy or idle; more are closed after their
/// response.
const MAX_PER_ORIGIN: usize = 256;

/// Why a request did not reach the API or its answer did not come back.
#[derive(Debug)]
pub enum Error {
    /// No TCP connection (refused, unreachable, no such host).
    Connect(std::io::Error),
    /// The connect or the TLS handshake took too long.
    Timeout(&'static str),
    /// The TLS handshake failed (certificate, protocol): the I/O error
    /// carries rustls's.
    Tls(std::io::Error),
    /// HTTP on the connection failed (closed early, bad response).
    Http(hyper::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(e) => write!(f, "connect: {e}"),
            Error::Timeout(what) => write!(f, "{what} timed out"),
            Error::Tls(e) => write!(f, "TLS: {e}"),
            Error::Http(e) => write!(f, "HTTP: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect(e) | Error::Tls(e) => e.get_ref().map(|e| e as _).or(Some(e)),
            Error::Timeout(_) => None,
            Error::Http(e) => Some(e),
        }
    }
}

impl Error {
    /// The metrics' kind of this failure (`connect`, `tls`, `timeout`,
    /// `other`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Connect(_) => "connect",
            Error::Timeout(_) => "timeout",
            Error::Tls(_) => "tls",
            Error::Http(_) => "other",
        }
    }
}

struct Pooled<B> {
    tx: SendRequest<B>,
    since: Instant,
}

/// One origin's connections.
type Origin<B> = (Arc<str>, Vec<Pooled<B>>);

/// Connections to the APIs, by origin (`https://host[:port]`).
pub struct Upstream<B> {
    tls: tokio_rustls::TlsConnector,
    /// Per origin (a handful at most: a list, not a map).
    pool: Mutex<Vec<Origin<B>>>,
}

impl<B> Upstream<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A client trusting `tls`'s roots, speaking HTTP/1.1 only.
    pub fn new(mut tls: rustls::ClientConfig) -> Upstream<B> {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Upstream {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Sends `req` (origin-form: a path, its `Host` set) to `origin`, on a
    /// kept-alive connection when one is free.
    pub async fn send(
        &self,
        origin: &Arc<str>,
        req: Request<B>,
    ) -> Result<Response<Incoming>, Error> {
        let req = match self.checkout(origin) {
            Some(mut tx) => match tx.try_send_request(req).await {
                Ok(resp) => {
                    self.checkin(origin, tx);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // the connection closed before the request left: once
                    // more on a new one
                    Some(req) => req,
                    None => return Err(Error::Http(e.into_error())),
                },
            },
            None => req,
        };
        let mut tx = self.connect(origin).await?;
        let resp = tx.send_request(req).await.map_err(Error::Http)?;
        self.checkin(origin, tx);
        Ok(resp)
    }

    /// A connection to `origin` ready for a request, if one is kept: the
    /// one offered last (few connections stay warm); closed ones and ones
    /// idle too long are dropped on the way (their tasks close them).
    fn checkout(&self, origin: &str) -> Option<SendRequest<B>> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let (_, list) = pool.iter_mut().find(|(o, _)| &**o == origin)?;
        let now = Instant::now();
        list.retain(|p| {
            !(p.tx.is_closed() || (p.tx.is_ready() && now.duration_since(p.since) > IDLE))
        });
        let i = list.iter().rposition(|p| p.tx.is_ready())?;
        Some(list.swap_remove(i).tx)
    }

    /// Offers `tx` for the next request once its response has ended.
    fn checkin(&self, origin: &Arc<str>, tx: SendRequest<B>) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let i = match pool.iter().position(|(o, _)| o == origin) {
            Some(i) => i,
            None => {
                pool.push((origin.clone(), Vec::new()));
                pool.len() - 1
            }
        };
        let list = &mut pool[i].1;
        if list.len() < MAX_PER_ORIGIN {
            list.push(Pooled {
                tx,
                since: Instant::now(),
            });
        }
    }

    /// A new connection: TCP, TLS (the origin's host name checked against
    /// the roots), HTTP/1.1; its task runs until the connection closes.
    async fn connect(&self, origin: &str) -> Result<SendRequest<B>, Error> {
        let (host, port) = host_port(origin).ok_or_else(|| {
            Error::Connect(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("not an https origin: {origin}"),
            ))
        })?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect_tcp(host, port))
            .await
            .map_err(|_| Error::Timeout("connect"))?
            .map_err(Error::Connect)?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            Error::Connect(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        })?;
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.tls.connect(name, tcp))
            .await
            .map_err(|_| Error::Timeout("TLS handshake"))?
            .map_err(Error::Tls)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(Error::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "an upstream connection ended with an error");
            }
        });
        Ok(tx)
    }
}

/// The host (IPv6 without brackets) and port of `https://host[:port]`.
fn host_port(origin: &str) -> Option<(&str, u16)> {
    let authority = origin.strip_prefix("https://")?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().ok()?),
        _ => (authority, 443),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

/// Connects to the first of `host`'s addresses that answers.
async fn connect_tcp(host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let mut last = None;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no address"),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A TLS server on loopback answering every request with `ok` after
    /// `delay`, closing the connection after each response when `close`;
    /// counts the
    /// connections it accepted. Returns its origin, the count, and a client
    /// configuration trusting its certificate.
    async fn server(
        close: bool,
        delay: Duration,
    ) -> (Arc<str>, Arc<AtomicUsize>, rustls::ClientConfig) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                n.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(s) = acceptor.accept(s).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |_req| async move {
                        tokio::time::sleep(delay).await;
                        let mut r = Response::new(http_body_util::Full::new(Bytes::from("ok")));
                        if close {
                            r.headers_mut()
                                .insert("connection", "close".parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (
            Arc::from(format!("https://localhost:{port}")),
            accepted,
            client,
        )
    }

    fn get() -> Request<Empty<Bytes>> {
        Request::builder()
            .uri("/v1/x")
            .header("host", "localhost")
            .body(Empty::new())
            .unwrap()
    }

    async fn body(r: Response<Incoming>) -> Bytes {
        assert_eq!(r.status(), 200);
        r.into_body().collect().await.unwrap().to_bytes()
    }

    /// Lets the connections' tasks see their responses end.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let (origin, accepted, tls) = server(false, Duration::ZERO).await;
        let up = Upstream::new(tls);
        for _ in 0..5 {
            let r = up.send(&origin, get()).await.unwrap();
            assert_eq!(body(r).await, "ok");
            settle().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_busy_connection_is_not_shared_and_all_are_reused_after() {
        let (origin, accepted, tls) = server(false, Duration::from_millis(100)).await;
        let up = Upstream::new(tls);
        // three requests in flight at once: three connections
        let (a, b, c) = tokio::join!(
            up.send(&origin, get()),
            up.send(&origin, get()),
            up.send(&origin, get())
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        for r in [a, b, c] {
            assert_eq!(body(r.unwrap()).await, "ok");
        }
        settle().await;
        for _ in 0..6 {
            let r = up.send(&origin, get()).await.unwrap();
            assert_eq!(body(r).await, "ok");
            settle().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3, "no new connection");
    }

    #[tokio::test]
    async fn a_connection_the_api_closed_is_replaced() {
        let (origin, accepted, tls) = server(true, Duration::ZERO).await;
        let up = Upstream::new(tls);
        for i in 1..=3 {
            let r = up.send(&origin, get()).await.unwrap();
            assert_eq!(body(r).await, "ok");
            settle().await;
            assert_eq!(accepted.load(Ordering::SeqCst), i);
        }
    }

    #[tokio::test]
    async fn failures_say_what_failed() {
        // nothing listens
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let (origin, _, tls) = server(false, Duration::ZERO).await;
        let up: Upstream<Empty<Bytes>> = Upstream::new(tls);
        let closed: Arc<str> = Arc::from(format!("https://127.0.0.1:{port}"));
        let e = up.send(&closed, get()).await.unwrap_err();
        assert_eq!(e.kind(), "connect", "{e}");
        // a certificate the client does not trust
        let empty = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let up: Upstream<Empty<Bytes>> = Upstream::new(empty);
        let e = up.send(&origin, get()).await.unwrap_err();
        assert_eq!(e.kind(), "tls", "{e}");
        assert!(e.to_string().contains("certificate"), "{e}");
    }

    #[test]
    fn origins_split_into_host_and_port() {
        assert_eq!(
            host_port("https://api.anthropic.com"),
            Some(("api.anthropic.com", 443))
        );
        assert_eq!(
            host_port("https://127.0.0.1:8443"),
            Some(("127.0.0.1", 8443))
        );
        assert_eq!(host_port("https://[::1]:8443"), Some(("::1", 8443)));
        assert_eq!(host_port("https://[::1]"), Some(("::1", 443)));
        assert_eq!(host_port("http://api.example"), None);
        assert_eq!(host_port("https://"), None);
        assert_eq!(host_port("https://h:x"), None);
    }
}
