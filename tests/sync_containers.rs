//! Rotation sync with real containers (Docker and Podman): two containers
//! of one account share the bind-mounted directory; a process inside
//! rewrites the credential file by temp file + rename and in place; the
//! host truth follows, the other container sees it, stale and corrupt
//! writes are rejected, a host re-login reaches both, and the host file
//! keeps its mode, owner and unknown keys. And a soak: three containers
//! whose busybox-sh agents refresh against the mock token server
//! (single-use refresh tokens, `--network host`) every few seconds.
//! `AIRLOCK_CONTAINER_SOAK_SECS` (default 30).
//!
//! Needs `AIRLOCK_TEST_DOCKER=1` / `AIRLOCK_TEST_PODMAN=1` (set by
//! `eval "$(scripts/start-engines.sh)"`) and the test images.

mod common;
#[path = "support/mock_oauth.rs"]
mod mock_oauth;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock::fsutil;
use airlock::sync::watch::{Daemon, Options};
use airlock::sync::{Layout, Registration, Truth, register_sandbox, unregister};
use serde_json::{Value, json};

const IMAGE: &str = "localhost/airlock-test/busybox:latest";
const MOUNT: &str = "/run/airlock/claude";

fn doc(rt: &str, exp: i64, extra: bool) -> Vec<u8> {
    let mut v = json!({"claudeAiOauth": {"accessToken": format!("sk-ant-oat01-{rt}"),
        "refreshToken": rt, "expiresAt": exp, "scopes": ["user:inference"]}});
    if extra {
        v["zzUnknown"] = json!({"nested": [1, 2]});
        v["mcpOAuth"] = json!({"s": "host-only"});
    }
    serde_json::to_vec(&v).unwrap()
}

