//! Login sessions behind the proxy for sandboxes airlock does not wait on
//! (a Swarm service, a Dev Container): the watcher keeps refreshing the
//! session (the proxy reads its current access token) for as long as the
//! sandbox's proxy grant lives; a small `__proxy-hold` process stands for
//! the sandbox and hands the session back once the grant is gone (the
//! service removed, the container stopped, or revoked and gone).

use std::time::Duration;

use airlock::error::{Error, Result};
use airlock::plan::SandboxPlan;
use airlock::proxy::registry::{self, Layout};
use airlock::sandbox::launch;
use airlock::sync;
use airlock::vault::{Method, Vault};

use super::Ctx;

/// Internal: wait until a proxy sandbox's grants are gone, then hand its
/// sessions back to the watcher's registry.
#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    /// The proxy sandbox id.
    #[arg(long)]
    sandbox: String,
    /// A sync registration to hand back and remove then.
    #[arg(long)]
    synced: Vec<String>,
}

/// How often the hold looks at the grants.
const EVERY: Duration = Duration::from_secs(2);

pub fn hold(ctx: &Ctx, a: HoldArgs) -> Result<()> {
    let layout = Layout::new(&ctx.paths);
    super::run::hand_back_after(ctx, &a.synced, || {
        loop {
            std::thread::sleep(EVERY);
            match registry::load(&layout) {
                Ok(g) if !g.iter().any(|g| g.sandbox == a.sandbox) => return Ok(()),
                _ => {}
            }
        }
    })
}

/// Proxy mode for sandbox `id` (its grants registered): the plan's login
/// sessions are registered with the watcher, held by a
/// `__proxy-hold` process that lives as long as the grants. Does nothing
/// when the plan has no session.
pub fn serve_sessions(ctx: &Ctx, vault: &Vault, plan: &SandboxPlan, id: &str) -> Result<()> {
    let names: Vec<String> = plan
        .proxy
        .iter()
        .filter(|g| g.method == Method::Session && g.truth.is_some() && g.reference.is_none())
        .map(|g| format!("{id}-{}", g.agent))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot find the airlock executable: {e}")))?;
    let handover = super::run::hand_over(vault, plan);
    let mut args = vec!["__proxy-hold".to_owned(), "--sandbox".into(), id.to_owned()];
    for n in &names {
        args.extend(["--synced".to_owned(), n.clone()]);
    }
    let pid = launch::spawn_detached(&exe, &args, handover.passes_passphrase())?;
    let layout = sync::Layout::new(&ctx.paths);
    let mut synced = Vec::new();
    super::run::register_proxy_refresh_as(&layout, vault, plan, id, pid, &mut synced)?;
    // the proxy opens the vault from the key cache, without a prompt
    let _ = vault.hand_over();
    sync::ensure_daemon(&layout, &exe, &handover)?;
    super::run::wait_fresh(ctx, &layout, &synced)
}
