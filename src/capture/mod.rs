//! Capturing credentials: from flags (`--stdin`, `--from-file`, `--from-env`,
//! `--from-host`) or the interactive wizard ([`wizard`]), through each
//! agent's validation, into a [`Record`].
//!
//! Nothing is stored until the input has passed validation: callers
//! [`prepare`] a record first and only then open the vault.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use jiff::Timestamp;

use crate::agents::validate::{self, Validated, invalid};
use crate::agents::{Agent, HostEnv, SecretFile, claude, method_list};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::{Backend, CredentialId, Method, Record};

pub mod wizard;

/// Where a secret comes from. Never an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Standard input, read to the end.
    Stdin,
    /// A file (for sops/agenix secret paths, or `<(…)`).
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// The host's existing login.
    Host,
    /// Typed (hidden) into the wizard.
    Prompt,
    /// What a command printed (`--from-command`), run once without a shell
    /// ([`crate::secretref`]).
    Command(String),
}

impl Source {
    /// Names the source in messages (`stdin`, `file /x`, `$NAME`).
    pub fn origin(&self) -> String {
        match self {
            Source::Stdin => "from stdin".into(),
            Source::File(p) => format!("from {}", p.display()),
            Source::Env(n) => format!("from ${n}"),
            Source::Host => "from the host login".into(),
            Source::Prompt => "as typed".into(),
            Source::Command(c) => format!("from `{c}`"),
        }
    }

    /// The value recorded in [`Metadata::source`](crate::vault::Metadata::source).
    pub fn record(&self) -> String {
        match self {
            Source::Stdin => "stdin".into(),
            Source::File(p) => format!("file:{}", p.display()),
            Source::Env(n) => format!("env:{n}"),
            Source::Host => "host".into(),
            Source::Prompt => "prompt".into(),
            Source::Command(c) => format!("cmd:{c}"),
        }
    }
}

/// The secret read from a source, with warnings about the input.
#[derive(Debug)]
pub struct Input {
    /// The value, untrimmed.
    pub secret: Secret,
    /// Warnings (permissions, symlinks).
    pub warnings: Vec<String>,
}

/// Refuses a `--from-file`/`--from-env` argument that is a secret itself
/// (a token pasted where a path or a name belongs), without echoing it.
pub fn check_source_argument(source: &Source) -> Result<()> {
    let (flag, arg) = match source {
        Source::File(p) => ("--from-file", p.to_string_lossy().into_owned()),
        Source::Env(n) => ("--from-env", n.clone()),
        _ => return Ok(()),
    };
    let looks_secret = validate::foreign_token(&arg).is_some()
        && !arg.contains('/')
        && std::fs::symlink_metadata(&arg).is_err();
    let bad_env_name = matches!(source, Source::Env(_))
        && !(arg.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if looks_secret || bad_env_name {
        return Err(Error::Usage(format!(
            "{flag} takes {}, but what was given {}; it was not stored or printed. A secret never goes on the command line: pipe it to --stdin, or put it in a file or an environment variable (and check your shell history)",
            if flag == "--from-file" {
                "a path"
            } else {
                "the name of an environment variable"
            },
            if looks_secret {
                "looks like a secret itself"
            } else {
                "is not a variable name"
            },
        )));
    }
    Ok(())
}

/// Reads stdin, a file or an environment variable (not `Host`/`Prompt`).
pub fn read_source(source: &Source) -> Result<Input> {
    check_source_argument(source)?;
    match source {
        Source::Stdin => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(Error::Usage(
                    "--stdin was given but stdin is a terminal: pipe the secret in (for example `printenv TOKEN | airlock auth …`), or leave out --stdin to be prompted".into(),
                ));
            }
            let secret = read_stdin(stdin.lock())?;
            Ok(Input {
                secret,
                warnings: Vec::new(),
            })
        }
        Source::File(p) => {
            let f = validate::read_input_stream(p, "check that the file holds the credential")?;
            Ok(Input {
                secret: f.text,
                warnings: f.warnings,
            })
        }
        Source::Env(name) => Ok(Input {
            secret: read_env(name, std::env::var_os(name))?,
            warnings: Vec::new(),
        }),
        Source::Command(c) => {
            let r =
                crate::secretref::Reference::parse(&format!("cmd:{c}"), std::path::Path::new("/"))?;
            Ok(Input {
                secret: crate::secretref::fetch(&r, crate::secretref::DEFAULT_TIMEOUT)?,
                warnings: Vec::new(),
            })
        }
        Source::Host | Source::Prompt => Err(Error::Other(
            "internal: read_source called for a host login or a prompt".into(),
        )),
    }
}

