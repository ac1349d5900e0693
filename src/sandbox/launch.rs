//! Starting a sandbox container: prepare the directory and the engine's
//! argument list, run it in the foreground (signals forwarded, exit code
//! propagated, directory removed afterwards) or detached (a waiter removes
//! the directory when the container exits).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::engine::{Engine, ImageConfig};
use crate::error::{Error, Result};
use crate::plan::SandboxPlan;
use crate::render::{self, RunRequest};
use crate::sandbox::{ContainerUser, Exec, Sandbox, SandboxSpec};

/// A sandbox ready to start.
#[derive(Debug)]
pub struct Prepared {
    /// The host directory (removed when this is dropped, unless persisted).
    pub sandbox: Sandbox,
    /// Arguments for the engine CLI (`run …`). No secret values.
    pub argv: Vec<String>,
    /// What the user asked for.
    pub request: RunRequest,
}

/// What the shim must finally execute, following the engines' rules: a user
/// `--entrypoint` replaces the image's and clears its `CMD`.
pub fn exec_for(image: &ImageConfig, req_entrypoint: Option<&str>) -> Exec {
    match req_entrypoint {
        Some("") => Exec {
            entrypoint: Vec::new(),
            default_cmd: Vec::new(),
        },
        Some(ep) => Exec {
            entrypoint: vec![ep.to_owned()],
            default_cmd: Vec::new(),
        },
        None => Exec {
            entrypoint: image.entrypoint.clone(),
            default_cmd: image.cmd.clone(),
        },
    }
}

/// The container's user: `--user` if given, else the image's `USER`; names
/// are looked up in the image.
pub fn container_user(
    engine: &dyn Engine,
    image_name: &str,
    image: &ImageConfig,
    user: Option<&str>,
) -> Result<ContainerUser> {
    let spec = user.unwrap_or(&image.user);
    match ContainerUser::parse_numeric(spec) {
        Some(u) => Ok(u),
        None => {
            let (uid, gid) = engine.resolve_user(image_name, spec)?;
            Ok(ContainerUser {
                uid,
                gid: Some(gid),
            })
        }
    }
}

/// Writes the sandbox directory and builds the `run` arguments.
pub fn prepare(
    engine: &dyn Engine,
    image: &ImageConfig,
    plan: &SandboxPlan,
    request: RunRequest,
    runtime_dir: &Path,
) -> Result<Prepared> {
    prepare_with(
        engine,
        image,
        plan,
        request,
        runtime_dir,
        |_| Ok(Vec::new()),
    )
}

/// Like [`prepare`], with `mounts` called once the sandbox directory exists
/// (it knows the sandbox's id and container user) for more directories to
/// mount: `airlock run` registers its synced sessions there. When it fails,
/// the sandbox directory is removed.
pub fn prepare_with(
    engine: &dyn Engine,
    image: &ImageConfig,
    plan: &SandboxPlan,
    request: RunRequest,
    runtime_dir: &Path,
    mounts: impl FnOnce(&Sandbox) -> Result<Vec<crate::plan::Mount>>,
) -> Result<Prepared> {
    let exec = exec_for(image, request.entrypoint.as_deref());
    let user = container_user(engine, &request.image, image, request.user.as_deref())?;
    let sandbox = Sandbox::create(
        runtime_dir,
        SandboxSpec {
            plan,
            exec,
            user,
            engine,
            owner_pid: Some(std::process::id()),
        },
    )?;
    let extra = mounts(&sandbox)?;
    let with_mounts;
    let plan = if extra.is_empty() {
        plan
    } else {
        let mut p = plan.clone();
        p.mounts.extend(extra);
        with_mounts = p;
        &with_mounts
    };
    let argv = render::run_argv(plan, &sandbox, engine, &request);
    tracing::debug!(engine = %engine.kind(), ?argv, "engine command");
    Ok(Prepared {
        sandbox,
        argv,
        request,
    })
}

