//! `airlock sync`: the watcher that keeps rotating sessions in step between
//! sandboxes and their source of truth (see `docs/rotation.md`).

use std::time::Duration;

use airlock::error::Result;
use airlock::sync::watch::{self, Options};
use airlock::sync::{self, Layout};
use airlock::vault::{Backend, Handover};

use super::Ctx;

/// Keep refreshed OAuth sessions in step between sandboxes and the host.
///
/// Watches the shared credential directories of running sandboxes (inotify,
/// no polling): a credential an agent refreshed inside a sandbox is written
/// back to where it came from (the vault, or the host agent's file), and a
/// new host login reaches the running sandboxes. `airlock run` starts it in
/// the background when needed; it exits after the last sandbox is gone.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run in this terminal with logs on stderr instead of in the background.
    #[arg(long)]
    foreground: bool,

    /// Seconds to keep running once no sandbox is registered.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    linger: u64,

    /// Never exit for lack of sandboxes (debugging, benchmarks).
    #[arg(long, conflicts_with = "linger")]
    stay: bool,

    /// Show the registered sandboxes and each account's last sync, then exit.
    #[arg(long, conflicts_with_all = ["foreground", "stay"])]
    status: bool,

    /// With --status: print JSON.
    #[arg(long, requires = "status")]
    json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let layout = Layout::new(&ctx.paths);
    if a.status {
        return status(&layout, a.json);
    }
    if !a.foreground {
        let exe = std::env::current_exe()
            .map_err(|e| airlock::Error::Other(format!("cannot find the airlock binary: {e}")))?;
        // Started by hand: it inherits the passphrase if one is exported
        // (it cannot be sure the key cache holds the key).
        let handover = if std::env::var_os(airlock::vault::file::PASSPHRASE_ENV).is_some() {
            Handover::Passphrase
        } else {
            Handover::Nothing
        };
        if sync::ensure_daemon(&layout, &exe, &handover)? {
            eprintln!(
                "airlock sync started in the background (log: {})",
                layout.daemon_log().display()
            );
        } else {
            eprintln!("airlock sync is already running");
        }
        return Ok(());
    }
    // The vault is needed only for accounts whose truth is a vault record;
    // a watcher that cannot open it still serves host-file accounts.
    // Never a prompt: the watcher unlocks from the key cache or the
    // environment (see `watch::Daemon`), also when run in a terminal.
    let vault = match ctx.open_vault_unattended() {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "vault not available: accounts stored in the vault will not sync");
            None
        }
    };
    let opts = Options {
        linger: (!a.stay).then(|| Duration::from_secs(a.linger)),
        ..Options::default()
    };
    let refresh = ctx.config.sync.refresh_policy()?;
    tracing::info!(
        enabled = refresh.enabled,
        lead_s = refresh.lead.as_secs_f64(),
        "airlock refreshes synced sessions itself"
    );
    let backend: Option<&dyn Backend> = vault.as_ref().map(|v| v.backend());
    watch::run(layout, backend, opts, refresh)
}

fn status(layout: &Layout, json: bool) -> Result<()> {
    let r = sync::report(layout)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        return Ok(());
    }
    println!(
        "watcher: {}",
        if r.watcher_running {
            "running"
        } else {
            "not running"
        }
    );
    if r.sandboxes.is_empty() {
        println!("no sandbox is registered for sync");
        return Ok(());
    }
    for e in &r.sandboxes {
        println!(
            "sandbox {}: {}:{} ({})",
            e.sandbox, e.spec.agent, e.spec.account, e.spec.truth
        );
    }
    for s in &r.accounts {
        let last = s
            .last_sync
            .map(|t| format!("{t} ({})", s.direction.as_deref().unwrap_or("?")))
            .unwrap_or_else(|| "never".into());
        let exp = s
            .expiry
            .map(|t| t.to_string())
            .unwrap_or_else(|| "?".into());
        println!(
            "account {}:{}: last sync {last}, session expires {exp}",
            s.agent, s.account
        );
        if let Some(r) = &s.last_rejected {
            println!("  last rejected sandbox write: {r}");
        }
        if let Some(t) = s.refreshed_at {
            println!("  refreshed by airlock at {t}");
        }
        if let Some(t) = s.next_refresh {
            println!("  next refresh by airlock at {t}");
        }
        if let (Some(e), Some(t)) = (&s.refresh_error, s.refresh_failed_at) {
            println!("  refresh failed at {t}: {e}");
        }
    }
    Ok(())
}
