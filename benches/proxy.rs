//! `cargo bench --bench proxy`: what `airlock proxy` adds, measured against
//! the same upstream called directly, in the same run (bench/README.md).
//!
//! One TLS upstream on loopback (the tests' mock, its own rcgen CA), the
//! release `airlock proxy` in front of it, and this process as the client:
//!
//! * added latency: sequential requests on one kept-alive connection,
//!   direct (TLS) and through the proxy (plain HTTP in, TLS out), p50/p99;
//! * time to the first streamed byte of an SSE response, direct and proxied;
//! * the proxy's RSS idle and with 1,000 concurrent open streams;
//! * fan-out: 1,000 sandboxes of one account; the account's credential is
//!   replaced, and the figure is the time until a request of every sandbox
//!   has reached the upstream with the new credential, next to the time one
//!   round of 1,000 requests takes when nothing changes (the baseline).
//!
//! Placeholders and tokens are fake. `cargo test --benches` runs it small.

#[path = "../tests/support/mock_upstream.rs"]
mod mock_upstream;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::proxy::registry::{self, Grant, Layout};
use airlock::sync::Truth;
use airlock::vault::{CredentialId, Method};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

struct Sizes {
    latency: usize,
    ttfb: usize,
    streams: usize,
    sandboxes: usize,
}

fn main() {
    // `cargo test --benches` passes no `--bench`: a smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full {
        Sizes {
            latency: 5000,
            ttfb: 300,
            streams: 1000,
            sandboxes: 1000,
        }
    } else {
        Sizes {
            latency: 50,
            ttfb: 10,
            streams: 20,
            sandboxes: 20,
        }
    };
    let up = mock_upstream::MockUpstream::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let env = Env::new(dir.path(), &up);
    env.auth("sk-ant-oat01-bench-old-token-0123456789abcdefghijklmnopqrstuvwxyz");
    let layout = Layout {
        dir: env.state.join("proxy"),
    };
    let placeholders: Vec<String> = (0..n.sandboxes)
        .map(|i| format!("sk-ant-oat01-airlock-bench-{i:06}-0123456789abcdef"))
        .collect();
    grant(&layout, &placeholders);
    let proxy = env.start_proxy();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let direct = direct_client(&up.ca_pem);
        let plain: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let d = Target {
            base: up.origin(),
            auth: "Bearer sk-ant-oat01-bench-old-token".into(),
        };
        let p = Target {
            base: format!("http://127.0.0.1:{}", proxy.port),
            auth: format!("Bearer {}", placeholders[0]),
        };
        // warm both paths (TLS handshakes, the proxy's first vault read)
        for _ in 0..20 {
            d.get(&direct, "/v1/bench").await;
            p.get(&plain, "/v1/bench").await;
        }
        let idle = rss_kb(proxy.pid());
        println!(
            "bench proxy: {} sequential requests, {} first-byte samples, {} streams, {} sandboxes",
            n.latency, n.ttfb, n.streams, n.sandboxes
        );

        let ld = latency(&d, &direct, n.latency).await;
        let lp = latency(&p, &plain, n.latency).await;
        println!(
            "latency      direct p50 {:>7.3} ms p99 {:>7.3} ms | proxy p50 {:>7.3} ms p99 {:>7.3} ms | added p50 {:>6.3} ms p99 {:>6.3} ms",
            ld.0,
            ld.1,
            lp.0,
            lp.1,
            lp.0 - ld.0,
            lp.1 - ld.1
        );

        let fd = first_byte(&d, &direct, n.ttfb).await;
        let fp = first_byte(&p, &plain, n.ttfb).await;
        println!(
            "first byte   direct p50 {:>7.3} ms p99 {:>7.3} ms | proxy p50 {:>7.3} ms p99 {:>7.3} ms | added p50 {:>6.3} ms p99 {:>6.3} ms",
            fd.0,
            fd.1,
            fp.0,
            fp.1,
            fp.0 - fd.0,
            fp.1 - fd.1
        );

        let open = open_streams(&p, n.streams).await;
        let busy = rss_kb(proxy.pid());
        println!(
            "memory       proxy RSS idle {:.1} MB; with {} open streams {:.1} MB (started with 1024 open files allowed, runs with {})",
            idle as f64 / 1024.0,
            open.len(),
            busy as f64 / 1024.0,
            open_files_limit(proxy.pid())
        );
        up.release.notify_waiters();
        drop(open);

        let sandboxes: Vec<Target> = placeholders
            .iter()
            .map(|ph| Target {
                base: p.base.clone(),
                auth: format!("Bearer {ph}"),
            })
            .collect();
        let plain = Arc::new(plain);
        let round = round_trip(&sandboxes, &plain).await;
        let new = "sk-ant-oat01-bench-new-token-9876543210zyxwvutsrqponmlkjihgfedcba";
        let before = up.seen().len();
        let t0 = Instant::now();
        env.auth(new);
        let written = t0.elapsed();
        let mut rounds = 0;
        loop {
            rounds += 1;
            round_trip(&sandboxes, &plain).await;
            let seen = up.seen();
            if all_carry(&seen[before..], &placeholders, new) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "after 10 s, some sandbox's requests still carry the old credential"
            );
        }
        let fan = t0.elapsed();
        println!(
            "fan-out      {} sandboxes: one round of requests {:.1} ms (nothing changed); new credential in every sandbox's request {:.1} ms after the write began ({:.1} ms writing it with `airlock auth`, {rounds} rounds)",
            sandboxes.len(),
            round.as_secs_f64() * 1e3,
            fan.as_secs_f64() * 1e3,
            written.as_secs_f64() * 1e3,
        );
    });
    drop(proxy);
}

