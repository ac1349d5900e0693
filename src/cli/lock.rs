//! `airlock lock`: forget the cached vault key.

use airlock::error::Result;

use super::Ctx;

/// Forget the cached key of the encrypted-file vault.
///
/// After `lock`, the next command that needs a credential asks for the
/// passphrase again (or reads AIRLOCK_KEYRING_PASSWORD). Other backends keep
/// no key of airlock's, so this does nothing for them.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _a: Args) -> Result<()> {
    let v = ctx.open_vault()?;
    v.lock()?;
    anstream::eprintln!("airlock: the {} vault is locked", v.kind());
    Ok(())
}
