//! `airlock remove <agent>`: forget a stored credential.

use airlock::error::{Error, Result};
use airlock::vault::{CredentialId, DEFAULT_ACCOUNT};

use super::Ctx;

/// Remove a stored credential from the vault.
///
/// Only airlock's copy is removed: the agent's own login on this machine is
/// never touched.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent: claude, codex, gemini, or a custom agent.
    agent: String,

    /// The account to remove.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ACCOUNT)]
    account: String,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let id = CredentialId::new(&a.agent, &a.account)?;
    let vault = ctx.open_vault()?;
    if vault.remove(&id)? {
        anstream::eprintln!("airlock: removed {id} from the {} vault", vault.kind());
        Ok(())
    } else {
        Err(Error::NotFound {
            what: format!("a stored credential for {id}"),
            fix: "`airlock accounts` lists what is stored".into(),
        })
    }
}