/// Runs the container in the foreground with the terminal inherited, then
/// removes the sandbox directory. Returns the engine's exit code (the
/// container's, or 125–127 for engine errors; 128+n if the engine CLI was
/// killed by signal n).
///
/// The engine CLI's stderr passes through airlock (each chunk is written on
/// at once, so the container's stderr still reaches the terminal), keeping
/// its last few kilobytes: when the image has no usable `/bin/sh` for the
/// shim, the engine's own message is recognised after the fact and the run
/// fails with [`no_shell`]'s [`Error::Engine`] (exit code 8) instead of a
/// bare 127. Nothing is started to check beforehand.
pub fn run_foreground(engine: &dyn Engine, prepared: Prepared) -> Result<i32> {
    let mut cmd = engine.command();
    cmd.args(&prepared.argv).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Engine(format!("could not start {}: {e}", engine.kind())))?;
    let tail = child.stderr.take().map(tee::Tail::start);
    let guard = signals::Forward::install(child.id());
    let status = child.wait();
    drop(guard);
    let removed = prepared.sandbox.remove();
    let status =
        status.map_err(|e| Error::Engine(format!("waiting for {} failed: {e}", engine.kind())))?;
    removed?;
    let code = exit_code(status);
    let tail = tail.map(tee::Tail::finish).unwrap_or_default();
    if shell_missing(code, &tail) {
        return Err(no_shell(engine, &prepared.request.image, code));
    }
    Ok(code)
}

/// Whether the engine failed to start the shim because the image has no
/// usable `/bin/sh`: exit code 127 (not found) or 126 (not executable), and
/// the OCI runtime's message naming `/bin/sh` on the engine's stderr.
///
/// Docker (runc): `OCI runtime create failed: … exec: "/bin/sh": stat
/// /bin/sh: no such file or directory`; Podman: `runc: … exec: "/bin/sh": …:
/// OCI runtime attempted to invoke a command that was not found`, or with
/// crun ``executable file `/bin/sh` not found``. A command missing *inside*
/// a working shim exits 127 too, but the shell says so, not the runtime.
pub fn shell_missing(code: i32, stderr: &[u8]) -> bool {
    if code != 126 && code != 127 {
        return false;
    }
    let text = String::from_utf8_lossy(stderr);
    text.contains("OCI runtime") && (text.contains("\"/bin/sh\"") || text.contains("`/bin/sh`"))
}

/// The error for an image without a usable `/bin/sh` (see
/// [`shell_missing`]).
pub fn no_shell(engine: &dyn Engine, image: &str, code: i32) -> Error {
    Error::Engine(format!(
        "the image {image} has no usable /bin/sh ({} could not run it: exit code {code}): airlock starts the container through a small POSIX sh script that writes the credentials in place, so the image needs a POSIX shell at /bin/sh. Use an image that has one (for a distroless image, its :debug variant; or add busybox), or pass the credentials as environment variables with `{} run $(airlock docker-flags --mode env --agent AGENT) {image}`, which needs no shell but leaves the values visible to `{} inspect` (see docs/sandbox.md)",
        engine.kind(),
        engine.kind(),
        engine.kind()
    ))
}

/// Passing a child's stderr through while keeping its end.
mod tee {
    use std::io::{Read, Write};
    use std::sync::mpsc;
    use std::time::Duration;

    /// How much of the end of the stream is kept.
    const KEEP: usize = 8 * 1024;

    /// A thread copying a stream to airlock's stderr.
    pub struct Tail {
        done: mpsc::Receiver<Vec<u8>>,
    }

