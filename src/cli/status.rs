//! `airlock status`: what is stored, and its health.

use std::collections::BTreeMap;

use airlock::agents::HostEnv;
use airlock::agents::validate::tilde;
use airlock::capture::Agent;
use airlock::error::Result;
use airlock::status::{self, Entry, Report, State, StoredIn, VaultInfo};
use comfy_table::{Cell, Color, Table, presets};
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
    let records = vault.list()?;
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
    let report = status::report(
        &agents,
        &records,
        &hosts,
        VaultInfo {
            backend: vault.kind().to_string(),
            location: vault.location(),
        },
        now,
        ctx.config.status.expiring_days,
    );
    if a.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| airlock::Error::Other(e.to_string()))?;
        emit(&text);
    } else {
        emit(&table(&report, ctx.color));
    }
    for w in &report.warnings {
        anstream::eprintln!("airlock: warning: {w}");
    }
    Ok(())
}

fn table(r: &Report, color: bool) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    if color {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    t.set_header([
        "AGENT",
        "ACCOUNT",
        "METHOD",
        "STORED IN",
        "STATE",
        "EXPIRES",
        "MODIFIED",
        "SANDBOX GETS",
    ]);
    for e in &r.credentials {
        t.add_row(vec![
            Cell::new(&e.agent),
            Cell::new(e.account.as_deref().unwrap_or("-")),
            Cell::new(
                e.method
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::new(stored(e)),
            state_cell(e.state, color),
            Cell::new(expires(e, r.now)),
            Cell::new(
                e.modified_at
                    .map(status::date)
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::new(e.delivery.as_deref().unwrap_or("-")),
        ]);
    }
    t.trim_fmt()
}

fn stored(e: &Entry) -> String {
    match e.stored_in {
        StoredIn::Vault => {
            let backend = e
                .location
                .as_deref()
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or("?");
            format!("vault ({backend})")
        }
        StoredIn::Host => format!("host {}", e.location.as_deref().unwrap_or("?")),
        StoredIn::None => "-".into(),
    }
}

fn expires(e: &Entry, now: Timestamp) -> String {
    match (e.expires_at, e.method) {
        (_, None) => "-".into(),
        (None, _) => "never".into(),
        (Some(t), _) => format!("{} ({})", status::date(t), status::relative(t, now)),
    }
}

fn state_cell(s: State, color: bool) -> Cell {
    let c = Cell::new(s.as_str());
    if !color {
        return c;
    }
    match s {
        State::Valid => c.fg(Color::Green),
        State::Expiring => c.fg(Color::Yellow),
        State::Expired | State::Invalid => c.fg(Color::Red),
        State::Refreshable => c.fg(Color::Cyan),
        State::Missing => c.fg(Color::DarkGrey),
    }
}

/// Prints a line to stdout; a closed pipe (`airlock status | head`) is not an error.
pub(super) fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
