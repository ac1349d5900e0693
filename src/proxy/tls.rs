//! TLS from the sandboxes to the proxy, on the same port as plain HTTP:
//! the first byte of a connection tells them apart (a TLS handshake starts
//! with 0x16, an HTTP request with a letter), so base URLs and the port
//! kept across restarts stay as they are. The certificate is the proxy's
//! own, signed by its per-user CA ([`super::ca`]); plain HTTP is served
//! exactly as before (one `peek` per connection, not per request).

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::registry::Layout;
use crate::error::{Error, Result};

/// A TLS handshake record's first byte.
const HANDSHAKE: u8 = 0x16;

/// How long a connection may stay silent before its first byte, and how
/// long a TLS handshake may take.
const FIRST_BYTE: Duration = Duration::from_secs(30);
const HANDSHAKE_TIME: Duration = Duration::from_secs(10);

/// The proxy's TLS server side; its certificate can be made again (a new
/// bridge address, the CA renewed) while connections are served.
pub struct Tls {
    layout: Layout,
    addresses: RwLock<Vec<IpAddr>>,
    config: RwLock<Arc<rustls::ServerConfig>>,
}

fn config(layout: &Layout, addresses: &[IpAddr]) -> Result<Arc<rustls::ServerConfig>> {
    let (chain, key) = super::ca::server_identity(layout, addresses)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Other(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::Other(format!("TLS setup: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

impl Tls {
    /// The proxy's TLS side for a proxy reached at `addresses` (besides
    /// the fixed names): makes or renews the CA first.
    pub fn new(layout: &Layout, addresses: &[IpAddr]) -> Result<Arc<Tls>> {
        Ok(Arc::new(Tls {
            config: RwLock::new(config(layout, addresses)?),
            layout: layout.clone(),
            addresses: RwLock::new(addresses.to_vec()),
        }))
    }

    /// Makes the certificate again, covering `more` addresses too (a
    /// bridge that appeared), and with the CA renewed if it is due.
    pub fn renew(&self, more: &[IpAddr]) -> Result<()> {
        let addrs = {
            let mut a = self.addresses.write().unwrap_or_else(|e| e.into_inner());
            a.extend(more.iter().copied());
            a.sort();
            a.dedup();
            a.clone()
        };
        let c = config(&self.layout, &addrs)?;
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = c;
        Ok(())
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(
            self.config
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Serves one connection with `svc`: over TLS when it starts with a TLS
/// handshake and `tls` is set, else as plain HTTP/1.1.
pub async fn serve_connection<S, B>(stream: TcpStream, tls: Option<Arc<Tls>>, svc: S)
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    // a silent or slow client is closed (slowloris, docs/proxy.md)
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(super::hostile::header_timeout())
        .max_buf_size(64 << 10);
    if let Some(tls) = tls {
        let mut first = [0u8; 1];
        match tokio::time::timeout(
            FIRST_BYTE.min(super::hostile::header_timeout()),
            stream.peek(&mut first),
        )
        .await
        {
            Ok(Ok(1)) if first[0] == HANDSHAKE => {
                let acceptor = tls.acceptor();
                let Ok(Ok(s)) = tokio::time::timeout(
                    HANDSHAKE_TIME.min(super::hostile::header_timeout()),
                    acceptor.accept(stream),
                )
                .await
                else {
                    return;
                };
                let _ = http.serve_connection(TokioIo::new(s), svc).await;
                return;
            }
            Ok(Ok(_)) => {}
            // silent, closed or failed before a byte: nothing to serve
            _ => return,
        }
    }
    let _ = http.serve_connection(TokioIo::new(stream), svc).await;
}

/// Whether the proxy on 127.0.0.1:`port` completes a TLS handshake with a
/// certificate `pem`'s CAs vouch for (as `localhost`). A proxy that does
/// not listen on the loopback cannot be checked here: `Ok`.
pub fn answers(port: u16, pem: &str) -> std::result::Result<(), String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut tcp) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
    else {
        return Ok(());
    };
    let _ = tcp.set_read_timeout(Some(HANDSHAKE_TIME));
    let _ = tcp.set_write_timeout(Some(HANDSHAKE_TIME));
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
        let c = c.map_err(|e| format!("unreadable CA certificate: {e}"))?;
        roots
            .add(c)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    Ok(())
}
