//! `--rotation proxy` outside `airlock run`: `airlock docker-flags` and
//! `airlock compose` start the proxy, register the sandbox's grant (a grant
//! without a container until the user starts one) and print flags that hold
//! no credential; the genuine `claude -p` in a container started with those
//! flags answers from a TLS mock through the proxy, which alone saw the
//! real token.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock::proxy::registry::{self, Layout};
use common::{CANARY, TestContext, ok, require_real};
use mock_upstream::{MockUpstream, REPLY};

fn token() -> String {
    format!("sk-ant-oat01-{CANARY}-flags-{}", "0123456789".repeat(6))
}

/// A context holding a Claude setup-token whose API traffic the proxy
/// sends to `mock`.
fn context(mock: &MockUpstream, engine: &str) -> TestContext {
    let mut ctx = common::tmpfs_context(engine, "proxyflags");
    common::claude_token_behind_proxy(&mut ctx, &mock.origin(), &mock.ca_pem, &token());
    ctx
}

fn layout(ctx: &TestContext) -> Layout {
    Layout {
        dir: ctx.state_dir.join("proxy"),
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `docker run $(airlock docker-flags --rotation proxy …) IMAGE claude -p hi`
/// answers through the proxy; `compose --rotation proxy` gives the service
/// the proxy's host name and registers its grant; neither output holds the
/// token or the placeholder.
#[test]
fn docker_flags_and_compose_in_proxy_mode_hold_only_a_placeholder() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        flags_through_the_proxy("docker");
    }
}

/// The same with Podman: `host.containers.internal`, no `--add-host`.
#[test]
fn podman_flags_and_compose_in_proxy_mode_hold_only_a_placeholder() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        flags_through_the_proxy("podman");
    }
}

fn flags_through_the_proxy(engine: &str) {
    let docker = engine == "docker";
    let host = if docker {
        "host.docker.internal"
    } else {
        "host.containers.internal"
    };
    let mock = MockUpstream::start();
    let ctx = context(&mock, engine);
    let image = common::root_image();
    let out = ctx
        .cmd()
        .args([
            "docker-flags",
            "--rotation",
            "proxy",
            "--agent",
            "claude",
            "--no-aliases",
            "--image",
        ])
        .arg(&image)
        .output()
        .unwrap();
    let flags = ok(&out);
    assert_eq!(
        flags.contains("host.docker.internal:host-gateway"),
        docker,
        "{flags}"
    );
    assert!(
        !flags.contains(CANARY) && !flags.contains("sk-ant-oat01-airlock-"),
        "{flags}"
    );
    // the shim's input files (the sandbox directory the flags mount) hold
    // the placeholder and no byte of the real token
    let mut files = Vec::new();
    walk(&ctx.runtime_dir, &mut files);
    let texts: Vec<String> = files
        .iter()
        .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("sk-ant-oat01-airlock-")),
        "the placeholder is among the sandbox's input files ({files:?})"
    );
    assert!(texts.iter().all(|t| !t.contains(CANARY)));
    let grants = registry::load(&layout(&ctx)).unwrap();
    assert_eq!(
        grants.len(),
        1,
        "one grant, registered before the container"
    );
    assert_eq!(grants[0].agent, "claude");
    assert!(!format!("{grants:?}").contains(CANARY));

    let name = format!("airlock-proxyflags-{}", std::process::id());
    let script = format!(
        "{engine} run --rm --name {name} $(cat) {image} sh -c 'env | grep -c sk-ant-oat01-airlock- ; claude -p hi'"
    );
    let mut sh = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sh.stdin
        .take()
        .unwrap()
        .write_all(flags.as_bytes())
        .unwrap();
    let out = sh.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = Command::new(engine).args(["rm", "-f", &name]).output();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(REPLY), "{stdout}\n{stderr}");
    assert!(!stdout.contains(CANARY) && !stderr.contains(CANARY));
    mock.assert_messages_carried(&token());
    wait_until("the proxy forgets the exited container's grant", || {
        registry::load(&layout(&ctx)).unwrap().is_empty()
    });

    let out = ctx
        .cmd()
        .args([
            "compose",
            "--rotation",
            "proxy",
            "--agent",
            "claude",
            "--service",
            "agent",
            "--image",
        ])
        .arg(&image)
        .output()
        .unwrap();
    let yaml = ok(&out);
    assert_eq!(
        yaml.contains("extra_hosts:\n      - \"host.docker.internal:host-gateway\""),
        docker,
        "{yaml}"
    );
    assert!(
        yaml.contains("ANTHROPIC_BASE_URL") && yaml.contains(&format!("http://{host}:")),
        "{yaml}"
    );
    assert!(!yaml.contains(CANARY) && !yaml.contains("sk-ant-oat01-airlock-"));
    let grants = registry::load(&layout(&ctx)).unwrap();
    assert_eq!(grants.len(), 1, "compose registers its sandbox's grant");
    ok(&ctx
        .cmd()
        .args(["revoke", &grants[0].sandbox])
        .output()
        .unwrap());
    let grants = registry::load(&layout(&ctx)).unwrap();
    assert!(grants.iter().all(|g| g.revoked_at.is_some()));
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// Every regular file under `dir`.
fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            walk(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// A proxy started again takes the port it had (while it is free): the
/// sandboxes and services made before the restart keep their base URL.
#[test]
fn a_restarted_proxy_keeps_its_port() {
    let ctx = TestContext::new();
    let l = layout(&ctx);
    let start = || {
        let _ = std::fs::remove_file(l.dir.join("port"));
        let child = ctx
            .cmd()
            .args(["proxy", "--listen", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut port = String::new();
        wait_until("the proxy writes its port", || {
            port = std::fs::read_to_string(l.dir.join("port")).unwrap_or_default();
            !port.trim().is_empty()
        });
        (child, port.trim().to_owned())
    };
    let (mut first, port) = start();
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut second, again) = start();
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(port, again);
}

/// A proxy still holding its lock as it exits (idle; its port file already
/// gone) does not make the next start fail: airlock waits for it to go and
/// starts one. (The test holds the daemon lock for that proxy.)
#[test]
fn a_start_waits_out_a_proxy_that_is_exiting() {
    if !require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let mock = MockUpstream::start();
    let ctx = context(&mock, "docker");
    let layout = layout(&ctx);
    layout.ensure().unwrap();
    let exiting = airlock::fsutil::FileLock::exclusive(&layout.daemon_lock()).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(exiting);
    });
    let out = ctx
        .cmd()
        .args([
            "docker-flags",
            "--rotation",
            "proxy",
            "--agent",
            "claude",
            "--no-aliases",
            "--image",
        ])
        .arg(common::root_image())
        .output()
        .unwrap();
    release.join().unwrap();
    let flags = ok(&out);
    assert!(flags.contains("ANTHROPIC_BASE_URL"), "{flags}");
    assert!(airlock::proxy::daemon::port(&layout).is_some());
    let grants = registry::load(&layout).unwrap();
    assert_eq!(grants.len(), 1);
    // no container will come: the proxy exits once the grant is gone
    registry::remove(&layout, &grants[0].sandbox).unwrap();
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}
