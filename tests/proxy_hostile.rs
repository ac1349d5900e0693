//! The proxy attacked the way a compromised, prompt-injected agent inside a
//! sandbox would, and through an upstream that misbehaves (docs/proxy.md,
//! "What is and is not protected"). The real `airlock proxy` (the binary)
//! in front of a hostile TLS upstream on loopback (its own CA, rcgen) that
//! records every byte it receives and answers with hand-written bytes; the
//! sandbox side is raw TCP with hand-written HTTP/1.1. Each attack asserts
//! the safe outcome: the real credential reaches only the allow-listed
//! upstream, never comes back to the client, the audit log records the
//! request as one JSON line, and the proxy keeps serving.

mod common;

#[path = "support/proxy_harness.rs"]
mod proxy_harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::proxy::placeholder;
use airlock::proxy::registry::{self, Grant};
use airlock::sync::Truth;
use airlock::vault::{CredentialId, Method};
use common::{CANARY, TestContext, ok};

/// The real credential (a Claude setup-token) behind every placeholder.
fn token() -> String {
    format!("sk-ant-oat01-{CANARY}-hostile-{}", "0123456789".repeat(6))
}

fn ph(c: char) -> String {
    format!("sk-ant-oat01-airlock-{}", c.to_string().repeat(32))
}

/// One request as the upstream parsed it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The credential it carried, without `Bearer `.
    fn credential(&self) -> String {
        self.header("authorization")
            .map(|v| v.trim_start_matches("Bearer ").to_owned())
            .or_else(|| self.header("x-api-key").map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A TLS upstream that misbehaves on request (by path) and records every
/// byte it is sent.
struct Upstream {
    port: u16,
    ca_pem: String,
    reqs: Arc<Mutex<Vec<Req>>>,
    raw: Arc<Mutex<Vec<u8>>>,
    /// `/forever` streams that ended because the reader went away.
    ended: Arc<AtomicU64>,
    /// Connections accepted.
    conns: Arc<AtomicU64>,
}

impl Upstream {
    fn start() -> Upstream {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let cfg = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Upstream {
            port,
            ca_pem: ca.pem(),
            reqs: Arc::default(),
            raw: Arc::default(),
            ended: Arc::default(),
            conns: Arc::default(),
        };
        let (reqs, raw, ended) = (up.reqs.clone(), up.raw.clone(), up.ended.clone());
        let conns = up.conns.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                conns.fetch_add(1, Ordering::SeqCst);
                let (cfg, reqs, raw, ended) =
                    (cfg.clone(), reqs.clone(), raw.clone(), ended.clone());
                std::thread::spawn(move || {
                    let tls = rustls::ServerConnection::new(cfg).unwrap();
                    let stream = rustls::StreamOwned::new(tls, tcp);
                    let _ = serve_upstream(stream, port, &reqs, &raw, &ended);
                });
            }
        });
        up
    }

    fn reqs(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }

    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }
}

/// Records what is read through it.
struct Tee<R>(R, Arc<Mutex<Vec<u8>>>);

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

type Tls = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

