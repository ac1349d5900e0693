//! `airlock run`: start a container whose agents find their credentials.
//!
//! Also the credential-selection flags shared with `docker-flags` and
//! `compose` ([`SandboxArgs`]), and the hidden `__reap` waiter that removes a
//! detached sandbox's directory when its container exits.

use std::path::PathBuf;

use airlock::agents::HostEnv;
use airlock::engine::{self, EngineKind};
use airlock::error::{Error, Result};
use airlock::plan::SandboxPlan;
use airlock::render::RunRequest;
use airlock::resolve::{self, Choices, Request};
use airlock::sandbox::{self, launch};

use super::Ctx;

/// Which agents and credentials a sandbox gets (shared by `run`,
/// `docker-flags` and `compose`).
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// An agent to set up, with an optional account: `claude`, `codex:work`.
    /// Repeatable. Default: the project's `.airlock.toml`, else every
    /// built-in agent that has a credential.
    #[arg(long = "agent", short = 'a', value_name = "AGENT[:ACCOUNT]")]
    pub agents: Vec<String>,

    /// Fail with exit code 9 instead of starting when a named agent has no
    /// usable credential.
    #[arg(long)]
    pub require_auth: bool,

    /// The work directory inside the container, trusted by every agent
    /// (default /workspace).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// Do not wrap the agents' commands to skip their permission prompts.
    #[arg(long)]
    pub no_aliases: bool,

    /// Do not copy the host's (cleaned) agent settings into the sandbox.
    #[arg(long)]
    pub no_host_configs: bool,

    /// How a rotating session (Claude, Codex) is delivered: access-only
    /// (default; no refresh token) or copy (whole session; the first refresh
    /// in the sandbox logs every other copy out).
    #[arg(long, value_name = "MODE")]
    pub rotation: Option<String>,

    /// The container engine: docker or podman. Default: AIRLOCK_ENGINE, else
    /// Docker if its daemon answers, else Podman.
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,
}

impl SandboxArgs {
    /// The engine asked for, if any.
    pub fn engine_choice(&self) -> Result<Option<EngineKind>> {
        self.engine.as_deref().map(EngineKind::parse).transpose()
    }

    /// Resolves the credentials into a plan and prints its warnings.
    pub fn plan(&self, ctx: &Ctx) -> Result<SandboxPlan> {
        let choices = Choices {
            agents: self.agents.clone(),
            workdir: self.workdir.clone(),
            aliases: self.no_aliases.then_some(false),
            require_auth: self.require_auth,
            host_configs: self.no_host_configs.then_some(false),
            rotation: self.rotation.as_deref().map(str::parse).transpose()?,
        };
        let cwd = std::env::current_dir().ok();
        let project = match &cwd {
            Some(d) => airlock::project::find(d)?.map(|(_, p)| p),
            None => None,
        };
        let req = Request::from_choices(&choices, project.as_ref())?;
        let vault = ctx.open_vault()?;
        let host = HostEnv::from_process(ctx.paths.home.clone());
        let resolved = resolve::resolve(&req, &vault, &host, &ctx.config, jiff::Timestamp::now())?;
        for w in &resolved.plan.warnings {
            anstream::eprintln!("airlock: warning: {w}");
        }
        for a in &resolved.plan.agents {
            tracing::info!(agent = %a.agent, source = %a.source, delivers = %a.delivers, "agent");
        }
        Ok(resolved.plan)
    }
}

