//! `airlock run`: start a container whose agents find their credentials.
//!
//! Also the credential-selection flags shared with `docker-flags` and
//! `compose` ([`SandboxArgs`]), and the hidden `__reap` waiter that removes a
//! detached sandbox's directory when its container exits.

use std::path::PathBuf;
use std::sync::Arc;

use airlock::agents::HostEnv;
use airlock::agents::inject::Rotation;
use airlock::engine::{self, EngineKind};
use airlock::error::{Error, Result};
use airlock::plan::{Mount, SandboxPlan};
use airlock::render::RunRequest;
use airlock::resolve::{self, Choices, Request};
use airlock::sandbox::{self, launch};
use airlock::sync;
use airlock::vault::{Handover, Vault};

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

    /// How a rotating session (Claude, Codex) is delivered: sync (the
    /// default of `run`, available to docker-flags and compose: one directory
    /// shared by the account's sandboxes, kept in step with the vault or host
    /// login by `airlock sync`), broker (like sync, but the sandbox gets the
    /// access token only: airlock alone holds the refresh token and writes
    /// each new access token into the sandbox; docs/broker.md), proxy
    /// (`run`, docker-flags --image, compose, devcontainer, swarm, k8s
    /// --proxy-url; every credential: the
    /// sandbox holds a placeholder and
    /// `airlock proxy` on the host adds the real credential on the way to
    /// the agent's API; docs/proxy.md), access-only
    /// (the default of docker-flags and compose, whose output may never be
    /// used; no refresh token, never renewed) or copy (whole session; the
    /// first refresh in the sandbox logs every other copy out). Without this
    /// flag: AIRLOCK_ROTATION, else `[sync] rotation` in the config, else the
    /// command's default.
    #[arg(long, value_name = "MODE")]
    pub rotation: Option<String>,

    /// The container engine: docker or podman. Default: AIRLOCK_ENGINE, else
    /// Docker if its daemon answers, else Podman.
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,

    /// Proxy mode: the proxy's base URL as the sandbox sees it (set by the
    /// command once the proxy runs, never from the command line).
    #[arg(skip)]
    pub proxy_url: Option<String>,
}

impl SandboxArgs {
    /// The engine asked for, if any.
    pub fn engine_choice(&self) -> Result<Option<EngineKind>> {
        self.engine.as_deref().map(EngineKind::parse).transpose()
    }

    /// Whether the rotation asked for (flag, else the configured default)
    /// is `proxy`.
    pub fn wants_proxy(&self, ctx: &Ctx) -> Result<bool> {
        let r: Option<Rotation> = match self.rotation.as_deref() {
            Some(r) => Some(r.parse()?),
            None => ctx.config.sync.default_rotation()?,
        };
        Ok(r == Some(Rotation::Proxy))
    }

    /// Resolves the credentials, with `--rotation sync` as `sync` allows.
    /// Returns the open vault too (sync needs it).
    pub fn resolve(&self, ctx: &Ctx, sync: SyncUse) -> Result<(SandboxPlan, Vault)> {
        let mut rotation: Option<Rotation> =
            self.rotation.as_deref().map(str::parse).transpose()?;
        if rotation.is_none()
            && let Some(r) = ctx.config.sync.default_rotation()?
        {
            // the configured default, where this command can deliver it
            if sync == SyncUse::Refused && r.is_shared() {
                tracing::info!(
                    rotation = r.as_str(),
                    "the configured rotation needs a process that stays with the container: this command keeps its own default"
                );
            } else {
                rotation = Some(r);
            }
        }
        if let Some(r) = rotation
            && r == Rotation::Broker
        {
            airlock::sync::broker::check_policy(&ctx.config.sync.refresh_policy()?)?;
        }
        if let Some(r) = rotation.filter(|r| r.is_shared())
            && sync == SyncUse::Refused
        {
            return Err(Error::Usage(format!(
                "--rotation {} needs a process that stays with the container (`airlock run`, `airlock docker-flags` in files mode, `airlock compose`); here use access-only (the default) or copy",
                r.as_str()
            )));
        }
        if sync == SyncUse::Default && rotation.is_none() {
            rotation = Some(Rotation::Sync);
        }
        let choices = Choices {
            agents: self.agents.clone(),
            workdir: self.workdir.clone(),
            aliases: self.no_aliases.then_some(false),
            require_auth: self.require_auth,
            host_configs: self.no_host_configs.then_some(false),
            rotation,
        };
        let cwd = std::env::current_dir().ok();
        let project = match &cwd {
            Some(d) => airlock::project::find(d)?.map(|(_, p)| p),
            None => None,
        };
        let mut req = Request::from_choices(&choices, project.as_ref())?;
        req.proxy_url = self.proxy_url.clone();
        let vault = ctx.open_vault()?;
        let host = HostEnv::from_process(ctx.paths.home.clone());
        let resolved = resolve::resolve(&req, &vault, &host, &ctx.config, jiff::Timestamp::now())?;
        for w in &resolved.plan.warnings {
            anstream::eprintln!("airlock: warning: {w}");
        }
        for a in &resolved.plan.agents {
            tracing::info!(agent = %a.agent, source = %a.source, delivers = %a.delivers, "agent");
        }
        Ok((resolved.plan, vault))
    }
}