/// The directories and environment of one throw-away airlock.
struct Env {
    home: PathBuf,
    state: PathBuf,
    vars: Vec<(String, String)>,
}

impl Env {
    fn new(root: &Path, up: &mock_upstream::MockUpstream) -> Env {
        let ca = root.join("ca.pem");
        std::fs::write(&ca, &up.ca_pem).expect("ca");
        let state = root.join("state");
        let vars = vec![
            ("HOME", root.to_path_buf()),
            ("AIRLOCK_CONFIG_DIR", root.join("cfg")),
            ("AIRLOCK_DATA_DIR", root.join("data")),
            ("AIRLOCK_STATE_DIR", state.clone()),
            ("AIRLOCK_RUNTIME_DIR", root.join("run")),
            ("AIRLOCK_KEYRING_BACKEND", "file".into()),
            ("AIRLOCK_KEYRING_PASSWORD", "bench-passphrase".into()),
            ("AIRLOCK_PROXY_UPSTREAM_CLAUDE", up.origin().into()),
            ("AIRLOCK_PROXY_CA_FILE", ca),
        ];
        Env {
            home: root.to_path_buf(),
            state,
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_string_lossy().into_owned()))
                .collect(),
        }
    }

    /// The release `airlock` built with this bench, or `AIRLOCK_BENCH_BIN`
    /// (a kept binary, for a before/after comparison, as in bench/proxy.sh).
    fn command(&self) -> Command {
        let bin = std::env::var_os("AIRLOCK_BENCH_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_airlock").into());
        let mut c = Command::new(bin);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Stores `token` as Claude's setup-token (a file, never an argument).
    fn auth(&self, token: &str) {
        let f = self.home.join("token");
        std::fs::write(&f, token).expect("token file");
        let out = self
            .command()
            .args(["auth", "claude", "--method", "token", "--from-file"])
            .arg(&f)
            .output()
            .expect("airlock auth");
        assert!(
            out.status.success(),
            "airlock auth: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `airlock proxy`, started with the usual soft limit of 1,024 open
    /// files (systemd's default): 1,000 streams need twice that, which the
    /// proxy must lift itself.
    fn start_proxy(&self) -> Proxy {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let mut cmd = self.command();
        // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_max > 1024 {
                    lim.rlim_cur = 1024;
                    libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
                }
                Ok(())
            });
        }
        let child = cmd
            .args(["proxy", "--listen", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("airlock proxy");
        let p = Proxy { child, port };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return p;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("airlock proxy did not listen on {port}");
    }
}

struct Proxy {
    child: Child,
    port: u16,
}

