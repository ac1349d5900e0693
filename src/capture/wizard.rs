//! The interactive `airlock auth <agent>`: offers the host's login, shows a
//! menu of methods, reads secrets hidden, and returns a validated record.
//! Only used when stdin and stderr are terminals (`inquire` needs one);
//! prompts go to stderr.

use std::collections::BTreeMap;

use inquire::{Confirm, Password, PasswordDisplayMode, Select, Text};
use jiff::Timestamp;

use super::{Agent, Input, Prepared, Request, Source, prepare, prepare_host};
use crate::agents::HostEnv;
use crate::agents::gemini;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::status;
use crate::vault::Method;

/// One entry of the method menu.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Choice {
    method: Method,
    host: bool,
    text: String,
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn prompt_error(e: inquire::InquireError) -> Error {
    match e {
        inquire::InquireError::OperationCanceled | inquire::InquireError::OperationInterrupted => {
            Error::Usage("cancelled: nothing was stored".into())
        }
        inquire::InquireError::NotTTY => Error::Usage(
            "no terminal to prompt on: pass --method and one of --stdin, --from-file PATH, --from-env NAME or --from-host".into(),
        ),
        other => Error::Other(format!("the prompt failed ({other}); nothing was stored")),
    }
}

/// Runs the wizard for `agent` and `account`; nothing is stored here.
pub fn run(
    agent_name: &str,
    account: &str,
    config: &Config,
    env: &HostEnv,
    now: Timestamp,
) -> Result<Prepared> {
    let agent = Agent::resolve(agent_name, config)?;
    let base = Request {
        agent: agent.name().to_owned(),
        account: account.to_owned(),
        method: None,
        source: Source::Prompt,
        settings: BTreeMap::new(),
        label: None,
    };
    eprintln!(
        "Store a {} credential in airlock (account {account}).",
        agent.title()
    );

    // 1. The host's login, if any.
    let mut host_broken = false;
    let host = match agent.find_host_login(env) {
        Ok(h) => h,
        Err(e) => {
            eprintln!(
                "Found a {} login on this machine, but it cannot be used: {e}",
                agent.title()
            );
            host_broken = true;
            None
        }
    };
    let mut host_choice = None;
    if let Some(h) = &host {
        let state = status::state(
            h.record.method,
            h.record.meta.expires_at,
            h.refreshable,
            now,
            config.status.expiring_days,
        );
        let mut about = format!("{} in {}", h.record.method, h.location);
        if let Some(d) = &h.detail {
            about.push_str(&format!(", {d}"));
        }
        if let Some(t) = h.record.meta.expires_at {
            about.push_str(&format!(
                ", {} {}",
                if h.refreshable {
                    "access token valid until"
                } else {
                    "expires"
                },
                status::date(t)
            ));
        }
        eprintln!(
            "Found your {} login on this machine: {about} ({state}).",
            agent.title()
        );
        let help = match (agent, h.record.method) {
            (Agent::Claude, Method::Session) => {
                "stored linked to this file: one session with the host, every sandbox refresh lands in it; for long unattended runs answer no and run `airlock login claude` (a separate session), or use a setup-token"
            }
            (Agent::Codex, Method::Session) => {
                "stored linked to this file: one session with the host, every sandbox refresh lands in it; for long unattended runs answer no and run `airlock login codex` (a separate session), or use an API key"
            }
            _ => "airlock only reads it; the host login stays as it is",
        };
        let use_it = Confirm::new("Store this login?")
            .with_default(true)
            .with_help_message(help)
            .prompt()
            .map_err(prompt_error)?;
        if use_it {
            return prepare_host(&base, config, env, now);
        }
        host_choice = Some(h.record.method);
    }

    // 2. The menu.
    let mut choices = Vec::new();
    for &m in agent.methods() {
        let text = match (agent, m) {
            (Agent::Claude, Method::SetupToken) => {
                "Long-lived token from `claude setup-token` (recommended: valid 1 year, safe in many sandboxes)".to_owned()
            }
            (Agent::Claude, Method::Session) => {
                "This machine's Claude Code login (~/.claude/.credentials.json or the keychain)".to_owned()
            }
            (Agent::Claude, Method::ApiKey) => "Anthropic API key (sk-ant-api03-…, billed per use)".to_owned(),
            (Agent::Codex, Method::Session) => "This machine's ChatGPT login ($CODEX_HOME/auth.json)".to_owned(),
            (Agent::Codex, Method::ApiKey) => "OpenAI API key (sk-proj-…)".to_owned(),
            (Agent::Gemini, Method::Session) => "This machine's Google login (~/.gemini/oauth_creds.json)".to_owned(),
            (Agent::Gemini, Method::ApiKey) => {
                "Gemini API key (AIza…), optionally for Vertex AI".to_owned()
            }
            (_, m) => format!("API key ({m})"),
        };
        let is_host = m == Method::Session;
        if is_host && host.is_none() && host_choice.is_none() {
            // Nothing to offer: say how to get one instead of a dead end.
            if host_broken {
                continue;
            }
            eprintln!(
                "No {} login found on this machine (to use one: {}, then run this again).",
                agent.title(),
                agent.host_login_hint()
            );
            continue;
        }
        if is_host && host_choice.is_some() {
            // Declined above.
            continue;
        }
        choices.push(Choice {
            method: m,
            host: is_host,
            text,
        });
    }
    let choice = if choices.len() == 1 {
        choices.remove(0)
    } else {
        Select::new("How should airlock authenticate?", choices)
            .prompt()
            .map_err(prompt_error)?
    };
    if choice.host {
        return prepare_host(&base, config, env, now);
    }

    // 3. The secret, hidden.
    let (message, help) = match (agent, choice.method) {
        (Agent::Claude, Method::SetupToken) => (
            "Paste the token printed by `claude setup-token`:",
            "run `claude setup-token` in another terminal; the token starts with sk-ant-oat01-",
        ),
        (Agent::Claude, _) => (
            "Paste your Anthropic API key:",
            "it starts with sk-ant-api03-",
        ),
        (Agent::Codex, _) => ("Paste your OpenAI API key:", "it starts with sk-"),
        (Agent::Gemini, _) => ("Paste your Gemini API key:", "it starts with AIza"),
        (Agent::Custom(..), _) => ("Paste the API key:", "a single line"),
    };
    let mut req = base;
    req.method = Some(choice.method);
    if agent == Agent::Gemini && choice.method == Method::ApiKey {
        let vertex =
            Confirm::new("Use it with Vertex AI (Google Cloud) rather than the Gemini API?")
                .with_default(false)
                .prompt()
                .map_err(prompt_error)?;
        if vertex {
            let project = Text::new("Google Cloud project id:")
                .prompt()
                .map_err(prompt_error)?;
            let location = Text::new("Location:")
                .with_default("us-central1")
                .prompt()
                .map_err(prompt_error)?;
            req.settings = gemini::capture::vertex_settings(Some(&project), Some(&location))?;
        }
    }
    // Validate while prompting, so a typo can be fixed on the spot.
    let check_req = req.clone();
    let check_config = config.clone();
    let validator = move |s: &str| -> std::result::Result<
        inquire::validator::Validation,
        inquire::CustomUserError,
    > {
        let input = Input {
            secret: Secret::from(s),
            warnings: Vec::new(),
        };
        Ok(
            match prepare(&check_req, &check_config, input, Timestamp::now()) {
                Ok(_) => inquire::validator::Validation::Valid,
                Err(e) => inquire::validator::Validation::Invalid(e.to_string().into()),
            },
        )
    };
    let value = Password::new(message)
        .with_help_message(help)
        .with_display_mode(PasswordDisplayMode::Hidden)
        .without_confirmation()
        .with_validator(validator)
        .prompt()
        .map_err(prompt_error)?;
    let input = Input {
        secret: Secret::new(value),
        warnings: Vec::new(),
    };
    prepare(&req, config, input, now)
}
