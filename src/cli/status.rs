//! `airlock status`: what is stored, and its health.

use std::collections::BTreeMap;

use airlock::agents::Agent;
use airlock::agents::HostEnv;
use airlock::agents::validate::tilde;
use airlock::capture;
use airlock::error::Result;
use airlock::status::{self, VaultInfo};
use airlock::sync;
use jiff::Timestamp;
use serde_json::json;

use super::Ctx;

/// Show every stored credential and host login, with its health.
///
/// States: valid, expiring (within [status] expiring_days, 30 by default),
/// expired, refreshable (a session whose access token lapsed; the agent
/// renews it), missing, invalid. Expiring and expired credentials are also
/// reported on stderr with the exact steps to renew them. Secret references
/// (docs/secret-refs.md) show their last result (never running a command):
/// its state, invalid when it failed, or unchecked.
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

    /// Also list the Swarm secrets `airlock swarm` made and the services
    /// using them (asks the local Docker, a Swarm manager).
    #[arg(long)]
    swarm: bool,
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
    let mut report = report;
    status::add_entries(
        &mut report,
        reference_entries(ctx, &agents, now),
        &|agent| {
            ctx.config
                .agents
                .builtin(agent)
                .and_then(|c| c.account.clone())
                .or_else(|| {
                    ctx.config
                        .agents
                        .custom
                        .get(agent)
                        .and_then(|c| c.account.clone())
                })
                .unwrap_or_else(|| airlock::vault::DEFAULT_ACCOUNT.to_owned())
        },
    );
    let synced = sync_section(ctx, a.agent.as_deref());
    let (proxy_port, proxied, grants_problem) =
        airlock::proxy::status(&airlock::proxy::registry::Layout::new(&ctx.paths));
    if let Some(p) = grants_problem {
        // not an empty list in silence: the proxy's sandboxes are unknown
        report
            .warnings
            .push(format!("proxy-mode sandboxes cannot be listed: {p}"));
    }
    let swarm = a
        .swarm
        .then(|| super::swarm::status_secrets(a.agent.as_deref()));
    if a.json {
        let mut value =
            serde_json::to_value(&report).map_err(|e| airlock::Error::Other(e.to_string()))?;
        if let serde_json::Value::Object(m) = &mut value {
            m.insert("sync".into(), sync_json(&synced));
            m.insert(
                "proxy".into(),
                serde_json::json!({"port": proxy_port, "sandboxes": proxied}),
            );
            if let Some(s) = &swarm {
                m.insert("swarm".into(), super::swarm::status_json(s));
            }
        }
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| airlock::Error::Other(e.to_string()))?;
        emit(&text);
    } else {
        emit(&status::table(&report, ctx.color));
        if let Some(t) = sync_table(&synced) {
            emit(&t);
        }
        if !proxied.is_empty() {
            emit(&proxy_table(proxy_port, &proxied));
        }
        if let Some(s) = &swarm {
            emit(&super::swarm::status_table(s));
        }
    }
    for w in &report.warnings {
        anstream::eprintln!("airlock: warning: {w}");
    }
    // Everything else was shown; the exit code is the vault's.
    vault_error.map_or(Ok(()), Err)
}

