//! Secret references: a credential kept in a secret manager instead of the
//! vault (see `docs/secret-refs.md`).
//!
//! A reference names where the value is, never the value:
//!
//! | form | read how |
//! |---|---|
//! | `file:PATH` | the file (sops-nix, agenix, Docker secrets), read like `secret_file` |
//! | `env:NAME` | the environment variable of the airlock process |
//! | `cmd:ARGV` | runs the command (split like a shell would, but without one) and takes what it prints on stdout |
//!
//! References live in `config.toml`, per account:
//!
//! ```toml
//! [accounts.claude.work]
//! secret_ref = "cmd:pass show anthropic"
//! method = "token"            # optional: guessed from the value
//! timeout_seconds = 10        # optional: how long the command may take (default 10)
//! cache_seconds = 300         # optional: how long the value is kept in memory (default 300, 0 = never)
//! ```
//!
//! They are resolved when a sandbox starts ([`crate::resolve`]), first in the
//! chain for that account. The value is a [`Secret`] from its first byte:
//! a command's stdout is read into zeroized memory, never logged, never
//! written to disk, and kept in an in-memory cache for `cache_seconds` only.
//! A command's stderr is shown to the user, each line prefixed. A command
//! that outlives its timeout is killed with its whole process group.
//!
//! Failures name the reference, never the value: the source could not be
//! reached (a command that failed, timed out or could not start, an unset
//! variable, a missing file) is [`Error::Backend`] (exit 10); a value that
//! is empty or not a valid credential is [`Error::Invalid`] (exit 7).
//!
//! The last result of each account's reference (ok, or failed and why, and
//! when; never the value) is recorded in `<state dir>/secret-refs.json` for
//! `airlock status`, when the binary has said where ([`record_results_in`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{BufRead as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::agents::Agent;
use crate::agents::validate::{self, Validated, invalid};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::{CredentialId, Method};

/// How long a command may run, unless `timeout_seconds` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a value is kept in memory, unless `cache_seconds` says otherwise.
pub const DEFAULT_CACHE: Duration = Duration::from_secs(300);

/// The most a command may print on stdout (the limit of every credential input).
const MAX_OUTPUT: u64 = validate::MAX_INPUT_BYTES;

/// `[accounts.<agent>.<account>]` in `config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Where the credential is: `file:PATH`, `env:NAME` or `cmd:ARGV`.
    pub secret_ref: Option<String>,
    /// What it holds (`token`, `api-key`, `session`); guessed when absent.
    #[serde(
        default,
        deserialize_with = "de_method",
        skip_serializing_if = "Option::is_none"
    )]
    pub method: Option<Method>,
    /// Seconds a `cmd:` reference may run before it is killed (default 10).
    pub timeout_seconds: Option<u64>,
    /// Seconds the value is kept in memory (default 300; 0 = never).
    pub cache_seconds: Option<u64>,
}

fn de_method<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Method>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<Method>()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(e.to_string()))
}

/// A parsed reference. Its text never holds a secret: [`Reference::parse`]
/// refuses one that looks like it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `file:PATH`.
    File(PathBuf),
    /// `env:NAME`.
    Env(String),
    /// `cmd:ARGV`: the text after `cmd:` and its words.
    Cmd {
        /// The command as written.
        text: String,
        /// Its words (program first).
        argv: Vec<String>,
    },
}

impl Reference {
    /// Parses `file:PATH` (absolute, or `~/…` under `home`), `env:NAME` or
    /// `cmd:ARGV`. A usage error (exit 2) otherwise; the message quotes the
    /// text only when it does not look like a credential.
    pub fn parse(text: &str, home: &Path) -> Result<Reference> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "the secret reference {} {why}; a reference is file:PATH, env:NAME or cmd:COMMAND (see docs/secret-refs.md)",
                shown(text)
            ))
        };
        let text = text.trim();
        if let Some(p) = text.strip_prefix("file:") {
            let path = match p.strip_prefix("~/") {
                Some(rest) => home.join(rest),
                None => PathBuf::from(p),
            };
            if !path.is_absolute() {
                return Err(bad("names a relative path: use an absolute one"));
            }
            if known_token(p) {
                return Err(holds_secret());
            }
            return Ok(Reference::File(path));
        }
        if let Some(n) = text.strip_prefix("env:") {
            let ok = n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(bad("does not name an environment variable"));
            }
            if known_token(n) {
                return Err(holds_secret());
            }
            return Ok(Reference::Env(n.to_owned()));
        }
        if let Some(c) = text.strip_prefix("cmd:") {
            let Some(argv) = shlex::split(c) else {
                return Err(bad("has an unterminated quote"));
            };
            if argv.is_empty() {
                return Err(bad("names no command"));
            }
            if known_token(c) || argv.iter().any(|w| word_is_secret(w)) {
                return Err(holds_secret());
            }
            return Ok(Reference::Cmd {
                text: c.trim().to_owned(),
                argv,
            });
        }
        Err(bad("does not start with file:, env: or cmd:"))
    }

    /// The form's name (`file`, `env`, `cmd`).
    pub fn kind(&self) -> &'static str {
        match self {
            Reference::File(_) => "file",
            Reference::Env(_) => "env",
            Reference::Cmd { .. } => "cmd",
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::File(p) => write!(f, "file:{}", p.display()),
            Reference::Env(n) => write!(f, "env:{n}"),
            Reference::Cmd { text, .. } => write!(f, "cmd:{text}"),
        }
    }
}

