//! `airlock remove <agent>`: forget a stored credential or a secret reference.

use airlock::error::{Error, Result};
use airlock::vault::{CredentialId, DEFAULT_ACCOUNT};

use super::Ctx;

/// Remove a stored credential from the vault, and the account's secret
/// reference from config.toml.
///
/// Only airlock's copy is removed: the agent's own login on this machine is
/// never touched. A secret reference (`[accounts.AGENT.ACCOUNT] secret_ref`
/// in config.toml) is removed with its settings; the rest of the file and
/// its comments stay as they were. The secret manager the reference points
/// to is not touched either.
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
    let path = ctx.paths.config_file();
    let had_ref = airlock::secretref::remove_from_config(&path, &id)?;
    if had_ref {
        anstream::eprintln!(
            "airlock: removed the secret reference of {id} from {} (the secret manager it pointed to was not touched)",
            path.display()
        );
    }
    let vault = match ctx.open_vault() {
        Ok(v) => v,
        Err(e) if had_ref => {
            anstream::eprintln!(
                "airlock: warning: the vault could not be opened ({e}); a credential stored there for {id}, if any, is still there: run `airlock remove` again once it can be opened"
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if vault.remove(&id)? {
        anstream::eprintln!("airlock: removed {id} from the {} vault", vault.kind());
        Ok(())
    } else if had_ref {
        Ok(())
    } else {
        Err(Error::NotFound {
            what: format!("a stored credential or secret reference for {id}"),
            fix: "`airlock accounts` lists what is stored and referenced".into(),
        })
    }
}
