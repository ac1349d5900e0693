//! [`Agent`]: one value per agent airlock knows (built in or configured),
//! dispatching to that agent's module for validation, host logins, session
//! parsing and renewal advice. `capture`, `resolve`, `status` and `inject`
//! all go through it; it depends on no pipeline stage.

use std::path::PathBuf;

use jiff::Timestamp;

use crate::agents::custom::{self, CustomAgent};
use crate::agents::validate::{HostLogin, SessionInfo, Validated, invalid};
use crate::agents::{HostEnv, claude, codex, gemini};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::{Method, Record};

/// An agent airlock knows: built in, or defined in the config file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agent<'a> {
    /// Claude Code.
    Claude,
    /// Codex CLI.
    Codex,
    /// Gemini CLI.
    Gemini,
    /// `[agents.custom.<name>]`.
    Custom(&'a str, &'a CustomAgent),
}

impl<'a> Agent<'a> {
    /// Looks `name` up among the built-in and the configured agents.
    pub fn resolve(name: &'a str, config: &'a Config) -> Result<Agent<'a>> {
        match name {
            "claude" => Ok(Agent::Claude),
            "codex" => Ok(Agent::Codex),
            "gemini" => Ok(Agent::Gemini),
            _ => match config.agents.custom.get_key_value(name) {
                Some((n, a)) => {
                    custom::check(n, a).map_err(Error::Usage)?;
                    Ok(Agent::Custom(n.as_str(), a))
                }
                None => {
                    let mut known: Vec<&str> = crate::agents::BUILTIN.to_vec();
                    known.extend(config.agents.custom.keys().map(String::as_str));
                    Err(Error::Usage(format!(
                        "unknown agent {name:?}: use one of {}, or define it under [agents.custom.{name}] in the config file",
                        known.join(", ")
                    )))
                }
            },
        }
    }

    /// Every agent: the built-in ones, then the configured ones by name.
    pub fn all(config: &'a Config) -> Vec<Agent<'a>> {
        let mut v = vec![Agent::Claude, Agent::Codex, Agent::Gemini];
        v.extend(
            config
                .agents
                .custom
                .iter()
                .map(|(n, a)| Agent::Custom(n.as_str(), a)),
        );
        v
    }

    /// The agent's name.
    pub fn name(&self) -> &'a str {
        match self {
            Agent::Claude => "claude",
            Agent::Codex => "codex",
            Agent::Gemini => "gemini",
            Agent::Custom(n, _) => n,
        }
    }

    /// The agent's display name.
    pub fn title(&self) -> &'a str {
        match self {
            Agent::Claude => "Claude Code",
            Agent::Codex => "Codex CLI",
            Agent::Gemini => "Gemini CLI",
            Agent::Custom(n, _) => n,
        }
    }

    /// The methods this agent accepts.
    pub fn methods(&self) -> &'static [Method] {
        match self {
            Agent::Claude => &[Method::SetupToken, Method::Session, Method::ApiKey],
            Agent::Codex | Agent::Gemini => &[Method::Session, Method::ApiKey],
            Agent::Custom(..) => &[Method::ApiKey],
        }
    }

    /// Guesses the method from a value (a token prefix, or JSON).
    pub fn detect(&self, value: &str) -> Option<Method> {
        match self {
            Agent::Claude => claude::capture::detect(value),
            Agent::Codex => codex::capture::detect(value),
            Agent::Gemini => gemini::capture::detect(value),
            Agent::Custom(..) => Some(Method::ApiKey),
        }
    }

    /// Validates `secret` for `method`.
    pub fn validate(
        &self,
        method: Method,
        secret: &Secret,
        origin: &str,
        now: Timestamp,
    ) -> Result<Validated> {
        if !self.methods().contains(&method) {
            return Err(invalid(
                self.name(),
                format!("does not take a {method}"),
                format!("use --method {}", method_list(self.methods())),
            ));
        }
        match self {
            Agent::Claude => claude::capture::validate(method, secret, origin, now),
            Agent::Codex => codex::capture::validate(method, secret, origin, now),
            Agent::Gemini => gemini::capture::validate(method, secret, origin, now),
            Agent::Custom(n, _) => custom::validate(n, method, secret, origin),
        }
    }

    /// Reads a stored session payload's expiry and refreshability.
    pub fn session_info(&self, payload: &Secret) -> Result<SessionInfo> {
        let what = format!("the stored {} session", self.name());
        match self {
            Agent::Claude => claude::capture::parse_session(payload.expose(), &what),
            Agent::Codex => codex::capture::parse_session(payload.expose(), &what),
            Agent::Gemini => gemini::capture::parse_session(payload.expose(), &what),
            Agent::Custom(..) => Ok(SessionInfo::default()),
        }
    }

    /// The host's login, read and validated (`None` when there is none).
    pub fn find_host_login(&self, env: &HostEnv) -> Result<Option<HostLogin>> {
        match self {
            Agent::Claude => claude::capture::find_host_login(env),
            Agent::Codex => codex::capture::find_host_login(env),
            Agent::Gemini => gemini::capture::find_host_login(env),
            Agent::Custom(..) => Ok(None),
        }
    }

    /// The host files that hold this agent's login.
    pub fn host_paths(&self, env: &HostEnv) -> Vec<PathBuf> {
        match self {
            Agent::Claude => claude::capture::host_paths(env),
            Agent::Codex => codex::capture::host_paths(env),
            Agent::Gemini => gemini::capture::host_paths(env),
            Agent::Custom(..) => Vec::new(),
        }
    }

    /// What a sandbox receives for `record` (a summary for humans, read off
    /// its injection plan: see [`crate::agents::inject::delivery`]), or why
    /// it receives nothing.
    pub fn delivery(&self, record: &Record) -> std::result::Result<String, String> {
        crate::agents::inject::delivery(*self, record)
            .map(|d| d.summary())
            .map_err(|e| e.to_string())
    }

    /// The secret file configured for this agent (`[agents.<agent>]
    /// secret_file`, `[agents.custom.<name>] secret_file`), if any.
    pub fn secret_file(&self, config: &Config) -> Option<SecretFile> {
        match self {
            Agent::Custom(_, def) => Some(SecretFile {
                path: def.secret_file.clone()?,
                method: Some(Method::ApiKey),
                account: def.account.clone(),
            }),
            _ => {
                let c = config.agents.builtin(self.name())?;
                Some(SecretFile {
                    path: c.secret_file.clone()?,
                    method: c.method,
                    account: c.account.clone(),
                })
            }
        }
    }

    /// The exact steps that renew a credential.
    pub fn renewal(&self, method: Method, account: &str) -> String {
        match self {
            Agent::Claude => claude::capture::renewal(method, account),
            Agent::Codex => codex::capture::renewal(method, account),
            Agent::Gemini => gemini::capture::renewal(method, account),
            Agent::Custom(n, _) => custom::renewal(n, account),
        }
    }

    /// How to log in on the host so that `--from-host` finds something.
    pub fn host_login_hint(&self) -> &'static str {
        match self {
            Agent::Claude => "run `claude auth login` (or `claude` then /login)",
            Agent::Codex => "run `codex login`",
            Agent::Gemini => "run `gemini` and choose Login with Google",
            Agent::Custom(..) => "custom agents only take API keys",
        }
    }
}

/// `token, session or api-key` for messages.
pub fn method_list(methods: &[Method]) -> String {
    let names: Vec<&str> = methods
        .iter()
        .map(|m| match m {
            Method::SetupToken => "token",
            other => other.as_str(),
        })
        .collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A secret file named in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// The file (sops-nix, agenix, Docker secrets…).
    pub path: PathBuf,
    /// The configured method; `None` to detect it from the contents.
    pub method: Option<Method>,
    /// The configured account.
    pub account: Option<String>,
}