    impl Tail {
        /// Starts copying `r` to stderr, chunk by chunk as it arrives.
        pub fn start(mut r: impl Read + Send + 'static) -> Tail {
            let (tx, done) = mpsc::channel();
            std::thread::spawn(move || {
                let mut kept: Vec<u8> = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            let mut err = std::io::stderr().lock();
                            let _ = err.write_all(&buf[..n]);
                            let _ = err.flush();
                            kept.extend_from_slice(&buf[..n]);
                            if kept.len() > KEEP {
                                kept.drain(..kept.len() - KEEP);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                let _ = tx.send(kept);
            });
            Tail { done }
        }

        /// The end of the stream, once it is closed. A process left behind
        /// by the engine CLI may hold the stream open: after a short wait
        /// the copy goes on in the background and nothing is returned.
        pub fn finish(self) -> Vec<u8> {
            self.done
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default()
        }
    }
}

/// Like [`run_foreground`], but with the engine's stdout and stderr captured
/// (stdin closed): for tests and tools that need the container's output.
pub fn run_captured(engine: &dyn Engine, prepared: Prepared) -> Result<std::process::Output> {
    let run = run_piped(engine, prepared, None)?;
    let status = run
        .status
        .map_err(|e| Error::Engine(format!("waiting for {} failed: {e}", engine.kind())))?;
    Ok(std::process::Output {
        status,
        stdout: run.stdout,
        stderr: run.stderr,
    })
}

/// What [`run_captured_within`] saw.
#[derive(Debug)]
pub struct CapturedRun {
    /// The engine CLI's exit status; `None` when it could not be waited for.
    pub status: Option<std::process::ExitStatus>,
    /// The engine CLI's stdout.
    pub stdout: Vec<u8>,
    /// The engine CLI's stderr.
    pub stderr: Vec<u8>,
}

/// Like [`run_captured`], with a time limit: once `limit` has passed the
/// container is killed with `<engine> kill <name>` (`name` is the container
/// name the request gave with `--name`) and the engine CLI waited for.
pub fn run_captured_within(
    engine: &dyn Engine,
    prepared: Prepared,
    name: &str,
    limit: std::time::Duration,
) -> Result<CapturedRun> {
    let run = run_piped(engine, prepared, Some((name, limit)))?;
    Ok(CapturedRun {
        status: run.status.ok(),
        stdout: run.stdout,
        stderr: run.stderr,
    })
}

struct PipedRun {
    status: std::io::Result<std::process::ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs the container with stdin closed and both outputs read to the end,
/// waits for the engine CLI (killing the container by name once `limit`
/// has passed, if given) and removes the sandbox directory.
fn run_piped(
    engine: &dyn Engine,
    prepared: Prepared,
    limit: Option<(&str, std::time::Duration)>,
) -> Result<PipedRun> {
    let mut child = engine
        .command()
        .args(&prepared.argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Engine(format!("could not start {}: {e}", engine.kind())))?;
    let stdout = child.stdout.take().map(read_to_end_in_thread);
    let stderr = child.stderr.take().map(read_to_end_in_thread);
    let status = match limit {
        None => child.wait(),
        Some((name, limit)) => {
            let deadline = std::time::Instant::now() + limit;
            loop {
                match child.try_wait() {
                    Ok(Some(st)) => break Ok(st),
                    Ok(None) if std::time::Instant::now() > deadline => {
                        let _ = engine
                            .command()
                            .args(["kill", name])
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status();
                        break child.wait();
                    }
                    Ok(None) => std::thread::sleep(std::time::Duration::from_millis(100)),
                    Err(e) => break Err(e),
                }
            }
        }
    };
    let joined = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let (stdout, stderr) = (joined(stdout), joined(stderr));
    prepared.sandbox.remove()?;
    Ok(PipedRun {
        status,
        stdout,
        stderr,
    })
}

fn read_to_end_in_thread(
    mut r: impl std::io::Read + Send + 'static,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Runs the container detached (`-d` was among the user's flags): prints the
/// engine's output (the container id), and returns the exit code, the
/// container id and the sandbox directory, which the caller hands to a
/// waiter ([`reap`]). On failure the directory is removed; an image
/// without `/bin/sh` is reported as in [`run_foreground`].
pub fn run_detached(
    engine: &dyn Engine,
    prepared: Prepared,
) -> Result<(i32, Option<String>, PathBuf)> {
    let mut child = engine
        .command()
        .args(&prepared.argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Engine(format!("could not start {}: {e}", engine.kind())))?;
    let tail = child.stderr.take().map(tee::Tail::start);
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Engine(format!("waiting for {} failed: {e}", engine.kind())))?;
    let tail = tail.map(tee::Tail::finish).unwrap_or_default();
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let code = exit_code(out.status);
    if shell_missing(code, &tail) {
        prepared.sandbox.remove()?;
        return Err(no_shell(engine, &prepared.request.image, code));
    }
    let id = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned);
    if code != 0 || id.is_none() {
        let dir = prepared.sandbox.dir().to_path_buf();
        prepared.sandbox.remove()?;
        return Ok((code, None, dir));
    }
    let dir = prepared.sandbox.persist();
    Ok((code, id, dir))
}