/// Whether a command can deliver `--rotation sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncUse {
    /// The default for rotating sessions (`airlock run`).
    Default,
    /// Only when asked for (`docker-flags`, `compose`: their waiter holds
    /// the sync).
    OnRequest,
    /// Refused (`docker-flags --mode env`).
    Refused,
}

/// Start a container in which the agents find their credentials.
///
///     airlock run [AIRLOCK FLAGS] [ENGINE RUN FLAGS] IMAGE [COMMAND…]
///
/// Engine run flags (--rm, -it, -v, --network, -u, -d, …) are passed to
/// `docker run` / `podman run` unchanged. airlock's own flags may come
/// anywhere before IMAGE, mixed with the engine's (`airlock run -d --name
/// web --agent claude IMAGE`): they are named unlike any engine flag, except
/// -v, -q, --quiet, -h and --workdir, which are airlock's before the first
/// engine flag and the engine's after it (-a stdin|stdout|stderr is the
/// engine's --attach). `--` ends airlock's flags. Secrets reach the
/// container as files in a private tmpfs directory mounted read-only at
/// /run/airlock-in; a small shim exports them and then runs the image's own
/// entrypoint and command. The directory is removed when the container
/// exits, and airlock exits with the container's exit code.
///
/// A Claude or Codex login session (single-use refresh tokens) is synced by
/// default (--rotation sync): every sandbox of the account mounts one shared
/// directory, which the `airlock sync` watcher (started as needed, gone after
/// the last sandbox) keeps in step with the vault or the host's login; after
/// the exit the latest session is handed back. `airlock status` lists the
/// running sandboxes.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    sandbox: SandboxArgs,

    /// [ENGINE RUN FLAGS] IMAGE [COMMAND…], airlock's flags among them.
    #[arg(
        value_name = "ARGS",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

