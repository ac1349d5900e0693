//! `airlock verify`: ask the genuine agent CLIs in a sandbox whether the
//! credentials airlock injects work.

use std::time::Duration;

use airlock::agents::HostEnv;
use airlock::error::{Error, Result};
use airlock::resolve::{Choices, Request};
use airlock::verify::{self, Options};
use jiff::Timestamp;

use super::Ctx;

/// Check that the agents are logged in inside a sandbox.
///
/// Starts a throwaway container from IMAGE with exactly the injection
/// `airlock run` gives it, but without network (`--network none`: no token
/// is sent anywhere or refreshed), and asks each agent's own CLI:
/// `claude auth status`, `codex login status`, and for Gemini its offline
/// auth-selection check. Run it after renewing a credential.
///
/// With `--rotation proxy` the sandbox is planned as `airlock run
/// --rotation proxy` plans it: the proxy is started, the container (which
/// then has a network, to reach the proxy) gets placeholders only, and
/// airlock also scans its environment and the agents' files for the real
/// credentials. No request goes upstream unless `--online` is given: then
/// each agent runs a one-shot prompt through the proxy, which must be
/// answered.
///
/// Exit codes: 0 every agent checked is logged in; 11 at least one is not
/// (or has no credential although it was named with --agent); 8 the engine
/// failed.
///
/// airlock's flags may be in any order; verify takes no engine flags (given
/// here, or the image without --image, airlock stops and shows the
/// corrected command line).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The same choices as `airlock run` (agents, rotation, work dir, …).
    #[command(flatten)]
    sandbox: super::run::SandboxArgs,

    /// The account to check, for every agent named without one (and for
    /// every built-in agent when none is named).
    #[arg(long, value_name = "NAME")]
    account: Option<String>,

    /// An image with the agents' CLIs installed.
    #[arg(long, value_name = "IMAGE", env = "AIRLOCK_IMAGE")]
    image: String,

    /// Time limit of each agent's check, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = verify::DEFAULT_TIMEOUT_SECS)]
    timeout: u64,

    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,

    /// With `--rotation proxy`: also send one request per agent through
    /// the proxy to the agent's API (a one-shot prompt; it uses the
    /// account's quota) and check that it is answered.
    #[arg(long)]
    online: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let sb = &a.sandbox;
    let engine = sb.engine_choice()?;
    let mut specs = sb.agents.clone();
    if let Some(acc) = &a.account {
        if specs.is_empty() {
            specs = airlock::agents::BUILTIN
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        }
        for s in &mut specs {
            if !s.contains(':') {
                *s = format!("{s}:{acc}");
            }
        }
    }
    let requested = sb
        .rotation
        .as_deref()
        .map(str::parse::<airlock::agents::inject::Rotation>)
        .transpose()?;
    let proxy = requested == Some(airlock::agents::inject::Rotation::Proxy);
    if a.online && !proxy {
        return Err(Error::Usage(
            "--online checks a request through the proxy: use it with --rotation proxy".into(),
        ));
    }
    let choices = Choices {
        agents: specs,
        workdir: sb.workdir.clone(),
        aliases: sb.no_aliases.then_some(false),
        require_auth: sb.require_auth,
        host_configs: sb.no_host_configs.then_some(false),
        // verify checks offline and never refreshes, so nothing would ever
        // sync: `--rotation sync` (run's default) is checked as access-only.
        rotation: requested.map(|r| match r {
            airlock::agents::inject::Rotation::Sync | airlock::agents::inject::Rotation::Broker => {
                airlock::agents::inject::Rotation::AccessOnly
            }
            r => r,
        }),
    };
    let cwd =
        std::env::current_dir().map_err(|e| Error::Other(format!("no current directory: {e}")))?;
    let project = airlock::project::find(&cwd)?.map(|(_, p)| p);
    let req = Request::from_choices(&choices, project.as_ref())?;
    let vault = ctx.open_vault()?;
    let host = HostEnv::from_process(ctx.paths.home.clone());
    let opts = Options {
        image: a.image,
        engine,
        timeout: Duration::from_secs(a.timeout.max(1)),
        runtime_dir: ctx.paths.runtime_dir.clone(),
        proxy: if proxy {
            // the proxy opens the vault from the key cache, without a prompt
            let _ = vault.hand_over();
            Some(airlock::proxy::verify::Check {
                layout: airlock::proxy::registry::Layout::new(&ctx.paths),
                exe: std::env::current_exe().map_err(|e| {
                    Error::Other(format!("cannot find the airlock executable: {e}"))
                })?,
                online: a.online,
            })
        } else {
            None
        },
    };
    let mut report = verify::verify(&req, &vault, &host, &ctx.config, &opts, Timestamp::now())?;
    verify::note_rotation(
        &mut report,
        requested.unwrap_or(airlock::agents::inject::Rotation::Sync),
    );
    for w in &report.warnings {
        anstream::eprintln!("airlock: warning: {w}");
    }
    if a.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", report.table());
    }
    if report.ok() {
        Ok(())
    } else {
        let failed: Vec<&str> = report
            .agents
            .iter()
            .filter(|c| c.failed())
            .map(|c| c.agent.as_str())
            .collect();
        if failed.is_empty() {
            return Err(Error::CheckFailed(
                "verify: airlock has no credential for any agent, so there is nothing to check; store one with `airlock auth <agent>` or `airlock login <agent> --image IMAGE`".into(),
            ));
        }
        Err(Error::CheckFailed(format!(
            "verify: {} not logged in inside {}",
            failed.join(", "),
            report.image
        )))
    }
}