impl Proxy {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One grant per placeholder, all for the account `claude:default`.
fn grant(layout: &Layout, placeholders: &[String]) {
    for (i, ph) in placeholders.iter().enumerate() {
        registry::add(
            layout,
            &Grant {
                sandbox: format!("bench-{i}"),
                agent: "claude".into(),
                account: "default".into(),
                method: Method::SetupToken,
                placeholder_sha256: hex(&Sha256::digest(ph.as_bytes())),
                truth: Truth::Vault {
                    id: CredentialId::new("claude", "default").expect("id"),
                },
                container: None,
                engine: None,
                created: jiff::Timestamp::now(),
                revoked_at: None,
                reference: None,
                expires_at: None,
            },
        )
        .expect("grant");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// VmRSS of `pid`, in kB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The soft limit of open files `pid` runs with.
fn open_files_limit(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into())
}

type TlsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

fn direct_client(ca_pem: &str) -> TlsClient {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.expect("CA certificate")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(cfg)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// Where requests go and the credential they carry.
struct Target {
    base: String,
    auth: String,
}

impl Target {
    fn request(&self, path: &str) -> Request<Empty<Bytes>> {
        Request::get(format!("{}{path}", self.base))
            .header("authorization", &self.auth)
            .header("x-bench-auth", &self.auth)
            .body(Empty::new())
            .expect("request")
    }

    /// A whole response (the mock answers 404 JSON to `/v1/bench`).
    async fn get<C>(&self, client: &Client<C, Empty<Bytes>>, path: &str) -> u16
    where
        C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
    {
        let r = client.request(self.request(path)).await.expect("response");
        let status = r.status().as_u16();
        r.into_body().collect().await.expect("body");
        status
    }
}

fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
}

async fn latency<C>(t: &Target, client: &Client<C, Empty<Bytes>>, n: usize) -> (f64, f64)
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        assert_eq!(t.get(client, "/v1/bench").await, 404);
        ms.push(s.elapsed().as_secs_f64() * 1e3);
    }
    percentiles(ms)
}

/// Time to the first body byte of `/slow` (one SSE event, then the stream
/// stays open until dropped).
async fn first_byte<C>(t: &Target, client: &Client<C, Empty<Bytes>>, n: usize) -> (f64, f64)
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        let r = client.request(t.request("/slow")).await.expect("response");
        let mut body = r.into_body();
        loop {
            let f = body.frame().await.expect("a frame").expect("no error");
            if f.data_ref().is_some_and(|d| !d.is_empty()) {
                break;
            }
        }
        ms.push(s.elapsed().as_secs_f64() * 1e3);
    }
    percentiles(ms)
}

/// `n` streams through the proxy, each on its own connection, each having
/// delivered its first event and held open.
async fn open_streams(t: &Target, n: usize) -> Vec<hyper::body::Incoming> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let req = t.request("/slow");
        tasks.spawn(async move {
            let client: Client<HttpConnector, Empty<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let r = client.request(req).await.expect("stream");
            let mut body = r.into_body();
            let f = body.frame().await.expect("a frame").expect("no error");
            assert!(f.data_ref().is_some());
            body
        });
    }
    let mut open = Vec::with_capacity(n);
    while let Some(b) = tasks.join_next().await {
        open.push(b.expect("stream task"));
    }
    open
}

/// One request from every sandbox, 64 at a time; how long it took.
async fn round_trip(
    sandboxes: &[Target],
    client: &Arc<Client<HttpConnector, Empty<Bytes>>>,
) -> Duration {
    let s = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for t in sandboxes {
        let req = t.request("/v1/bench");
        let (client, sem) = (client.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire().await.expect("semaphore");
            let r = client.request(req).await.expect("response");
            assert_eq!(r.status().as_u16(), 404, "the proxy refused a sandbox");
            r.into_body().collect().await.expect("body");
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("request task");
    }
    s.elapsed()
}

/// Every sandbox has a request that reached the upstream with `token`.
fn all_carry(seen: &[mock_upstream::Seen], placeholders: &[String], token: &str) -> bool {
    let want = format!("Bearer {token}");
    let fresh: std::collections::HashSet<&str> = seen
        .iter()
        .filter(|s| s.header("authorization") == Some(want.as_str()))
        .filter_map(|s| s.header("x-bench-auth"))
        .collect();
    placeholders
        .iter()
        .all(|ph| fresh.contains(format!("Bearer {ph}").as_str()))
}