/// Reads a secret from `r` (stdin).
pub fn read_stdin(r: impl Read) -> Result<Secret> {
    validate::read_limited(
        r,
        "the input on stdin",
        "pipe the secret in, for example `printenv TOKEN | airlock auth …`",
    )
}

/// Checks an environment variable's value for `--from-env NAME`.
pub fn read_env(name: &str, value: Option<std::ffi::OsString>) -> Result<Secret> {
    let what = format!("the environment variable {name}");
    let Some(v) = value else {
        return Err(invalid(
            &what,
            "is not set",
            format!("export {name} first, or use --stdin or --from-file"),
        ));
    };
    let v = v
        .into_string()
        .map_err(|_| invalid(&what, "is not UTF-8 text", "check its value"))?;
    if v.trim().is_empty() {
        return Err(invalid(
            &what,
            "is empty",
            format!("set {name} to the secret"),
        ));
    }
    Ok(Secret::new(v))
}

/// What to capture.
#[derive(Debug, Clone)]
pub struct Request {
    /// Agent name (built-in or custom).
    pub agent: String,
    /// Account name.
    pub account: String,
    /// The method, or `None` to detect it from the value.
    pub method: Option<Method>,
    /// Where the secret comes from.
    pub source: Source,
    /// Non-secret settings (Gemini Vertex AI project and location).
    pub settings: BTreeMap<String, String>,
    /// A label for the record.
    pub label: Option<String>,
}

/// A validated record, not yet stored.
#[derive(Debug)]
pub struct Prepared {
    /// The record to store.
    pub record: Record,
    /// Whether a refresh token is present (sessions).
    pub refreshable: bool,
    /// Display facts.
    pub detail: Option<String>,
    /// What a sandbox will receive.
    pub delivery: String,
    /// Warnings to show the user.
    pub warnings: Vec<String>,
}

/// Validates `input` for the request and builds the record. Nothing is
/// stored. A session whose access token has lapsed with no refresh token is
/// refused: a sandbox could not use it.
pub fn prepare(req: &Request, config: &Config, input: Input, now: Timestamp) -> Result<Prepared> {
    let agent = Agent::resolve(&req.agent, config)?;
    let id = CredentialId::new(agent.name(), &req.account)?;
    let origin = req.source.origin();
    let method = match req.method {
        Some(m) => m,
        None => agent.detect(input.secret.expose()).ok_or_else(|| {
            invalid(
                &format!("the {} credential ({origin})", agent.name()),
                "is of a kind airlock cannot recognise",
                format!(
                    "pass --method {} to say what it is",
                    method_list(agent.methods())
                ),
            )
        })?,
    };
    let v = agent.validate(method, &input.secret, &origin, now)?;
    let mut warnings = input.warnings;
    finish(agent, id, v, req, now, &mut warnings).map(|(record, refreshable, detail, delivery)| {
        Prepared {
            record,
            refreshable,
            detail,
            delivery,
            warnings,
        }
    })
}

/// Builds the record for the host's login (`--from-host`).
pub fn prepare_host(
    req: &Request,
    config: &Config,
    env: &HostEnv,
    now: Timestamp,
) -> Result<Prepared> {
    let agent = Agent::resolve(&req.agent, config)?;
    let id = CredentialId::new(agent.name(), &req.account)?;
    if let Agent::Custom(n, _) = agent {
        return Err(Error::Usage(format!(
            "{n} is a custom agent: airlock cannot read a host login for it; use --stdin, --from-file or --from-env"
        )));
    }
    let Some(host) = agent.find_host_login(env)? else {
        let paths: Vec<String> = agent
            .host_paths(env)
            .iter()
            .map(|p| validate::tilde(p, &env.home))
            .collect();
        return Err(Error::NotFound {
            what: format!(
                "a {} login on this machine (looked for {})",
                agent.title(),
                paths.join(", ")
            ),
            fix: format!(
                "{}, then run `airlock auth {} --from-host` again",
                agent.host_login_hint(),
                agent.name()
            ),
        });
    };
    if let Some(m) = req.method
        && m != host.record.method
    {
        return Err(Error::Usage(format!(
            "the {} login on this machine ({}) is a {}, not a {m}: leave out --method, or use --stdin/--from-file for a {m}",
            agent.name(),
            host.location,
            host.record.method
        )));
    }
    let v = Validated {
        method: host.record.method,
        payload: host.record.secret,
        expires_at: host.record.meta.expires_at,
        refreshable: host.refreshable,
        settings: BTreeMap::new(),
        detail: host.detail,
        warnings: Vec::new(),
    };
    let mut warnings = host.warnings;
    let mut req = req.clone();
    req.source = Source::Host;
    let (mut record, refreshable, detail, delivery) =
        finish(agent, id, v, &req, now, &mut warnings)?;
    record.meta.source = format!("host:{}", host.location);
    if record.method == Method::Session {
        // one token family with the host's file: link it (issue 10)
        record.meta.host_link = crate::sync::link::host_path(&record.meta.source, &env.home)
            .map(|p| p.display().to_string());
        if let Ok(kind) = crate::sync::credential::AgentKind::from_name(&record.id.agent) {
            record.meta.host_account =
                crate::sync::link::host_account(kind, record.secret.expose().as_bytes(), env);
        }
    }
    Ok(Prepared {
        record,
        refreshable,
        detail,
        delivery,
        warnings,
    })
}

