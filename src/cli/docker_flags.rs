//! `airlock docker-flags`: flags for your own `docker run` / `podman run`.

use airlock::engine;
use airlock::error::{Error, Result};
use airlock::render;
use airlock::sandbox::{self, Sandbox, SandboxSpec, launch};

use super::Ctx;
use airlock::plan::SandboxPlan;
use airlock::sync;
use airlock::vault::Vault;

use super::run::{
    SandboxArgs, SyncUse, WaitFor, hand_over, register_sync, spawn_sync_waiter, wait_fresh,
};

/// Print `docker run` flags that give a container the agents' credentials.
///
///     docker run --rm -it $(airlock docker-flags --image IMG --agent claude) IMG [COMMAND…]
///
/// The default mode (files) writes the sandbox directory now and prints a
/// mount, a tmpfs, a label, plain `-e` variables and `--entrypoint` (the
/// shim, which then runs IMG's own entrypoint and command: hence --image).
/// Start the container within an hour; the directory is removed when it
/// exits. Pass the container's user here with --user (it is printed too).
///
/// --mode env prints only `-e NAME` flags: the values come from your
/// environment and ARE VISIBLE in `docker inspect` and the engine's stored
/// container config. Credential files (sessions) cannot be delivered that way.
///
/// airlock's flags may be in any order; engine flags (--rm, -it, --name, …)
/// belong to your `docker run`: given here, airlock stops and shows the
/// command line with them there.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    sandbox: SandboxArgs,

    /// The image you will run (its entrypoint, command and user are read
    /// with `image inspect`). Required in files mode.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,

    /// The user the container runs as (`UID[:GID]` or a name); printed as
    /// `--user`. Default: the image's USER.
    #[arg(long, short = 'u', value_name = "USER")]
    user: Option<String>,

    /// Replace the image's entrypoint (as `docker run --entrypoint` would).
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,

    /// files (default): secrets as files, nothing in `docker inspect`.
    /// env: `-e NAME` flags, values from your environment, visible in
    /// `docker inspect`.
    #[arg(long, value_name = "MODE", default_value = "files")]
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Files,
    Env,
}

pub fn run(ctx: &Ctx, mut a: Args) -> Result<()> {
    let sync_use = if a.mode == Mode::Files {
        SyncUse::OnRequest
    } else {
        SyncUse::Refused
    };
    if a.mode == Mode::Files
        && let Some(image) = a.image.as_deref()
    {
        start_proxy(ctx, &mut a.sandbox, image)?;
    }
    let (mut plan, vault) = a.sandbox.resolve(ctx, sync_use)?;
    if a.mode == Mode::Env {
        let (flags, warnings) = render::env_flags(&plan)?;
        for w in warnings {
            anstream::eprintln!("airlock: warning: {w}");
        }
        let missing: Vec<&str> = plan
            .env
            .iter()
            .filter(|e| e.value.is_secret() && std::env::var_os(&e.name).is_none())
            .map(|e| e.name.as_str())
            .collect();
        if !missing.is_empty() {
            anstream::eprintln!(
                "airlock: warning: --mode env passes values from your environment, and {} is not set there; these values will be visible in `docker inspect`",
                missing.join(", ")
            );
        }
        print!("{flags}");
        return Ok(());
    }
    let image = a.image.as_deref().ok_or_else(|| {
        Error::Usage(
            "docker-flags needs --image IMAGE to keep the image's entrypoint and command (or use --mode env)"
                .into(),
        )
    })?;
    let built = build(
        ctx,
        &a.sandbox,
        &plan,
        image,
        a.user.as_deref(),
        a.entrypoint.as_deref(),
    )?;
    let user = a.user.clone();
    let out = hand_to_waiter(ctx, &vault, &mut plan, built, |plan, sb, engine| {
        let mut out = render::docker_flags(plan, sb, engine);
        if let Some(u) = &user {
            out.push_str(&format!("--user {}\n", render::sh_word(u)));
        }
        out
    })?;
    print!("{out}");
    Ok(())
}

