//! Running the real `airlock proxy` binary in a test: grants in its
//! registry, the proxy started with extra flags, plain HTTP/1.1 requests
//! to it. Include with `#[path = "support/proxy_harness.rs"] mod
//! proxy_harness;` next to `mod common;`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use airlock::proxy::placeholder;
use airlock::proxy::registry::{self, Grant, Layout};
use airlock::sync::Truth;
use airlock::vault::{CredentialId, Method};

use crate::common::TestContext;

/// The proxy's state directory in `ctx`.
pub fn layout(ctx: &TestContext) -> Layout {
    Layout {
        dir: ctx.state_dir.join("proxy"),
    }
}

/// Grants sandbox `sandbox` the stored Claude setup-token through
/// placeholder `ph`.
pub fn grant_claude(ctx: &TestContext, sandbox: &str, ph: &str) {
    grant_claude_as(ctx, sandbox, ph, Method::SetupToken);
}

/// [`grant_claude`] for the stored Claude credential of `method`.
pub fn grant_claude_as(ctx: &TestContext, sandbox: &str, ph: &str, method: Method) {
    registry::add(
        &layout(ctx),
        &Grant {
            sandbox: sandbox.into(),
            agent: "claude".into(),
            account: "default".into(),
            method,
            placeholder_sha256: placeholder::hash(ph),
            truth: Truth::Vault {
                id: CredentialId::parse("claude").unwrap(),
            },
            container: None,
            engine: None,
            created: jiff::Timestamp::now(),
            revoked_at: None,
            reference: None,
            expires_at: None,
        },
    )
    .unwrap();
}

/// A running `airlock proxy`, killed on drop.
pub struct Proxy {
    pub child: Child,
    pub port: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `airlock proxy --listen 127.0.0.1 -vv <extra>` (log in
/// `<root>/proxy.log`) and waits until it listens.
pub fn start_proxy(ctx: &TestContext, extra: &[&str]) -> Proxy {
    start_proxy_with(ctx, &[&["--listen", "127.0.0.1"], extra].concat())
}

/// Starts `airlock proxy -vv <args>` (without `--listen`: on loopback and
/// the container bridges, as a user runs it for pods) and waits until it
/// listens.
pub fn start_proxy_with(ctx: &TestContext, args: &[&str]) -> Proxy {
    let port_file = layout(ctx).port_file();
    let _ = std::fs::remove_file(&port_file);
    let log = std::fs::File::create(ctx.root.path().join("proxy.log")).unwrap();
    let child = ctx
        .cmd()
        .args(["proxy", "-vv"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut proxy = Proxy { child, port: 0 };
    let t = Instant::now();
    proxy.port = loop {
        if let Some(p) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break p;
        }
        if let Ok(Some(st)) = proxy.child.try_wait() {
            panic!(
                "the proxy exited ({st}): {}",
                std::fs::read_to_string(ctx.root.path().join("proxy.log")).unwrap_or_default()
            );
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the proxy did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    proxy
}

/// Starts the sync watcher in the foreground (`airlock sync --foreground
/// --stay -vv`, log in `<root>/sync.log`), the refresher the proxy asks, and
/// waits until it runs. Killed on drop like the proxy.
pub fn start_watcher(ctx: &TestContext) -> Proxy {
    let log = std::fs::File::create(ctx.root.path().join("sync.log")).unwrap();
    let child = ctx
        .cmd()
        .args(["sync", "--foreground", "--stay", "-vv"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = ctx.state_dir.join("sync").join("daemon.pid");
    let t = Instant::now();
    while !pid.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the watcher did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Proxy { child, port: 0 }
}

/// A request to the proxy with `auth` as its bearer token and a small
/// Messages API body; returns the open connection after sending.
pub fn send(port: u16, method: &str, path: &str, auth: &str) -> TcpStream {
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[]}"#;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {auth}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

/// Everything until the proxy closes the connection.
pub fn response(mut s: TcpStream) -> String {
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Reads until `needle` has arrived (or panics after the read timeout).
pub fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = s.read(&mut buf).expect("the proxy held the stream back");
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A sandbox started detached by `airlock run <run_args> -- -d --name NAME
/// IMAGE sleep 120`, its `<engine> inspect` taken at once; killed and
/// removed on drop (killed first: Podman's `rm -f` waits 10 s for `sleep`
/// to ignore SIGTERM).
pub struct Detached {
    pub engine: String,
    pub id: String,
    pub name: String,
    /// `<engine> inspect` of the container, as started.
    pub inspect: String,
}

impl Detached {
    pub fn start(
        ctx: &TestContext,
        engine: &str,
        run_args: &[&str],
        name: &str,
        image: &str,
    ) -> Detached {
        let out = ctx
            .cmd()
            .arg("run")
            .args(run_args)
            .args(["--", "-d", "--name", name, image, "sleep", "120"])
            .output()
            .unwrap();
        let id = crate::common::ok(&out).trim().to_owned();
        let inspect = std::process::Command::new(engine)
            .args(["inspect", &id])
            .output()
            .unwrap();
        let inspect = String::from_utf8_lossy(&inspect.stdout).into_owned();
        assert!(inspect.contains(name), "{inspect}");
        Detached {
            engine: engine.into(),
            id,
            name: name.into(),
            inspect,
        }
    }

    /// Runs `script` in the sandbox as its agent would run (through the
    /// sandbox's init script): stdout, stderr, success.
    pub fn exec(&self, script: &str) -> (String, String, bool) {
        let o = std::process::Command::new(&self.engine)
            .args([
                "exec",
                &self.id,
                "sh",
                "/run/airlock-in/init.sh",
                "sh",
                "-c",
                script,
            ])
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            o.status.success(),
        )
    }

    /// Asserts that none of `secrets` is in the container's `inspect` nor
    /// in `outputs`.
    pub fn assert_nowhere(&self, secrets: &[&str], outputs: &[&str]) {
        for s in secrets {
            assert!(
                !self.inspect.contains(s),
                "a secret in {} inspect",
                self.engine
            );
            for o in outputs {
                assert!(!o.contains(s), "a secret in the output");
            }
        }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.engine)
            .args(["kill", &self.id])
            .output();
        let _ = std::process::Command::new(&self.engine)
            .args(["rm", "-f", &self.id])
            .output();
    }
}

/// A shell line that prints `CREDENTIAL-IN-CONTAINER` when any of
/// `patterns` is in the sandbox's environment (`/proc`), home, airlock's
/// directories, `/tmp` or `/etc` (and `extra`, more paths): the canary
/// scan run before the agent, in the same container.
pub fn scan_line(patterns: &[&str], extra: &str) -> String {
    let e: String = patterns.iter().map(|p| format!(" -e '{p}'")).collect();
    format!(
        "if grep -rs{e} /proc/self/environ /proc/1/environ \"$HOME\" /run/airlock-in /run/airlock /tmp /etc {extra} 2>/dev/null | head -1 | grep -q .; then echo CREDENTIAL-IN-CONTAINER; fi"
    )
}
