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
/// When the vault cannot be opened (locked: 3, damaged: 4, unreachable: 10),
/// host logins and secret files are still listed, stored credentials show
/// as unavailable with the reason and the fix, and status then exits with
/// the vault's code.
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
    let opened = ctx.open_vault().and_then(|v| {
        let records = v.list()?;
        Ok((v, records))
    });
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
    let (report, vault_error) = match opened {
        Ok((vault, mut records)) => {
            if let Some(n) = &a.agent {
                records.retain(|r| &r.id.agent == n);
            }
            let info = VaultInfo {
                backend: vault.kind().to_string(),
                location: vault.location(),
            };
            let r = status::report(&agents, &records, &hosts, &files, info, now, &ctx.config);
            (r, None)
        }
        Err(e) => {
            let info = failed_vault(&e);
            let r =
                status::report_without_vault(&agents, &e, &hosts, &files, info, now, &ctx.config);
            (r, Some(e))
        }
    };
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
    // Everything else was shown; the exit code is the vault's.
    vault_error.map_or(Ok(()), Err)
}

/// The vault that failed to open, as far as its error says.
fn failed_vault(e: &airlock::Error) -> VaultInfo {
    use airlock::Error;
    let (backend, location) = match e {
        Error::NoPassphrase { path }
        | Error::WrongPassphrase { path }
        | Error::Corrupt { path, .. }
        | Error::UnsupportedVersion { path, .. } => ("file".to_owned(), path.display().to_string()),
        Error::Backend { backend, .. } => (backend.clone(), "-".to_owned()),
        _ => ("unknown".to_owned(), "-".to_owned()),
    };
    VaultInfo { backend, location }
}

/// Prints a line to stdout; a closed pipe (`airlock status | head`) is not an error.
pub(super) fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