pub fn run(ctx: &Ctx, mut a: Args) -> Result<()> {
    let req = RunRequest::parse(&a.args)?;
    let choice = a.sandbox.engine_choice()?;
    let proxy_layout = airlock::proxy::registry::Layout::new(&ctx.paths);
    // Asking the engine about the image (30–100 ms of CLI start-up) overlaps
    // with resolving the credentials (vault unlock, keyring round trips).
    // Podman is not asked at all when its store index shows an image ID
    // whose configuration is cached (docs/sandbox.md, "Performance").
    // Proxy mode needs the engine first: the proxy's address depends on it.
    let (resolved, detected) = if a.sandbox.wants_proxy(ctx)? {
        let cache = ctx.paths.runtime_dir.join("images");
        let detected = engine::detect_with(choice, &req.image, Some(&cache))?;
        let exe = std::env::current_exe()
            .map_err(|e| Error::Other(format!("cannot find the airlock executable: {e}")))?;
        a.sandbox.proxy_url = Some(airlock::proxy::attach::url_for(
            &proxy_layout,
            detected.engine.kind(),
            &exe,
            &req.flags,
        )?);
        (a.sandbox.resolve(ctx, SyncUse::Default), Ok(detected))
    } else {
        std::thread::scope(|s| {
            let cache = ctx.paths.runtime_dir.join("images");
            let image = req.image.as_str();
            let probe = s.spawn(move || engine::detect_with(choice, image, Some(&cache)));
            let resolved = a.sandbox.resolve(ctx, SyncUse::Default);
            let detected = probe
                .join()
                .unwrap_or_else(|_| Err(Error::Engine("the engine probe panicked".into())));
            (resolved, detected)
        })
    };
    let (plan, vault) = resolved?;
    if !plan.proxy.is_empty() {
        // the proxy opens the vault from the key cache, without a prompt
        let _ = vault.hand_over();
    }
    // Sync mode by default only (neither the flag nor the config chose it),
    // and airlock allowed to refresh: broker mode may stand in for it.
    let broker_fallback = a.sandbox.rotation.is_none()
        && ctx.config.sync.default_rotation()?.is_none()
        && airlock::sync::broker::check_policy(&ctx.config.sync.refresh_policy()?).is_ok();
    let detected = detected?;
    let engine = detected.engine;
    sandbox::gc(&ctx.paths.runtime_dir);
    let detach = req.detach;
    let layout = sync::Layout::new(&ctx.paths);
    let mut synced: Vec<String> = Vec::new();
    let mut proxied: Option<String> = None;
    let prepared = launch::prepare_with(
        engine.as_ref(),
        &detected.image,
        &plan,
        req,
        &ctx.paths.runtime_dir,
        |sb| {
            let mounts = register_sync(&layout, &vault, &plan, sb, &mut synced, broker_fallback)?;
            if !plan.proxy.is_empty() {
                proxied = Some(sb.id().to_owned());
                airlock::proxy::attach::register(&proxy_layout, &plan, sb.id(), engine.kind())?;
                register_proxy_refresh(&layout, &vault, &plan, sb, &mut synced)?;
            }
            Ok(mounts)
        },
    );
    let forget_proxy = |proxied: &Option<String>| {
        if let Some(sb) = proxied {
            airlock::proxy::attach::forget(&proxy_layout, sb);
        }
    };
    if prepared.is_err() {
        forget_proxy(&proxied);
    }
    // Guards first: whatever fails from here on hands the sessions back.
    let guards: Vec<sync::Guard<'_>> = synced
        .iter()
        .map(|n| sync::Guard::new(&layout, Some(vault.backend()), n))
        .collect();
    let prepared = prepared?;
    let mut handover = Handover::Nothing;
    if !guards.is_empty() {
        handover = hand_over(&vault, &plan);
        let exe = std::env::current_exe()
            .map_err(|e| Error::Other(format!("cannot find the airlock executable: {e}")))?;
        sync::ensure_daemon(&layout, &exe, &handover)?;
        wait_fresh(ctx, &layout, &synced)?;
    }
    drop(plan);
    let code = if detach {
        let (code, container, dir) = launch::run_detached(engine.as_ref(), prepared)?;
        if let Some(c) = container {
            // The waiter outlives us: it holds the sync registrations from
            // now on and hands the sessions back when the container exits.
            if !synced.is_empty() {
                // Starting the container took a while: the key cache must
                // still hold the key when the waiter starts.
                handover = vault.hand_over();
            }
            let pid = spawn_sync_waiter(
                engine.kind(),
                &dir,
                WaitFor::Container(c),
                &synced,
                &handover,
            )?;
            for (g, n) in guards.into_iter().zip(&synced) {
                sync::set_pid(&layout, n, Some(pid))?;
                g.disarm();
            }
        }
        code
    } else {
        let code = launch::run_foreground(engine.as_ref(), prepared);
        forget_proxy(&proxied);
        let code = code?;
        for g in guards {
            if let Err(e) = g.finish() {
                anstream::eprintln!("airlock: warning: could not hand the session back: {e}");
            }
        }
        code
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// Registers the plan's synced sessions for sandbox `sb` and returns the
/// shared directories to mount. Each registration is named
/// `<sandbox id>-<agent>` (pushed to `names` as soon as it exists).
///
/// `broker_fallback`: sync mode is only the default here (not asked for),
/// and airlock may refresh: a root container under rootful Docker, which
/// could not hand a refreshed session back, gets broker mode instead.
pub fn register_sync(
    layout: &sync::Layout,
    vault: &Vault,
    plan: &SandboxPlan,
    sb: &sandbox::Sandbox,
    names: &mut Vec<String>,
    broker_fallback: bool,
) -> Result<Vec<Mount>> {
    let mut mounts = Vec::new();
    for m in &plan.sync {
        let Some(truth) = m.truth.clone() else {
            continue;
        };
        let (owner, broker) = match sync_owner(sb, &m.agent, m.broker) {
            Ok(owner) => (owner, m.broker),
            Err(SyncRefusal::RootUnderDocker(_)) if broker_fallback => {
                anstream::eprintln!(
                    "airlock: note: the container runs as Docker's root, which would write a refreshed {} session as the host's root: using --rotation broker for it (airlock refreshes on the host; the sandbox gets access tokens only). Pass --rotation sync with `-u $(id -u):$(id -g)` to keep sync mode.",
                    m.agent
                );
                (None, true)
            }
            Err(SyncRefusal::RootUnderDocker(e) | SyncRefusal::Unwritable(e)) => return Err(e),
        };
        let name = format!("{}-{}", sb.id(), m.agent);
        let dir = sync::register_sandbox_mode(
            layout,
            Some(vault.backend()),
            sync::Registration {
                sandbox: name.clone(),
                agent: m.agent.clone(),
                account: m.account.clone(),
                truth,
                pid: Some(std::process::id()),
                owner,
            },
            broker,
        )?;
        names.push(name);
        mounts.push(Mount {
            host: dir.display().to_string(),
            container: m.container.clone(),
            read_only: false,
        });
    }
    Ok(mounts)
}

/// Proxy mode: the sessions behind the sandbox's grants are registered
/// with the sync watcher in broker mode, without a mount: airlock alone
/// refreshes them ahead of expiry, once per account, and writes them back
/// to where they are kept, where the proxy reads the current access token
/// (docs/proxy.md). Nothing of them enters the sandbox.
pub fn register_proxy_refresh(
    layout: &sync::Layout,
    vault: &Vault,
    plan: &SandboxPlan,
    sb: &sandbox::Sandbox,
    names: &mut Vec<String>,
) -> Result<()> {
    register_proxy_refresh_as(layout, vault, plan, sb.id(), std::process::id(), names)
}

/// [`register_proxy_refresh`] for the sandbox id `id`, held by `pid`.
pub fn register_proxy_refresh_as(
    layout: &sync::Layout,
    vault: &Vault,
    plan: &SandboxPlan,
    id: &str,
    pid: u32,
    names: &mut Vec<String>,
) -> Result<()> {
    for g in &plan.proxy {
        let Some(truth) = g.truth.clone() else {
            continue;
        };
        if g.method != airlock::vault::Method::Session || g.reference.is_some() {
            continue;
        }
        let name = format!("{id}-{}", g.agent);
        sync::register_sandbox_mode(
            layout,
            Some(vault.backend()),
            sync::Registration {
                sandbox: name.clone(),
                agent: g.agent.clone(),
                account: g.account.clone(),
                truth,
                pid: Some(pid),
                owner: None,
            },
            true,
        )?;
        names.push(name);
    }
    Ok(())
}

/// Why a container cannot take part in sync mode (the error says so).
enum SyncRefusal {
    /// Docker's root is the host's root: what it writes back would be root's.
    RootUnderDocker(Error),
    /// The container's user could not write the shared directory.
    Unwritable(Error),
}

/// Who must own the shared directory so that the container's user can
/// write it: the container's uid when we are root and it is not; ours when
/// it is the same user, a root container, or the engine maps us onto it
/// (rootless Podman). A non-root airlock cannot give it to another user.
/// In broker mode (`broker`) the container writes nothing back: a root
/// container reads the directory whoever owns it.
fn sync_owner(
    sb: &sandbox::Sandbox,
    agent: &str,
    broker: bool,
) -> std::result::Result<Option<(u32, u32)>, SyncRefusal> {
    let user = sb.user();
    let me = airlock::fsutil::euid();
    if me == 0 && user.uid != 0 {
        return Ok(Some((user.uid, user.gid.unwrap_or(user.uid))));
    }
    if let Some(r) = sb.sync_refusal() {
        let err = Error::SyncRefused {
            problem: format!("{agent}: {}", r.problem),
            fix: r.fix,
        };
        if r.root_under_docker {
            // broker mode writes nothing back: the container's root reads
            // the directory as it is
            return if broker {
                Ok(None)
            } else {
                Err(SyncRefusal::RootUnderDocker(err))
            };
        }
        return Err(SyncRefusal::Unwritable(err));
    }
    Ok(None)
}

/// Gets the vault key ready for the sync watcher and the `-d` waiter about
/// to start (they cannot prompt; see [`Handover`]) and warns once when they
/// will not be able to unlock a vault that a synced session lives in.
pub fn hand_over(vault: &Vault, plan: &SandboxPlan) -> Handover {
    let handover = vault.hand_over();
    let in_vault = plan
        .sync
        .iter()
        .any(|m| matches!(m.truth, Some(sync::Truth::Vault { .. })));
    match &handover {
        Handover::Impossible(why) if in_vault => {
            anstream::eprintln!("airlock: warning: {why}");
        }
        h => tracing::debug!(handover = ?h, "vault key hand-over to the sync helpers"),
    }
    handover
}

/// How long `run` waits for the watcher to refresh a session that is
/// already due (one token request, with its timeout, plus slack).
const FRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Before a container starts: a synced session already in (or past) its
/// refresh window is refreshed by the watcher first, so that the sandboxes
/// starting with it do not all refresh it at once (`docs/rotation.md` §5).
pub fn wait_fresh(ctx: &Ctx, layout: &sync::Layout, synced: &[String]) -> Result<()> {
    if synced.is_empty() {
        return Ok(());
    }
    let policy = ctx.config.sync.refresh_policy()?;
    for (key, f) in sync::await_fresh(layout, synced, &policy, FRESH_WAIT) {
        match f {
            sync::Freshness::Fresh => tracing::debug!(account = %key, "session fresh"),
            sync::Freshness::Refreshed => {
                tracing::info!(account = %key, "session refreshed by the watcher before the start")
            }
            sync::Freshness::Failed(e) => anstream::eprintln!(
                "airlock: warning: the {key} session is due for a refresh and airlock could not refresh it ({e}); its agents will refresh it themselves"
            ),
            sync::Freshness::NotRefreshing => anstream::eprintln!(
                "airlock: warning: the {key} session is due for a refresh and the running watcher does not refresh sessions itself (it was started with pre-refresh off); its agents will refresh it themselves"
            ),
            sync::Freshness::TimedOut => anstream::eprintln!(
                "airlock: warning: the {key} session is due for a refresh and the watcher did not refresh it within {} s; its agents will refresh it themselves (see `airlock sync --status`)",
                FRESH_WAIT.as_secs()
            ),
        }
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

/// Starts `airlock __reap` in the background; `synced`: sync registrations
/// it unregisters (hands back) after the container exit. Returns its pid.
/// The vault passphrase is passed on only when `handover` says the waiter
/// cannot take the key from the key cache.
pub fn spawn_sync_waiter(
    kind: EngineKind,
    dir: &std::path::Path,
    what: WaitFor,
    synced: &[String],
    handover: &Handover,
) -> Result<u32> {
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
    for n in synced {
        args.extend(["--synced".to_owned(), n.clone()]);
    }
    launch::spawn_detached(&exe, &args, handover.passes_passphrase())
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
    /// A sync registration to hand back and remove after the exit.
    #[arg(long)]
    synced: Vec<String>,
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
    hand_back_after(ctx, &a.synced, || match (a.container, a.sandbox) {
        (Some(c), _) => launch::reap(engine.as_ref(), &c, &a.dir),
        (None, Some(id)) => launch::reap_by_label(
            engine.as_ref(),
            &id,
            &a.dir,
            std::time::Duration::from_secs(a.timeout),
        ),
        (None, None) => Err(Error::Usage("give --container or --sandbox".into())),
    })
}

/// Runs `wait` (until a sandbox is gone), then hands the sync
/// registrations `synced` back and removes them; the vault is opened first.
pub fn hand_back_after(
    ctx: &Ctx,
    synced: &[String],
    wait: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let layout = sync::Layout::new(&ctx.paths);
    // The vault is needed only for sessions whose truth is a record. It is
    // unlocked now, while the key cache is warm (`airlock run` has just
    // unlocked it), and its key kept until the hand-back, which may be
    // hours away; `airlock lock` makes the waiter drop it.
    let mut vault: Option<Arc<Vault>> = None;
    let mut _lock_watch = None;
    if !synced.is_empty() {
        match ctx.open_vault_unattended() {
            Ok(v) => {
                if let Err(e) = v.unlock_unattended() {
                    tracing::warn!(error = %e, "vault locked: sessions stored in the vault may not be handed back after the container exits");
                }
                let v = Arc::new(v);
                let held = Arc::clone(&v);
                _lock_watch = sync::watch::on_lock_signal(&layout, move || {
                    held.forget_key();
                    tracing::info!("airlock lock: vault key dropped");
                })
                .map_err(|e| tracing::debug!(error = %e, "not listening for airlock lock"))
                .ok();
                vault = Some(v);
            }
            Err(e) => {
                tracing::warn!(error = %e, "vault not available: sessions stored in the vault cannot be handed back");
            }
        }
    }
    let waited = wait();
    drop(_lock_watch);
    for n in synced {
        if let Err(e) = sync::unregister(&layout, vault.as_deref().map(|v| v.backend()), n) {
            tracing::warn!(sandbox = %n, error = %e, "could not hand the session back");
        }
    }
    waited
}
