//! Command-line definitions and dispatch. Each subcommand lives in its own
//! file with its `Args` (every flag documented where it is declared) and a
//! `run` function; this file only wires them together.

use std::io::IsTerminal;

use clap::{CommandFactory, Parser, Subcommand};
use clap_verbosity_flag::{Verbosity, WarnLevel};

use airlock::config::Config;
use airlock::error::{Error, Result};
use airlock::paths::Paths;
use airlock::vault::{self, Vault};

mod accounts;
mod args;
mod audit;
mod auth;
mod completions;
mod compose;
mod devcontainer;
mod docker_flags;
mod doctor;
mod import;
mod k8s;
mod lock;
mod login;
mod man;
mod proxy;
mod proxy_hold;
mod remove;
mod revoke;
mod run;
mod status;
mod swarm;
mod sync;
mod teardown;
mod verify;

/// Get AI coding agents' credentials into container sandboxes, securely.
///
/// airlock captures the logins of Claude Code, Codex CLI and Gemini CLI once,
/// keeps them in a vault (the OS keyring, or an encrypted file), and injects
/// them into Docker or Podman sandboxes without putting a secret on a command
/// line or in the container's configuration.
#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    verbosity: Verbosity<WarnLevel>,

    /// When to use colours: auto (a terminal, and NO_COLOR unset), always, never.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    color: ColorChoice,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
enum Command {
    Auth(auth::Args),
    Login(login::Args),
    Status(status::Args),
    Verify(verify::Args),
    Run(run::Args),
    DockerFlags(docker_flags::Args),
    Compose(compose::Args),
    Accounts(accounts::Args),
    Remove(remove::Args),
    Teardown(teardown::Args),
    #[command(name = "__reap", hide = true)]
    Reap(run::ReapArgs),
    #[command(name = "__proxy-hold", hide = true)]
    ProxyHold(proxy_hold::HoldArgs),
    Doctor(doctor::Args),
    Lock(lock::Args),
    Completions(completions::Args),
    Man(man::Args),
    Sync(sync::Args),
    Proxy(proxy::Args),
    Revoke(revoke::Args),
    Audit(audit::Args),
    K8s(k8s::Args),
    Devcontainer(devcontainer::Args),
    Swarm(swarm::Args),
    Import(import::Args),
}

/// What every subcommand gets.
pub struct Ctx {
    /// Resolved locations.
    pub paths: Paths,
    /// The loaded config file.
    pub config: Config,
    /// Whether stdin and stderr are terminals (prompts allowed).
    pub interactive: bool,
    /// Whether to colour output.
    pub color: bool,
}

impl Ctx {
    /// The encrypted-file vault's path: `[vault] path`, else the default.
    pub fn vault_file(&self) -> std::path::PathBuf {
        self.config
            .vault
            .path
            .clone()
            .unwrap_or_else(|| self.paths.vault_file())
    }

    /// Opens the vault selected by env/config/platform.
    pub fn open_vault(&self) -> Result<Vault> {
        let opts = vault::OpenOptions::new(&self.paths, &self.config, self.interactive)?;
        let v = vault::open(opts)?;
        tracing::info!(backend = %v.kind(), reason = v.why(), "vault backend");
        Ok(v)
    }
}

impl Ctx {
    /// Opens the vault for a background helper (the sync watcher, the `-d`
    /// waiter): a passphrase is never asked for on the terminal, even when
    /// there is one, so that nothing can block such a process.
    pub fn open_vault_unattended(&self) -> Result<Vault> {
        let opts = vault::OpenOptions::new(&self.paths, &self.config, false)?;
        let v = vault::open(opts)?;
        tracing::info!(backend = %v.kind(), reason = v.why(), "vault backend");
        Ok(v)
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> std::process::ExitCode {
    // airlock's own flags may be anywhere among the engine's (`args`).
    let argv = match args::normalize(std::env::args_os().collect(), &Cli::command()) {
        Ok(a) => a,
        Err(e) => {
            anstream::eprintln!("airlock: error: {e}");
            return std::process::ExitCode::from(e.exit_code().code());
        }
    };
    let cli = Cli::parse_from(argv);
    init_logging(&cli.verbosity);
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    };
    match run(cli.command, color) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code().code();
            anstream::eprintln!("airlock: error: {e}");
            std::process::ExitCode::from(code)
        }
    }
}

fn run(command: Command, color: bool) -> Result<()> {
    let command = match command {
        Command::Completions(a) => return completions::run(a),
        Command::Man(a) => return man::run(a),
        c => c,
    };
    let paths = Paths::from_env()?;
    let config = Config::load(&paths.config_file())?;
    airlock::secretref::record_results_in(paths.state_dir.clone());
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let ctx = Ctx {
        paths,
        config,
        interactive,
        color,
    };
    match command {
        Command::Auth(a) => auth::run(&ctx, a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Accounts(a) => accounts::run(&ctx, a),
        Command::Remove(a) => remove::run(&ctx, a),
        Command::Teardown(a) => teardown::run(&ctx, a),
        Command::Run(a) => run::run(&ctx, a),
        Command::DockerFlags(a) => docker_flags::run(&ctx, a),
        Command::Compose(a) => compose::run(&ctx, a),
        Command::Reap(a) => run::reap(&ctx, a),
        Command::ProxyHold(a) => proxy_hold::hold(&ctx, a),
        Command::Doctor(a) => doctor::run(&ctx, a),
        Command::Lock(a) => lock::run(&ctx, a),
        Command::Sync(a) => sync::run(&ctx, a),
        Command::Login(a) => login::run(&ctx, a),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Proxy(a) => proxy::run(&ctx, a),
        Command::Revoke(a) => revoke::run(&ctx, a),
        Command::Audit(a) => audit::run(&ctx, a),
        Command::K8s(a) => k8s::run(&ctx, a),
        Command::Devcontainer(a) => devcontainer::run(&ctx, a),
        Command::Swarm(a) => swarm::run(&ctx, a),
        Command::Import(a) => import::run(&ctx, a),
        Command::Completions(_) | Command::Man(_) => Err(Error::Other("unreachable".into())),
    }
}

fn init_logging(v: &Verbosity<WarnLevel>) {
    use tracing_subscriber::EnvFilter;
    let level = v.tracing_level_filter();
    // AIRLOCK_LOG (same syntax as RUST_LOG) refines -v/-q for debugging.
    let filter = std::env::var("AIRLOCK_LOG")
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("airlock={level}")));
    // ureq's protocol layer dumps HTTP bodies at trace level: a token
    // server's answer (access and refresh tokens) must never reach a log,
    // whatever AIRLOCK_LOG asks for
    let filter = match "ureq_proto=off".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Tells a running sync watcher that a session record was replaced, so
/// running sandboxes of that account get the new login (docs/rotation.md).
/// Best effort: without a watcher there is nothing to tell.
pub(crate) fn kick_sync(ctx: &Ctx, id: &airlock::vault::CredentialId) {
    let layout = airlock::sync::Layout::new(&ctx.paths);
    if airlock::sync::daemon_running(&layout)
        && let Err(e) = airlock::sync::kick(&layout, &id.agent, &id.account)
    {
        tracing::warn!(error = %e, "could not tell the sync watcher about the new login");
    }
}
