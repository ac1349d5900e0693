//! A mock OAuth token server on loopback with **single-use refresh tokens**,
//! like Anthropic's and OpenAI's: presenting a refresh token a second time
//! is an error (`invalid_grant` for Claude style, 401
//! `refresh_token_reused` for Codex style), and the server counts those.
//!
//! Minimal HTTP/1.1: one request per connection (`Connection: close`),
//! `POST <any path>` with a JSON (or form-encoded) body
//! `{"grant_type":"refresh_token","refresh_token":…}`. Also a tiny client
//! ([`post_json`]) for simulated agents.
//!
//! Every request's non-secret shape is recorded ([`MockOAuth::requests`]):
//! path, Content-Type, User-Agent, the body's key set and its `client_id`,
//! `grant_type` and `scope` values — never the refresh token.
//! [`MockOAuth::fail_with`] makes it answer every request with an HTTP error.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};

/// How errors look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// 400 `{"error":"invalid_grant"}`.
    Claude,
    /// 401 `{"error":{"code":"refresh_token_reused"}}`, JWT access tokens.
    Codex,
    /// Google's: refresh tokens are **not** rotated (the answer has none and
    /// the token stays valid), `ya29.` access tokens, 400 `invalid_grant`.
    Google,
}

#[derive(Debug, Default)]
struct Inner {
    /// refresh token → (family, used)
    tokens: HashMap<String, (u64, bool)>,
    /// family → generation counter
    families: HashMap<u64, u64>,
    next_family: u64,
    reuse_errors: u64,
    unknown_errors: u64,
    refreshes: u64,
    /// Answer every request with this status (no token is consumed).
    fail_status: Option<u16>,
    requests: Vec<RequestShape>,
    /// Every token handed out (for tests that check nothing leaks).
    issued: Vec<String>,
}

/// The non-secret shape of one request the mock received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestShape {
    /// Request target, e.g. `/oauth/token`.
    pub path: String,
    /// The Content-Type header as sent (`None`: absent).
    pub content_type: Option<String>,
    /// The User-Agent header (`None`: absent; the soak's simulated agents send none).
    pub user_agent: Option<String>,
    /// The body's keys (JSON object keys, or form field names).
    pub keys: BTreeSet<String>,
    pub client_id: Option<String>,
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    /// Codex's `refresh_reason` (e.g. why it refreshes; not a secret).
    pub refresh_reason: Option<String>,
    /// Whether the body was JSON (else form-encoded or garbage).
    pub json: bool,
    /// The status the mock answered.
    pub status: u16,
    /// When it arrived (epoch ms).
    pub at_ms: i64,
}

impl RequestShape {
    /// The media type of the Content-Type, without parameters, lower case.
    pub fn media_type(&self) -> Option<String> {
        self.content_type.as_deref().map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// Sent by airlock itself (its User-Agent is `airlock/<version>`).
    pub fn sent_by_airlock(&self) -> bool {
        self.user_agent
            .as_deref()
            .is_some_and(|u| u.starts_with("airlock/"))
    }
}

/// A running mock token server.
pub struct MockOAuth {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: Arc<AtomicBool>,
    style: Style,
    expires_in: u64,
}

/// Tokens issued to a client.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub id_token: String,
    /// epoch ms
    pub expires_at_ms: i64,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn jwt(payload: &Value) -> String {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.mocksig",
        b.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b.encode(payload.to_string())
    )
}

impl MockOAuth {
    /// Starts the server; access tokens live `expires_in` seconds.
    pub fn start(style: Style, expires_in: u64) -> MockOAuth {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let inner = Arc::new(Mutex::new(Inner::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (i2, s2) = (inner.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let i3 = i2.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, &i3, style, expires_in);
                });
            }
        });
        MockOAuth {
            addr,
            inner,
            stop,
            style,
            expires_in,
        }
    }

    /// `http://127.0.0.1:<port>/oauth/token`
    pub fn url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A fresh login: a new token family.
    pub fn login(&self) -> Issued {
        let mut g = self.inner.lock().unwrap();
        let fam = g.next_family;
        g.next_family += 1;
        g.families.insert(fam, 0);
        issue(&mut g, fam, self.style, self.expires_in)
    }

    /// Whether `rt` is the live (never used) refresh token of its family.
    pub fn is_live(&self, rt: &str) -> bool {
        matches!(self.inner.lock().unwrap().tokens.get(rt), Some((_, false)))
    }

    pub fn reuse_errors(&self) -> u64 {
        self.inner.lock().unwrap().reuse_errors
    }
    pub fn unknown_errors(&self) -> u64 {
        self.inner.lock().unwrap().unknown_errors
    }
    pub fn refreshes(&self) -> u64 {
        self.inner.lock().unwrap().refreshes
    }

    /// Every token (access, refresh, id) the mock has issued so far.
    pub fn issued_secrets(&self) -> Vec<String> {
        self.inner.lock().unwrap().issued.clone()
    }

    /// Every request received so far, in order (non-secret shapes only).
    pub fn requests(&self) -> Vec<RequestShape> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Successful refreshes sent by airlock itself (see [`RequestShape::sent_by_airlock`]).
    pub fn airlock_refreshes(&self) -> u64 {
        let g = self.inner.lock().unwrap();
        g.requests
            .iter()
            .filter(|r| r.status == 200 && r.sent_by_airlock())
            .count() as u64
    }

    /// From now on answer every request with HTTP `status` and a
    /// `server_error` body, consuming no token (`None`: back to normal).
    pub fn fail_with(&self, status: Option<u16>) {
        self.inner.lock().unwrap().fail_status = status;
    }
}

