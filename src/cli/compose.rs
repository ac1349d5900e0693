//! `airlock compose`: a compose override file for one service.

use airlock::error::Result;
use airlock::render;

use super::Ctx;
use super::docker_flags::{build, hand_to_waiter};
use super::run::{SandboxArgs, SyncUse};

/// Print a compose override that gives one service the agents' credentials.
///
///     airlock compose --service dev --image IMG --agent claude > airlock.override.yml
///
///     docker compose -f compose.yml -f airlock.override.yml up
///
/// Like docker-flags, it writes the sandbox directory now (the override only
/// holds its path, plain variables and the shim as entrypoint), and the
/// directory is removed when the service's container exits: generate a new
/// override for each `up`.
///
/// A Claude or Codex login session gets an access token only, unless you
/// pass --rotation sync: the override then also mounts the account's shared
/// session directory (read-write), and the session the agent refreshes there
/// goes back to the vault or the host's login after the container exits.
///
/// airlock's flags may be in any order; engine options belong on the
/// service in your compose file (given here, airlock stops and says so).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    sandbox: SandboxArgs,

    /// The compose service to override.
    #[arg(long, value_name = "NAME")]
    service: String,

    /// The service's image (its entrypoint, command and user are read with
    /// `image inspect`).
    #[arg(long, value_name = "IMAGE")]
    image: String,

    /// The service's user, if it sets `user:` (`UID[:GID]` or a name).
    #[arg(long, short = 'u', value_name = "USER")]
    user: Option<String>,

    /// The service's `entrypoint:`, if it sets one (a single command).
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
}

pub fn run(ctx: &Ctx, mut a: Args) -> Result<()> {
    super::docker_flags::start_proxy(ctx, &mut a.sandbox, &a.image)?;
    let (mut plan, vault) = a.sandbox.resolve(ctx, SyncUse::OnRequest)?;
    let built = build(
        ctx,
        &a.sandbox,
        &plan,
        &a.image,
        a.user.as_deref(),
        a.entrypoint.as_deref(),
    )?;
    let service = a.service;
    let yaml = hand_to_waiter(ctx, &vault, &mut plan, built, |plan, sb, engine| {
        render::compose_override(plan, sb, engine, &service)
    })?;
    print!("{yaml}");
    Ok(())
}
