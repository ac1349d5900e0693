//! Setup-container login: run an agent's own login inside a throwaway
//! container and capture only the credential file it writes.
//!
//! 1. A fresh private directory is created under the runtime directory
//!    (`<runtime>/logins/<id>/`, a tmpfs by default: never the user's home,
//!    never the image's disk layer), with one subdirectory per agent.
//! 2. The container starts with `--rm`, the terminal attached (`-it` when
//!    airlock has one), that directory bind-mounted at [`MOUNT`], and the
//!    agent pointed at it: `CLAUDE_CONFIG_DIR`, `CODEX_HOME`,
//!    `GEMINI_CLI_HOME`. It runs the agent's login command ([`default_command`],
//!    or `--command`).
//! 3. When it exits, airlock reads **only** the credential file
//!    (`.credentials.json`, `auth.json`, `.gemini/oauth_creds.json` plus
//!    `google_accounts.json`). A missing or 0-byte file, a file older than
//!    the container, or a symlink is an interrupted login: reported with
//!    [`Error::Invalid`] (exit 7), nothing stored.
//! 4. The file goes through the same validation as `airlock auth --from-host`
//!    ([`crate::capture::prepare_host`]): parseable, the expected scopes, not
//!    expired without a refresh token. Then it is stored.
//! 5. The directory is removed on every path out, errors and Ctrl-C included.
//!
//! `claude setup-token` prints its token instead of saving it. With
//! [`LoginMethod::Token`] the token is therefore not read from the terminal
//! transcript (airlock never records the session): after the container
//! exits, airlock asks for it at a hidden prompt and validates it as
//! `airlock auth claude --method token` would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;

use crate::agents::Agent;
use crate::agents::HostEnv;
use crate::capture::{self, Prepared, Source};
use crate::config::Config;
use crate::engine::{self, Engine, EngineKind};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::secret::Secret;
use crate::vault::{Backend, Method};

/// Where the login directory is mounted in the container.
pub const MOUNT: &str = "/run/airlock-login";

/// Default Gemini OAuth callback port, published on 127.0.0.1.
pub const DEFAULT_CALLBACK_PORT: u16 = 38085;

/// File times may be rounded; a file this much older than the container's
/// start still counts as written by it.
const MTIME_SLACK: Duration = Duration::from_secs(2);

/// What kind of login to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// The agent's own login, which writes a credential file.
    Session,
    /// `claude setup-token`: a one-year token, printed, pasted back to airlock.
    Token,
}

/// How to run the login.
#[derive(Debug, Clone)]
pub struct Options {
    /// `claude`, `codex` or `gemini`.
    pub agent: String,
    /// The account to store it as.
    pub account: String,
    /// An image with the agent's CLI.
    pub image: String,
    /// `--engine`; `None` picks as `airlock run` does.
    pub engine: Option<EngineKind>,
    /// Session or setup-token.
    pub method: LoginMethod,
    /// A shell command replacing the agent's login command (`sh -c`).
    pub command: Option<String>,
    /// Gemini's OAuth callback port (published on 127.0.0.1).
    pub callback_port: u16,
    /// Allocate a terminal (`-t`): airlock's stdin is one.
    pub tty: bool,
    /// Where the login directory is created (a tmpfs).
    pub runtime_dir: PathBuf,
}

/// The agent's login command inside the container.
pub fn default_command(agent: &str, method: LoginMethod) -> Result<Vec<&'static str>> {
    Ok(match (agent, method) {
        ("claude", LoginMethod::Session) => vec!["claude", "auth", "login"],
        ("claude", LoginMethod::Token) => vec!["claude", "setup-token"],
        // The device-code flow needs no callback into the container.
        ("codex", LoginMethod::Session) => vec!["codex", "login", "--device-auth"],
        // Interactive Gemini with oauth-personal preselected: it starts the
        // Google login at once (NO_BROWSER prints the URL); /quit when done.
        ("gemini", LoginMethod::Session) => vec!["gemini"],
        (a, LoginMethod::Token) => {
            return Err(Error::Usage(format!(
                "{a} has no setup-token: use `airlock login {a}` (a session)"
            )));
        }
        (a, _) => {
            return Err(Error::Usage(format!(
                "airlock login knows the login commands of claude, codex and gemini, not {a:?}: store its key with `airlock auth {a}`"
            )));
        }
    })
}