/// The end of `docker-flags` and `compose` (files mode): registers the
/// plan's synced sessions (`--rotation sync`) and adds their shared
/// directories to the plan's mounts, renders the output with `render`, then
/// leaves the sandbox directory and the registrations to an `__reap` waiter
/// that hands the sessions back after the labelled container exits (or
/// after an hour if none starts). Whatever fails before the hand-over hands
/// the sessions back at once.
pub fn hand_to_waiter(
    ctx: &Ctx,
    vault: &Vault,
    plan: &mut SandboxPlan,
    built: Built,
    render: impl FnOnce(&SandboxPlan, &Sandbox, &dyn engine::Engine) -> String,
) -> Result<String> {
    let layout = sync::Layout::new(&ctx.paths);
    let mut synced = Vec::new();
    let registered = register_sync(&layout, vault, plan, &built.sandbox, &mut synced, false);
    let mut guards: Vec<sync::Guard<'_>> = synced
        .iter()
        .map(|n| sync::Guard::new(&layout, Some(vault.backend()), n))
        .collect();
    plan.mounts.extend(registered?);
    if !plan.proxy.is_empty() {
        // proxy mode: the grants are registered before the flags are
        // printed; the proxy drops them once the container is gone (or
        // never appeared within a minute), or on `airlock revoke`
        let proxy_layout = airlock::proxy::registry::Layout::new(&ctx.paths);
        let kind = built.engine.kind();
        airlock::proxy::attach::register(&proxy_layout, plan, built.sandbox.id(), kind)?;
        let before = synced.len();
        let refreshed =
            super::run::register_proxy_refresh(&layout, vault, plan, &built.sandbox, &mut synced);
        guards.extend(
            synced[before..]
                .iter()
                .map(|n| sync::Guard::new(&layout, Some(vault.backend()), n)),
        );
        refreshed?;
        // the proxy opens the vault from the key cache, without a prompt
        let _ = vault.hand_over();
    }
    let mut handover = airlock::vault::Handover::Nothing;
    if !guards.is_empty() {
        handover = hand_over(vault, plan);
        let exe = std::env::current_exe()
            .map_err(|e| Error::Other(format!("cannot find the airlock executable: {e}")))?;
        sync::ensure_daemon(&layout, &exe, &handover)?;
        wait_fresh(ctx, &layout, &synced)?;
    }
    let out = render(plan, &built.sandbox, built.engine.as_ref());
    let kind = built.engine.kind();
    let id = built.sandbox.id().to_owned();
    let dir = built.sandbox.persist();
    let pid = spawn_sync_waiter(kind, &dir, WaitFor::Label(id), &synced, &handover)?;
    for (g, n) in guards.into_iter().zip(&synced) {
        sync::set_pid(&layout, n, Some(pid))?;
        g.disarm();
    }
    Ok(out)
}

/// A sandbox written for a container airlock does not start itself.
pub struct Built {
    /// The engine.
    pub engine: Box<dyn engine::Engine>,
    /// The directory.
    pub sandbox: Sandbox,
}

/// Writes the sandbox directory for `image` (flags and compose modes).
pub fn build(
    ctx: &Ctx,
    sargs: &SandboxArgs,
    plan: &SandboxPlan,
    image: &str,
    user: Option<&str>,
    entrypoint: Option<&str>,
) -> Result<Built> {
    let cache = ctx.paths.runtime_dir.join("images");
    let detected = engine::detect_cached(sargs.engine_choice()?, image, &cache)?;
    let engine = detected.engine;
    sandbox::gc(&ctx.paths.runtime_dir);
    let exec = launch::exec_for(&detected.image, entrypoint);
    let cuser = launch::container_user(engine.as_ref(), image, &detected.image, user)?;
    let sb = Sandbox::create(
        &ctx.paths.runtime_dir,
        SandboxSpec {
            plan,
            exec,
            user: cuser,
            engine: engine.as_ref(),
            owner_pid: None,
        },
    )?;
    Ok(Built {
        engine,
        sandbox: sb,
    })
}

/// `--rotation proxy` (docker-flags, compose): makes sure `airlock proxy`
/// runs and points the sandbox at it, as the engine that will run `image`
/// reaches the host. Does nothing for other rotations.
pub fn start_proxy(ctx: &Ctx, sargs: &mut SandboxArgs, image: &str) -> Result<()> {
    if !sargs.wants_proxy(ctx)? {
        return Ok(());
    }
    let cache = ctx.paths.runtime_dir.join("images");
    let detected = engine::detect_cached(sargs.engine_choice()?, image, &cache)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot find the airlock executable: {e}")))?;
    let layout = airlock::proxy::registry::Layout::new(&ctx.paths);
    sargs.proxy_url = Some(airlock::proxy::attach::url(
        &layout,
        detected.engine.kind(),
        &exe,
    )?);
    Ok(())
}