/// Waits for `container` to exit, then removes the sandbox directory.
pub fn reap(engine: &dyn Engine, container: &str, dir: &Path) -> Result<()> {
    let _ = crate::sandbox::set_owner(dir, Some(std::process::id()));
    let waited = engine.wait(container);
    crate::sandbox::remove_dir(dir)?;
    waited
}

/// Waits (up to `timeout`) for a container labelled with the sandbox id to
/// appear, then for it to exit, then removes the directory. For
/// `docker-flags` and `compose`, whose container airlock does not start.
///
/// It looks at the engine's events since it started (one short
/// `<engine> events` query per look, backing off from 0.25 s to 5 s), not
/// only at `ps`: a `--rm` container that starts and exits between two
/// looks is gone from `ps`, but its `start` and `die` events remain.
pub fn reap_by_label(
    engine: &dyn Engine,
    id: &str,
    dir: &Path,
    timeout: std::time::Duration,
) -> Result<()> {
    let _ = crate::sandbox::set_owner(dir, Some(std::process::id()));
    let start = std::time::Instant::now();
    // Event times have a one-second resolution: look a little further back.
    let since = jiff::Timestamp::now().as_second() - 2;
    let label = format!("label={}={id}", crate::sandbox::LABEL);
    let mut delay = std::time::Duration::from_millis(250);
    let container = loop {
        // Sleep first: the container cannot exist before the user's own
        // `docker run` starts, and an immediate engine call would compete for
        // the CPU with that very command.
        std::thread::sleep(delay);
        if !dir.exists() {
            // Removed by `gc` or by hand: nothing left to wait for.
            return Ok(());
        }
        match engine.past_events(&label, since) {
            Some(events) => {
                // Docker says `die`, Podman `died`.
                if events.iter().any(|(st, _)| st == "die" || st == "died") {
                    return crate::sandbox::remove_dir(dir);
                }
                if let Some((_, c)) = events.iter().find(|(st, _)| st == "start") {
                    break c.clone();
                }
            }
            None => {
                if let Some(c) = find_labelled(engine, &label) {
                    break c;
                }
            }
        }
        if start.elapsed() > timeout {
            // Never started: leave the directory to `gc` (it keeps unused
            // directories for a while in case the user is slow).
            let _ = crate::sandbox::set_owner(dir, None);
            return Ok(());
        }
        // Back off (0.25 s up to 5 s): many idle waiters must not keep the
        // engine busy.
        delay = (delay * 3 / 2).min(std::time::Duration::from_secs(5));
    };
    let waited = engine.wait(&container);
    crate::sandbox::remove_dir(dir)?;
    // A `--rm` container may be gone before `wait` asks: its exit is
    // still an exit.
    if waited.is_err()
        && engine
            .past_events(&label, since)
            .is_some_and(|ev| ev.iter().any(|(st, _)| st == "die" || st == "died"))
    {
        return Ok(());
    }
    waited
}

/// The first container carrying `label`, running or not.
fn find_labelled(engine: &dyn Engine, label: &str) -> Option<String> {
    let o = engine
        .command()
        .args(["ps", "-a", "-q", "--filter", label])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&o.stdout);
    s.lines()
        .next()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
}

/// Starts `exe args…` in its own process group with no terminal, not
/// waited for. Returns its pid. The vault passphrase
/// (`AIRLOCK_KEYRING_PASSWORD`) is left out of its environment unless
/// `keep_passphrase` (see [`crate::vault::Handover`]).
pub fn spawn_detached(exe: &Path, args: &[String], keep_passphrase: bool) -> Result<u32> {
    let mut c = Command::new(exe);
    if !keep_passphrase {
        c.env_remove(crate::vault::file::PASSPHRASE_ENV);
    }
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(unix)]
    {
        // Its own process group: Ctrl-C in the terminal does not reach it.
        // (Not setsid in pre_exec: that would force fork instead of the much
        // cheaper posix_spawn.)
        use std::os::unix::process::CommandExt;
        c.process_group(0);
    }
    let child = c
        .spawn()
        .map_err(|e| Error::Other(format!("could not start the sandbox waiter: {e}")))?;
    Ok(child.id())
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    if let Some(c) = status.code() {
        return c;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(s) = status.signal() {
            return 128 + s;
        }
    }
    1
}