/// The credential files a login of `agent` writes, relative to the login
/// directory. The first one is required.
pub fn credential_files(agent: &str) -> &'static [&'static str] {
    match agent {
        "claude" => &["claude/.credentials.json"],
        "codex" => &["codex/auth.json"],
        "gemini" => &[
            "gemini/.gemini/oauth_creds.json",
            "gemini/.gemini/google_accounts.json",
        ],
        _ => &[],
    }
}

/// What a login produced.
#[derive(Debug)]
pub struct Outcome {
    /// The validated record that was stored.
    pub prepared: Prepared,
    /// Whether it replaced a stored credential.
    pub replaced: bool,
    /// The container's exit code.
    pub exit_code: i32,
}

/// A private directory removed on drop.
struct LoginDir {
    path: PathBuf,
}

impl Drop for LoginDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.path.display(), error = %e, "could not remove the login directory");
        }
    }
}

/// Asks for a secret at a hidden prompt (for the setup-token). Tests and
/// programs pass their own.
pub type AskSecret<'a> = &'a dyn Fn(&str) -> Result<Secret>;

/// Runs the login (see the module docs) and stores the result in `vault`.
/// `ask` is called for the setup-token only.
pub fn login(
    opts: &Options,
    config: &Config,
    vault: &dyn Backend,
    ask: AskSecret<'_>,
) -> Result<Outcome> {
    let agent = Agent::resolve(&opts.agent, config)?;
    let name = agent.name().to_owned();
    let default = default_command(&name, opts.method)?;
    let id = crate::vault::CredentialId::new(&name, &opts.account)?;

    let detected = engine::detect(opts.engine, &opts.image)?;
    let engine = detected.engine.as_ref();
    let user = crate::sandbox::launch::container_user(engine, &opts.image, &detected.image, None)?;

    let root = opts.runtime_dir.join("logins");
    fsutil::ensure_private_dir(&opts.runtime_dir)?;
    fsutil::ensure_private_dir(&root)?;
    if crate::sandbox::is_tmpfs(&root) == Some(false) {
        tracing::warn!(
            "{} is not on a tmpfs: the login's files will touch the disk until they are removed; set AIRLOCK_RUNTIME_DIR to a directory on a tmpfs (/dev/shm, $XDG_RUNTIME_DIR)",
            root.display()
        );
    }
    let tag = format!("{}-{}", std::process::id(), nanos());
    let dir = LoginDir {
        path: root.join(&tag),
    };
    fsutil::ensure_private_dir(&dir.path)?;
    for sub in ["claude", "codex", "gemini/.gemini"] {
        std::fs::create_dir_all(dir.path.join(sub))
            .map_err(|e| Error::io("create directory", &dir.path.join(sub), e))?;
    }
    if name == "gemini" {
        let settings = dir.path.join("gemini/.gemini/settings.json");
        std::fs::write(
            &settings,
            br#"{"security":{"auth":{"selectedType":"oauth-personal"}}}"#,
        )
        .map_err(|e| Error::io("write", &settings, e))?;
    }
    let user_flags = give_to_container(engine, &dir.path, user.uid, user.gid)?;

    let container = format!("airlock-login-{tag}");
    let mut argv: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "-i".into(),
        "--name".into(),
        container.clone(),
        "--label".into(),
        "airlock.login=1".into(),
        "--mount".into(),
        format!("type=bind,src={},dst={MOUNT}", dir.path.display()),
        "-e".into(),
        format!("CLAUDE_CONFIG_DIR={MOUNT}/claude"),
        "-e".into(),
        format!("CODEX_HOME={MOUNT}/codex"),
        "-e".into(),
        format!("GEMINI_CLI_HOME={MOUNT}/gemini"),
        "-e".into(),
        "NO_BROWSER=true".into(),
        "-e".into(),
        "GEMINI_CLI_TRUST_WORKSPACE=true".into(),
    ];
    if opts.tty {
        argv.push("-t".into());
    }
    argv.extend(user_flags);
    if name == "gemini" {
        let p = opts.callback_port;
        argv.extend([
            "-p".into(),
            format!("127.0.0.1:{p}:{p}"),
            "-e".into(),
            format!("OAUTH_CALLBACK_PORT={p}"),
            "-e".into(),
            "OAUTH_CALLBACK_HOST=0.0.0.0".into(),
        ]);
    }
    argv.push("--".into());
    argv.push(opts.image.clone());
    match &opts.command {
        Some(c) => argv.extend(["sh".into(), "-c".into(), c.clone()]),
        None => argv.extend(default.iter().map(|s| (*s).to_owned())),
    }
    tracing::debug!(engine = %engine.kind(), ?argv, "login container");

    let started = SystemTime::now();
    let code = run_attached(engine, &argv, &container)?;
    tracing::info!(code, "login container exited");

    let now = Timestamp::now();
    let prepared = if opts.method == LoginMethod::Token {
        let secret = ask(
            "Paste the token `claude setup-token` printed (it starts with sk-ant-oat01-; hidden):",
        )?;
        let req = capture::Request {
            agent: name.clone(),
            account: id.account.clone(),
            method: Some(Method::SetupToken),
            source: Source::Prompt,
            settings: BTreeMap::new(),
            label: None,
        };
        let mut p = capture::prepare(
            &req,
            config,
            capture::Input {
                secret,
                warnings: Vec::new(),
            },
            now,
        )?;
        p.record.meta.source = format!("login:{}", opts.image);
        p
    } else {
        check_written(&name, &dir.path, started, code, &opts.image, &id.account)?;
        let env = HostEnv {
            home: dir.path.clone(),
            vars: [
                ("CLAUDE_CONFIG_DIR", "claude"),
                ("CODEX_HOME", "codex"),
                ("GEMINI_CLI_HOME", "gemini"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), dir.path.join(v).display().to_string()))
            .collect(),
        };
        let req = capture::Request {
            agent: name.clone(),
            account: id.account.clone(),
            method: None,
            source: Source::Host,
            settings: BTreeMap::new(),
            label: None,
        };
        let mut p = capture::prepare_host(&req, config, &env, now)
            .map_err(|e| for_login(e, &dir.path, &name, &id.account, &opts.image))?;
        p.record.meta.source = format!("login:{}", opts.image);
        p
    };
    let replaced = capture::store(vault, prepared.record.clone())?;
    drop(dir);
    Ok(Outcome {
        prepared,
        replaced,
        exit_code: code,
    })
}