fn serve_upstream(
    stream: Tls,
    port: u16,
    reqs: &Mutex<Vec<Req>>,
    raw: &Arc<Mutex<Vec<u8>>>,
    ended: &AtomicU64,
) -> std::io::Result<()> {
    let mut r = BufReader::new(Tee(stream, raw.clone()));
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut it = line.split_whitespace();
        let (method, path) = (
            it.next().unwrap_or_default().to_owned(),
            it.next().unwrap_or_default().to_owned(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let mut req = Req {
            method,
            path,
            headers,
            body: Vec::new(),
        };
        if req.header("transfer-encoding") == Some("chunked") {
            loop {
                let mut size = String::new();
                r.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .unwrap_or(0);
                if n == 0 {
                    // trailers, then the blank line
                    loop {
                        let mut t = String::new();
                        r.read_line(&mut t)?;
                        if t.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                req.body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = req.header("content-length").and_then(|v| v.parse().ok()) {
            let mut body = vec![0; n];
            r.read_exact(&mut body)?;
            req.body = body;
        }
        reqs.lock().unwrap().push(req.clone());
        let w = &mut r.get_mut().0;
        if !answer(&req, port, w, ended)? {
            return Ok(());
        }
    }
}

/// Writes the answer to `req`; false when the connection is to close.
fn answer(req: &Req, port: u16, w: &mut Tls, ended: &AtomicU64) -> std::io::Result<bool> {
    let cred = req.credential();
    let simple = |w: &mut Tls, head: &str, body: &[u8]| -> std::io::Result<bool> {
        write!(w, "{head}content-length: {}\r\n\r\n", body.len())?;
        w.write_all(body)?;
        w.flush()?;
        Ok(true)
    };
    let p = req.path.as_str();
    if p.starts_with("/reason") {
        // a status line whose reason phrase is the credential
        simple(w, &format!("HTTP/1.1 200 {cred}\r\n"), b"ok")
    } else if p.starts_with("/header-name") {
        simple(w, &format!("HTTP/1.1 200 OK\r\n{cred}: 1\r\n"), b"ok")
    } else if p.starts_with("/set-cookie") {
        simple(
            w,
            &format!("HTTP/1.1 200 OK\r\nset-cookie: s={cred}\r\n"),
            b"ok",
        )
    } else if p.starts_with("/www-authenticate") {
        simple(
            w,
            &format!("HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer error=\"{cred}\"\r\n"),
            b"{}",
        )
    } else if p.starts_with("/switch") {
        // switches protocols unasked, then sends the credential raw
        write!(
            w,
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n{cred}\r\n"
        )?;
        w.flush()?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(false)
    } else if p.starts_with("/early-hints") {
        // an informational response echoing it, then the real one
        write!(w, "HTTP/1.1 103 Early Hints\r\nlink: <{cred}>\r\n\r\n")?;
        simple(w, "HTTP/1.1 200 OK\r\n", b"ok")
    } else if p.starts_with("/extra") {
        // more than announced: a second response queued for whoever uses
        // this connection next
        write!(
            w,
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nINJECTED"
        )?;
        w.flush()?;
        Ok(true)
    } else if p.starts_with("/drip") {
        // the credential in the body a byte per chunk
        write!(
            w,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )?;
        for b in format!("data: {cred}\n\ndata: end\n\n").bytes() {
            w.write_all(b"1\r\n")?;
            w.write_all(&[b, b'\r', b'\n'])?;
            w.flush()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        w.write_all(b"0\r\n\r\n")?;
        w.flush()?;
        Ok(true)
    } else if p.starts_with("/trailer") {
        // the credential in a chunked response's trailer fields
        write!(
            w,
            "HTTP/1.1 200 OK\r\ntrailer: x-echo\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-echo: {cred}\r\n\r\n"
        )?;
        w.flush()?;
        Ok(true)
    } else if p.starts_with("/gzip") {
        // compressed whatever the client accepts: the credential is in the
        // decoded body only
        let body = gzip(format!("{{\"echo\":\"{cred}\"}}").as_bytes());
        simple(
            w,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n",
            &body,
        )
    } else if p.starts_with("/range") {
        // an echo that honours Range: a slice of the credential at a time
        let body = format!("{{\"echo\":\"{cred}\"}}").into_bytes();
        let slice = req
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .filter(|(a, b)| a <= b && *b < body.len());
        match slice {
            Some((a, b)) => simple(
                w,
                &format!(
                    "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes {a}-{b}/{}\r\n",
                    body.len()
                ),
                &body[a..=b],
            ),
            None => simple(w, "HTTP/1.1 200 OK\r\n", &body),
        }
    } else if p.starts_with("/te-gzip") {
        // compressed as a transfer coding, which the proxy never asked for
        let body = gzip(format!("{{\"echo\":\"{cred}\"}}").as_bytes());
        write!(
            w,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: gzip, chunked\r\n\r\n{:x}\r\n",
            body.len()
        )?;
        w.write_all(&body)?;
        w.write_all(b"\r\n0\r\n\r\n")?;
        w.flush()?;
        Ok(true)
    } else if p.starts_with("/redirect") {
        simple(
            w,
            &format!("HTTP/1.1 302 Found\r\nlocation: https://localhost:{port}/landed\r\n"),
            b"",
        )
    } else if p.starts_with("/huge-headers") {
        write!(w, "HTTP/1.1 200 OK\r\n")?;
        for i in 0..2000 {
            write!(w, "x-filler-{i}: {}\r\n", "f".repeat(200))?;
        }
        simple(w, "", b"ok")
    } else if p.starts_with("/forever") {
        write!(
            w,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )?;
        let tick = b"data: tick\n\n";
        loop {
            let r = write!(w, "{:x}\r\n", tick.len())
                .and_then(|()| w.write_all(tick))
                .and_then(|()| w.write_all(b"\r\n"))
                .and_then(|()| w.flush());
            if r.is_err() {
                ended.fetch_add(1, Ordering::SeqCst);
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    } else {
        simple(
            w,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n",
            br#"{"ok":true}"#,
        )
    }
}

/// `data` gzip-compressed (by the system's gzip).
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut c = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    c.wait_with_output().unwrap().stdout
}

fn gunzip(data: &[u8]) -> String {
    let mut c = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned()
}

/// The proxy (the binary), with the upstream as Claude's API and two
/// sandboxes granted (`a` → sb-a, `b` → sb-b).
struct Setup {
    up: Upstream,
    ctx: TestContext,
    proxy: proxy_harness::Proxy,
    port: u16,
}

fn setup() -> Setup {
    setup_with(&[])
}

fn setup_with(env: &[(&str, &str)]) -> Setup {
    let up = Upstream::start();
    let mut ctx = TestContext::new();
    let ca = ctx.root.path().join("ca.pem");
    std::fs::write(&ca, &up.ca_pem).unwrap();
    ctx.set_env(
        "AIRLOCK_PROXY_UPSTREAM_CLAUDE",
        &format!("https://localhost:{}", up.port),
    );
    ctx.set_env("AIRLOCK_PROXY_CA_FILE", ca.to_str().unwrap());
    for (k, v) in env {
        ctx.set_env(k, v);
    }
    let f = ctx.root.path().join("token");
    std::fs::write(&f, token()).unwrap();
    ok(&ctx
        .cmd()
        .args(["auth", "claude", "--method", "token", "--from-file"])
        .arg(&f)
        .output()
        .unwrap());
    std::fs::remove_file(&f).unwrap();
    for (sandbox, c) in [("sb-a", 'a'), ("sb-b", 'b')] {
        proxy_harness::grant_claude(&ctx, sandbox, &ph(c));
    }
    let proxy = proxy_harness::start_proxy(&ctx, &[]);
    let port = proxy.port;
    Setup {
        up,
        ctx,
        proxy,
        port,
    }
}

/// Grants `placeholder` to `sandbox` for the Claude token in the vault
/// (or resolved from `reference`).
fn add_grant(
    ctx: &TestContext,
    sandbox: &str,
    placeholder: &str,
    reference: Option<airlock::plan::ProxyReference>,
) {
    registry::add(
        &proxy_harness::layout(ctx),
        &Grant {
            sandbox: sandbox.into(),
            agent: "claude".into(),
            account: "default".into(),
            method: Method::SetupToken,
            placeholder_sha256: placeholder::hash(placeholder),
            truth: Truth::Vault {
                id: CredentialId::parse("claude").unwrap(),
            },
            container: None,
            engine: None,
            created: jiff::Timestamp::now(),
            revoked_at: None,
            reference,
            expires_at: None,
        },
    )
    .unwrap();
}

impl Setup {
    /// Sends `bytes` as they are; returns everything the proxy answered
    /// until it closed the connection.
    fn exchange(&self, bytes: &[u8]) -> String {
        String::from_utf8_lossy(&self.exchange_bytes(bytes)).into_owned()
    }

    fn exchange_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    /// A well-formed request from sandbox a; the proxy closes after it.
    fn get(&self, path: &str) -> String {
        self.exchange(
            format!(
                "GET {path} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
                ph('a')
            )
            .as_bytes(),
        )
    }

    /// The proxy still serves sandbox b.
    fn still_serves(&self) {
        let r = self.exchange(
            format!(
                "GET /v1/models HTTP/1.1\r\nhost: proxy\r\nx-api-key: {}\r\nconnection: close\r\n\r\n",
                ph('b')
            )
            .as_bytes(),
        );
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.ends_with(r#"{"ok":true}"#), "another answer: {r}");
    }

    /// Every audit line (each must be one valid JSON object).
    /// The audit log's lines, once it has stopped growing: a served
    /// request's line is written in a batch just after its response ends.
    fn audit(&self) -> Vec<serde_json::Value> {
        let path = proxy_harness::layout(&self.ctx).audit();
        let read = || std::fs::read_to_string(&path).unwrap_or_default();
        let mut text = read();
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let again = read();
            if again == text {
                break;
            }
            text = again;
        }
        assert!(!text.contains(CANARY), "the audit log holds the credential");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }

    /// Neither the proxy's log nor the audit log holds the credential.
    fn logs_clean(&self) {
        let log = std::fs::read_to_string(self.ctx.root.path().join("proxy.log")).unwrap();
        assert!(!log.contains(CANARY), "{log}");
        self.audit();
    }
}

/// Fail closed on the response side: a status line, a header (name or
/// value: `Set-Cookie`, `WWW-Authenticate`) or a trailer that echoes the
/// credential never reaches the sandbox; the audit log says why.
#[test]
fn a_response_echoing_the_credential_anywhere_is_not_forwarded() {
    let s = setup();
    for path in [
        "/reason",
        "/header-name",
        "/set-cookie",
        "/www-authenticate",
        "/trailer",
        "/drip",
    ] {
        // `te: trailers` asks for trailer fields to be forwarded
        let r = s.exchange(
            format!(
                "GET {path} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {}\r\nte: trailers\r\nconnection: close\r\n\r\n",
                ph('a')
            )
            .as_bytes(),
        );
        assert!(!r.contains(CANARY), "{path}: {r}");
        if path == "/drip" {
            // not one byte of it: each is held back until it is told apart
            assert!(!r.contains("data: s"), "{r}");
            assert!(!r.contains("data: end"), "the response was cut: {r}");
        }
        if path == "/reason" {
            assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        }
        assert!(
            !r.to_lowercase().contains(&CANARY.to_lowercase()),
            "{path}: {r}"
        );
        let seen = s.up.reqs();
        let last = seen.last().unwrap();
        assert_eq!(last.path, path);
        assert_eq!(last.credential(), token(), "the upstream got the real one");
    }
    let audit = s.audit();
    assert_eq!(audit.len(), 6);
    // the reason phrase is replaced by the canonical one: nothing to refuse
    assert_eq!(audit[0]["status"], 200, "{}", audit[0]);
    assert!(audit[0].get("refused").is_none(), "{}", audit[0]);
    for e in &audit[1..] {
        assert!(
            e["refused"]
                .as_str()
                .is_some_and(|r| r.contains("carried the credential")),
            "{e}"
        );
    }
    s.still_serves();
    s.logs_clean();
}

/// Fail closed on an encoded body: the guard scans the bytes as sent, so the
/// proxy asks the upstream for `identity` whatever the sandbox accepts, and
/// refuses a response compressed anyway (its decoded body could hold the
/// credential).
#[test]
fn a_compressed_response_is_refused_and_identity_is_asked_for() {
    let s = setup();
    for path in ["/gzip", "/te-gzip"] {
        let r = s.exchange_bytes(
            format!(
                "GET {path} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {}\r\naccept-encoding: gzip, br, deflate\r\nte: gzip, trailers\r\nconnection: close\r\n\r\n",
                ph('a')
            )
            .as_bytes(),
        );
        let head_end = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&r[..head_end]);
        // whatever came, decoded as the sandbox could (a chunked body's
        // framing taken off first)
        let mut body = r[head_end..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        let decoded = gunzip(&body);
        assert!(!decoded.contains(CANARY), "{path}: {decoded}");
        assert!(head.starts_with("HTTP/1.1 502"), "{path}: {head}");
    }
    let seen = s.up.reqs();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.header("accept-encoding"), Some("identity"));
        assert_eq!(r.header("te"), None, "TE is never forwarded");
    }
    for e in s.audit() {
        assert_eq!(e["refused"], "response encoded", "{e}");
    }
    s.still_serves();
    s.logs_clean();
}

/// A chunked body's data, its framing taken off.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if n == 0 || b.len() < eol + 2 + n {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[(eol + 4 + n).min(b.len())..];
    }
    out
}

/// A listener standing for another host: counts the connections it gets.
fn evil_host() -> (u16, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            h.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    (port, hits)
}

/// The upstream is fixed per agent: no request-target form, `Host`,
/// userinfo, double slash or dot segment sends the request (and the real
/// credential) anywhere else; `CONNECT` and `TRACE` are refused.
#[test]
fn no_request_target_reaches_another_host() {
    let s = setup();
    let (evil, hits) = evil_host();
    let e = format!("127.0.0.1:{evil}");
    let forwarded = [
        (format!("GET http://{e}/v1/abs HTTP/1.1"), "/v1/abs"),
        (
            format!("GET https://user:pw@{e}/v1/userinfo HTTP/1.1"),
            "/v1/userinfo",
        ),
        (format!("GET {e} HTTP/1.1"), "/"),
        (format!("GET //{e}/v1/dbl HTTP/1.1"), "//127.0.0.1"),
        (format!("GET /@{e}/v1/at HTTP/1.1"), "/@127.0.0.1"),
        (
            "GET /v1/%2e%2e/%2e%2e/dot HTTP/1.1".to_owned(),
            "/v1/%2e%2e/%2e%2e/dot",
        ),
        ("GET /v1/../../dot HTTP/1.1".to_owned(), "/v1/../../dot"),
    ];
    let refused = [
        format!("CONNECT {e} HTTP/1.1"),
        // no path: nothing to append to the origin
        format!("GET http://{e}?q=1 HTTP/1.1"),
        "TRACE /v1/trace HTTP/1.1".to_owned(),
        "OPTIONS * HTTP/1.1".to_owned(),
    ];
    for (line, _) in &forwarded {
        let r = s.exchange(
            format!(
                "{line}\r\nhost: {e}\r\nx-forwarded-host: {e}\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
                ph('a')
            )
            .as_bytes(),
        );
        assert!(r.starts_with("HTTP/1.1 200"), "{line}: {r}");
        assert!(!r.contains(CANARY), "{line}: {r}");
    }
    for line in &refused {
        let r = s.exchange(
            format!(
                "{line}\r\nhost: {e}\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
                ph('a')
            )
            .as_bytes(),
        );
        assert!(
            r.starts_with("HTTP/1.1 405") || r.starts_with("HTTP/1.1 400"),
            "{line}: {r}"
        );
        assert!(!r.contains(CANARY), "{line}: {r}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "another host was contacted");
    let seen = s.up.reqs();
    let host = format!("localhost:{}", s.up.port);
    assert_eq!(seen.len(), forwarded.len(), "{seen:?}");
    for (req, (line, path)) in seen.iter().zip(&forwarded) {
        assert!(req.path.starts_with(path), "{line}: {}", req.path);
        assert_eq!(req.header("host"), Some(host.as_str()), "{line}");
        assert_eq!(req.method, "GET");
    }
    assert_eq!(s.audit().len(), forwarded.len() + refused.len());
    s.still_serves();
    s.logs_clean();
}

/// Request smuggling and desync: `Content-Length` with `Transfer-Encoding`
/// (either order), two lengths, an unknown or folded transfer coding,
/// pipelined requests and chunked trailers. Every request the upstream
/// parses is one the proxy meant to send, on connections it reuses for
/// other sandboxes; a smuggled request never rides along, and a pipelined
/// request never inherits the previous one's placeholder.
#[test]
fn no_smuggled_request_reaches_the_upstream() {
    let s = setup();
    let a = ph('a');
    let smuggled =
        format!("GET /smuggled HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {a}\r\n\r\n");
    // TE wins over CL, the connection closes after it: the rest is never read
    for (first, second) in [
        ("content-length: 4", "transfer-encoding: chunked"),
        ("transfer-encoding: chunked", "content-length: 40"),
    ] {
        let r = s.exchange(
            format!(
                "POST /v1/clte HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {a}\r\n{first}\r\n{second}\r\n\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}"
            )
            .as_bytes(),
        );
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "{r}");
    }
    // malformed framing: 400 from the proxy, nothing sent upstream
    for framing in [
        "content-length: 5\r\ncontent-length: 6",
        "content-length: 5, 6",
        "content-length: +5",
        "transfer-encoding: xchunked",
        "transfer-encoding: chunked\r\ntransfer-encoding: identity",
        "transfer-encoding: chunked, identity",
        "transfer-encoding:\r\n chunked",
        "x-pad: 1\r\n transfer-encoding: chunked",
    ] {
        let r = s.exchange(
            format!(
                "POST /v1/bad HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {a}\r\n{framing}\r\n\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}"
            )
            .as_bytes(),
        );
        assert!(r.starts_with("HTTP/1.1 400"), "{framing:?}: {r}");
        assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "{r}");
    }
    // pipelined on one connection: a, then no placeholder, then b; a
    // chunked body with a trailer naming a credential header
    let r = s.exchange(
        format!(
            "POST /v1/p1 HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {a}\r\ncontent-length: 3\r\n\r\nabc\
             GET /v1/p2 HTTP/1.1\r\nhost: proxy\r\n\r\n\
             POST /v1/p3 HTTP/1.1\r\nhost: proxy\r\nx-api-key: {}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nxyz\r\n0\r\nauthorization: Bearer {a}\r\n\r\n",
            ph('b')
        )
        .as_bytes(),
    );
    let statuses: Vec<&str> = r.split("HTTP/1.1 ").skip(1).map(|x| &x[..3]).collect();
    assert_eq!(statuses, ["200", "401", "200"], "{r}");
    assert!(!r.contains(CANARY));

    let seen = s.up.reqs();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/v1/clte", "/v1/clte", "/v1/p1", "/v1/p3"]);
    let bodies: Vec<&[u8]> = seen.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies, [&b"hello"[..], b"hello", b"abc", b"xyz"]);
    for r in &seen {
        assert_eq!(r.credential(), token(), "{}", r.path);
    }
    // what the upstream parsed is all it was sent: no request line hidden
    // in a body, the credential once per request, no trailer forwarded
    let raw = s.up.raw();
    assert!(
        !raw.contains("/smuggled") && !raw.contains("/v1/bad"),
        "{raw}"
    );
    assert_eq!(raw.matches(" HTTP/1.1\r\n").count(), seen.len(), "{raw}");
    assert_eq!(raw.matches(CANARY).count(), seen.len(), "{raw}");
    assert!(!raw.contains(&a), "a placeholder went upstream: {raw}");
    s.still_serves();
    s.logs_clean();
}

/// Sends a request from the sandbox with `headers` (each `name: value`,
/// `connection: close` added) and `body`.
fn request(s: &Setup, line: &str, headers: &[String], body: &str) -> String {
    let mut req = format!("{line}\r\nhost: proxy\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    s.exchange(req.as_bytes())
}

/// Where the placeholder is, and what else rides with it: the credential
/// goes only where the agent's own placeholder was, a placeholder in a body,
/// cookie or lowercase scheme is not one, two sandboxes' placeholders in
/// one request are refused, a revoked one is refused at once.
#[test]
fn the_credential_goes_only_where_one_placeholder_was() {
    let s = setup();
    let (a, b) = (ph('a'), ph('b'));
    let unknown = format!("sk-ant-oat01-airlock-{}", "z".repeat(32));
    let cases: Vec<(&str, Vec<String>, String, &str)> = vec![
        // accepted: the swap happens; Connection naming the credential
        // header does not strip the real one nor pass the placeholder
        (
            "GET /v1/conn-auth HTTP/1.1",
            vec![
                format!("authorization: Bearer {a}"),
                "connection: authorization".into(),
            ],
            String::new(),
            "200",
        ),
        (
            "GET /v1/conn-key HTTP/1.1",
            vec![
                format!("x-api-key: {b}"),
                "connection: x-api-key, keep-alive".into(),
            ],
            String::new(),
            "200",
        ),
        (
            "GET /v1/spaces HTTP/1.1",
            vec![format!("authorization: Bearer    {a}   ")],
            String::new(),
            "200",
        ),
        (
            "POST /v1/in-body HTTP/1.1",
            vec![format!("x-api-key: {a}")],
            format!("{{\"key\":\"{b}\"}}"),
            "200",
        ),
        (
            "GET /v1/same-twice?key=x HTTP/1.1",
            vec![
                format!("authorization: Bearer {a}"),
                format!("x-api-key: {a}"),
            ],
            String::new(),
            "200",
        ),
        // refused before anything goes upstream
        (
            "GET /v1/two-lines HTTP/1.1",
            vec![
                format!("authorization: Bearer {a}"),
                format!("authorization: Bearer {b}"),
            ],
            String::new(),
            "400",
        ),
        (
            "GET /v1/two HTTP/1.1",
            vec![
                format!("authorization: Bearer {a}"),
                format!("x-api-key: {b}"),
            ],
            String::new(),
            "400",
        ),
        (
            &*Box::leak(format!("GET /v1/two-query?key={b} HTTP/1.1").into_boxed_str()),
            vec![format!("authorization: Bearer {a}")],
            String::new(),
            "400",
        ),
        (
            "POST /v1/body-only HTTP/1.1",
            vec![],
            format!("{{\"key\":\"{a}\"}}"),
            "401",
        ),
        (
            "GET /v1/cookie HTTP/1.1",
            vec![format!("cookie: key={a}")],
            String::new(),
            "401",
        ),
        (
            "GET /v1/proxy-auth HTTP/1.1",
            vec![format!("proxy-authorization: Bearer {a}")],
            String::new(),
            "401",
        ),
        (
            "GET /v1/lower HTTP/1.1",
            vec![format!("authorization: bearer {a}")],
            String::new(),
            "401",
        ),
        (
            "GET /v1/unknown HTTP/1.1",
            vec![format!("authorization: Bearer {unknown}")],
            String::new(),
            "401",
        ),
        (
            "GET /v1/ws HTTP/1.1",
            vec![
                format!("authorization: Bearer {a}"),
                "connection: upgrade".into(),
                "upgrade: websocket".into(),
                "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==".into(),
                "sec-websocket-version: 13".into(),
            ],
            String::new(),
            "501",
        ),
        (
            "GET /v1/h2c HTTP/1.1",
            vec![
                format!("authorization: Bearer {a}"),
                "connection: upgrade, http2-settings".into(),
                "upgrade: h2c".into(),
                "http2-settings: AAMAAABkAARAAAAAAAIAAAAA".into(),
            ],
            String::new(),
            "501",
        ),
    ];
    for (line, headers, body, want) in &cases {
        let r = request(&s, line, headers, body);
        assert!(r.starts_with(&format!("HTTP/1.1 {want}")), "{line}: {r}");
        assert!(!r.contains(CANARY), "{line}: {r}");
    }
    // HTTP/2 with prior knowledge is not spoken: refused, nothing forwarded
    let r = s.exchange(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0");
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 4"), "{r:?}");

    let seen = s.up.reqs();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/conn-auth",
            "/v1/conn-key",
            "/v1/spaces",
            "/v1/in-body",
            "/v1/same-twice?key=x"
        ]
    );
    for r in &seen {
        assert_eq!(r.credential(), token(), "{}", r.path);
        let creds = r
            .headers
            .iter()
            .filter(|(k, _)| k == "authorization" || k == "x-api-key")
            .count();
        assert_eq!(creds, 1, "one credential header: {r:?}");
    }
    assert_eq!(
        seen[0].header("authorization"),
        Some(&*format!("Bearer {}", token()))
    );
    assert_eq!(seen[1].header("x-api-key"), Some(&*token()));
    // a body is the agent's own business: forwarded as sent, never swapped
    assert_eq!(seen[3].body, format!("{{\"key\":\"{b}\"}}").as_bytes());

    // the audit names the sandbox, and why each refusal happened
    let audit = s.audit();
    assert_eq!(audit.len(), cases.len());
    let two: Vec<_> = audit
        .iter()
        .filter(|e| e["refused"] == "two placeholders")
        .collect();
    assert_eq!(two.len(), 3, "{audit:?}");

    // revoked: refused at once, the other sandbox keeps working
    registry::revoke(
        &proxy_harness::layout(&s.ctx),
        "sb-b",
        jiff::Timestamp::now(),
    )
    .unwrap();
    let r = request(
        &s,
        "GET /v1/revoked HTTP/1.1",
        &[format!("x-api-key: {b}")],
        "",
    );
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = request(
        &s,
        "GET /v1/after HTTP/1.1",
        &[format!("x-api-key: {a}")],
        "",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(s.audit().last().unwrap()["sandbox"], "sb-a");
    s.logs_clean();
}

/// The proxy's peak resident memory (kB).
fn peak_rss_kb(s: &Setup) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.proxy.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Slow, silent and greedy clients: idle connections and a slowloris are
/// closed after the header timeout, too many or too large headers are
/// refused (431), a large body streams through without being held in
/// memory; all the while the proxy serves the other sandbox.
#[test]
fn slow_and_greedy_clients_do_not_stop_the_proxy() {
    let s = setup_with(&[("AIRLOCK_PROXY_HEADER_TIMEOUT_MS", "300")]);
    let connect = || {
        let c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        c
    };
    let mut idle: Vec<TcpStream> = (0..200).map(|_| connect()).collect();
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = connect();
            c.write_all(b"POST /v1/messages HTTP/1.1\r\nhost: proxy\r\nx-slow: ")
                .unwrap();
            c
        })
        .collect();
    // TLS on the same port: a handshake that never ends
    slow.extend((0..20).map(|_| {
        let mut c = connect();
        c.write_all(&[0x16, 0x03, 0x01]).unwrap();
        c
    }));
    s.still_serves();
    // every one of them is closed by the proxy (EOF or a 408), not left open
    for c in idle.iter_mut().chain(slow.iter_mut()) {
        let mut buf = Vec::new();
        let r = c.read_to_end(&mut buf);
        assert!(r.is_ok(), "a silent connection was left open: {r:?}");
    }

    let a = ph('a');
    let many: String = (0..150).map(|i| format!("x-h{i}: {i}\r\n")).collect();
    let r = s.exchange(
        format!("GET /v1/many HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {a}\r\n{many}\r\n")
            .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    let big = "v".repeat(1 << 20);
    let r = s.exchange(
        format!("GET /v1/big-header HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {a}\r\nx-big: {big}\r\n\r\n")
            .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(200)]);
    s.still_serves();

    // 48 MiB up: streamed, the proxy's peak memory stays far below it
    let len = 48usize << 20;
    let mut c = connect();
    write!(
        c,
        "POST /v1/huge HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {a}\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..48 {
        c.write_all(&chunk).unwrap();
    }
    let mut r = String::new();
    let _ = c.read_to_string(&mut r);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = s.up.reqs();
    assert_eq!(seen.last().unwrap().body.len(), len);
    let peak = peak_rss_kb(&s);
    assert!(
        peak < 40 << 10,
        "the proxy held the body: peak RSS {peak} kB"
    );
    s.still_serves();
    s.logs_clean();
}

/// A misbehaving upstream is contained: a redirect is passed back, never
/// followed (the credential goes nowhere else); a response head too large
/// is a 502; a stream that never ends is cancelled upstream when the
/// sandbox goes away, and audited.
#[test]
fn a_misbehaving_upstream_is_contained() {
    let s = setup();
    let r = s.get("/redirect");
    assert!(r.starts_with("HTTP/1.1 302"), "{r}");
    assert!(r.contains(&format!("location: https://localhost:{}/landed", s.up.port)));
    let r = s.get("/huge-headers");
    assert!(r.starts_with("HTTP/1.1 502"), "{}", &r[..r.len().min(300)]);
    s.still_serves();

    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET /forever HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {}\r\n\r\n",
        ph('a')
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(4).filter(|w| w == b"tick").count() < 3 {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    drop(c);
    let t = Instant::now();
    while s.up.ended.load(Ordering::SeqCst) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the upstream stream was not cancelled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // a 101 nobody asked for, a 103 echoing the credential: neither passes it
    for path in ["/switch", "/early-hints"] {
        let r = s.get(path);
        assert!(!r.contains(CANARY), "{path}: {r}");
    }
    let paths: Vec<String> = s.up.reqs().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/redirect",
            "/huge-headers",
            "/v1/models",
            "/forever",
            "/switch",
            "/early-hints"
        ]
    );
    let audit = s.audit();
    let forever = audit.iter().find(|e| e["path"] == "/forever");
    assert!(
        forever.is_some_and(|e| e["bytes_down"].as_u64() > Some(0)),
        "{audit:?}"
    );
    s.still_serves();
    s.logs_clean();
}