fn finish(
    agent: Agent<'_>,
    id: CredentialId,
    mut v: Validated,
    req: &Request,
    now: Timestamp,
    warnings: &mut Vec<String>,
) -> Result<(Record, bool, Option<String>, String)> {
    if v.method == Method::Session && !v.refreshable && v.expires_at.is_some_and(|t| t <= now) {
        return Err(invalid(
            &format!("the {} login ({})", agent.name(), req.source.origin()),
            "has an access token that has expired, and no refresh token to renew it",
            agent.renewal(Method::Session, &id.account),
        ));
    }
    if !req.settings.is_empty() {
        if !(agent == Agent::Gemini && v.method == Method::ApiKey) {
            return Err(Error::Usage(
                "--project and --location (Vertex AI) only apply to `airlock auth gemini --method api-key`".into(),
            ));
        }
        v.settings.extend(req.settings.clone());
    }
    warnings.append(&mut v.warnings);
    let (refreshable, detail) = (v.refreshable, v.detail.take());
    let mut record = v.into_record(id, req.source.record(), now);
    record.meta.label = req.label.clone();
    let delivery = agent
        .delivery(&record)
        .unwrap_or_else(|why| format!("nothing: {why}"));
    Ok((record, refreshable, detail, delivery))
}

/// Reads and validates a configured secret file as `airlock auth
/// --from-file` does (same validators, same errors), for status, doctor and
/// resolution, except that it must be a regular file: it is read on every
/// use, so a FIFO or a device is refused without blocking
/// ([`validate::read_input_file`]). The method is the configured one, else
/// detected from the value, else an API key. A setup-token's expiry is
/// counted from the file's modification time, as the file is not renewed by
/// airlock. Returns the validated value (warnings about the file included)
/// and the file's modification time, when it could be read.
pub fn read_secret_file(
    agent: Agent<'_>,
    file: &SecretFile,
    location: &str,
    now: Timestamp,
) -> (Result<Validated>, Option<Timestamp>) {
    let fix = "regenerate the secret file (an interrupted tool leaves empty files)";
    let mut modified = None;
    let read = validate::read_input_file(&file.path, fix).and_then(|f| {
        modified = f.modified;
        let method = secret_file_method(agent, file.method, f.text.expose());
        let mut v = agent.validate(method, &f.text, &format!("from {location}"), now)?;
        if v.method == Method::SetupToken
            && let Some(m) = f.modified
        {
            v.expires_at = m.checked_add(claude::capture::SETUP_TOKEN_LIFETIME).ok();
        }
        v.prepend_warnings(f.warnings);
        Ok(v)
    });
    (read, modified)
}

/// The method of a secret file: configured, else detected, else an API key.
fn secret_file_method(agent: Agent<'_>, configured: Option<Method>, text: &str) -> Method {
    configured
        .or_else(|| agent.detect(text))
        .unwrap_or(Method::ApiKey)
}

/// Reads and validates the secret file configured for `agent` (see
/// [`read_secret_file`]), for `status`; `None` when none is configured.
pub fn configured_file(
    agent: Agent<'_>,
    config: &Config,
    home: &std::path::Path,
    now: Timestamp,
) -> Option<crate::status::FileSource> {
    let file = agent.secret_file(config)?;
    let location = validate::tilde(&file.path, home);
    let (read, modified) = read_secret_file(agent, &file, &location, now);
    Some(crate::status::FileSource {
        location,
        account: file
            .account
            .unwrap_or_else(|| crate::vault::DEFAULT_ACCOUNT.to_owned()),
        read,
        modified,
    })
}