/// The refusal of a reference that holds a credential itself.
fn holds_secret() -> Error {
    Error::Usage(
        "the secret reference holds something that looks like a credential itself; it was not stored or printed. A reference names where the secret is (`cmd:pass show anthropic`, `file:/run/secrets/anthropic`), never the secret: a command line is visible to every user of the machine, and a reference is shown by `airlock status`".into(),
    )
}

/// A reference's text for a message: quoted, or a placeholder when it
/// holds something that looks like a credential.
pub fn shown(text: &str) -> String {
    if word_is_secret(text) {
        "(not shown: it holds something that looks like a credential)".to_owned()
    } else {
        format!("{text:?}")
    }
}

/// A word of a command line that holds something looking like a
/// credential, anywhere in it (`sh -c 'printf sk-ant-…'`, `KEY=sk-…`): a
/// known token prefix, or a long piece without a path separator.
fn word_is_secret(w: &str) -> bool {
    w.split(|c: char| c.is_whitespace() || "'\"=;:,()`$|&<>{}[]".contains(c))
        .any(|p| known_token(p) || (crate::secret::looks_like_secret(p) && !p.contains('/')))
}

/// Text holding a known credential's prefix (`sk-`, `AIza`) anywhere —
/// after a slash, a quote, an `=` — followed by at least 20 more token
/// characters (a credential is longer than `op://vault/sk-item`). Long
/// random words alone (a Nix store hash, a sops file name) are not taken
/// for secrets here.
fn known_token(text: &str) -> bool {
    let b = text.as_bytes();
    let token_char = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    ["sk-", "AIza"].iter().any(|prefix| {
        text.match_indices(prefix).any(|(i, _)| {
            let run = b[i..].iter().take_while(|&&c| token_char(c)).count();
            run >= prefix.len() + 20
        })
    })
}

/// One account's reference and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The credential it is for.
    pub id: CredentialId,
    /// Where the value is.
    pub reference: Reference,
    /// What it holds, when configured.
    pub method: Option<Method>,
    /// How long a command may run.
    pub timeout: Duration,
    /// How long the value stays in memory.
    pub cache: Duration,
}

/// The reference configured for `agent:account`, if any.
pub fn configured(config: &Config, id: &CredentialId, home: &Path) -> Result<Option<Spec>> {
    let Some(a) = config
        .accounts
        .get(&id.agent)
        .and_then(|m| m.get(&id.account))
    else {
        return Ok(None);
    };
    let Some(text) = &a.secret_ref else {
        return Ok(None);
    };
    let reference = Reference::parse(text, home).map_err(|e| {
        Error::Usage(format!(
            "[accounts.{}.{}] secret_ref in the config file: {e}",
            id.agent, id.account
        ))
    })?;
    Ok(Some(Spec {
        id: id.clone(),
        reference,
        method: a.method,
        timeout: a
            .timeout_seconds
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
            .max(Duration::from_millis(100)),
        cache: a.cache_seconds.map_or(DEFAULT_CACHE, Duration::from_secs),
    }))
}

