//! airlock as an ordinary user: the built binary runs as the unprivileged
//! test user `scripts/setup-test-user.sh` makes (`AIRLOCK_TEST_USER`), with
//! Docker through the `docker` group and with rootless Podman (its own
//! storage, `--userns=keep-id` for non-root container users), against
//! images whose user is root, uid 1000 and uid 4242.
//!
//! Checked: `auth` (stdin, encrypted-file vault), `status`, `run` (the
//! genuine `claude auth status` / `codex login status` judge the login),
//! `verify`, `docker-flags`, `sync` write-back to the user's own host file (owner and mode
//! kept), `teardown`; the sandbox files readable by the container user and
//! nobody else; everything airlock leaves on the host is the user's, 0600 /
//! 0700; nothing new in /tmp; the canary secret in no command line, no
//! `inspect`, none of airlock's output at -vvv, no file outside the vault.
//!
//! And proxy mode (`--rotation proxy`): the genuine `claude -p` answers
//! through the proxy (run by the user) from a mock upstream, holding only a
//! placeholder, on Docker and on rootless Podman, where it is refused
//! without the user's consent to slirp4netns' `allow_host_loopback`.
//!
//! Gated by AIRLOCK_TEST_USER (a user name) with AIRLOCK_TEST_DOCKER=1 /
//! AIRLOCK_TEST_PODMAN=1; under CI=true a missing user fails the test.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use common::{
    CANARY, PASSPHRASE, cmdline_watcher, grep_dirs, require_real, root_image, user_image,
};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The unprivileged test user.
struct Tester {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    /// The airlock binary, somewhere the user can execute it.
    bin: PathBuf,
}

fn id_of(flag: &str, name: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {flag} {name}: {out:?}"))
}

/// The test user, if scripts/setup-test-user.sh made one and `engine` is up.
fn tester(engine: &str) -> Option<Tester> {
    let var = if engine == "docker" {
        "AIRLOCK_TEST_DOCKER"
    } else {
        "AIRLOCK_TEST_PODMAN"
    };
    if !require_real(var) {
        return None;
    }
    let name = match std::env::var("AIRLOCK_TEST_USER") {
        Ok(n) if !n.is_empty() => n,
        _ => {
            if std::env::var_os("CI").is_some_and(|v| v == "true") {
                panic!(
                    "AIRLOCK_TEST_USER is not set in CI: scripts/test.sh must create the test user (scripts/setup-test-user.sh)"
                );
            }
            eprintln!(
                "skipping: AIRLOCK_TEST_USER is not set (scripts/test.sh creates the unprivileged test user as root)"
            );
            return None;
        }
    };
    let uid = id_of("-u", &name);
    let gid = id_of("-g", &name);
    let pw = Command::new("getent")
        .args(["passwd", &name])
        .output()
        .unwrap();
    let home = PathBuf::from(
        String::from_utf8_lossy(&pw.stdout)
            .trim()
            .split(':')
            .nth(5)
            .unwrap(),
    );
    let built = PathBuf::from(env!("CARGO_BIN_EXE_airlock"));
    let mut t = Tester {
        name,
        uid,
        gid,
        home,
        bin: built.clone(),
    };
    // The build tree may be private to root: then a copy in the user's home
    // (one per build, shared by the tests of this run).
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    t.bin = BIN
        .get_or_init(|| {
            let reachable = t
                .as_user("test", Path::new("/"))
                .args(["-x", &built.display().to_string()])
                .status()
                .unwrap()
                .success();
            if reachable {
                return built.clone();
            }
            let dir = t.home.join(".airlock-test-bin");
            let dst = dir.join("airlock");
            let same = |a: &Path, b: &Path| {
                let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
                    return false;
                };
                a.len() == b.len() && a.modified().ok() <= b.modified().ok()
            };
            if !same(&built, &dst) {
                std::fs::create_dir_all(&dir).unwrap();
                let tmp = dir.join(format!("airlock.{}", std::process::id()));
                std::fs::copy(&built, &tmp).unwrap();
                std::fs::rename(&tmp, &dst).unwrap();
            }
            dst
        })
        .clone();
    Some(t)
}