/// One entry per configured secret reference, with its last result.
fn reference_entries(ctx: &Ctx, agents: &[Agent<'_>], now: Timestamp) -> Vec<status::Entry> {
    let last = airlock::secretref::read_last_results(&ctx.paths.state_dir);
    airlock::secretref::all_configured(&ctx.config, agents, &ctx.paths.home)
        .into_iter()
        .map(|(id, text, spec)| {
            status::reference_entry(
                &id.agent,
                &id.account,
                &spec.as_ref().map_or_else(
                    |_| airlock::secretref::shown(&text),
                    |s| s.reference.to_string(),
                ),
                last.get(&id.to_string()),
                spec.err().map(|e| e.to_string()),
                now,
                ctx.config.status.expiring_days,
            )
        })
        .collect()
}

/// The proxy-mode sandboxes (`--rotation proxy`) and their requests.
fn proxy_table(port: Option<u16>, sandboxes: &[airlock::proxy::SandboxStatus]) -> String {
    let mut s = format!(
        "\nProxy-mode sandboxes (proxy {}):\n",
        port.map_or("not running".to_owned(), |p| format!("on port {p}"))
    );
    for e in sandboxes {
        s.push_str(&format!(
            "  {}  {}  {} request(s), {} refused{}\n",
            e.sandbox,
            e.credential,
            e.requests,
            e.refused,
            if e.revoked { "  (revoked)" } else { "" }
        ));
        if let Some(t) = e.expires {
            s.pop();
            let past = t <= jiff::Timestamp::now();
            s.push_str(&format!(
                "  ({} {})\n",
                if past { "expired" } else { "expires" },
                t.round(jiff::Unit::Second).unwrap_or(t)
            ));
        }
    }
    s.pop();
    s
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

/// The running sandboxes with synced sessions (`--rotation sync`) and each
/// account's last sync, from the watcher's state files. Unreadable state is
/// shown as nothing running.
fn sync_section(ctx: &Ctx, agent: Option<&str>) -> sync::Report {
    let layout = sync::Layout::new(&ctx.paths);
    let mut r = sync::report(&layout).unwrap_or(sync::Report {
        watcher_running: false,
        sandboxes: Vec::new(),
        accounts: Vec::new(),
    });
    if let Some(a) = agent {
        r.sandboxes.retain(|e| e.spec.agent == a);
        r.accounts.retain(|s| s.agent == a);
    }
    r
}

fn sync_json(r: &sync::Report) -> serde_json::Value {
    let sandboxes: Vec<_> = r
        .sandboxes
        .iter()
        .map(|e| {
            json!({
                "sandbox": e.sandbox,
                "agent": e.spec.agent,
                "account": e.spec.account,
                "mode": sync::broker::mode_name(e.spec.broker),
                "truth": e.spec.truth.to_string(),
                "pid": e.pid,
                "registered_at": e.registered_at,
            })
        })
        .collect();
    json!({
        "watcher_running": r.watcher_running,
        "sandboxes": sandboxes,
        "accounts": r.accounts,
    })
}

/// The human section; `None` when no sandbox is registered (shown or left
/// by `--agent`), even while a watcher lingers after the last one exited.
fn sync_table(r: &sync::Report) -> Option<String> {
    if r.sandboxes.is_empty() {
        return None;
    }
    let mut s = format!(
        "\nRunning sandboxes (rotation sync or broker; watcher {}):\n",
        if r.watcher_running {
            "running"
        } else {
            "not running"
        }
    );
    let when = |t: Option<Timestamp>| {
        t.map_or("-".to_owned(), |t| {
            t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
        })
    };
    let mut rows = vec![[
        "SANDBOX".to_owned(),
        "ACCOUNT".to_owned(),
        "MODE".to_owned(),
        "SINCE".to_owned(),
    ]];
    for e in &r.sandboxes {
        rows.push([
            e.sandbox.clone(),
            format!("{}:{}", e.spec.agent, e.spec.account),
            sync::broker::mode_name(e.spec.broker).to_owned(),
            when(Some(e.registered_at)),
        ]);
    }
    s.push_str(&columns(&rows));
    s.push_str("\nLast sync per account:\n");
    let mut rows = vec![[
        "ACCOUNT".to_owned(),
        "TRUTH".to_owned(),
        "LAST SYNC".to_owned(),
        "DIRECTION".to_owned(),
        "EXPIRES".to_owned(),
    ]];
    for a in &r.accounts {
        rows.push([
            format!("{}:{}", a.agent, a.account),
            a.truth.clone(),
            when(a.last_sync),
            a.direction.clone().unwrap_or_else(|| "-".into()),
            when(a.expiry),
        ]);
    }
    s.push_str(&columns(&rows));
    for a in r.accounts.iter().filter(|a| a.last_rejected.is_some()) {
        s.push_str(&format!(
            "\n{}:{}: last rejected write: {}\n",
            a.agent,
            a.account,
            a.last_rejected.as_deref().unwrap_or_default()
        ));
    }
    for a in &r.accounts {
        if let Some(e) = &a.refresh_error {
            s.push_str(&format!(
                "\n{}:{}: airlock could not refresh the session ({}): {e}\n",
                a.agent,
                a.account,
                when(a.refresh_failed_at)
            ));
        } else if let Some(t) = a.next_refresh {
            s.push_str(&format!(
                "\n{}:{}: airlock refreshes the session next at {}\n",
                a.agent,
                a.account,
                when(Some(t))
            ));
        }
    }
    Some(s.trim_end().to_owned())
}

/// Left-aligned columns separated by two spaces.
fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn entry(sandbox: &str) -> sync::SandboxEntry {
        sync::SandboxEntry {
            sandbox: sandbox.to_owned(),
            spec: sync::AccountSpec {
                agent: "claude".into(),
                account: "default".into(),
                truth: sync::Truth::HostFile {
                    path: PathBuf::from("/home/u/.claude/.credentials.json"),
                },
                shared_dir: PathBuf::from("/run/airlock/sync/claude-default"),
                broker: false,
            },
            pid: Some(1),
            registered_at: Timestamp::from_second(1_800_000_000).unwrap(),
        }
    }

    #[test]
    fn a_lingering_watcher_without_sandboxes_shows_no_section() {
        let lingering = sync::Report {
            watcher_running: true,
            sandboxes: Vec::new(),
            accounts: Vec::new(),
        };
        assert_eq!(sync_table(&lingering), None);
        // --json keeps the documented shape: the watcher and empty lists.
        assert_eq!(
            sync_json(&lingering),
            json!({"watcher_running": true, "sandboxes": [], "accounts": []})
        );
    }

    #[test]
    fn a_registered_sandbox_shows_the_section() {
        for watcher_running in [true, false] {
            let r = sync::Report {
                watcher_running,
                sandboxes: vec![entry("sb1-claude")],
                accounts: Vec::new(),
            };
            let t = sync_table(&r).expect("a section");
            assert!(t.contains("Running sandboxes"), "{t}");
            assert!(t.contains("sb1-claude"), "{t}");
            assert!(t.contains("claude:default"), "{t}");
            assert!(t.contains("MODE") && t.contains("  sync  "), "{t}");
        }
    }

    #[test]
    fn a_broker_sandbox_says_so() {
        let mut e = entry("sb2-codex");
        e.spec.broker = true;
        let r = sync::Report {
            watcher_running: true,
            sandboxes: vec![e],
            accounts: Vec::new(),
        };
        assert!(sync_table(&r).unwrap().contains("  broker  "));
        assert_eq!(sync_json(&r)["sandboxes"][0]["mode"], "broker");
    }
}
