//! `airlock run`, `docker-flags` through the real binary on real engines:
//! the image's own entrypoint and command survive, the container's exit
//! code comes back, `-d` leaves a waiter that removes the directory, signals
//! reach the container, and `docker run $(airlock docker-flags …)` works.
//!
//! Gated by AIRLOCK_TEST_DOCKER=1 / AIRLOCK_TEST_PODMAN=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{CANARY, TestContext, busybox, ok, require_real, root_image, user_image, wait_until};

/// A context whose Claude credential is a setup token in a secret file, and
/// whose sandbox directories live on a tmpfs.
fn context(engine: &str) -> TestContext {
    let mut ctx = TestContext::new();
    common::claude_secret_file(&ctx, "cli");
    ctx.runtime_dir = PathBuf::from(format!(
        "/dev/shm/airlock-cli-{}-{engine}-{}",
        std::process::id(),
        ctx.root.path().file_name().unwrap().to_string_lossy()
    ));
    ctx.set_env("AIRLOCK_ENGINE", engine);
    ctx.set_env("AIRLOCK_KEYRING_BACKEND", "memory");
    ctx
}

fn sandboxes(rt: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(rt.join("sandboxes"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn exit_code_entrypoint_and_default_cmd(engine: &str) {
    let ctx = context(engine);
    // The container's exit code comes back; the image's entrypoint ran; the
    // agent is logged in; `claude` is the permission-skipping wrapper.
    let out = ctx
        .cmd()
        .args(["run", "--agent", "claude", "--", "--rm", "--network", "none"])
        .arg(root_image())
        .args([
            "sh",
            "-c",
            "claude auth status >/dev/null || exit 99; command -v claude; cat \"$(command -v claude)\"; exit 7",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let msg = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(7), "{msg}");
    assert!(
        stderr.lines().any(|l| l == "airlock-test-entrypoint"),
        "{msg}"
    );
    assert!(stdout.contains("/run/airlock/bin/claude"), "{msg}");
    assert!(stdout.contains("--dangerously-skip-permissions"), "{msg}");
    assert!(sandboxes(&ctx.runtime_dir).is_empty());

    // A user given by name (`-u agent`) is looked up in the image: the
    // tmpfs and the directory belong to uid 1000.
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "claude",
            "--",
            "--rm",
            "--network",
            "none",
            "-u",
            "agent",
        ])
        .arg(root_image())
        .args(["sh", "-c", "id -u; claude auth status"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let msg = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{msg}");
    assert!(stdout.starts_with("1000\n"), "{msg}");
    assert!(stdout.contains("oauth_token"), "{msg}");

    // No command: the image's ENTRYPOINT + CMD.
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "claude",
            "--",
            "--rm",
            "--network",
            "none",
        ])
        .arg(user_image())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "default-cmd", "{stderr}");
    assert!(
        stderr.lines().any(|l| l == "airlock-test-entrypoint"),
        "{stderr}"
    );

    // A user --entrypoint is honoured (and clears the image's CMD).
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "claude",
            "--",
            "--rm",
            "--network",
            "none",
        ])
        .args(["--entrypoint", "/bin/echo"])
        .arg(user_image())
        .args(["from", "echo"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), "from echo");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("airlock-test-entrypoint"));
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

fn detach_leaves_a_waiter(engine: &str) {
    let ctx = context(engine);
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "claude",
            "--",
            "-d",
            "--rm",
            "--network",
            "none",
        ])
        .arg(busybox())
        .args(["sh", "-c", "test -s /run/airlock-in/env/0 && sleep 3"])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!id.is_empty());
    assert_eq!(
        sandboxes(&ctx.runtime_dir).len(),
        1,
        "directory kept while it runs"
    );
    wait_until(
        "the waiter to remove the directory",
        Duration::from_secs(60),
        || sandboxes(&ctx.runtime_dir).is_empty(),
    );
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