/// Audit log injection: quotes, backslashes, braces, encoded newlines and
/// non-ASCII in the path, and a path far too long, each stay one valid JSON
/// line holding the path as sent (at most 512 characters of it); no query
/// string (where `?key=` travels) is ever written.
#[test]
fn the_audit_log_stays_one_json_line_per_request() {
    let s = setup();
    let long = format!("/v1/{}", "l".repeat(2000));
    let paths = [
        r#"/v1/a"b\c"#.to_owned(),
        r#"/v1/x%0d%0a{"forged":true}%22"#.to_owned(),
        "/v1/caf\u{e9}".to_owned(),
        "/v1/q?key=secret-looking&x=\"".to_owned(),
        long.clone(),
    ];
    let mut sent = 0;
    for p in &paths {
        let r = s.exchange(
            format!(
                "GET {p} HTTP/1.1\r\nhost: proxy\r\nuser-agent: evil\"\\\t\u{e9}\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
                ph('a')
            )
            .as_bytes(),
        );
        assert!(!r.contains(CANARY));
        if r.starts_with("HTTP/1.1 200") {
            sent += 1;
        } else {
            // refused by the HTTP parser itself: never reaches the log
            assert!(r.starts_with("HTTP/1.1 400"), "{p}: {r}");
        }
    }
    let audit = s.audit();
    assert_eq!(audit.len(), sent);
    assert!(sent >= 3, "{audit:?}");
    let text = std::fs::read_to_string(proxy_harness::layout(&s.ctx).audit()).unwrap();
    assert_eq!(text.lines().count(), sent);
    assert!(!text.contains("secret-looking"), "{text}");
    for e in &audit {
        let p = e["path"].as_str().unwrap();
        assert!(p.chars().count() <= 512, "{p}");
        assert!(
            paths.iter().any(|sent| sent.starts_with(p)),
            "the path is logged as sent: {p}"
        );
        assert!(e.get("forged").is_none());
    }
    s.logs_clean();
}