fn rt_in(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| {
            v["claudeAiOauth"]["refreshToken"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

struct Container {
    engine: &'static str,
    name: String,
}

impl Container {
    fn start(engine: &'static str, name: String, dir: &Path) -> Container {
        let _ = Command::new(engine).args(["rm", "-f", &name]).output();
        let out = Command::new(engine)
            .args([
                "run",
                "-d",
                "--rm",
                "--network",
                "none",
                "--user",
                "1000:1000",
                "--name",
            ])
            .arg(&name)
            .arg("-v")
            .arg(format!("{}:{MOUNT}", dir.display()))
            .args([IMAGE, "sleep", "300"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{engine} run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Container { engine, name }
    }

    /// Runs `script` in the container with `input` on stdin (secrets never in argv).
    fn sh(&self, script: &str, input: &[u8]) -> Vec<u8> {
        let mut c = Command::new(self.engine)
            .args(["exec", "-i", &self.name, "sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input).unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{} exec {script}: {}",
            self.engine,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn write_rename(&self, bytes: &[u8]) {
        self.sh(
            &format!("cat > {MOUNT}/.credentials.json.tmp.1 && mv {MOUNT}/.credentials.json.tmp.1 {MOUNT}/.credentials.json"),
            bytes,
        );
    }

    fn write_in_place(&self, bytes: &[u8]) {
        self.sh(&format!("cat > {MOUNT}/.credentials.json"), bytes);
    }

    fn read(&self) -> Vec<u8> {
        self.sh(&format!("cat {MOUNT}/.credentials.json"), b"")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // docker rm has no timeout flag; podman's default wait is 10 s
        let args: &[&str] = if self.engine == "podman" {
            &["rm", "-f", "-t", "0"]
        } else {
            &["rm", "-f"]
        };
        let _ = Command::new(self.engine)
            .args(args)
            .arg(&self.name)
            .output();
    }
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(15), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn scenario(engine: &'static str) {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    let root = tempfile::tempdir_in(&base).unwrap();
    let layout = Layout {
        state: root.path().join("state/sync"),
        runtime: root.path().join("run/sync"),
    };
    let host_dir = root.path().join("home/.claude");
    fs::create_dir_all(&host_dir).unwrap();
    let host = host_dir.join(".credentials.json");
    fs::write(&host, doc("rt-host", 1_000_000, true)).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&host, fs::Permissions::from_mode(0o640)).unwrap();
    }
    let as_root = fsutil::euid() == 0;
    if as_root {
        std::os::unix::fs::chown(&host, Some(1234), Some(2345)).unwrap();
    }
    let reg = |sb: &str| Registration {
        sandbox: sb.into(),
        agent: "claude".into(),
        account: "work".into(),
        truth: Truth::HostFile { path: host.clone() },
        pid: None,
        owner: as_root.then_some((1000, 1000)),
    };
    let dir = register_sandbox(&layout, None, reg("a")).unwrap();
    assert_eq!(register_sandbox(&layout, None, reg("b")).unwrap(), dir);

    let d = Daemon::new(
        layout.clone(),
        None,
        Options {
            linger: None,
            ..Options::default()
        },
    )
    .unwrap();
    let stop = d.stop_handle();
    let th = std::thread::spawn(move || d.run());

    let tag = format!("airlock-sync-test-{}-{engine}", std::process::id());
    let a = Container::start(engine, format!("{tag}-a"), &dir);
    let b = Container::start(engine, format!("{tag}-b"), &dir);
    let host_rt = || rt_in(&fs::read(&host).unwrap());
    assert_eq!(rt_in(&b.read()), "rt-host", "seeded");

    // temp file + rename inside container a
    a.write_rename(&doc("rt-a1", 2_000_000, false));
    wait("rename write reaches host", || host_rt() == "rt-a1");
    assert_eq!(rt_in(&b.read()), "rt-a1", "other sandbox sees it");

    // in place inside container b
    b.write_in_place(&doc("rt-b1", 3_000_000, false));
    wait("in-place write reaches host", || host_rt() == "rt-b1");
    assert_eq!(rt_in(&a.read()), "rt-b1");

    // stale: rejected, and the sandboxes get the truth back
    a.write_rename(&doc("rt-stale", 10, false));
    wait("stale write corrected", || rt_in(&b.read()) == "rt-b1");
    assert_eq!(host_rt(), "rt-b1");

    // corrupt / partial / logged out: rejected, left alone
    for bad in [
        &b"{\"claudeAiOauth\":{\"acc"[..],
        b"",
        &doc("", 9_000_000, false),
    ] {
        a.write_in_place(bad);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(host_rt(), "rt-b1");
    }

    // the user logs in again on the host: both sandboxes receive it
    let tmp = host_dir.join(".credentials.json.login");
    fs::write(&tmp, doc("rt-relogin", 5_000_000, true)).unwrap();
    if as_root {
        std::os::unix::fs::chown(&tmp, Some(1234), Some(2345)).unwrap();
    }
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o640)).unwrap();
    }
    fs::rename(&tmp, &host).unwrap();
    wait("relogin reaches sandbox a", || {
        rt_in(&a.read()) == "rt-relogin"
    });
    assert_eq!(rt_in(&b.read()), "rt-relogin");
    // the sandboxes never see the host's other secrets
    assert!(!String::from_utf8_lossy(&a.read()).contains("host-only"));

    // a last refresh inside, then the host file's shape
    b.write_rename(&doc("rt-last", 6_000_000, false));
    wait("last write", || host_rt() == "rt-last");
    let md = fs::metadata(&host).unwrap();
    assert_eq!(md.mode() & 0o777, 0o640);
    if as_root {
        assert_eq!((md.uid(), md.gid()), (1234, 2345));
        // files in the shared dir stay usable by the container user
        let smd = fs::metadata(dir.join(".credentials.json")).unwrap();
        assert_eq!(smd.uid(), 1000);
    }
    let v: Value = serde_json::from_slice(&fs::read(&host).unwrap()).unwrap();
    assert_eq!(v["zzUnknown"], json!({"nested": [1, 2]}));
    assert_eq!(v["mcpOAuth"]["s"], "host-only");

    drop(a);
    drop(b);
    unregister(&layout, None, "a").unwrap();
    unregister(&layout, None, "b").unwrap();
    assert!(!dir.exists());
    stop.stop();
    th.join().unwrap().unwrap();
}

#[test]
fn docker_containers_sync_through_a_shared_directory() {
    if common::require_real("AIRLOCK_TEST_DOCKER") {
        scenario("docker");
    }
}

#[test]
fn podman_containers_sync_through_a_shared_directory() {
    if common::require_real("AIRLOCK_TEST_PODMAN") {
        scenario("podman");
    }
}

/// A Claude-style agent in busybox sh: refresh when `now + 3 s >= expiresAt`,
/// under the mkdir lock `.oauth_refresh.lock`, re-reading the file after
/// taking it and skipping the refresh when the token changed; temp file +
/// rename. Arguments: token URL, end time (epoch s). Prints one line per
/// refresh (`refreshed`, `resolved`, `FAILED`).
const SHELL_AGENT: &str = r#"
D=/run/airlock/claude; F=$D/.credentials.json; L=$D/.oauth_refresh.lock
URL=$1; END=$2
s() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$2"; }
n() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$2"; }
at=$(s accessToken $F); rt=$(s refreshToken $F); exp=$(n expiresAt $F)
while [ "$(date +%s)" -lt "$END" ]; do
  sleep 0.$((RANDOM % 3 + 1))
  [ $(( $(date +%s) * 1000 + 3000 )) -lt "$exp" ] && continue
  until mkdir $L 2>/dev/null; do sleep 0.0$((RANDOM % 5 + 1)); done
  cur=$(s accessToken $F)
  if [ -n "$cur" ] && [ "$cur" != "$at" ]; then
    at=$cur; rt=$(s refreshToken $F); exp=$(n expiresAt $F); echo resolved
  else
    wget -q -O $D/.resp.$$ --header 'Content-Type: application/json' \
      --post-data "{\"grant_type\":\"refresh_token\",\"refresh_token\":\"$rt\"}" "$URL" 2>/dev/null
    nat=$(s access_token $D/.resp.$$); nrt=$(s refresh_token $D/.resp.$$); ein=$(n expires_in $D/.resp.$$)
    rm -f $D/.resp.$$
    if [ -n "$nrt" ]; then
      exp=$(( ($(date +%s) + ein) * 1000 ))
      printf '{"claudeAiOauth":{"accessToken":"%s","refreshToken":"%s","expiresAt":%s,"scopes":["user:inference"]}}' "$nat" "$nrt" "$exp" > $D/.cred.tmp.$$
      mv $D/.cred.tmp.$$ $F
      at=$nat; rt=$nrt; echo refreshed
    else
      echo FAILED
    fi
  fi
  rmdir $L
done
"#;

/// Soak with real containers: three containers of one account run the
/// shell agent against the mock token server (single-use refresh tokens)
/// through the shared directory, while the watcher keeps the host file in
/// step. Zero reused tokens; the host login is live at the end.
fn container_soak(engine: &'static str) {
    use mock_oauth::{MockOAuth, Style};
    let secs: u64 = std::env::var("AIRLOCK_CONTAINER_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mock = MockOAuth::start(Style::Claude, 6);
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    let root = tempfile::tempdir_in(&base).unwrap();
    let layout = Layout {
        state: root.path().join("state/sync"),
        runtime: root.path().join("run/sync"),
    };
    let host_dir = root.path().join("home/.claude");
    fs::create_dir_all(&host_dir).unwrap();
    let host = host_dir.join(".credentials.json");
    let login = mock.login();
    let doc = json!({"claudeAiOauth": {"accessToken": login.access_token, "refreshToken": login.refresh_token,
        "expiresAt": login.expires_at_ms, "scopes": ["user:inference"]}, "keep": "me"});
    fs::write(&host, serde_json::to_vec(&doc).unwrap()).unwrap();
    let as_root = fsutil::euid() == 0;
    let mut dir = PathBuf::new();
    for n in 0..3 {
        dir = register_sandbox(
            &layout,
            None,
            Registration {
                sandbox: format!("soak{n}"),
                agent: "claude".into(),
                account: "work".into(),
                truth: Truth::HostFile { path: host.clone() },
                pid: None,
                owner: as_root.then_some((1000, 1000)),
            },
        )
        .unwrap();
    }
    let d = Daemon::new(
        layout.clone(),
        None,
        Options {
            linger: None,
            ..Options::default()
        },
    )
    .unwrap();
    let stop = d.stop_handle();
    let th = std::thread::spawn(move || d.run());

    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    let tag = format!("airlock-sync-soak-{}-{engine}", std::process::id());
    let names: Vec<String> = (0..3).map(|n| format!("{tag}-{n}")).collect();
    for name in &names {
        let _ = Command::new(engine).args(["rm", "-f", name]).output();
        let out = Command::new(engine)
            .args([
                "run",
                "-d",
                "--network",
                "host",
                "--user",
                "1000:1000",
                "--name",
            ])
            .arg(name)
            .arg("-v")
            .arg(format!("{}:{MOUNT}", dir.display()))
            .args([IMAGE, "sh", "-c", SHELL_AGENT, "agent"])
            .arg(mock.url())
            .arg(end.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{engine} run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut logs = String::new();
    for name in &names {
        let _ = Command::new(engine).args(["wait", name]).output();
        let out = Command::new(engine).args(["logs", name]).output().unwrap();
        logs.push_str(&String::from_utf8_lossy(&out.stdout));
        logs.push_str(&String::from_utf8_lossy(&out.stderr));
        let _ = Command::new(engine).args(["rm", "-f", name]).output();
    }
    for n in 0..3 {
        unregister(&layout, None, &format!("soak{n}")).unwrap();
    }
    stop.stop();
    th.join().unwrap().unwrap();

    let refreshed = logs.matches("refreshed").count();
    let resolved = logs.matches("resolved").count();
    eprintln!(
        "{engine} container soak {secs}s: {refreshed} refreshes, {resolved} resolved by re-read; server: {} refreshes, {} reuse errors",
        mock.refreshes(),
        mock.reuse_errors()
    );
    assert_eq!(mock.reuse_errors(), 0, "reused refresh token:\n{logs}");
    assert!(!logs.contains("FAILED"), "{logs}");
    assert!(refreshed as u64 >= secs / 6, "too few refreshes:\n{logs}");
    let v: Value = serde_json::from_slice(&fs::read(&host).unwrap()).unwrap();
    assert_eq!(v["keep"], "me");
    let rt = v["claudeAiOauth"]["refreshToken"].as_str().unwrap();
    assert!(mock.is_live(rt), "host login not live at the end");
}

#[test]
fn docker_soak_with_agents_refreshing_in_containers() {
    if common::require_real("AIRLOCK_TEST_DOCKER") {
        container_soak("docker");
    }
}

#[test]
fn podman_soak_with_agents_refreshing_in_containers() {
    if common::require_real("AIRLOCK_TEST_PODMAN") {
        container_soak("podman");
    }
}