/// Every configured reference of `agents`, in order; a malformed one is
/// listed with its parse error.
pub fn all_configured(
    config: &Config,
    agents: &[Agent<'_>],
    home: &Path,
) -> Vec<(CredentialId, String, Result<Spec>)> {
    let mut out = Vec::new();
    for agent in agents {
        let Some(accounts) = config.accounts.get(agent.name()) else {
            continue;
        };
        for (account, a) in accounts {
            let (Some(text), Ok(id)) = (&a.secret_ref, CredentialId::new(agent.name(), account))
            else {
                continue;
            };
            let spec = configured(config, &id, home).and_then(|s| {
                s.ok_or_else(|| Error::Other("internal: the reference disappeared".into()))
            });
            out.push((id, text.clone(), spec));
        }
    }
    out
}

/// Resolves `spec` for `agent`: the value (from the in-memory cache while it
/// is fresh), validated as `airlock auth` validates it. The result, never
/// the value, is recorded for `airlock status`.
pub fn resolve(agent: Agent<'_>, spec: &Spec, now: Timestamp) -> Result<Validated> {
    let r = resolve_uncached_result(agent, spec, now);
    record(spec, &r, now);
    r
}

fn resolve_uncached_result(agent: Agent<'_>, spec: &Spec, now: Timestamp) -> Result<Validated> {
    let key = spec.reference.to_string();
    let secret = match cache_get(&key, spec.cache) {
        Some(s) => {
            tracing::debug!(reference = %spec.reference, "secret reference: from the in-memory cache");
            s
        }
        None => {
            let s = fetch(&spec.reference, spec.timeout)?;
            cache_put(&key, &s, spec.cache);
            s
        }
    };
    check(agent, spec, &secret, now)
}

/// Validates a value obtained through `spec` like `airlock auth` would.
fn check(agent: Agent<'_>, spec: &Spec, secret: &Secret, now: Timestamp) -> Result<Validated> {
    let method = spec
        .method
        .or_else(|| agent.detect(secret.expose()))
        .unwrap_or(Method::ApiKey);
    agent.validate(method, secret, &format!("from {}", spec.reference), now)
}

/// Reads the value behind a reference, trimmed. Empty is an error.
pub fn fetch(reference: &Reference, timeout: Duration) -> Result<Secret> {
    let raw = match reference {
        Reference::File(path) => {
            if let Err(e) = std::fs::symlink_metadata(path) {
                return Err(unreachable_source(
                    reference,
                    format!("the file cannot be found ({e})"),
                    "check the path, and that the secret manager has decrypted it (sops-nix and agenix write it at boot or activation)",
                ));
            }
            let f = validate::read_input_file(
                path,
                "regenerate the secret file (an interrupted tool leaves empty files)",
            )?;
            for w in f.warnings {
                anstream::eprintln!("airlock: warning: {reference}: {w}");
            }
            f.text
        }
        Reference::Env(name) => match std::env::var_os(name) {
            None => {
                return Err(unreachable_source(
                    reference,
                    format!("the environment variable {name} is not set"),
                    format!("export {name} in the shell that runs airlock"),
                ));
            }
            Some(v) => Secret::new(v.into_string().map_err(|_| {
                invalid(
                    &format!("the value of {reference}"),
                    "is not UTF-8 text",
                    "check the variable",
                )
            })?),
        },
        Reference::Cmd { argv, .. } => run(reference, argv, timeout)?,
    };
    let s = raw.trimmed();
    drop(raw);
    if s.is_empty() {
        return Err(invalid(
            &format!("the secret reference {reference}"),
            "gave nothing (an empty value)",
            "check that the secret exists in the secret manager and that the reference names it",
        ));
    }
    Ok(s)
}

fn unreachable_source(reference: &Reference, detail: String, fix: impl Into<String>) -> Error {
    Error::SecretRef {
        reference: reference.to_string(),
        detail,
        fix: fix.into(),
    }
}

/// Runs a `cmd:` reference: no shell, stdin from /dev/null, in its own
/// process group (killed whole at the timeout), stderr shown prefixed,
/// stdout read into zeroized memory.
fn run(reference: &Reference, argv: &[String], timeout: Duration) -> Result<Secret> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    tracing::info!(reference = %reference, timeout_ms = timeout.as_millis() as u64, "secret reference: running the command");
    let mut child = cmd.spawn().map_err(|e| {
        let detail = if e.kind() == std::io::ErrorKind::NotFound {
            format!("{} is not installed (not found on PATH)", argv[0])
        } else {
            format!("{} could not be started ({e})", argv[0])
        };
        unreachable_source(
            reference,
            detail,
            "install the secret manager's command-line tool, or fix the reference",
        )
    })?;
    let pid = child.id();

    let (out_tx, out_rx) = mpsc::channel();
    let mut stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        // room for any usual credential up front: growing the buffer would
        // free copies of the value without wiping them
        let mut buf = Zeroizing::new(Vec::with_capacity(64 * 1024));
        let r = (&mut stdout)
            .take(MAX_OUTPUT + 1)
            .read_to_end(&mut buf)
            .map(|_| buf);
        let _ = out_tx.send(r);
    });
    let stderr = child.stderr.take().expect("piped stderr");
    let prefix = format!("airlock: {reference}: ");
    let (err_tx, err_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(std::result::Result::ok)
        {
            anstream::eprintln!("{prefix}{line}");
        }
        let _ = err_tx.send(());
    });

    let kill_group = |child: &mut std::process::Child| {
        #[cfg(unix)]
        // SAFETY: kill(2) on our child's process group; the leader has not
        // been reaped yet (or a member is alive), so the group id is ours.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    };
    let timed_out = |child: &mut std::process::Child| {
        kill_group(child);
        unreachable_source(
            reference,
            format!(
                "the command did not finish within {} seconds and was stopped (with everything it started)",
                timeout.as_secs_f64()
            ),
            "check that it does not wait for input (a passphrase prompt, a login) or raise timeout_seconds under [accounts.AGENT.ACCOUNT]",
        )
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => {
                kill_group(&mut child);
                return Err(unreachable_source(
                    reference,
                    format!("could not wait for the command ({e})"),
                    "try again",
                ));
            }
        }
        if Instant::now() >= deadline {
            return Err(timed_out(&mut child));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Its stdout closes when it (and anything it left behind holding the
    // pipe) is done; wait for that until the deadline.
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(200));
    let out = match out_rx.recv_timeout(left) {
        Ok(r) => r,
        Err(_) => {
            // something it started still holds stdout: stop the group
            #[cfg(unix)]
            // SAFETY: as above; a live member keeps the group id ours.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
            return Err(unreachable_source(
                reference,
                format!(
                    "the command exited but something it started kept its output open past {} seconds, and was stopped",
                    timeout.as_secs_f64()
                ),
                "make the command print the secret and exit",
            ));
        }
    };
    // the rest of its stderr; something it left running that still holds
    // stderr (a member of its group) is stopped rather than waited for
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(200));
    if err_rx.recv_timeout(left).is_err() {
        #[cfg(unix)]
        // SAFETY: as above; a live member keeps the group id ours.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
    tracing::debug!(
        reference = %reference,
        elapsed_ms = started.elapsed().as_millis() as u64,
        status = %status,
        "secret reference: the command finished"
    );
    if !status.success() {
        let how = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".to_owned(),
        };
        return Err(unreachable_source(
            reference,
            format!(
                "the command {how} (its messages, if any, are above, prefixed with `airlock: {reference}:`)"
            ),
            "run the command yourself to see what it needs (unlocking, logging in), then try again",
        ));
    }
    let mut buf = out.map_err(|e| {
        unreachable_source(
            reference,
            format!("its output could not be read ({e})"),
            "try again",
        )
    })?;
    if buf.len() as u64 > MAX_OUTPUT {
        return Err(invalid(
            &format!("the output of {reference}"),
            format!("is larger than {MAX_OUTPUT} bytes, too large to be a credential"),
            "make the command print only the secret",
        ));
    }
    Secret::from_utf8(std::mem::take(&mut *buf)).map_err(|_| {
        invalid(
            &format!("the output of {reference}"),
            "is not UTF-8 text",
            "make the command print only the secret",
        )
    })
}