impl Tester {
    /// `program` run as the user (`setpriv`, all groups), clean environment.
    fn as_user(&self, program: &str, cwd: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.env_clear()
            .env("PATH", PATH)
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("XDG_RUNTIME_DIR", self.runtime())
            // Rootless Podman's storage and configuration stay the user's
            // real ones when a test moves HOME.
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .args([
                "--reuid",
                &self.uid.to_string(),
                "--regid",
                &self.gid.to_string(),
                "--init-groups",
                "--",
                program,
            ])
            .current_dir(cwd);
        c
    }

    fn runtime(&self) -> PathBuf {
        PathBuf::from(format!("/run/user/{}", self.uid))
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One test's directories, all the user's: a HOME, airlock's config, data
/// and state under `root`, its runtime directory on the user's tmpfs.
struct UserCtx {
    t: Tester,
    engine: &'static str,
    root: PathBuf,
    home: PathBuf,
    rt: PathBuf,
    containers: Vec<String>,
}

impl UserCtx {
    fn new(engine: &'static str, tag: &str) -> Option<UserCtx> {
        let t = tester(engine)?;
        let n = format!(
            "t-{tag}-{engine}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let root = t.home.join(&n);
        let home = root.join("home");
        let rt = t.runtime().join(format!("airlock-{n}"));
        for d in [&root, &home] {
            std::fs::create_dir_all(d).unwrap();
            std::os::unix::fs::chown(d, Some(t.uid), Some(t.gid)).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        Some(UserCtx {
            t,
            engine,
            root,
            home,
            rt,
            containers: Vec::new(),
        })
    }

    /// `airlock ARGS` as the user.
    fn airlock(&self) -> Command {
        let mut c = self
            .t
            .as_user(&self.t.bin.display().to_string(), &self.home);
        c.env("HOME", &self.home)
            .env("AIRLOCK_CONFIG_DIR", self.root.join("config"))
            .env("AIRLOCK_DATA_DIR", self.root.join("data"))
            .env("AIRLOCK_STATE_DIR", self.root.join("state"))
            .env("AIRLOCK_RUNTIME_DIR", &self.rt)
            .env("AIRLOCK_ENGINE", self.engine)
            .env("AIRLOCK_KEYRING_BACKEND", "file")
            .env("AIRLOCK_KEYRING_PASSWORD", PASSPHRASE)
            .env("AIRLOCK_VAULT_KDF", "m=1024,t=1,p=1")
            .env("NO_COLOR", "1");
        c
    }

    /// The engine CLI as the user (rootless Podman: the user's own store).
    fn engine_text(&self, args: &[&str]) -> String {
        let out = self
            .t
            .as_user(self.engine, &self.home)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn container_name(&mut self) -> String {
        let n = format!(
            "airlock-user-{}-{}-{}",
            self.engine,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        self.containers.push(n.clone());
        n
    }

    /// Stores `secret` for `agent` with `airlock auth … --stdin`.
    fn auth(&self, agent: &str, method: &str, secret: &str) {
        let out = common::output_with_stdin(
            self.airlock()
                .args(["auth", agent, "--method", method, "--stdin"]),
            secret,
        );
        assert!(
            out.status.success(),
            "auth {agent} {method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text(&out).contains(CANARY), "{}", text(&out));
    }

    /// Runs `cmd` while watching every process's command line for the
    /// canary; returns its output and the offending command lines.
    fn watched(&self, mut cmd: Command, canary: &str) -> (Output, Vec<String>) {
        let stop = Arc::new(AtomicBool::new(false));
        let w = cmdline_watcher(canary.to_owned(), stop.clone());
        let out = cmd.output().unwrap();
        stop.store(true, Ordering::SeqCst);
        (out, w.join().unwrap())
    }

    /// [`UserCtx::watched`], asserting the canary is in no command line
    /// and not in the output; returns the output and its text.
    fn watched_clean(&self, cmd: Command, canary: &str) -> (Output, String) {
        let (out, hits) = self.watched(cmd, canary);
        let ctx = text(&out);
        assert!(
            hits.is_empty(),
            "canary in {} command lines: {:?}",
            hits.len(),
            hits.first()
        );
        assert!(!ctx.contains(canary), "canary in airlock's output: {ctx}");
        (out, ctx)
    }

    /// Everything under airlock's directories belongs to the user and is
    /// private (0600/0700 or stricter).
    fn assert_all_private(&self) {
        let mut bad = Vec::new();
        for top in ["config", "data", "state"]
            .map(|d| self.root.join(d))
            .iter()
            .chain([&self.rt])
        {
            walk(top, &mut |p, md| {
                if md.uid() != self.t.uid || md.mode() & 0o077 != 0 {
                    bad.push(format!(
                        "{} uid {} mode {:o}",
                        p.display(),
                        md.uid(),
                        md.mode() & 0o7777
                    ));
                }
            });
        }
        assert!(bad.is_empty(), "not the user's or not private: {bad:#?}");
    }
}

impl Drop for UserCtx {
    fn drop(&mut self) {
        // The sync watcher and the proxy this test's `run`s started linger
        // a few seconds and would recreate their state directories: stop
        // them (found by the state directory in their environment) first.
        let mine = format!("AIRLOCK_STATE_DIR={}", self.root.join("state").display());
        let ours = |pid: &str| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|e| e.split(|b| *b == 0).any(|v| v == mine.as_bytes()))
        };
        let pids: Vec<String> = std::fs::read_dir("/proc")
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|p| p.bytes().all(|b| b.is_ascii_digit()) && ours(p))
                    .collect()
            })
            .unwrap_or_default();
        for pid in &pids {
            let _ = Command::new("kill").arg(pid).output();
        }
        for _ in 0..50 {
            if !pids.iter().any(|p| ours(p)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        for c in &self.containers {
            let _ = self
                .t
                .as_user(self.engine, &self.home)
                .args(["rm", "-f", c])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = std::fs::remove_dir_all(&self.rt);
    }
}

fn walk(p: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return;
    };
    f(p, &md);
    if md.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            walk(&e.path(), f);
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Entries of /tmp owned by `uid`.
fn tmp_entries(uid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
        .map(|e| e.path().display().to_string())
        .collect();
    v.sort();
    v
}

/// A canary unique to this test, fixed width.
fn canary(tag: &str) -> String {
    format!("{CANARY}{tag}{:010}", std::process::id())
}

/// What the container prints: its uid, the genuine CLIs' verdicts, and the
/// owner and mode of everything airlock put in it.
const PROBE: &str = r#"echo "uid=$(id -u)"
claude auth status; echo "claude_rc=$?"
codex login status 2>&1; echo "codex_rc=$?"
for f in /run/airlock-in /run/airlock-in/* /run/airlock-in/env/* /run/airlock-in/files/* /run/airlock /run/airlock/*; do
  stat -c 'perm %a %u %g %n' "$f"
done
"#;

/// Checks a probe's output: logged in, run as `uid`, and nothing airlock
/// put in the container readable by anyone but the container user (and,
/// on Docker, the host user's private group the container joined).
fn check_probe(u: &UserCtx, out: &Output, uid: u32) {
    let ctx = text(out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let compact: String = stdout.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    assert!(stdout.contains(&format!("uid={uid}\n")), "{ctx}");
    assert!(compact.contains(r#""authMethod":"oauth_token""#), "{ctx}");
    assert!(stdout.contains("claude_rc=0"), "{ctx}");
    assert!(stdout.contains("API key configured"), "{ctx}");
    assert!(stdout.contains("codex_rc=0"), "{ctx}");
    let perms: Vec<&str> = stdout.lines().filter(|l| l.starts_with("perm ")).collect();
    assert!(perms.len() >= 8, "{ctx}");
    for l in perms {
        let f: Vec<&str> = l.split_whitespace().collect();
        let mode = u32::from_str_radix(f[1], 8).unwrap();
        let (fuid, fgid): (u32, u32) = (f[2].parse().unwrap(), f[3].parse().unwrap());
        assert_eq!(mode & 0o007, 0, "readable by others: {l}\n{ctx}");
        if f[4].starts_with("/run/airlock-in") {
            if u.engine == "podman" {
                // keep-id (or the user as root): the container user owns it.
                assert_eq!((fuid, mode & 0o070), (uid, 0), "{l}\n{ctx}");
            } else if uid == 0 {
                assert_eq!((fuid, mode & 0o070), (u.t.uid, 0), "{l}\n{ctx}");
            } else {
                // Docker, another uid: the user's private group, joined.
                assert_eq!((fuid, fgid), (u.t.uid, u.t.gid), "{l}\n{ctx}");
            }
        } else {
            assert_eq!(
                (fuid, mode & 0o070),
                (uid, 0),
                "tmpfs not private: {l}\n{ctx}"
            );
        }
    }
}

/// auth, status, run (root, 1000 and 4242 image users), verify and
/// teardown as the user, with the leak scan and the host checks.
fn user_flows(engine: &'static str) {
    let Some(mut u) = UserCtx::new(engine, "flows") else {
        return;
    };
    let c = canary(&format!("f{}", &engine[..1]));
    u.auth(
        "claude",
        "token",
        &format!("sk-ant-oat01-{c}-AAAAAAAAAAAAAAAAAAAA"),
    );
    u.auth("codex", "api-key", &format!("sk-proj-{c}-0123456789abcdef"));
    let st = u.airlock().args(["status", "--json"]).output().unwrap();
    let st_text = text(&st);
    assert!(
        st.status.success() && st_text.contains("claude") && st_text.contains("codex"),
        "{st_text}"
    );
    assert!(!st_text.contains(&c), "{st_text}");

    let tmp_before = tmp_entries(u.t.uid);
    let mut leaks = Vec::new();
    let mut engine_dirs: Vec<PathBuf> = Vec::new();
    for (image, flags, uid) in [
        (root_image(), vec![], 0),
        (user_image(), vec![], 1000),
        (root_image(), vec!["-u", "4242:4242"], 4242),
    ] {
        let name = u.container_name();
        let mut cmd = u.airlock();
        cmd.args([
            "-vvv",
            "run",
            "--agent",
            "claude",
            "--agent",
            "codex",
            "--rotation",
            "copy",
            "--",
        ])
        .args(["--network", "none", "--name", &name])
        .args(&flags)
        .args([&image, "sh", "-c", PROBE]);
        let (out, hits) = u.watched(cmd, &c);
        let ctx = text(&out);
        check_probe(&u, &out, uid);
        assert!(ctx.contains("engine command"), "not -vvv: {ctx}");
        if !hits.is_empty() {
            leaks.push(format!(
                "[{engine} uid {uid}] canary in command lines: {hits:?}"
            ));
        }
        if ctx.contains(&c) {
            leaks.push(format!(
                "[{engine} uid {uid}] canary in airlock's output: {ctx}"
            ));
        }
        let inspect = u.engine_text(&["inspect", &name]);
        assert!(inspect.contains("airlock.sandbox"), "{inspect}");
        if inspect.contains(&c) {
            leaks.push(format!("[{engine} uid {uid}] canary in {engine} inspect"));
        }
        // The engine's stored container (config, logs, its writable layer).
        let id = u.engine_text(&["inspect", "-f", "{{.Id}}", &name]);
        let upper = u.engine_text(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &name]);
        assert!(!id.is_empty(), "no container id for {name}");
        engine_dirs.push(if engine == "docker" {
            PathBuf::from(format!("/var/lib/docker/containers/{id}"))
        } else {
            u.t.home.join(format!(
                ".local/share/containers/storage/overlay-containers/{id}"
            ))
        });
        if upper.starts_with('/') {
            engine_dirs.push(PathBuf::from(upper));
        }
        // The sandbox directory is gone once `run` returns.
        let left: Vec<_> = std::fs::read_dir(u.rt.join("sandboxes"))
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "sandbox directories left: {left:?}");
    }
    assert_eq!(
        tmp_entries(u.t.uid),
        tmp_before,
        "airlock left files in /tmp"
    );
    let existing = engine_dirs.iter().filter(|d| d.exists()).count();
    assert!(
        existing >= 3,
        "the containers' stored files were not found: {engine_dirs:?}"
    );
    engine_dirs.extend([u.root.clone(), u.rt.clone(), PathBuf::from("/tmp")]);
    let on_disk = grep_dirs(&c, &engine_dirs, &[]);
    if !on_disk.is_empty() {
        leaks.push(format!(
            "[{engine}] canary on disk outside the vault: {on_disk:?}"
        ));
    }
    assert!(leaks.is_empty(), "leaks:\n{}", leaks.join("\n"));

    // The uid-1000 image: the group (Docker) and keep-id (Podman) paths.
    for (image, user) in [(user_image(), "1000")] {
        let out = u
            .airlock()
            .args(["verify", "--json", "--image", &image])
            .output()
            .unwrap();
        let ctx = text(&out);
        assert!(!ctx.contains(&c), "{ctx}");
        assert_eq!(out.status.code(), Some(0), "verify as {user}: {ctx}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (agent, method) in [("claude", "oauth_token"), ("codex", "api-key")] {
            let a = v["agents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["agent"] == agent)
                .unwrap_or_else(|| panic!("{agent}: {v}"));
            assert_eq!(a["state"], "logged-in", "{agent} as {user}: {a}");
            assert_eq!(a["cli_method"], method, "{agent} as {user}: {a}");
        }
    }

    // docker-flags: the user's own `<engine> run $(airlock docker-flags …)`
    // with the uid-1000 image; the waiter (the user's) removes the
    // sandbox directory once the container has exited.
    let out = u
        .airlock()
        .args([
            "docker-flags",
            "--agent",
            "claude",
            "--image",
            &user_image(),
        ])
        .output()
        .unwrap();
    let ctx = text(&out);
    assert!(out.status.success() && !ctx.contains(&c), "{ctx}");
    // as `$(…)` splits them (the paths here need no quoting)
    let flags: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let name = u.container_name();
    let run =
        u.t.as_user(engine, &u.home)
            .args(["run", "--network", "none", "--name", &name])
            .args(&flags)
            .args([&user_image(), "sh", "-c", "id -u; claude auth status"])
            .output()
            .unwrap();
    let ctx = text(&run);
    let compact: String = ctx.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(run.status.code(), Some(0), "{ctx}");
    assert!(ctx.contains("\n1000\n"), "{ctx}");
    assert!(compact.contains(r#""authMethod":"oauth_token""#), "{ctx}");
    common::wait_until(
        "the waiter to remove the docker-flags sandbox",
        std::time::Duration::from_secs(60),
        || {
            std::fs::read_dir(u.rt.join("sandboxes"))
                .map(|r| r.count() == 0)
                .unwrap_or(true)
        },
    );
    u.assert_all_private();

    let out = u.airlock().args(["teardown", "--yes"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for d in ["data", "state"] {
        assert!(!u.root.join(d).exists(), "teardown left {d}");
    }
    assert!(!u.rt.exists(), "teardown left the runtime directory");
    let st = u.airlock().args(["status", "--json"]).output().unwrap();
    assert!(st.status.success(), "{}", text(&st));
}

#[test]
fn docker_group_user_flows() {
    user_flows("docker");
}

#[test]
fn rootless_podman_user_flows() {
    user_flows("podman");
}

/// A Claude session document, told apart by `n`. The refreshes the test
/// writes inside the container are on its command line, so they carry a
/// plain marker, not the canary: only the first session holds it.
fn session(c: &str, n: u32) -> String {
    let c = if n == 1 { c } else { "refreshed" };
    serde_json::json!({
        "claudeAiOauth": {
            "accessToken": format!("sk-ant-oat01-{c}-a{n}"),
            "refreshToken": format!("sk-ant-ort01-{c}-r{n}"),
            "expiresAt": 4_102_444_800_000u64 + u64::from(n) * 60_000,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max"
        },
        "mcpOAuth": {"kept": true}
    })
    .to_string()
}

/// What `airlock run` does with a synced session for one container user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Sync mode: a refresh written inside comes back to the host file.
    Synced,
    /// Broker mode instead (Docker's root, sync only the default): logged
    /// in, what the container writes is not taken back, the note says why.
    Broker,
    /// Refused before the container starts (exit 7).
    Refused,
}

/// The default rotation (sync) against the user's own
/// `~/.claude/.credentials.json` (0640, the user's): the genuine claude is
/// logged in with the session, a refresh written inside (temp file +
/// rename, as Claude does) comes back to the host file with its owner and
/// mode; Docker's root gets broker mode instead; the containers that could
/// not read or hand back the session are refused before they start, the
/// host file untouched.
fn sync_write_back(engine: &'static str) {
    let Some(mut u) = UserCtx::new(engine, "sync") else {
        return;
    };
    let c = canary(&format!("s{}", &engine[..1]));
    let host = u.home.join(".claude/.credentials.json");
    std::fs::create_dir_all(host.parent().unwrap()).unwrap();
    std::fs::write(&host, session(&c, 1)).unwrap();
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o640)).unwrap();
    for p in [host.parent().unwrap(), &host] {
        std::os::unix::fs::chown(p, Some(u.t.uid), Some(u.t.gid)).unwrap();
    }
    let me = format!("{}:{}", u.t.uid, u.t.gid);
    // (image, run flags, what happens)
    let cases: Vec<(String, Vec<&str>, Expect)> = if engine == "podman" {
        vec![
            (root_image(), vec![], Expect::Synced),
            (user_image(), vec![], Expect::Synced),
            (root_image(), vec!["-u", "4242:4242"], Expect::Synced),
        ]
    } else {
        vec![
            (root_image(), vec![], Expect::Broker),
            (user_image(), vec![], Expect::Refused),
            (root_image(), vec!["-u", "4242:4242"], Expect::Refused),
            (root_image(), vec!["-u", &me], Expect::Synced),
        ]
    };
    let mut n = 1;
    for (image, flags, expect) in cases {
        let name = u.container_name();
        let refresh = format!(
            "claude auth status; d=\"$CLAUDE_SECURESTORAGE_CONFIG_DIR\"; printf '%s' '{}' > \"$d/.credentials.json.tmp.1\" && mv \"$d/.credentials.json.tmp.1\" \"$d/.credentials.json\"",
            session(&c, n + 1)
        );
        let mut cmd = u.airlock();
        cmd.args(["-vvv", "run", "--agent", "claude", "--"])
            .args(["--network", "none", "--name", &name])
            .args(&flags)
            .args([&image, "sh", "-c", &refresh]);
        let (out, ctx) = u.watched_clean(cmd, &c);
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&host).unwrap()).unwrap();
        let md = std::fs::metadata(&host).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (u.t.uid, u.t.gid, 0o640),
            "{ctx}"
        );
        assert_eq!(doc["mcpOAuth"]["kept"], true, "unknown keys kept: {doc}");
        if expect == Expect::Refused {
            assert_eq!(out.status.code(), Some(12), "{image} {flags:?}: {ctx}");
            assert!(ctx.contains("--rotation access-only"), "{ctx}");
        } else {
            let compact: String = ctx.chars().filter(|c| !c.is_whitespace()).collect();
            assert_eq!(out.status.code(), Some(0), "{image} {flags:?}: {ctx}");
            assert!(compact.contains(r#""authMethod":"claude.ai""#), "{ctx}");
            let inspect = u.engine_text(&["inspect", &name]);
            assert!(!inspect.contains(&c), "canary in {engine} inspect");
        }
        assert_eq!(
            ctx.contains("using --rotation broker"),
            expect == Expect::Broker,
            "{image} {flags:?}: {ctx}"
        );
        if expect == Expect::Synced {
            n += 1;
        }
        assert_eq!(
            doc["claudeAiOauth"]["refreshToken"],
            format!(
                "sk-ant-ort01-{}-r{n}",
                if n == 1 { &c } else { "refreshed" }
            ),
            "{image} {flags:?}: {ctx}"
        );
        let shared: Vec<_> = std::fs::read_dir(u.rt.join("sync"))
            .map(|r| {
                r.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            shared.is_empty(),
            "shared directories left: {shared:?}\n{ctx}"
        );
    }
    assert!(n > 1, "no refresh came back");
    // `verify` says what `run` would do instead of syncing (and leaks
    // nothing either).
    let out = u
        .airlock()
        .args([
            "verify",
            "--json",
            "--agent",
            "claude",
            "--image",
            &root_image(),
        ])
        .output()
        .unwrap();
    let ctx = text(&out);
    assert!(!ctx.contains(&c), "{ctx}");
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    assert_eq!(
        ctx.contains("airlock run would use broker mode (by default; --rotation sync would be refused) for the claude session"),
        engine == "docker",
        "{ctx}"
    );
    u.assert_all_private();
}

#[test]
fn docker_group_user_sync_write_back() {
    sync_write_back("docker");
}

#[test]
fn rootless_podman_user_sync_write_back() {
    sync_write_back("podman");
}

/// `--rotation proxy` with rootless Podman: without
/// `--network slirp4netns:allow_host_loopback=true` a clear refusal (exit
/// 2, nothing started); with it the genuine Claude Code answers from the
/// mock upstream through the proxy on the host's loopback (10.0.2.2 in the
/// sandbox), the real token only on the way upstream.
#[test]
fn rootless_podman_user_proxy() {
    proxy_as_user("podman");
}

/// The same through Docker as a member of the docker group: the proxy,
/// run by the user, listens on the bridge (`host.docker.internal`).
#[test]
fn docker_group_user_proxy() {
    proxy_as_user("docker");
}

fn proxy_as_user(engine: &'static str) {
    let Some(mut u) = UserCtx::new(engine, "proxy") else {
        return;
    };
    let mock = mock_upstream::MockUpstream::start();
    let c = canary(&format!("p{}", &engine[..1]));
    let token = format!("sk-ant-oat01-{c}-proxy-{}", "0123456789".repeat(6));
    u.auth("claude", "token", &token);
    // the proxy (started by `run`, as the user) trusts the mock's CA
    let ca = u.root.join("ca.pem");
    std::fs::write(&ca, &mock.ca_pem).unwrap();
    std::os::unix::fs::chown(&ca, Some(u.t.uid), Some(u.t.gid)).unwrap();
    let run = |u: &mut UserCtx, net: &[&str]| {
        let name = u.container_name();
        let mut cmd = u.airlock();
        cmd.env("AIRLOCK_PROXY_UPSTREAM_CLAUDE", mock.origin())
            .env("AIRLOCK_PROXY_CA_FILE", &ca)
            .args([
                "run",
                "--rotation",
                "proxy",
                "--agent",
                "claude",
                "--no-aliases",
                "--",
            ])
            .args(["--name", &name])
            .args(net)
            .args([
                &root_image(),
                "sh",
                "-c",
                "echo \"base=$ANTHROPIC_BASE_URL\"; claude -p hi",
            ]);
        let (out, _) = u.watched_clean(cmd, &c);
        (out, name)
    };
    let (net, base): (&[&str], &str) = if engine == "podman" {
        let (out, name) = run(&mut u, &[]);
        let ctx = text(&out);
        assert_eq!(out.status.code(), Some(2), "{ctx}");
        assert!(ctx.contains("allow_host_loopback=true"), "{ctx}");
        assert_eq!(
            u.engine_text(&["ps", "-a", "-q", "--filter", &format!("name={name}")]),
            ""
        );
        (
            &["--network", "slirp4netns:allow_host_loopback=true"],
            "base=http://10.0.2.2:",
        )
    } else {
        (&[], "base=http://host.docker.internal:")
    };
    let (out, name) = run(&mut u, net);
    let ctx = text(&out);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    assert!(ctx.contains(base), "{ctx}");
    assert!(ctx.contains(mock_upstream::REPLY), "{ctx}");
    mock.assert_messages_carried(&token);
    let inspect = u.engine_text(&["inspect", &name]);
    assert!(inspect.contains("airlock.sandbox"), "{inspect}");
    assert!(!inspect.contains(&c), "canary in {engine} inspect");
    assert!(
        !inspect.contains("sk-ant-oat01-airlock-"),
        "placeholder in {engine} inspect"
    );
    u.assert_all_private();
}

/// A Codex ChatGPT session (`auth.json`) whose refresh token is `rt-{mark}`
/// and whose JWTs carry `mark` too, expiring at `exp` (seconds).
fn codex_session(mark: &str, exp: u64) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let claims = serde_json::json!({
        "email": "fake@example.com",
        "exp": exp,
        "https://api.openai.com/auth": {"chatgpt_plan_type": "plus", "chatgpt_account_id": "acct-fake"},
    });
    let jwt = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&claims.to_string()),
        b64(mark)
    );
    serde_json::json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {"id_token": jwt, "access_token": jwt,
                   "refresh_token": format!("rt-{mark}"), "account_id": "acct-fake"},
        "last_refresh": "2026-11-22T00:00:00Z",
        "unknown_key": "kept",
    })
    .to_string()
}

/// Codex, the other rotating session, with rootless Podman: the user's
/// own `~/.codex/auth.json` (0600) logs the genuine `codex` in as uid 1000
/// and as 4242, and an `auth.json` rewritten inside comes back to the host
/// file, owner, mode and unknown keys kept.
#[test]
fn rootless_podman_user_codex_sync() {
    let Some(mut u) = UserCtx::new("podman", "codex") else {
        return;
    };
    let c = canary("cx");
    let host = u.home.join(".codex/auth.json");
    std::fs::create_dir_all(host.parent().unwrap()).unwrap();
    std::fs::write(&host, codex_session(&c, 4_102_444_800)).unwrap();
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o600)).unwrap();
    for p in [host.parent().unwrap(), &host] {
        std::os::unix::fs::chown(p, Some(u.t.uid), Some(u.t.gid)).unwrap();
    }
    for (n, flags) in [(1u64, vec![]), (2, vec!["-u", "4242:4242"])] {
        let name = u.container_name();
        // the refreshes written inside are on the command line: no canary
        let newer = codex_session(&format!("refreshed{n}"), 4_102_444_800 + n * 3600);
        let script = format!(
            "id -u; codex login status 2>&1; printf '%s' '{newer}' > \"$CODEX_HOME/.auth-x\" && mv \"$CODEX_HOME/.auth-x\" \"$CODEX_HOME/auth.json\""
        );
        let mut cmd = u.airlock();
        cmd.args(["-vvv", "run", "--agent", "codex", "--"])
            .args(["--network", "none", "--name", &name])
            .args(&flags)
            .args([&user_image(), "sh", "-c", &script]);
        let (out, ctx) = u.watched_clean(cmd, &c);
        assert_eq!(out.status.code(), Some(0), "{ctx}");
        assert!(ctx.contains("Logged in using ChatGPT"), "{ctx}");
        assert!(
            ctx.contains(if n == 1 { "\n1000\n" } else { "\n4242\n" }),
            "{ctx}"
        );
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&host).unwrap()).unwrap();
        let md = std::fs::metadata(&host).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (u.t.uid, u.t.gid, 0o600),
            "{ctx}"
        );
        assert_eq!(
            doc["tokens"]["refresh_token"],
            format!("rt-refreshed{n}"),
            "{ctx}"
        );
        assert_eq!(doc["unknown_key"], "kept", "{doc}");
        let inspect = u.engine_text(&["inspect", &name]);
        assert!(!inspect.contains(&c), "canary in podman inspect");
    }
    u.assert_all_private();
}
