//! `airlock login`: an agent's own login in a throwaway container.

use std::io::IsTerminal;

use airlock::engine::EngineKind;
use airlock::error::{Error, Result};
use airlock::login::{self, LoginMethod, Options};
use airlock::secret::Secret;
use airlock::vault::DEFAULT_ACCOUNT;
use inquire::{Password, PasswordDisplayMode};

use super::Ctx;

/// Log in to an agent inside a throwaway container and store the result.
///
/// For machines without the agent's CLI: starts IMAGE with the terminal
/// attached, runs the agent's login (claude: `claude auth login`, or
/// `claude setup-token` with --method token; codex: `codex login
/// --device-auth`; gemini: `gemini` with Google login preselected, /quit
/// when it is done), then captures only the credential file it wrote,
/// validates it and stores it as AGENT:ACCOUNT. The container and its files
/// are removed afterwards. See docs/login.md.
///
/// Exit codes: 0 stored; 7 the login was interrupted or wrote something
/// unusable (nothing stored); 8 the engine failed; 2 bad usage.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// claude, codex or gemini.
    agent: String,

    /// Store the login under this account name.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ACCOUNT)]
    account: String,

    /// An image with the agent's CLI installed.
    #[arg(long, value_name = "IMAGE", env = "AIRLOCK_IMAGE")]
    image: String,

    /// session (the agent's login; default) or token (claude setup-token:
    /// you paste the printed token at airlock's hidden prompt afterwards).
    #[arg(long, value_name = "METHOD", default_value = "session")]
    method: String,

    /// A shell command to run instead of the agent's login command (for
    /// images that need something else; it must write the agent's usual
    /// credential file).
    #[arg(long, value_name = "CMD")]
    command: Option<String>,

    /// The container engine: docker or podman.
    #[arg(long, value_name = "ENGINE")]
    engine: Option<String>,

    /// Gemini's OAuth callback port, published on 127.0.0.1.
    #[arg(long, value_name = "PORT", default_value_t = login::DEFAULT_CALLBACK_PORT)]
    callback_port: u16,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let method = match a.method.as_str() {
        "session" => LoginMethod::Session,
        "token" | "setup-token" => LoginMethod::Token,
        m => {
            return Err(Error::Usage(format!(
                "unknown login method {m:?}: use session or token"
            )));
        }
    };
    let engine = a.engine.as_deref().map(EngineKind::parse).transpose()?;
    let tty = std::io::stdin().is_terminal();
    if method == LoginMethod::Token && !ctx.interactive {
        return Err(Error::Usage(
            "--method token needs a terminal to paste the token into; without one, run `claude setup-token` and `airlock auth claude --method token --stdin`".into(),
        ));
    }
    let opts = Options {
        agent: a.agent,
        account: a.account,
        image: a.image,
        engine,
        method,
        command: a.command,
        callback_port: a.callback_port,
        tty,
        runtime_dir: ctx.paths.runtime_dir.clone(),
    };
    // Validate the agent before anything starts.
    login::default_command(&opts.agent, method)?;
    let vault = ctx.open_vault()?;
    let ask = |msg: &str| -> Result<Secret> {
        let v = Password::new(msg)
            .with_display_mode(PasswordDisplayMode::Hidden)
            .without_confirmation()
            .prompt()
            .map_err(|e| match e {
                inquire::InquireError::OperationCanceled
                | inquire::InquireError::OperationInterrupted => {
                    Error::Usage("cancelled: nothing was stored".into())
                }
                other => Error::Other(format!("the prompt failed ({other}); nothing was stored")),
            })?;
        Ok(Secret::new(v))
    };
    let out = login::login(&opts, &ctx.config, vault.backend(), &ask)?;
    let r = &out.prepared.record;
    if out.replaced && r.method == airlock::vault::Method::Session {
        super::kick_sync(ctx, &r.id);
    }
    for w in &out.prepared.warnings {
        anstream::eprintln!("airlock: warning: {w}");
    }
    anstream::eprintln!(
        "airlock: {} {} ({}) from the login in {}",
        if out.replaced { "replaced" } else { "stored" },
        r.id,
        r.method,
        opts.image
    );
    if let Some(d) = &out.prepared.detail {
        anstream::eprintln!("  about:    {d}");
    }
    anstream::eprintln!("  sandbox:  {}", out.prepared.delivery);
    anstream::eprintln!(
        "  check it: airlock verify --agent {} --image {}",
        r.id,
        opts.image
    );
    Ok(())
}
