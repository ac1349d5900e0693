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
    /// Hold while these grants (placeholder hashes) live and are not
    /// revoked, rather than any grant of the sandbox (pods: rendering again
    /// replaces the grants, and with them the hold).
    #[arg(long)]
    grant: Vec<String>,
}

/// How often the hold looks at the grants.
const EVERY: Duration = Duration::from_secs(2);

pub fn hold(ctx: &Ctx, a: HoldArgs) -> Result<()> {
    let layout = Layout::new(&ctx.paths);
    super::run::hand_back_after(ctx, &a.synced, || {
        loop {
            std::thread::sleep(EVERY);
            let now = jiff::Timestamp::now();
            let held = |g: &registry::Grant| {
                // gone, or (a pod's) expired for longer than the proxy keeps
                // it, or revoked (a pod's grant is never renewed then)
                !g.stale(now)
                    && if a.grant.is_empty() {
                        g.sandbox == a.sandbox
                    } else {
                        a.grant.contains(&g.placeholder_sha256) && g.revoked_at.is_none()
                    }
            };
            match registry::load(&layout) {
                Ok(g) if !g.iter().any(held) => return Ok(()),
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
    serve(ctx, vault, plan, id, id, &[])
}

/// [`serve_sessions`] for grants that are replaced under the same sandbox
/// id (pods: `airlock k8s` rendered again): the hold lives as long as
/// these grants of `plan` (by placeholder hash), and its registrations are
/// named after them, so that the hold of the grants replaced hands back
/// only its own.
pub fn serve_sessions_of_grants(
    ctx: &Ctx,
    vault: &Vault,
    plan: &SandboxPlan,
    id: &str,
) -> Result<()> {
    let hashes: Vec<String> = plan
        .proxy
        .iter()
        .filter_map(|g| match &g.placeholder {
            airlock::plan::Value::Secret(p) => Some(airlock::proxy::placeholder::hash(p.expose())),
            _ => None,
        })
        .collect();
    let named =
        airlock::cluster::k8s::session_registration(id, hashes.first().map_or("0", String::as_str));
    serve(ctx, vault, plan, id, &named, &hashes)
}

fn serve(
    ctx: &Ctx,
    vault: &Vault,
    plan: &SandboxPlan,
    id: &str,
    named: &str,
    hashes: &[String],
) -> Result<()> {
    let names: Vec<String> = plan
        .proxy
        .iter()
        .filter(|g| g.method == Method::Session && g.truth.is_some() && g.reference.is_none())
        .map(|g| format!("{named}-{}", g.agent))
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
    for h in hashes {
        args.extend(["--grant".to_owned(), h.clone()]);
    }
    let pid = launch::spawn_detached(&exe, &args, handover.passes_passphrase())?;
    let layout = sync::Layout::new(&ctx.paths);
    let mut synced = Vec::new();
    super::run::register_proxy_refresh_as(&layout, vault, plan, named, pid, &mut synced)?;
    // the proxy opens the vault from the key cache, without a prompt
    let _ = vault.hand_over();
    sync::ensure_daemon(&layout, &exe, &handover)?;
    super::run::wait_fresh(ctx, &layout, &synced)
}
