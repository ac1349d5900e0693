//! `airlock proxy`: the host proxy of `--rotation proxy` (docs/proxy.md).

use std::net::IpAddr;
use std::time::Duration;

use airlock::error::Result;
use airlock::proxy::daemon::{self, Options};
use airlock::proxy::registry::Layout;

use super::Ctx;

/// Run the credential proxy for `--rotation proxy` sandboxes in this terminal.
///
/// Sandboxes in proxy mode hold only a placeholder; this proxy swaps it for
/// the real credential on the way to the agent's API (Anthropic, OpenAI,
/// ChatGPT, Gemini), over TLS, to that API only. `airlock run --rotation
/// proxy` starts one in the background when none runs (it exits after its
/// last sandbox); run it yourself to keep it up, for example as a systemd
/// user unit (docs/proxy.md). It listens on 127.0.0.1 and on the container
/// bridges' host addresses (docker0, podman), never on every address.
/// Every request is written to the audit log (`airlock audit`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Listen on this address instead (repeatable). Default: 127.0.0.1 and
    /// every container bridge's host address, including bridges that
    /// appear later.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<IpAddr>,

    /// The port, the same on every address. Default: any free port (the
    /// running proxy's port is in `<state>/proxy/port`).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    port: u16,

    /// Exit once no sandbox has a grant for a few seconds (how `airlock
    /// run` starts it).
    #[arg(long, hide = true)]
    on_demand: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let layout = Layout::new(&ctx.paths);
    // Never a prompt: the proxy unlocks from the key cache or the
    // environment, when a request first needs the vault.
    let paths = ctx.paths.clone();
    let config = ctx.config.clone();
    let open = Box::new(move || {
        let opts = airlock::vault::OpenOptions::new(&paths, &config, false)?;
        airlock::vault::open(opts)
    });
    daemon::run(
        layout,
        open,
        Options {
            listen: a.listen,
            port: a.port,
            exit_when_idle: a.on_demand.then_some(Duration::from_secs(5)),
            sync: Some(airlock::sync::Layout::new(&ctx.paths)),
        },
    )
}