fn sigterm_reaches_the_container(engine: &str) {
    let ctx = context(engine);
    let mut child = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "claude",
            "--",
            "--rm",
            "--network",
            "none",
        ])
        .arg(busybox())
        .args([
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; sleep 60 & wait",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    use std::io::Read;
    stdout.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    // Podman installs its signal proxy a moment after the container's output
    // starts flowing; a signal in that window stops podman, not the container.
    std::thread::sleep(Duration::from_millis(1000));
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(status.code(), Some(42), "the container's trap ran");
    assert!(sandboxes(&ctx.runtime_dir).is_empty());
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

fn docker_flags_real(engine: &str) {
    let ctx = context(engine);
    let out = ctx
        .cmd()
        .args(["docker-flags", "--agent", "claude", "--image"])
        .arg(user_image())
        .output()
        .unwrap();
    let flags = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!flags.contains(CANARY));
    assert_eq!(sandboxes(&ctx.runtime_dir).len(), 1);
    let script = format!(
        "{engine} run --rm --network none $(cat) {} claude auth status",
        user_image()
    );
    let mut sh = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    sh.stdin
        .take()
        .unwrap()
        .write_all(flags.as_bytes())
        .unwrap();
    let out = sh.wait_with_output().unwrap();
    let stdout: String = String::from_utf8_lossy(&out.stdout)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{flags}\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("\"authMethod\":\"oauth_token\""),
        "{stdout}"
    );
    assert!(stderr.contains("airlock-test-entrypoint"), "{stderr}");
    wait_until(
        "the waiter to remove the directory",
        Duration::from_secs(60),
        || sandboxes(&ctx.runtime_dir).is_empty(),
    );
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// `docker-compose -f compose.yml -f $(airlock compose …) up` with the real
/// docker-compose (v1 or v2 plugin), when installed.
fn compose_real() {
    let Some(compose) = common::compose_command() else {
        return;
    };
    let ctx = context("docker");
    let dir = ctx.root.path();
    std::fs::write(
        dir.join("compose.yml"),
        format!(
            "services:\n  dev:\n    image: {}\n    network_mode: none\n    command: [\"sh\", \"-c\", \"claude auth status\"]\n",
            user_image()
        ),
    )
    .unwrap();
    let out = ctx
        .cmd()
        .args([
            "compose",
            "--service",
            "dev",
            "--agent",
            "claude",
            "--image",
        ])
        .arg(user_image())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!yaml.contains(CANARY));
    std::fs::write(dir.join("override.yml"), &yaml).unwrap();
    let project = format!("airlockct{}", std::process::id());
    let base = |c: &mut Command| {
        c.args(&compose[1..])
            .args(["-p", &project, "-f"])
            .arg(dir.join("compose.yml"))
            .arg("-f")
            .arg(dir.join("override.yml"));
    };
    let mut up = Command::new(compose[0]);
    base(&mut up);
    let out = up
        .args(["up", "--abort-on-container-exit", "--no-color"])
        .output()
        .unwrap();
    let mut down = Command::new(compose[0]);
    base(&mut down);
    let _ = down.arg("down").output();
    let text: String = String::from_utf8_lossy(&out.stdout)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(
        text.contains("\"authMethod\":\"oauth_token\""),
        "{yaml}\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("airlock-test-entrypoint"), "{text}");
    wait_until(
        "the waiter to remove the directory",
        Duration::from_secs(60),
        || sandboxes(&ctx.runtime_dir).is_empty(),
    );
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// An imported one-layer image holding only `/bin/busybox` (the host's
/// static busybox, no applet links) and `/etc/hello`: no `/bin/sh`. Removed
/// when dropped, also when the test fails.
struct ShellLess {
    engine: String,
    name: String,
}

impl Drop for ShellLess {
    fn drop(&mut self) {
        let _ = Command::new(&self.engine)
            .args(["rmi", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn import_shell_less(engine: &str) -> ShellLess {
    let name = format!("localhost/airlock-test/noshell:t{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hello"), "hello\n").unwrap();
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("a static busybox on the host (apt-get install busybox-static)");
    std::fs::copy(bb, root.join("bin/busybox")).unwrap();
    let tar = dir.path().join("root.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new(engine)
        .arg("import")
        .arg(&tar)
        .arg(&name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ShellLess {
        engine: engine.to_owned(),
        name,
    }
}

/// An image without `/bin/sh` cannot run the shim: a clear airlock error
/// (exit code 8) after the engine's own message, no directory left behind;
/// `docker-flags --mode env` works with it. A command missing inside a
/// working image stays the container's 127.
fn image_without_shell(engine: &str) {
    let ctx = context(engine);
    let shell_less = import_shell_less(engine);
    let image = shell_less.name.clone();
    for detach in [false, true] {
        let mut cmd = ctx.cmd();
        cmd.args(["run", "--agent", "claude", "--", "--rm"]);
        if detach {
            cmd.arg("-d");
        }
        let out = cmd.arg(&image).arg("whatever").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(8), "detach={detach}: {stderr}");
        assert!(
            stderr.contains(&format!("the image {image} has no usable /bin/sh")),
            "{stderr}"
        );
        assert!(stderr.contains("docker-flags --mode env"), "{stderr}");
        // The engine's own message still reaches the terminal.
        assert!(stderr.contains("OCI runtime"), "{stderr}");
        assert!(!stderr.contains(CANARY), "{stderr}");
        assert!(sandboxes(&ctx.runtime_dir).is_empty(), "detach={detach}");
    }

    // `verify` starts its check container the same way.
    let out = ctx
        .cmd()
        .args(["verify", "--agent", "claude", "--image", &image])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("has no usable /bin/sh"), "{stderr}");
    assert!(sandboxes(&ctx.runtime_dir).is_empty());

    // What the message recommends: `--mode env` needs no shell.
    let token = format!("sk-ant-oat01-{CANARY}-cli-AAAAAAAAAAAAAAAA");
    let out = ctx
        .cmd()
        .args(["docker-flags", "--agent", "claude", "--mode", "env"])
        .env("CLAUDE_CODE_OAUTH_TOKEN", &token)
        .output()
        .unwrap();
    let flags = ok(&out);
    let out = Command::new(engine)
        .args(["run", "--rm", "--network", "none"])
        .args(flags.split_whitespace())
        .args(["--entrypoint", "/bin/busybox", &image, "env"])
        .env("CLAUDE_CODE_OAUTH_TOKEN", &token)
        .output()
        .unwrap();
    let env = ok(&out);
    assert!(
        env.lines()
            .any(|l| l == format!("CLAUDE_CODE_OAUTH_TOKEN={token}")),
        "{flags}"
    );

    // A command missing inside a working shim: the container's 127, no
    // airlock error.
    let out = ctx
        .cmd()
        .args([
            "run",
            "--agent",
            "claude",
            "--",
            "--rm",
            "--network",
            "none",
        ])
        .arg(root_image())
        .arg("no-such-command-here")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(!stderr.contains("has no usable /bin/sh"), "{stderr}");
    assert!(stderr.contains("no-such-command-here"), "{stderr}");

    drop(shell_less);
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

#[test]
fn docker_image_without_shell() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        image_without_shell("docker");
    }
}

#[test]
fn podman_image_without_shell() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        image_without_shell("podman");
    }
}

#[test]
fn docker_compose_override() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        compose_real();
    }
}