/// Start a container in which the agents find their credentials.
///
///     airlock run [AIRLOCK FLAGS] -- [ENGINE RUN FLAGS] IMAGE [COMMAND…]
///
/// Engine run flags (--rm, -it, -v, --network, -u, -d, …) go after `--` and
/// are passed to `docker run` / `podman run` unchanged. Secrets reach the
/// container as files in a private tmpfs directory mounted read-only at
/// /run/airlock-in; a small shim exports them and then runs the image's own
/// entrypoint and command. The directory is removed when the container
/// exits, and airlock exits with the container's exit code.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    sandbox: SandboxArgs,

    /// [ENGINE RUN FLAGS] IMAGE [COMMAND…]; put engine flags after `--`.
    #[arg(
        value_name = "ARGS",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let req = RunRequest::parse(&a.args)?;
    let choice = a.sandbox.engine_choice()?;
    // Asking the engine about the image (30–100 ms of CLI start-up) overlaps
    // with resolving the credentials (vault unlock, keyring round trips).
    let (plan, detected) = std::thread::scope(|s| {
        let probe = s.spawn(|| engine::detect(choice, &req.image));
        let plan = a.sandbox.plan(ctx);
        let detected = probe
            .join()
            .unwrap_or_else(|_| Err(Error::Engine("the engine probe panicked".into())));
        (plan, detected)
    });
    let plan = plan?;
    let detected = detected?;
    let engine = detected.engine;
    sandbox::gc(&ctx.paths.runtime_dir);
    let detach = req.detach;
    let prepared = launch::prepare(
        engine.as_ref(),
        &detected.image,
        &plan,
        req,
        &ctx.paths.runtime_dir,
    )?;
    drop(plan);
    let code = if detach {
        let (code, container, dir) = launch::run_detached(engine.as_ref(), prepared)?;
        if let Some(c) = container {
            spawn_waiter(engine.kind(), &dir, WaitFor::Container(c))?;
        }
        code
    } else {
        launch::run_foreground(engine.as_ref(), prepared)?
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// What a waiter waits for.
pub enum WaitFor {
    /// A container id (`run -d`).
    Container(String),
    /// A sandbox id, for a container someone else will start.
    Label(String),
}

/// Starts `airlock __reap` in the background.
pub fn spawn_waiter(kind: EngineKind, dir: &std::path::Path, what: WaitFor) -> Result<()> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot find the airlock executable: {e}")))?;
    let mut args = vec![
        "__reap".to_owned(),
        "--engine".to_owned(),
        kind.as_str().to_owned(),
        "--dir".to_owned(),
        dir.display().to_string(),
    ];
    match what {
        WaitFor::Container(c) => args.extend(["--container".to_owned(), c]),
        WaitFor::Label(id) => args.extend(["--sandbox".to_owned(), id]),
    }
    launch::spawn_detached(&exe, &args)
}

/// Internal: wait for a sandbox's container to exit, then remove its directory.
#[derive(Debug, clap::Args)]
pub struct ReapArgs {
    /// The engine.
    #[arg(long)]
    engine: String,
    /// The sandbox directory.
    #[arg(long)]
    dir: PathBuf,
    /// The container to wait for.
    #[arg(long, conflicts_with = "sandbox")]
    container: Option<String>,
    /// The sandbox id whose labelled container to wait for.
    #[arg(long)]
    sandbox: Option<String>,
    /// How long to wait for a labelled container to appear, in seconds.
    #[arg(long, default_value_t = sandbox::UNUSED_GRACE_SECS)]
    timeout: u64,
}

pub fn reap(ctx: &Ctx, a: ReapArgs) -> Result<()> {
    // Only ever remove directories under our own sandboxes directory.
    let root = ctx.paths.runtime_dir.join("sandboxes");
    if a.dir.parent() != Some(root.as_path()) {
        return Err(Error::Usage(format!(
            "{} is not a sandbox directory of this user",
            a.dir.display()
        )));
    }
    let engine = EngineKind::parse(&a.engine)?.engine();
    match (a.container, a.sandbox) {
        (Some(c), _) => launch::reap(engine.as_ref(), &c, &a.dir),
        (None, Some(id)) => launch::reap_by_label(
            engine.as_ref(),
            &id,
            &a.dir,
            std::time::Duration::from_secs(a.timeout),
        ),
        (None, None) => Err(Error::Usage("give --container or --sandbox".into())),
    }
}
