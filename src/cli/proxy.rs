//! `airlock proxy`: the host proxy of `--rotation proxy` (docs/proxy.md).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use airlock::error::Result;
use airlock::proxy::daemon::{self, Options};
use airlock::proxy::metrics;
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
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,

    /// Listen on this address instead (repeatable). Default: 127.0.0.1 and
    /// every container bridge's host address, including bridges that
    /// appear later.
    #[arg(long, value_name = "ADDR")]
    listen: Vec<IpAddr>,

    /// The port, the same on every address. Default: any free port (the
    /// running proxy's port is in `<state>/proxy/port`).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    port: u16,

    /// Also serve the Prometheus metrics over HTTP (`GET /metrics`) on
    /// this loopback address, for a scraper (e.g. 127.0.0.1:9464). Never a
    /// bridge or public address: sandboxes must not read them. Without it
    /// the metrics are only on the proxy's unix socket (`airlock proxy
    /// metrics`).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,

    /// Exit once no sandbox has a grant for a few seconds (how `airlock
    /// run` starts it).
    #[arg(long, hide = true)]
    on_demand: bool,
}

/// What to do instead of running the proxy.
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Print the running proxy's metrics (Prometheus text format).
    ///
    /// Read through the proxy's private unix socket
    /// (`<state>/proxy/metrics.sock`, 0600): requests by agent and outcome,
    /// refusals, upstream errors, refreshes, accounts whose credential is
    /// dead, live grants, open streams, bytes and latency. Never a
    /// credential or a placeholder. Exit 6 when no proxy runs.
    Metrics,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let layout = Layout::new(&ctx.paths);
    if let Some(Action::Metrics) = a.action {
        let text = metrics::scrape(&layout)?;
        super::status::emit(text.trim_end_matches('\n'));
        return Ok(());
    }
    if let Some(addr) = a.metrics_listen {
        metrics::check_listen(addr)?;
    }
    // once, before any lock or socket is taken: the same process again,
    // with glibc's allocator cache raised (src/proxy/tune.rs)
    airlock::proxy::tune::allocator();
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
            metrics_listen: a.metrics_listen,
        },
    )
}
