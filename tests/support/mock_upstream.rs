//! A stand-in for the agents' APIs over TLS on loopback, for the proxy's
//! tests: its own CA (rcgen), a certificate for `localhost` and 127.0.0.1,
//! and a recording of every request's head (method, path, the credential
//! headers). `POST /v1/messages` answers a short Anthropic-style SSE stream
//! in several chunks; `POST /v1/responses` and `/backend-api/codex/responses`
//! an OpenAI Responses API SSE stream (Codex); `:streamGenerateContent` a
//! Gemini SSE stream and `:generateContent` a Gemini JSON answer (under
//! `/v1internal:` wrapped as Code Assist does, which also answers
//! `loadCodeAssist` and `onboardUser`); `/slow`
//! streams one chunk, then waits for `release`; `/echo-body` and
//! `/echo-header` send the request's `Authorization` back (a misbehaving
//! API); `GET /backend-api/wham/accounts/check` answers Codex's workspace
//! routing discovery with the asked-for account and no constraint;
//! everything else gets 404 JSON. Tokens given to [`MockUpstream::reject`]
//! get 401.

#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The text the mock's messages answer carries.
pub const REPLY: &str = "airlock-proxy-e2e-reply";

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The request body's length.
    pub body_len: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct MockUpstream {
    pub port: u16,
    pub ca_pem: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Dropped connections of `/slow` (the client went away).
    pub cancelled: Arc<std::sync::atomic::AtomicU64>,
    pub release: Arc<tokio::sync::Notify>,
    /// Bearer tokens answered with 401 (an access token revoked early).
    rejected: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

impl MockUpstream {
    pub fn start() -> MockUpstream {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "airlock test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let leaf = params.signed_by(&key, &ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cancelled = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let rejected = Arc::new(Mutex::new(Vec::new()));
        let (s, c, r, x) = (
            seen.clone(),
            cancelled.clone(),
            release.clone(),
            rejected.clone(),
        );
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                // Streamed events go out as they are sent (an API server
                // does the same), not after the client's delayed ACK.
                let _ = tcp.set_nodelay(true);
                let (acceptor, s, c, r, x) =
                    (acceptor.clone(), s.clone(), c.clone(), r.clone(), x.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        handle(req, s.clone(), c.clone(), r.clone(), x.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        MockUpstream {
            port,
            ca_pem: ca.pem(),
            seen,
            cancelled,
            release,
            rejected,
            _rt: rt,
        }
    }

    /// From now on answer requests carrying `Authorization: Bearer <token>`
    /// with 401, as the API does for an access token revoked before its
    /// expiry.
    pub fn reject(&self, token: &str) {
        self.rejected.lock().unwrap().push(token.to_owned());
    }

    pub fn origin(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// At least one request under `path` arrived, and every one carried
    /// header `name` with `value` (the real credential the proxy adds).
    pub fn assert_carried(&self, path: &str, name: &str, value: &str) {
        let to_upstream: Vec<_> = self
            .seen()
            .into_iter()
            .filter(|s| s.path.starts_with(path))
            .collect();
        assert!(
            !to_upstream.is_empty(),
            "no request under {path} reached the upstream: {:?}",
            self.seen().iter().map(|s| &s.path).collect::<Vec<_>>()
        );
        for s in &to_upstream {
            assert_eq!(s.header(name), Some(value), "{} {}", s.method, s.path);
        }
    }

    /// Codex's Responses API requests carried `Bearer <codex>` and
    /// Gemini's `x-goog-api-key: <gemini>` (the real API keys).
    pub fn assert_codex_and_gemini_carried(&self, codex: &str, gemini: &str) {
        self.assert_carried("/v1/responses", "authorization", &format!("Bearer {codex}"));
        self.assert_carried("/v1beta/models/", "x-goog-api-key", gemini);
    }

    /// Messages requests arrived since the `before`th request, and every
    /// one carried `Authorization: Bearer <token>`.
    pub fn assert_messages_since(&self, before: usize, token: &str) {
        let sent: Vec<_> = self.seen()[before..]
            .iter()
            .filter(|r| r.path.starts_with("/v1/messages"))
            .map(|r| r.header("authorization").map(str::to_owned))
            .collect();
        assert!(!sent.is_empty(), "no messages request since {before}");
        let want = format!("Bearer {token}");
        assert!(
            sent.iter().all(|h| h.as_deref() == Some(want.as_str())),
            "{} of {} carried another credential",
            sent.iter()
                .filter(|h| h.as_deref() != Some(want.as_str()))
                .count(),
            sent.len()
        );
    }

    /// Gemini's Code Assist requests carried a Google login's access token
    /// `access` (the real one, which the proxy sends).
    pub fn assert_gemini_session_carried(&self, access: &str) {
        self.assert_carried("/v1internal:", "authorization", &format!("Bearer {access}"));
    }

    /// Codex's ChatGPT-backend requests carried a session's access token
    /// `access` and its account (the real ones, which the proxy sends).
    pub fn assert_codex_session_carried(&self, access: &str, account: &str) {
        let path = "/backend-api/codex/responses";
        self.assert_carried(path, "authorization", &format!("Bearer {access}"));
        self.assert_carried(path, "chatgpt-account-id", account);
    }

    /// At least one messages request arrived, and every one carried
    /// `Authorization: Bearer <token>` (the real credential the proxy adds).
    pub fn assert_messages_carried(&self, token: &str) {
        let to_upstream: Vec<_> = self
            .seen()
            .into_iter()
            .filter(|s| s.path.starts_with("/v1/messages"))
            .collect();
        assert!(
            !to_upstream.is_empty(),
            "no messages request reached the upstream"
        );
        for s in &to_upstream {
            assert_eq!(
                s.header("authorization"),
                Some(format!("Bearer {token}").as_str())
            );
        }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Counts a `/slow` stream dropped before it ended.
struct OnDrop(Arc<std::sync::atomic::AtomicU64>, bool);
impl Drop for OnDrop {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    cancelled: Arc<std::sync::atomic::AtomicU64>,
    release: Arc<tokio::sync::Notify>,
    rejected: Arc<Mutex<Vec<String>>>,
) -> Result<Response<Body>, Infallible> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let method = req.method().as_str().to_owned();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let body_len = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let refused = headers.iter().any(|(k, v)| {
        k == "authorization"
            && v.strip_prefix("Bearer ")
                .is_some_and(|t| rejected.lock().unwrap().iter().any(|r| r == t))
    });
    let auth = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let account = headers
        .iter()
        .find(|(k, _)| k == "chatgpt-account-id")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers,
        body_len,
    });
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(8);
    let sse = |tx: tokio::sync::mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
               parts: Vec<String>| async move {
        for p in parts {
            if tx.send(Ok(Frame::data(Bytes::from(p)))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if refused {
        let body = http_body_util::Full::new(Bytes::from(
            r#"{"type":"error","error":{"type":"authentication_error","message":"OAuth token has expired or was revoked."}}"#,
        ))
        .boxed();
        return Ok(Response::builder()
            .status(401)
            .header("content-type", "application/json")
            .body(body)
            .unwrap());
    }
    let builder = Response::builder().header("content-type", "text/event-stream");
    if method == "POST" && path.starts_with("/v1/messages") && !path.contains("count_tokens") {
        let ev = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
        let parts = vec![
            ev(
                "message_start",
                serde_json::json!({"type": "message_start", "message": {"id": "msg_airlock", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 1}}}),
            ),
            ev(
                "content_block_start",
                serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ev(
                "content_block_delta",
                serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": REPLY}}),
            ),
            ev(
                "content_block_stop",
                serde_json::json!({"type": "content_block_stop", "index": 0}),
            ),
            ev(
                "message_delta",
                serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 5}}),
            ),
            ev("message_stop", serde_json::json!({"type": "message_stop"})),
        ];
        tokio::spawn(sse(tx, parts));
    } else if method == "POST"
        && (path.starts_with("/v1/responses") || path.starts_with("/backend-api/codex/responses"))
    {
        // OpenAI's Responses API, as Codex reads it (API key and ChatGPT)
        let ev = |data: serde_json::Value| {
            format!(
                "event: {}\ndata: {data}\n\n",
                data["type"].as_str().unwrap()
            )
        };
        let parts = vec![
            ev(serde_json::json!({"type": "response.created", "response": {"id": "resp_airlock"}})),
            ev(
                serde_json::json!({"type": "response.output_item.done", "item": {"type": "message",
                "role": "assistant", "id": "msg_airlock",
                "content": [{"type": "output_text", "text": REPLY}]}}),
            ),
            ev(
                serde_json::json!({"type": "response.completed", "response": {"id": "resp_airlock",
                "usage": {"input_tokens": 1, "input_tokens_details": null, "output_tokens": 1,
                    "output_tokens_details": null, "total_tokens": 2}}}),
            ),
        ];
        tokio::spawn(sse(tx, parts));
    } else if method == "GET" && path.starts_with("/backend-api/wham/accounts/check") {
        // Codex's "workspace routing discovery" (ChatGPT sessions): the
        // account it asked for, with no routing constraint, so Codex keeps
        // its configured backend (docs/proxy-agents.md)
        let id = account;
        let body = http_body_util::Full::new(Bytes::from(
            serde_json::json!({"accounts": [{"id": id, "workspace_backend_origin": "NO_CONSTRAINT",
                "account_routing_override": "NO_CONSTRAINT"}], "account_ordering": [id]})
            .to_string(),
        ))
        .boxed();
        return Ok(Response::builder()
            .header("content-type", "application/json")
            .body(body)
            .unwrap());
    } else if method == "POST" && path.starts_with("/v1internal:") {
        // Gemini's Code Assist API (a Google login): the Gemini answers
        // wrapped in `{"response": …}`, and the calls the CLI makes first
        let call = path["/v1internal:".len()..].split('?').next().unwrap_or("");
        let wrap =
            |r: serde_json::Value| serde_json::json!({"response": r, "traceId": "airlock-mock"});
        let answer = match call {
            "streamGenerateContent" => {
                let parts = [gemini_chunk(REPLY, false), gemini_chunk("", true)]
                    .into_iter()
                    .map(|c| format!("data: {}\r\n\r\n", wrap(c)))
                    .collect();
                tokio::spawn(sse(tx, parts));
                return Ok(builder.body(ChannelBody(rx).boxed()).unwrap());
            }
            "generateContent" => wrap(gemini_router_answer()),
            "loadCodeAssist" => serde_json::json!({
                "currentTier": {"id": "free-tier", "name": "Gemini Code Assist for individuals"},
                "cloudaicompanionProject": "airlock-mock-project"}),
            "onboardUser" => serde_json::json!({"done": true,
                "response": {"cloudaicompanionProject": {"id": "airlock-mock-project"}}}),
            // quota, experiments, metrics, admin controls: nothing to say
            _ => serde_json::json!({}),
        };
        return Ok(Response::builder()
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(answer.to_string())).boxed())
            .unwrap());
    } else if method == "POST" && path.contains(":streamGenerateContent") {
        // Gemini's streaming answer (`?alt=sse`)
        let parts = [gemini_chunk(REPLY, false), gemini_chunk("", true)]
            .into_iter()
            .map(|c| format!("data: {c}\r\n\r\n"))
            .collect();
        tokio::spawn(sse(tx, parts));
    } else if method == "POST" && path.contains(":generateContent") {
        // Gemini's one-shot answer (its model router asks this first)
        let body =
            http_body_util::Full::new(Bytes::from(gemini_router_answer().to_string())).boxed();
        return Ok(Response::builder()
            .header("content-type", "application/json")
            .body(body)
            .unwrap());
    } else if path.starts_with("/echo-body") {
        // a misbehaving API: the credential it was sent comes back in the
        // body, split across two frames
        let (a, b) = auth.split_at(auth.len() / 2);
        let parts = vec![
            "data: first\n\n".to_owned(),
            format!("data: {a}"),
            format!("{b}\n\n"),
            "data: end\n\n".to_owned(),
        ];
        tokio::spawn(sse(tx, parts));
    } else if path.starts_with("/echo-header") {
        return Ok(Response::builder()
            .status(200)
            .header("x-echo", auth)
            .body(http_body_util::Full::new(Bytes::from("{}")).boxed())
            .unwrap());
    } else if path.starts_with("/slow") {
        tokio::spawn(async move {
            let mut guard = OnDrop(cancelled, false);
            if tx
                .send(Ok(Frame::data(Bytes::from("data: first\n\n"))))
                .await
                .is_err()
            {
                return;
            }
            tokio::select! {
                _ = release.notified() => {
                    let _ = tx.send(Ok(Frame::data(Bytes::from("data: last\n\n")))).await;
                    guard.1 = true;
                }
                _ = tx.closed() => {}
            }
        });
    } else {
        let body = http_body_util::Full::new(Bytes::from(
            r#"{"type":"error","error":{"type":"not_found_error","message":"not here"}}"#,
        ))
        .boxed();
        return Ok(Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(body)
            .unwrap());
    }
    Ok(builder.body(ChannelBody(rx).boxed()).unwrap())
}

/// One event of Gemini's streamed answer (`GenerateContentResponse`).
fn gemini_chunk(text: &str, done: bool) -> serde_json::Value {
    let mut c =
        serde_json::json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
    if done {
        c["finishReason"] = "STOP".into();
    }
    serde_json::json!({"candidates": [c], "usageMetadata": {"promptTokenCount": 1,
        "candidatesTokenCount": 1, "totalTokenCount": 2}, "modelVersion": "gemini-mock"})
}

/// Gemini's model router's one-shot answer: use the flash model.
fn gemini_router_answer() -> serde_json::Value {
    let text =
        serde_json::json!({"reasoning": "a short question", "model_choice": "flash"}).to_string();
    serde_json::json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2}})
}

/// A response body fed by a channel, frame by frame.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx)
    }
}