/// What `airlock doctor` can say about a reference without resolving it
/// (doctor runs no secret manager and reads no secret): the program is on
/// PATH, the file exists, the variable is set. `Err((problem, fix))`.
pub fn precheck(reference: &Reference) -> std::result::Result<String, (String, String)> {
    match reference {
        Reference::Cmd { argv, .. } => {
            let prog = &argv[0];
            let found = if prog.contains('/') {
                Path::new(prog).is_file()
            } else {
                crate::engine::on_path(prog)
            };
            if found {
                Ok(format!("{prog} is installed (not run by doctor)"))
            } else {
                Err((
                    format!("{prog} is not installed (not found on PATH)"),
                    "install the secret manager's command-line tool, or fix secret_ref".into(),
                ))
            }
        }
        Reference::File(p) => match std::fs::metadata(p) {
            Ok(m) if m.is_file() => Ok("the file exists (not read by doctor)".into()),
            Ok(_) => Err((
                "is not a regular file".into(),
                "point it at the file the secret manager writes".into(),
            )),
            Err(e) => Err((
                format!("the file cannot be found ({e})"),
                "check the path, and that the secret manager has decrypted it".into(),
            )),
        },
        Reference::Env(n) => match std::env::var_os(n) {
            Some(_) => Ok(format!("{n} is set here")),
            None => Err((
                format!("{n} is not set in this shell"),
                format!("export {n} where airlock runs"),
            )),
        },
    }
}

// ------------------------------------------------- `airlock auth --ref`

/// Writes `[accounts.<agent>.<account>] secret_ref = <reference>` (and
/// `method`, when given) into the config file at `path`, keeping everything
/// else in it (comments included). Atomic, under a lock, keeping the file's
/// mode (0600 for a new file). Returns whether a reference was replaced.
///
/// Why the config file and not the vault: a reference is not a secret but
/// an instruction (which file to read, which command to run), so it belongs
/// where the user can read, review and version it (dotfiles, home-manager),
/// next to `secret_file`; resolving it never needs the vault unlocked; and
/// the vault format stays as it is.
pub fn store_in_config(
    path: &Path,
    id: &CredentialId,
    reference: &Reference,
    method: Option<Method>,
) -> Result<bool> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Other(format!("{} has no directory", path.display())))?;
    if std::fs::symlink_metadata(dir).is_err() {
        crate::fsutil::ensure_private_dir(dir)?;
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        // home-manager and NixOS link it from the Nix store: replacing the
        // link would take it away from them
        let mut lines = format!(
            "[accounts.{}.{}]\nsecret_ref = {}\n",
            id.agent,
            id.account,
            toml_edit::value(reference.to_string())
        );
        if let Some(m) = method {
            lines.push_str(&format!("method = \"{}\"\n", m.as_str()));
        }
        return Err(Error::Usage(format!(
            "{} is a symbolic link (managed by home-manager, NixOS or your dotfiles?), so airlock does not rewrite it; add these lines where it is managed:\n{lines}",
            path.display()
        )));
    }
    let by_hand = format!(
        "add the reference by hand under [accounts.{}.{}]",
        id.agent, id.account
    );
    let (edit, mut doc) = ConfigEdit::open(path, dir, by_hand)?;
    let unusable = |why: String| edit.unusable(&why);
    let accounts = doc
        .entry("accounts")
        .or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| unusable("has an `accounts` key that is not a table".into()))?;
    let agent = accounts
        .entry(&id.agent)
        .or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| {
            unusable(format!(
                "has an `accounts.{}` that is not a table",
                id.agent
            ))
        })?;
    let account = agent
        .entry(&id.account)
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_mut()
        .ok_or_else(|| {
            unusable(format!(
                "has an `accounts.{}.{}` that is not a table",
                id.agent, id.account
            ))
        })?;
    let replaced = account.contains_key("secret_ref");
    account["secret_ref"] = toml_edit::value(reference.to_string());
    if let Some(m) = method {
        account["method"] = toml_edit::value(m.as_str());
    }
    edit.save(&doc)?;
    Ok(replaced)
}

