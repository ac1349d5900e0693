//! `airlock audit`: what went through the proxy.

use airlock::error::{Error, Result};
use airlock::proxy::audit;
use airlock::proxy::registry::Layout;

use super::Ctx;

/// Show the proxy's audit log: one line per request of a proxy-mode sandbox.
///
/// Time, sandbox, agent:account, method, upstream host and path, status,
/// latency and bytes each way. The log never holds a credential, a header
/// value, a query string or a body.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this sandbox's requests.
    #[arg(long, value_name = "SANDBOX")]
    sandbox: Option<String>,

    /// Only requests since this time: RFC 3339 (2026-12-03T10:00:00Z) or
    /// an age (30m, 2h, 1d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,

    /// One JSON object per line, as stored.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let layout = Layout::new(&ctx.paths);
    let since = a.since.as_deref().map(parse_since).transpose()?;
    let entries: Vec<_> = audit::read(&layout.audit())
        .into_iter()
        .filter(|e| a.sandbox.is_none() || e.sandbox.as_deref() == a.sandbox.as_deref())
        .filter(|e| since.is_none_or(|s| e.time >= s))
        .collect();
    for e in &entries {
        if a.json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            println!(
                "{} {} {}:{} {} {}{} {}{} {}ms up {}B down {}B",
                e.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                e.sandbox.as_deref().unwrap_or("-"),
                e.agent.as_deref().unwrap_or("-"),
                e.account.as_deref().unwrap_or("-"),
                e.method,
                e.upstream.as_deref().unwrap_or("-"),
                e.path,
                e.status,
                e.refused
                    .as_deref()
                    .map(|r| format!(" (refused: {r})"))
                    .unwrap_or_default(),
                e.latency_ms,
                e.bytes_up,
                e.bytes_down
            );
        }
    }
    Ok(())
}

fn parse_since(s: &str) -> Result<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| bad_since(s))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad_since(s)),
    };
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(secs))
        .map_err(|_| bad_since(s))
}

fn bad_since(s: &str) -> Error {
    Error::Usage(format!(
        "--since {s:?} is neither a time (2026-12-03T10:00:00Z) nor an age (30m, 2h, 1d)"
    ))
}