/// Forwarding of termination signals to the engine CLI while it runs (also
/// used by `airlock login`). Signal handlers are process-wide: hold at most
/// one [`signals::Forward`] at a time.
pub mod signals {
    #[cfg(unix)]
    use std::sync::atomic::{AtomicI32, Ordering};

    #[cfg(unix)]
    static CHILD: AtomicI32 = AtomicI32::new(0);

    #[cfg(unix)]
    const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

    /// Installed handlers; the previous ones come back on drop.
    pub struct Forward {
        #[cfg(unix)]
        old: Vec<(libc::c_int, libc::sigaction)>,
    }

    #[cfg(unix)]
    extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // A signal from the terminal (si_code > 0, SI_KERNEL) already reached
        // the engine CLI, which shares our process group: do not double it.
        // One sent to airlock alone (kill, si_code <= 0) is passed on.
        // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
        let code = if info.is_null() {
            0
        } else {
            unsafe { (*info).si_code }
        };
        let pid = CHILD.load(Ordering::SeqCst);
        if pid > 0 && code <= 0 {
            // SAFETY: kill is async-signal-safe.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    impl Forward {
        /// Forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to `child` and keeps them
        /// from killing airlock (so cleanup runs) until dropped.
        pub fn install(child: u32) -> Forward {
            #[cfg(unix)]
            {
                CHILD.store(i32::try_from(child).unwrap_or(0), Ordering::SeqCst);
                let mut old = Vec::new();
                for sig in SIGNALS {
                    // SAFETY: a zeroed sigaction is valid; we set handler,
                    // flags and an empty mask before installing it.
                    unsafe {
                        let mut sa: libc::sigaction = std::mem::zeroed();
                        sa.sa_sigaction = on_signal as *const () as usize;
                        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                        libc::sigemptyset(&mut sa.sa_mask);
                        let mut prev: libc::sigaction = std::mem::zeroed();
                        if libc::sigaction(sig, &sa, &mut prev) == 0 {
                            old.push((sig, prev));
                        }
                    }
                }
                Forward { old }
            }
            #[cfg(not(unix))]
            {
                let _ = child;
                Forward {}
            }
        }
    }

    impl Drop for Forward {
        fn drop(&mut self) {
            #[cfg(unix)]
            {
                for (sig, prev) in self.old.drain(..) {
                    // SAFETY: restoring a sigaction obtained from the kernel.
                    unsafe {
                        libc::sigaction(sig, &prev, std::ptr::null_mut());
                    }
                }
                CHILD.store(0, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shell_missing;

    #[test]
    fn a_missing_shell_is_recognised_from_the_engines_message() {
        // Verbatim from Docker 26 (runc) and Podman 4 (runc, crun).
        let docker = b"docker: Error response from daemon: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/bin/sh\": stat /bin/sh: no such file or directory: unknown\n";
        let podman = b"Error: runc: runc create failed: unable to start container process: exec: \"/bin/sh\": stat /bin/sh: no such file or directory: OCI runtime attempted to invoke a command that was not found\n";
        let crun = b"Error: crun: executable file `/bin/sh` not found in $PATH: No such file or directory: OCI runtime attempted to invoke a command that was not found\n";
        let denied = b"docker: Error response from daemon: failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/bin/sh\": permission denied: unknown\n";
        assert!(shell_missing(127, docker));
        assert!(shell_missing(127, podman));
        assert!(shell_missing(127, crun));
        assert!(shell_missing(126, denied));
        // The container's own exit codes, or another engine failure.
        assert!(!shell_missing(1, docker));
        assert!(!shell_missing(125, docker));
        // A command missing inside a working shim: the shell says so.
        assert!(!shell_missing(
            127,
            b"/run/airlock-in/init.sh: line 40: exec: claude: not found\n"
        ));
        assert!(!shell_missing(127, b"/bin/sh: 1: foo: not found\n"));
        // Another executable the runtime could not find.
        let other = b"Error: runc: exec: \"/bin/bb\": stat /bin/bb: no such file or directory: OCI runtime attempted to invoke a command that was not found\n";
        assert!(!shell_missing(127, other));
    }
}