/// An edit of the config file: made under its lock, refused (a usage error
/// saying to do it by hand) when the file is not valid, written atomically
/// keeping the file's mode.
struct ConfigEdit<'a> {
    path: &'a Path,
    by_hand: String,
    mode: u32,
    _lock: crate::fsutil::FileLock,
}

impl<'a> ConfigEdit<'a> {
    /// Locks the config file at `path` (in `dir`) and reads it.
    fn open(
        path: &'a Path,
        dir: &Path,
        by_hand: String,
    ) -> Result<(ConfigEdit<'a>, toml_edit::DocumentMut)> {
        let lock = crate::fsutil::FileLock::exclusive(&dir.join(".config.toml.lock"))?;
        let (text, mode) = read_config(path)?;
        let edit = ConfigEdit {
            path,
            by_hand,
            mode,
            _lock: lock,
        };
        Config::parse(&text).map_err(|e| edit.unusable(&format!("is invalid ({e})")))?;
        let doc = text
            .parse()
            .map_err(|_| edit.unusable("could not be read as TOML"))?;
        Ok((edit, doc))
    }

    /// The file cannot be edited: `why`.
    fn unusable(&self, why: &str) -> Error {
        Error::Usage(format!(
            "the configuration file {} {why}; fix it first, or {} (docs/secret-refs.md)",
            self.path.display(),
            self.by_hand
        ))
    }

    /// Writes `doc` (checked to still be a valid config).
    fn save(self, doc: &toml_edit::DocumentMut) -> Result<()> {
        let out = doc.to_string();
        Config::parse(&out).map_err(|e| {
            Error::Other(format!("internal: the edited config does not parse: {e}"))
        })?;
        crate::fsutil::write_atomic(self.path, out.as_bytes(), self.mode)
    }
}

/// The config file's text and mode (empty and 0600 when it does not exist).
fn read_config(path: &Path) -> Result<(String, u32)> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            #[cfg(unix)]
            let mode = {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::metadata(path)
                    .map(|m| m.permissions().mode() & 0o777)
                    .unwrap_or(0o600)
            };
            #[cfg(not(unix))]
            let mode = 0o600;
            Ok((t, mode))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((String::new(), 0o600)),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// The settings of a reference under `[accounts.<agent>.<account>]`
/// (every key [`AccountConfig`] knows).
const REFERENCE_KEYS: [&str; 4] = ["secret_ref", "method", "timeout_seconds", "cache_seconds"];

/// Removes the reference of `id` from the config file at `path`
/// (`airlock remove`): its `secret_ref` and settings, and the
/// `[accounts.<agent>.<account>]` table with them (then `accounts.<agent>`
/// and `accounts` when they are left empty); everything else in the file,
/// comments included, stays as it was. Atomic, under the same lock as
/// [`store_in_config`], keeping the file's mode. Returns whether there was
/// a reference; a symbolic link is not rewritten (a usage error saying
/// which lines to delete where the file is managed).
pub fn remove_from_config(path: &Path, id: &CredentialId) -> Result<bool> {
    let Some(dir) = path.parent() else {
        return Ok(false);
    };
    if std::fs::symlink_metadata(dir).is_err() || std::fs::symlink_metadata(path).is_err() {
        return Ok(false);
    }
    let by_hand = format!(
        "delete secret_ref under [accounts.{}.{}] by hand",
        id.agent, id.account
    );
    let (edit, mut doc) = ConfigEdit::open(path, dir, by_hand)?;
    let unusable = |why: String| edit.unusable(&why);
    let has_ref = doc
        .get("accounts")
        .and_then(|a| a.get(&id.agent))
        .and_then(|a| a.get(&id.account))
        .and_then(|a| a.get("secret_ref"))
        .is_some();
    if !has_ref {
        return Ok(false);
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::Usage(format!(
            "{} is a symbolic link (managed by home-manager, NixOS or your dotfiles?), so airlock does not rewrite it; delete the [accounts.{}.{}] section (secret_ref and its settings) where it is managed",
            path.display(),
            id.agent,
            id.account
        )));
    }
    let accounts = doc
        .get_mut("accounts")
        .and_then(|a| a.as_table_like_mut())
        .ok_or_else(|| unusable("has an `accounts` key that is not a table".into()))?;
    let agent = accounts
        .get_mut(&id.agent)
        .and_then(|a| a.as_table_like_mut())
        .ok_or_else(|| {
            unusable(format!(
                "has an `accounts.{}` that is not a table",
                id.agent
            ))
        })?;
    let account = agent
        .get_mut(&id.account)
        .and_then(|a| a.as_table_like_mut())
        .ok_or_else(|| {
            unusable(format!(
                "has an `accounts.{}.{}` that is not a table",
                id.agent, id.account
            ))
        })?;
    for k in REFERENCE_KEYS {
        account.remove(k);
    }
    let mut carried = None;
    if account.is_empty() {
        if let Some(t) = agent.get(&id.account).and_then(|i| i.as_table()) {
            // the comments above the table's header belong to what follows
            let prefix = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
            if prefix.contains('#') {
                carried = Some((t.position(), prefix.to_owned()));
            }
        }
        agent.remove(&id.account);
    }
    if agent.is_empty() {
        accounts.remove(&id.agent);
    }
    if accounts.is_empty() {
        doc.remove("accounts");
    }
    if let Some((Some(pos), prefix)) = carried {
        carry_comments(&mut doc, pos, &prefix);
    }
    edit.save(&doc)?;
    Ok(true)
}