/// Stores a prepared record; returns whether it replaced one.
pub fn store(vault: &dyn Backend, record: Record) -> Result<bool> {
    let mut replaced = false;
    let id = record.id.clone();
    let mut slot = Some(record);
    vault.update(&id, &mut |old| {
        replaced = old.is_some();
        Ok(slot.take())
    })?;
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::gemini;
    use crate::vault::Vault;

    fn req(agent: &str, method: Option<Method>) -> Request {
        Request {
            agent: agent.into(),
            account: "default".into(),
            method,
            source: Source::Stdin,
            settings: BTreeMap::new(),
            label: None,
        }
    }

    fn input(s: &str) -> Input {
        Input {
            secret: Secret::from(s),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn detects_and_stores_a_setup_token() {
        let config = Config::default();
        let token = format!("sk-ant-oat01-{}AA", "Q".repeat(93));
        let now = Timestamp::now();
        let p = prepare(
            &req("claude", None),
            &config,
            input(&format!("{token}\n")),
            now,
        )
        .unwrap();
        assert_eq!(p.record.method, Method::SetupToken);
        assert_eq!(p.record.secret.expose(), token);
        assert_eq!(p.record.meta.source, "stdin");
        let v = Vault::in_memory();
        assert!(!store(&*v, p.record.clone()).unwrap());
        assert!(store(&*v, p.record).unwrap(), "a second store replaces");
        let got = v
            .get(&CredentialId::parse("claude").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(got.secret.expose(), token);
    }

    #[test]
    fn vertex_settings_only_for_gemini_keys() {
        let config = Config::default();
        let mut r = req("gemini", Some(Method::ApiKey));
        r.settings =
            gemini::capture::vertex_settings(Some("proj-123"), Some("us-central1")).unwrap();
        let key = format!("AIza{}", "b".repeat(35));
        let p = prepare(&r, &config, input(&key), Timestamp::now()).unwrap();
        assert_eq!(p.record.meta.settings["project"], "proj-123");
        assert!(p.delivery.contains("Vertex"));
        let mut r = req("claude", Some(Method::ApiKey));
        r.settings = p.record.meta.settings.clone();
        let key = format!("sk-ant-api03-{}AA", "b".repeat(93));
        assert!(prepare(&r, &config, input(&key), Timestamp::now()).is_err());
    }

    #[test]
    fn secrets_given_as_paths_or_names_are_refused_unechoed() {
        let token = "sk-ant-oat01-SECRETSECRET";
        for src in [Source::File(token.into()), Source::Env(token.into())] {
            let e = check_source_argument(&src).unwrap_err().to_string();
            assert!(!e.contains("SECRET"), "{e}");
            assert!(e.contains("--stdin"), "{e}");
        }
        let e = check_source_argument(&Source::Env("not a name".into())).unwrap_err();
        assert!(e.to_string().contains("not a variable name"));
        assert!(check_source_argument(&Source::Env("MY_TOKEN".into())).is_ok());
        assert!(check_source_argument(&Source::File("/run/secrets/x".into())).is_ok());
    }

    #[test]
    fn env_values_are_checked() {
        assert!(
            read_env("X", None)
                .unwrap_err()
                .to_string()
                .contains("not set")
        );
        assert!(
            read_env("X", Some("  ".into()))
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert_eq!(read_env("X", Some("v".into())).unwrap().expose(), "v");
    }

    #[test]
    fn secret_file_methods_are_guessed() {
        let m = |agent, text| secret_file_method(agent, None, text);
        assert_eq!(m(Agent::Claude, "sk-ant-oat01-x"), Method::SetupToken);
        assert_eq!(m(Agent::Claude, "sk-ant-api03-x"), Method::ApiKey);
        assert_eq!(m(Agent::Codex, " {\"tokens\":{}}"), Method::Session);
        assert_eq!(m(Agent::Codex, "sk-ant-oat01-x"), Method::ApiKey);
        assert_eq!(
            secret_file_method(Agent::Claude, Some(Method::ApiKey), "sk-ant-oat01-x"),
            Method::ApiKey
        );
    }

    #[test]
    fn custom_definitions_are_checked_when_used() {
        let config = Config::parse("[agents.custom.aider]\napi_key_env = \"A-B\"\n").unwrap();
        let e = Agent::resolve("aider", &config).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::ExitCode::Usage);
        assert!(e.to_string().contains("api_key_env"), "{e}");
    }

    #[test]
    fn unknown_agents_and_methods() {
        let config = Config::default();
        assert!(
            Agent::resolve("aider", &config)
                .unwrap_err()
                .to_string()
                .contains("agents.custom.aider")
        );
        let e = prepare(
            &req("codex", Some(Method::SetupToken)),
            &config,
            input("x"),
            Timestamp::now(),
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), crate::error::ExitCode::Invalid);
        assert!(e.to_string().contains("session or api-key"), "{e}");
    }
}