#[test]
fn docker_run_cli() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        exit_code_entrypoint_and_default_cmd("docker");
        sigterm_reaches_the_container("docker");
        detach_leaves_a_waiter("docker");
        docker_flags_real("docker");
    }
}

#[test]
fn podman_run_cli() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        exit_code_entrypoint_and_default_cmd("podman");
        sigterm_reaches_the_container("podman");
        detach_leaves_a_waiter("podman");
        docker_flags_real("podman");
    }
}

/// `gc` removes directories whose owner died and whose container is not
/// running, and keeps live and young unused ones.
fn gc_removes_orphans(engine: &str) {
    use airlock::engine::EngineKind;
    use airlock::plan::SandboxPlan;
    use airlock::sandbox::{self, ContainerUser, Exec, Sandbox, SandboxSpec};
    let ctx = context(engine);
    let kind = EngineKind::parse(engine).unwrap();
    let eng = kind.engine();
    let plan = SandboxPlan::default();
    let make = |owner: Option<u32>| {
        Sandbox::create(
            &ctx.runtime_dir,
            SandboxSpec {
                plan: &plan,
                exec: Exec::default(),
                user: ContainerUser::ROOT,
                engine: eng.as_ref(),
                owner_pid: owner,
            },
        )
        .unwrap()
        .persist()
    };
    // A pid that no process can have: pids are always below pid_max. (The pid
    // of a child that just exited could be reused by a parallel test.)
    let dead_pid: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let orphan = make(Some(dead_pid));
    let live = make(Some(std::process::id()));
    let unused = make(None);
    let removed = sandbox::gc(&ctx.runtime_dir);
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(!orphan.exists());
    assert!(live.exists());
    assert!(
        unused.exists(),
        "a docker-flags directory waits for its container"
    );
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

#[test]
fn docker_gc() {
    if require_real("AIRLOCK_TEST_DOCKER") {
        gc_removes_orphans("docker");
    }
}

#[test]
fn podman_gc() {
    if require_real("AIRLOCK_TEST_PODMAN") {
        gc_removes_orphans("podman");
    }
}