/// Puts `prefix` (the comments above a removed table's header) above the
/// next table in the file, or at its end when none follows.
fn carry_comments(doc: &mut toml_edit::DocumentMut, removed: isize, prefix: &str) {
    fn next(t: &toml_edit::Table, after: isize, best: &mut Option<isize>) {
        for (_, item) in t.iter() {
            let subs: Vec<&toml_edit::Table> = match item {
                toml_edit::Item::Table(s) => vec![s],
                toml_edit::Item::ArrayOfTables(a) => a.iter().collect(),
                _ => continue,
            };
            for s in subs {
                if let Some(p) = s.position().filter(|p| *p > after && !s.is_implicit())
                    && best.is_none_or(|b| p < b)
                {
                    *best = Some(p);
                }
                next(s, after, best);
            }
        }
    }
    fn put(t: &mut toml_edit::Table, at: isize, prefix: &str) -> bool {
        for (_, item) in t.iter_mut() {
            let subs: Vec<&mut toml_edit::Table> = match item {
                toml_edit::Item::Table(s) => vec![s],
                toml_edit::Item::ArrayOfTables(a) => a.iter_mut().collect(),
                _ => continue,
            };
            for s in subs {
                if s.position() == Some(at) && !s.is_implicit() {
                    let own = s.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
                    let joined = format!("{prefix}{own}");
                    s.decor_mut().set_prefix(joined);
                    return true;
                }
                if put(s, at, prefix) {
                    return true;
                }
            }
        }
        false
    }
    let mut best = None;
    next(doc.as_table(), removed, &mut best);
    let placed = best.is_some_and(|at| put(doc.as_table_mut(), at, prefix));
    if !placed {
        let trailing = doc.trailing().as_str().unwrap_or("").to_owned();
        doc.set_trailing(format!("{trailing}{prefix}"));
    }
}

/// A configured reference as `airlock accounts` lists it: its scheme and
/// its text when it parses (a reference that parses never holds a
/// credential), else a safe form of the text and why it is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// The agent.
    pub agent: String,
    /// The account.
    pub account: String,
    /// `file`, `env`, `cmd`, or `invalid`.
    pub scheme: &'static str,
    /// The reference as written (`~` expanded), or [`shown`]'s form of a
    /// malformed one.
    pub reference: String,
    /// The configured method, if any.
    pub method: Option<Method>,
    /// Why the reference is unusable, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Every reference in `config`, sorted by agent and account; only `agent`'s
/// when given.
pub fn list(config: &Config, agent: Option<&str>, home: &Path) -> Vec<Listed> {
    let mut out = Vec::new();
    for (name, accounts) in &config.accounts {
        if agent.is_some_and(|a| a != name) {
            continue;
        }
        for (account, a) in accounts {
            let Some(text) = &a.secret_ref else {
                continue;
            };
            let (scheme, reference, problem) = match Reference::parse(text, home) {
                Ok(r) => (r.kind(), r.to_string(), None),
                Err(e) => ("invalid", shown(text), Some(e.to_string())),
            };
            out.push(Listed {
                agent: name.clone(),
                account: account.clone(),
                scheme,
                reference,
                method: a.method,
                problem,
            });
        }
    }
    out.sort_by(|a, b| (&a.agent, &a.account).cmp(&(&b.agent, &b.account)));
    out
}

// ---------------------------------------------------------------- cache

struct Cached {
    at: Instant,
    value: Secret,
}

fn cache() -> &'static Mutex<HashMap<String, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Cached>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn cache_get(key: &str, ttl: Duration) -> Option<Secret> {
    let mut c = cache().lock().ok()?;
    match c.get(key) {
        Some(e) if e.at.elapsed() < ttl => Some(e.value.clone()),
        Some(_) => {
            c.remove(key);
            None
        }
        None => None,
    }
}

fn cache_put(key: &str, value: &Secret, ttl: Duration) {
    if ttl.is_zero() {
        return;
    }
    if let Ok(mut c) = cache().lock() {
        c.insert(
            key.to_owned(),
            Cached {
                at: Instant::now(),
                value: value.clone(),
            },
        );
    }
}

/// Forgets every cached value (the memory is zeroized).
pub fn clear_cache() {
    if let Ok(mut c) = cache().lock() {
        c.clear();
    }
}