/// Makes the directory writable by the container's user; returns extra run
/// flags when that takes them.
fn give_to_container(
    engine: &dyn Engine,
    dir: &Path,
    uid: u32,
    gid: Option<u32>,
) -> Result<Vec<String>> {
    let me = fsutil::euid();
    if uid == me {
        return Ok(Vec::new());
    }
    if me == 0 {
        chown_tree(dir, uid, gid.unwrap_or(uid))?;
        return Ok(Vec::new());
    }
    // An unprivileged airlock: map ourselves onto the container's user
    // (rootless Podman), else run the login as ourselves.
    #[cfg(unix)]
    let my_gid = unsafe { libc::getegid() };
    #[cfg(not(unix))]
    let my_gid = 0;
    if let Some(flags) = engine.map_host_user(uid, gid.unwrap_or(uid)) {
        return Ok(flags);
    }
    Ok(vec!["--user".into(), format!("{me}:{my_gid}")])
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
            .map_err(|e| Error::io("change the owner of", dir, e))?;
        for e in std::fs::read_dir(dir).map_err(|e| Error::io("read", dir, e))? {
            let p = e.map_err(|e| Error::io("read", dir, e))?.path();
            if p.is_dir() && !p.is_symlink() {
                chown_tree(&p, uid, gid)?;
            } else {
                std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
                    .map_err(|e| Error::io("change the owner of", &p, e))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, uid, gid);
    Ok(())
}

/// Runs the engine with the terminal inherited. Signals that reach airlock
/// alone are passed on; airlock itself keeps running so the directory is
/// removed.
fn run_attached(engine: &dyn Engine, argv: &[String], container: &str) -> Result<i32> {
    let mut child = engine
        .command()
        .args(argv)
        .spawn()
        .map_err(|e| Error::Engine(format!("could not start {}: {e}", engine.kind())))?;
    let guard = crate::sandbox::launch::signals::Forward::install(child.id());
    let status = child.wait();
    drop(guard);
    // --rm removes it; a killed engine CLI may have left it behind.
    let _ = engine
        .command()
        .args(["rm", "-f", container])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let status =
        status.map_err(|e| Error::Engine(format!("waiting for {} failed: {e}", engine.kind())))?;
    if let Some(c) = status.code() {
        if c == 125 {
            return Err(Error::Engine(format!(
                "{} could not start the login container (exit 125); see its message above",
                engine.kind()
            )));
        }
        return Ok(c);
    }
    Ok(130)
}

/// The validators speak of host logins (`~/…`, `--from-host`); say what
/// happened in the container and how to retry instead.
fn for_login(e: Error, dir: &Path, agent: &str, account: &str, image: &str) -> Error {
    match e {
        Error::Invalid { problem, .. } | Error::NotFound { what: problem, .. } => {
            let problem = problem
                .replace(&dir.display().to_string(), MOUNT)
                .replace("~/", &format!("{MOUNT}/"));
            Error::invalid(problem, retry_fix(agent, account, image))
        }
        other => other,
    }
}

fn retry_fix(agent: &str, account: &str, image: &str) -> String {
    let acc = if account == crate::vault::DEFAULT_ACCOUNT {
        String::new()
    } else {
        format!(" --account {account}")
    };
    format!(
        "nothing was stored; run `airlock login {agent}{acc} --image {image}` again and finish the login"
    )
}

fn check_written(
    agent: &str,
    dir: &Path,
    started: SystemTime,
    code: i32,
    image: &str,
    account: &str,
) -> Result<()> {
    let retry = retry_fix(agent, account, image);
    for (i, rel) in credential_files(agent).iter().enumerate() {
        let path = dir.join(rel);
        let shown = format!("{MOUNT}/{rel}");
        let md = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) if i > 0 => continue,
            Err(_) => {
                return Err(Error::invalid(
                    format!(
                        "the login ended (container exit {code}) without writing {shown}: it was interrupted or failed"
                    ),
                    retry.clone(),
                ));
            }
        };
        if !md.file_type().is_file() {
            return Err(Error::invalid(
                format!("{shown} is not a regular file (a symlink or a directory)"),
                retry.clone(),
            ));
        }
        if md.len() == 0 {
            return Err(Error::invalid(
                format!(
                    "{shown} is empty (0 bytes; container exit {code}): the login was interrupted"
                ),
                retry.clone(),
            ));
        }
        let mtime = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if mtime + MTIME_SLACK < started {
            return Err(Error::invalid(
                format!("{shown} was not written by this login (it is older than the container)"),
                retry.clone(),
            ));
        }
    }
    Ok(())
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            default_command("claude", LoginMethod::Token).unwrap(),
            ["claude", "setup-token"]
        );
        assert!(default_command("codex", LoginMethod::Token).is_err());
        assert!(default_command("mine", LoginMethod::Session).is_err());
    }

    #[test]
    fn interrupted_logins_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("claude")).unwrap();
        let start = SystemTime::now();
        let e = check_written("claude", d.path(), start, 1, "img", "default").unwrap_err();
        assert!(e.to_string().contains("without writing"), "{e}");
        assert_eq!(e.exit_code(), crate::ExitCode::Invalid);
        std::fs::write(d.path().join("claude/.credentials.json"), "").unwrap();
        let e = check_written("claude", d.path(), start, 0, "img", "work").unwrap_err();
        assert!(e.to_string().contains("0 bytes"), "{e}");
        assert!(e.to_string().contains("--account work"), "{e}");
        std::fs::write(d.path().join("claude/.credentials.json"), "{}").unwrap();
        check_written("claude", d.path(), start, 0, "img", "default").unwrap();
        let later = start + Duration::from_secs(60);
        let e = check_written("claude", d.path(), later, 0, "img", "default").unwrap_err();
        assert!(e.to_string().contains("older"), "{e}");
    }
}