/// `Expect: 100-continue`: the proxy answers 100 itself and forwards the
/// body once sent; nothing reaches the upstream without the placeholder.
#[test]
fn expect_continue_is_answered_and_the_body_forwarded() {
    let s = setup();
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "POST /v1/expect HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {}\r\nexpect: 100-continue\r\ncontent-length: 5\r\nconnection: close\r\n\r\n",
        ph('a')
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 100 Continue"), "{first}");
    c.write_all(b"hello").unwrap();
    let mut rest = String::new();
    let _ = c.read_to_string(&mut rest);
    assert!(rest.contains("HTTP/1.1 200"), "{first}{rest}");
    let seen = s.up.reqs();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"hello");
    assert_eq!(seen[0].credential(), token());

    // without a placeholder: 401 at once, the body never asked for
    let r = s.exchange(
        b"POST /v1/expect HTTP/1.1\r\nhost: proxy\r\nexpect: 100-continue\r\ncontent-length: 5\r\nconnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert_eq!(s.up.reqs().len(), 1);
    s.logs_clean();
}

/// The proxy reuses its upstream connections for every sandbox: a request
/// body cut short by its sandbox never has the next request (carrying the
/// credential for another sandbox) appended to it, and a response longer
/// than announced is never delivered to the next request.
#[test]
fn a_reused_upstream_connection_carries_nothing_from_the_previous_request() {
    let s = setup();
    let a = ph('a');
    for (framing, body) in [
        ("content-length: 100", "{\"say\": \"".to_owned()),
        (
            "transfer-encoding: chunked",
            "40\r\n{\"say\": \"".to_owned(),
        ),
    ] {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        write!(
            c,
            "POST /v1/cut HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {a}\r\n{framing}\r\n\r\n{body}"
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(c);
        s.still_serves();
    }
    let r = s.get("/extra");
    assert!(r.ends_with("ok"), "{r}");
    for _ in 0..3 {
        s.still_serves();
    }
    let r = s.exchange(
        format!(
            "GET /v1/next HTTP/1.1\r\nhost: proxy\r\nx-api-key: {}\r\nconnection: close\r\n\r\n",
            ph('b')
        )
        .as_bytes(),
    );
    assert!(!r.contains("INJECTED"), "{r}");
    let seen = s.up.reqs();
    assert!(
        s.up.conns.load(Ordering::SeqCst) < seen.len() as u64,
        "the upstream connections were not reused: the test proves nothing"
    );
    for req in seen {
        assert!(
            req.path.starts_with("/v1/") || req.path == "/extra",
            "{req:?}"
        );
        assert!(
            !String::from_utf8_lossy(&req.body).contains("HTTP/1.1"),
            "a request rode in another's body: {req:?}"
        );
    }
    s.logs_clean();
}

/// A credential the proxy cannot read: the sandbox learns that, not why
/// (the host's paths, its secret reference, its vault); the details go to
/// the proxy's log for the user.
#[test]
fn an_unavailable_credential_tells_the_sandbox_nothing_about_the_host() {
    let s = setup();
    let host_only = s.ctx.root.path().join("host-only-secrets-dir/anthropic");
    let reference = format!("file:{}", host_only.display());
    add_grant(
        &s.ctx,
        "sb-c",
        &ph('c'),
        Some(airlock::plan::ProxyReference {
            text: reference.clone(),
            timeout_ms: 10_000,
            cache_ms: 0,
        }),
    );
    let r = s.exchange(
        format!(
            "GET /v1/models HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
            ph('c')
        )
        .as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    assert!(
        r.contains("claude:default"),
        "it says which credential: {r}"
    );
    for host_detail in [
        "host-only-secrets-dir",
        "file:",
        &*s.ctx.root.path().display().to_string(),
    ] {
        assert!(
            !r.contains(host_detail),
            "the sandbox learnt {host_detail:?}: {r}"
        );
    }
    assert!(s.up.reqs().is_empty());
    let log = std::fs::read_to_string(s.ctx.root.path().join("proxy.log")).unwrap();
    assert!(
        log.contains("host-only-secrets-dir"),
        "the user is told why: {log}"
    );
    assert_eq!(s.audit()[0]["refused"], "credential unavailable");
    s.still_serves();
    s.logs_clean();
}

/// The proxy's resident memory now (kB).
fn rss_kb(s: &Setup) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.proxy.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A session's request body is kept for a retry after a 401 (up to 1 MiB):
/// a sandbox that opens many such requests and never finishes their bodies
/// cannot make the proxy hold them all; past a shared budget (32 MiB) they
/// stream, with a small read buffer each. 96 of them used to grow the
/// proxy by 100 MB; now by about 45 MB.
#[test]
fn unfinished_session_bodies_do_not_pile_up_in_memory() {
    let s = setup();
    let creds = s.ctx.root.path().join("session.json");
    std::fs::write(
        &creds,
        serde_json::json!({"claudeAiOauth": {"accessToken": token(), "refreshToken": "r",
            "expiresAt": 4_102_444_800_000u64}})
        .to_string(),
    )
    .unwrap();
    registry::add(
        &proxy_harness::layout(&s.ctx),
        &Grant {
            sandbox: "sb-session".into(),
            agent: "claude".into(),
            account: "default".into(),
            method: Method::Session,
            placeholder_sha256: placeholder::hash(&ph('s')),
            truth: Truth::HostFile { path: creds },
            container: None,
            engine: None,
            created: jiff::Timestamp::now(),
            revoked_at: None,
            reference: None,
            expires_at: None,
        },
    )
    .unwrap();
    // a session request goes through, its body kept and forwarded
    let r = request(
        &s,
        "POST /v1/session HTTP/1.1",
        &[format!("authorization: Bearer {}", ph('s'))],
        "{}",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let before = rss_kb(&s);
    let len = 1 << 20;
    let chunk = vec![b'x'; len - 1];
    let held: Vec<TcpStream> = (0..96)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            write!(
                c,
                "POST /v1/held HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {}\r\ncontent-length: {len}\r\n\r\n",
                ph('s')
            )
            .unwrap();
            c.write_all(&chunk).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let grown = rss_kb(&s).saturating_sub(before);
    assert!(
        grown < 64 << 10,
        "96 unfinished 1 MiB bodies grew the proxy by {grown} kB"
    );
    s.still_serves();
    drop(held);
    s.logs_clean();
}

/// Piecewise extraction: an upstream that echoes the credential and honours
/// `Range` would hand it over a slice at a time, each slice too short for
/// the guard. `Range` is never forwarded: the whole echo comes, and is cut.
#[test]
fn a_range_request_cannot_take_the_credential_a_slice_at_a_time() {
    let s = setup();
    let r = s.exchange(
        format!(
            "GET /range HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {}\r\nrange: bytes=20-40\r\nif-range: x\r\nconnection: close\r\n\r\n",
            ph('a')
        )
        .as_bytes(),
    );
    assert!(!r.contains("206"), "{r}");
    assert!(!r.contains(CANARY), "{r}");
    assert!(!r.contains("-hostile-"), "a slice of it: {r}");
    let seen = s.up.reqs();
    assert_eq!(seen[0].header("range"), None);
    assert_eq!(seen[0].header("if-range"), None);
    s.logs_clean();
}