// ---------------------------------------------------------- last result

/// The file, under the state directory, holding each reference's last result.
pub const STATE_FILE: &str = "secret-refs.json";

static STATE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Where to record results (`<state dir>`); set once by the binary. Without
/// it nothing is recorded (library users, unit tests).
pub fn record_results_in(state_dir: PathBuf) {
    let _ = STATE_DIR.set(state_dir);
}

/// The last result of one account's reference. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    /// The reference, as configured.
    pub reference: String,
    /// `ok` or `failed`.
    pub result: String,
    /// Why it failed (the error message, which never holds the value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When.
    pub at: Timestamp,
    /// The method of the value it gave (ok only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// When that value expires, when known (ok only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

fn record(spec: &Spec, r: &Result<Validated>, now: Timestamp) {
    let Some(dir) = STATE_DIR.get() else {
        return;
    };
    let last = LastResult {
        reference: spec.reference.to_string(),
        result: if r.is_ok() { "ok" } else { "failed" }.to_owned(),
        reason: r.as_ref().err().map(ToString::to_string),
        at: now,
        method: r.as_ref().ok().map(|v| v.method),
        expires_at: r.as_ref().ok().and_then(|v| v.expires_at),
    };
    if let Err(e) = write_last(dir, &spec.id.to_string(), last) {
        tracing::debug!(error = %e, "could not record the secret reference's result");
    }
}

fn write_last(dir: &Path, id: &str, last: LastResult) -> Result<()> {
    crate::fsutil::ensure_private_dir(dir)?;
    let path = dir.join(STATE_FILE);
    let _lock = crate::fsutil::FileLock::exclusive(&dir.join("secret-refs.lock"))?;
    let mut all = read_last_results(dir);
    all.insert(id.to_owned(), last);
    let text = serde_json::to_vec_pretty(&all).map_err(|e| Error::Other(e.to_string()))?;
    crate::fsutil::write_atomic(&path, &text, 0o600)
}