impl Drop for MockOAuth {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn issue(g: &mut Inner, fam: u64, style: Style, expires_in: u64) -> Issued {
    let gen_ = g.families.entry(fam).or_insert(0);
    *gen_ += 1;
    let n = *gen_;
    let rt = format!("rt_mock_{fam}_{n}");
    g.tokens.insert(rt.clone(), (fam, false));
    let exp_ms = now_ms() + (expires_in as i64) * 1000;
    let access_token = match style {
        Style::Claude => format!("sk-ant-oat01-mock-{fam}-{n}"),
        Style::Codex => jwt(&json!({"exp": exp_ms / 1000, "fam": fam, "gen": n})),
        Style::Google => format!("ya29.mock-{fam}-{n}"),
    };
    let i = Issued {
        access_token,
        refresh_token: rt,
        id_token: jwt(&json!({"email": "mock@example.com", "fam": fam})),
        expires_at_ms: exp_ms,
    };
    g.issued.extend([
        i.access_token.clone(),
        i.refresh_token.clone(),
        i.id_token.clone(),
    ]);
    i
}

fn handle(
    conn: TcpStream,
    inner: &Mutex<Inner>,
    style: Style,
    expires_in: u64,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut len = 0usize;
    let (mut content_type, mut user_agent) = (None, None);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let k = k.trim();
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_owned());
            } else if k.eq_ignore_ascii_case("user-agent") {
                user_agent = Some(v.trim().to_owned());
            }
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut body = vec![0u8; len.min(1 << 20)];
    r.read_exact(&mut body)?;
    let parsed_json = serde_json::from_slice::<Value>(&body).ok();
    let json_body = parsed_json.as_ref().is_some_and(Value::is_object);
    let req: Value = parsed_json.filter(Value::is_object).unwrap_or_else(|| {
        // form-encoded fallback
        let s = String::from_utf8_lossy(&body);
        let m: serde_json::Map<String, Value> = s
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect();
        Value::Object(m)
    });
    let (status, resp) = answer(inner, &req, style, expires_in);
    {
        let field = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_owned);
        let shape = RequestShape {
            path,
            content_type,
            user_agent,
            keys: req
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
            client_id: field("client_id"),
            grant_type: field("grant_type"),
            scope: field("scope"),
            refresh_reason: field("refresh_reason"),
            json: json_body,
            status,
            at_ms: now_ms(),
        };
        inner.lock().unwrap().requests.push(shape);
    }
    let body = resp.to_string();
    let mut w = conn;
    write!(
        w,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    )?;
    w.flush()
}

fn answer(inner: &Mutex<Inner>, req: &Value, style: Style, expires_in: u64) -> (u16, Value) {
    if let Some(st) = inner.lock().unwrap().fail_status {
        return (st, json!({"error": "server_error"}));
    }
    if req.get("grant_type").and_then(Value::as_str) != Some("refresh_token") {
        return (400, json!({"error": "unsupported_grant_type"}));
    }
    let rt = req
        .get("refresh_token")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut g = inner.lock().unwrap();
    match g.tokens.get(rt).copied() {
        None => {
            g.unknown_errors += 1;
            (
                400,
                json!({"error": "invalid_grant", "error_description": "unknown refresh token"}),
            )
        }
        Some((_, true)) => {
            g.reuse_errors += 1;
            match style {
                Style::Claude | Style::Google => (
                    400,
                    json!({"error": "invalid_grant", "error_description": "Refresh token already used"}),
                ),
                Style::Codex => (
                    401,
                    json!({"error": {"code": "refresh_token_reused", "message": "Your refresh token has already been used to generate a new access token."}}),
                ),
            }
        }
        Some((fam, false)) => {
            if style != Style::Google {
                g.tokens.insert(rt.to_owned(), (fam, true));
            }
            g.refreshes += 1;
            let i = issue(&mut g, fam, style, expires_in);
            let mut resp = json!({"access_token": i.access_token, "refresh_token": i.refresh_token,
                   "id_token": i.id_token, "expires_in": expires_in, "token_type": "Bearer",
                   "scope": "user:inference user:profile"});
            if style == Style::Google {
                // Google keeps the refresh token: the answer carries none
                resp.as_object_mut().map(|m| m.remove("refresh_token"));
                resp["scope"] = "https://www.googleapis.com/auth/cloud-platform openid".into();
            }
            (200, resp)
        }
    }
}

/// POSTs JSON to the mock and returns (status, body).
pub fn post_json(addr: SocketAddr, path: &str, body: &Value) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let b = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
        b.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = out
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok((status, json))
}
