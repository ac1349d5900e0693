//! `airlock accounts`: list what is stored.

use airlock::error::Result;
use airlock::status;
use comfy_table::{Table, presets};
use jiff::Timestamp;
use serde::Serialize;

use super::Ctx;

/// List the stored credentials (agent, account, method, dates), never
/// their values.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this agent's accounts.
    agent: Option<String>,

    /// Print JSON (an array of objects; schema in docs/status-json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Row<'a> {
    agent: &'a str,
    account: &'a str,
    method: airlock::vault::Method,
    created_at: Timestamp,
    updated_at: Timestamp,
    expires_at: Option<Timestamp>,
    source: &'a str,
    label: Option<&'a str>,
    settings: &'a std::collections::BTreeMap<String, String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    if let Some(agent) = &a.agent {
        airlock::vault::validate_name("agent", agent)?;
    }
    let vault = ctx.open_vault()?;
    let records: Vec<_> = vault
        .list()?
        .into_iter()
        .filter(|r| a.agent.as_ref().is_none_or(|g| &r.id.agent == g))
        .collect();
    let rows: Vec<Row<'_>> = records
        .iter()
        .map(|r| Row {
            agent: &r.id.agent,
            account: &r.id.account,
            method: r.method,
            created_at: r.meta.created_at,
            updated_at: r.meta.updated_at,
            expires_at: r.meta.expires_at,
            source: &r.meta.source,
            label: r.meta.label.as_deref(),
            settings: &r.meta.settings,
        })
        .collect();
    if a.json {
        super::status::emit(
            &serde_json::to_string_pretty(&rows)
                .map_err(|e| airlock::Error::Other(e.to_string()))?,
        );
        return Ok(());
    }
    if rows.is_empty() {
        anstream::eprintln!(
            "airlock: no credentials stored; store one with `airlock auth <agent>`"
        );
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header([
        "AGENT", "ACCOUNT", "METHOD", "CREATED", "EXPIRES", "SOURCE", "LABEL",
    ]);
    for r in &rows {
        t.add_row([
            r.agent.to_owned(),
            r.account.to_owned(),
            r.method.to_string(),
            status::date(r.created_at),
            r.expires_at.map(status::date).unwrap_or_else(|| "-".into()),
            r.source.to_owned(),
            r.label.unwrap_or("").to_owned(),
        ]);
    }
    super::status::emit(&t.trim_fmt());
    Ok(())
}