/// Every recorded last result, by `agent:account`; unreadable state reads
/// as none.
pub fn read_last_results(state_dir: &Path) -> BTreeMap<String, LastResult> {
    std::fs::read(state_dir.join(STATE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> PathBuf {
        PathBuf::from("/home/u")
    }

    #[test]
    fn forms_parse() {
        assert_eq!(
            Reference::parse("file:/run/secrets/claude", &home()).unwrap(),
            Reference::File("/run/secrets/claude".into())
        );
        assert_eq!(
            Reference::parse("file:~/.secrets/c", &home()).unwrap(),
            Reference::File("/home/u/.secrets/c".into())
        );
        assert_eq!(
            Reference::parse("env:ANTHROPIC_KEY", &home()).unwrap(),
            Reference::Env("ANTHROPIC_KEY".into())
        );
        let r = Reference::parse(
            "cmd:sops -d --extract '[\"anthropic\"]' /etc/s.yaml",
            &home(),
        )
        .unwrap();
        let Reference::Cmd { argv, .. } = &r else {
            panic!("{r:?}")
        };
        assert_eq!(
            argv,
            &["sops", "-d", "--extract", "[\"anthropic\"]", "/etc/s.yaml"]
        );
        assert_eq!(
            r.to_string(),
            "cmd:sops -d --extract '[\"anthropic\"]' /etc/s.yaml"
        );
    }

    #[test]
    fn bad_references_are_usage_errors_that_do_not_quote_secrets() {
        for bad in [
            "file:relative",
            "env:1BAD",
            "env:",
            "cmd:",
            "cmd:pass 'open",
            "pass show x",
        ] {
            let e = Reference::parse(bad, &home()).unwrap_err();
            assert_eq!(e.exit_code().code(), 2, "{bad}: {e}");
        }
        let key = "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for bad in [
            format!("cmd:sh -c 'printf {key}"),
            format!("cmd:echo {key}"),
            format!("cmd:env KEY={key} true"),
            format!("cmd:sh -c 'printf {key}'"),
            key.to_owned(),
        ] {
            let e = Reference::parse(&bad, &home()).unwrap_err();
            assert!(!e.to_string().contains("AAAAAAAA"), "{e}");
        }
        // a path or an op:// URL is not a secret
        Reference::parse(
            "cmd:op read op://Private/Anthropic/credential-with-a-rather-long-name-indeed",
            &home(),
        )
        .unwrap();
    }

    #[test]
    fn commands_print_trimmed_values_and_failures_name_the_reference() {
        let r = Reference::parse("cmd:printf '  some-value\\n'", &home()).unwrap();
        let s = fetch(&r, DEFAULT_TIMEOUT).unwrap();
        assert_eq!(s.expose(), "some-value");
        let r = Reference::parse("cmd:sh -c 'exit 3'", &home()).unwrap();
        let e = fetch(&r, DEFAULT_TIMEOUT).unwrap_err();
        assert_eq!(e.exit_code().code(), 10);
        assert!(e.to_string().contains("status 3"), "{e}");
        assert!(e.to_string().contains("cmd:sh -c 'exit 3'"), "{e}");
        let r = Reference::parse("cmd:true", &home()).unwrap();
        assert_eq!(
            fetch(&r, DEFAULT_TIMEOUT).unwrap_err().exit_code().code(),
            7
        );
        let r = Reference::parse("cmd:airlock-no-such-tool x", &home()).unwrap();
        let e = fetch(&r, DEFAULT_TIMEOUT).unwrap_err();
        assert!(e.to_string().contains("not installed"), "{e}");
    }

    #[test]
    fn a_hanging_command_is_stopped_at_the_timeout() {
        let r = Reference::parse("cmd:sh -c 'sleep 30; echo x'", &home()).unwrap();
        let t = Instant::now();
        let e = fetch(&r, Duration::from_millis(300)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(e.exit_code().code(), 10);
        assert!(e.to_string().contains("did not finish"), "{e}");
    }

    #[test]
    fn auth_ref_edits_the_config_keeping_the_rest() {
        let dir = std::env::temp_dir().join(format!("airlock-ref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, "# mine\n[status]\nexpiring_days = 7 # a week\n").unwrap();
        let id = CredentialId::new("claude", "work").unwrap();
        let r = Reference::parse("cmd:pass show 'anthropic key'", &home()).unwrap();
        assert!(!store_in_config(&path, &id, &r, Some(Method::SetupToken)).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# a week"), "{text}");
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.status.expiring_days, 7);
        let spec = configured(&c, &id, &home()).unwrap().unwrap();
        assert_eq!(spec.reference, r);
        assert_eq!(spec.method, Some(Method::SetupToken));
        assert_eq!(spec.timeout, DEFAULT_TIMEOUT);
        let r2 = Reference::parse("env:ANTHROPIC", &home()).unwrap();
        assert!(store_in_config(&path, &id, &r2, None).unwrap());
        let c = Config::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(configured(&c, &id, &home()).unwrap().unwrap().reference, r2);
        // a linked config (home-manager) is not replaced: the lines to add
        std::fs::rename(&path, dir.join("real.toml")).unwrap();
        std::os::unix::fs::symlink(dir.join("real.toml"), &path).unwrap();
        let e = store_in_config(&path, &id, &r, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("secret_ref = \"cmd:pass show 'anthropic key'\""),
            "{e}"
        );
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn remove_takes_the_reference_out_and_keeps_the_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let id = CredentialId::new("claude", "work").unwrap();
        assert!(!remove_from_config(&path, &id).unwrap(), "no file");
        std::fs::write(
            &path,
            "[status]\nexpiring_days = 7 # a week\n\n# my key, from pass\n[accounts.claude.work]\nsecret_ref = \"cmd:pass show a\"\ncache_seconds = 0\n",
        )
        .unwrap();
        let other = CredentialId::new("claude", "default").unwrap();
        assert!(!remove_from_config(&path, &other).unwrap(), "not that one");
        assert!(remove_from_config(&path, &id).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "[status]\nexpiring_days = 7 # a week\n\n# my key, from pass\n"
        );
        assert!(!remove_from_config(&path, &id).unwrap(), "gone");
    }

    #[test]
    fn a_leftover_holding_stderr_is_stopped_not_waited_for() {
        let r = Reference::parse("cmd:sh -c 'echo v; sleep 30 >/dev/null &'", &home()).unwrap();
        let t = Instant::now();
        let s = fetch(&r, Duration::from_secs(1)).unwrap();
        assert_eq!(s.expose(), "v");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    #[test]
    fn the_cache_expires() {
        let k = "test-key-cache";
        cache_put(k, &Secret::from("v"), Duration::from_secs(60));
        assert_eq!(cache_get(k, Duration::from_secs(60)).unwrap().expose(), "v");
        assert!(cache_get(k, Duration::ZERO).is_none());
        assert!(cache_get(k, Duration::from_secs(60)).is_none());
        cache_put(k, &Secret::from("v"), Duration::ZERO);
        assert!(cache_get(k, Duration::from_secs(60)).is_none());
    }

    #[test]
    fn a_reference_holding_a_credential_anywhere_is_refused() {
        let home = Path::new("/home/u");
        let tok = "sk-ant-oat01-abcdefghijklmnopqrstuvwxyz012345";
        for bad in [
            format!("file:/run/{tok}/x"),
            format!("env:X{}", "AIzaSyA0123456789abcdefghijklmnopq"),
            format!("cmd:printf %s ''{tok}"),
            format!("cmd:sh -c 'KEY={tok} true'"),
        ] {
            let e = Reference::parse(&bad, home).unwrap_err().to_string();
            assert!(e.contains("looks like a credential itself"), "{bad}: {e}");
            assert!(!e.contains(tok), "{e}");
        }
        for good in [
            "cmd:op read op://vault/sk-item/key",
            "file:/nix/store/0n8v7m1x2k9q3a4s5d6f7g8h9j0k1l2m-sk-config/secret",
            "env:ANTHROPIC_API_KEY",
            "cmd:pass show anthropic",
        ] {
            assert!(Reference::parse(good, home).is_ok(), "{good}");
        }
    }
}
