//! `airlock lock`: forget the cached vault key.

use airlock::error::Result;
use airlock::sync;

use super::Ctx;

/// Forget the cached key of the encrypted-file vault.
///
/// After `lock`, the next command that needs a credential asks for the
/// passphrase again (or reads AIRLOCK_KEYRING_PASSWORD). A running `airlock
/// sync` watcher and the waiters of `run -d` sandboxes drop the key they
/// hold too: sessions stored in the vault are written back again once a
/// command unlocks it (the next `airlock run`). Other backends keep no key
/// of airlock's, so this does nothing for them.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _a: Args) -> Result<()> {
    let v = ctx.open_vault()?;
    v.lock()?;
    // Tell the sync helpers, which keep the key while sandboxes run.
    let layout = sync::Layout::new(&ctx.paths);
    match sync::signal_lock(&layout) {
        Ok(told) => tracing::debug!(told, "sync helpers told to drop the vault key"),
        Err(e) => {
            anstream::eprintln!(
                "airlock: warning: could not tell running sync helpers to drop the vault key: {e}"
            )
        }
    }
    anstream::eprintln!("airlock: the {} vault is locked", v.kind());
    Ok(())
}
