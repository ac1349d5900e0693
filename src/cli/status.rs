//! `airlock status`: what is stored, and its health.

use std::collections::BTreeMap;

use airlock::agents::HostEnv;
use airlock::agents::validate::tilde;
use airlock::capture::{self, Agent};
use airlock::error::Result;
use airlock::status::{self, VaultInfo};
use jiff::Timestamp;

use super::Ctx;

/// Show every stored credential and host login, with its health.
///
/// States: valid, expiring (within [status] expiring_days, 30 by default),
/// expired, refreshable (a session whose access token lapsed; the agent
/// renews it), missing, invalid. Expiring and expired credentials are also
/// reported on stderr with the exact steps to renew them.
///
/// Exits 0 whatever the states; scripts read --json (docs/status-json.md).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this agent.
    #[arg(long, value_name = "AGENT")]
    agent: Option<String>,

    /// Print JSON (schema: docs/status-json.md).
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let agents = match &a.agent {
        Some(n) => vec![Agent::resolve(n, &ctx.config)?],
        None => Agent::all(&ctx.config),
    };
    let vault = ctx.open_vault()?;
    let mut records = vault.list()?;
    if let Some(n) = &a.agent {
        records.retain(|r| &r.id.agent == n);
    }
    let env = HostEnv::from_process(ctx.paths.home.clone());
    let mut hosts = BTreeMap::new();
    for agent in &agents {
        let paths = agent.host_paths(&env);
        let Some(first) = paths.first() else {
            continue;
        };
        let fallback = tilde(first, &env.home);
        hosts.insert(
            agent.name().to_owned(),
            (agent.find_host_login(&env), fallback),
        );
    }
    let now = Timestamp::now();
    let files: BTreeMap<String, _> = agents
        .iter()
        .filter_map(|agent| {
            capture::configured_file(*agent, &ctx.config, &env.home, now)
                .map(|f| (agent.name().to_owned(), f))
        })
        .collect();
    let report = status::report(
        &agents,
        &records,
        &hosts,
        &files,
        VaultInfo {
            backend: vault.kind().to_string(),
            location: vault.location(),
        },
        now,
        &ctx.config,
    );
    if a.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| airlock::Error::Other(e.to_string()))?;
        emit(&text);
    } else {
        emit(&status::table(&report, ctx.color));
    }
    for w in &report.warnings {
        anstream::eprintln!("airlock: warning: {w}");
    }
    Ok(())
}

/// Prints a line to stdout; a closed pipe (`airlock status | head`) is not an error.
pub(super) fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
