//! `airlock accounts`: list what is stored.

use airlock::error::Result;
use airlock::status;
use comfy_table::{Table, presets};
use jiff::Timestamp;
use serde::Serialize;

use super::Ctx;

/// List the stored credentials (agent, account, method, dates), never
/// their values, and the secret references in config.toml (where the
/// value is: `cmd:pass show anthropic`, `file:…`, `env:…`).
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
    /// `stored` (in the vault); references are `reference` ([`RefRow`]).
    kind: &'static str,
    method: airlock::vault::Method,
    created_at: Timestamp,
    updated_at: Timestamp,
    expires_at: Option<Timestamp>,
    source: &'a str,
    label: Option<&'a str>,
    settings: &'a std::collections::BTreeMap<String, String>,
}

/// Agent, account, then stored before referenced.
type SortKey<'a> = (&'a str, &'a str, u8);

/// A secret reference in `airlock accounts --json`.
#[derive(Serialize)]
struct RefRow<'a> {
    kind: &'static str,
    #[serde(flatten)]
    listed: &'a airlock::secretref::Listed,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    if let Some(agent) = &a.agent {
        airlock::vault::validate_name("agent", agent)?;
    }
    let refs = airlock::secretref::list(&ctx.config, a.agent.as_deref(), &ctx.paths.home);
    // A vault that cannot be opened (locked, no passphrase) hides only the
    // stored credentials: the secret references, in config.toml, are still
    // listed, then the command fails with the vault's error and exit code.
    let (records, vault_error) = match ctx.open_vault().and_then(|v| v.list()) {
        Ok(r) => (r, None),
        Err(e) if !refs.is_empty() => (Vec::new(), Some(e)),
        Err(e) => return Err(e),
    };
    let records: Vec<_> = records
        .into_iter()
        .filter(|r| a.agent.as_ref().is_none_or(|g| &r.id.agent == g))
        .collect();
    let rows: Vec<Row<'_>> = records
        .iter()
        .map(|r| Row {
            agent: &r.id.agent,
            account: &r.id.account,
            kind: "stored",
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
        let value = |v: Result<serde_json::Value, serde_json::Error>| {
            v.map_err(|e| airlock::Error::Other(e.to_string()))
        };
        let mut all = Vec::new();
        for r in &rows {
            all.push(((r.agent, r.account, 0), value(serde_json::to_value(r))?));
        }
        for r in &refs {
            let row = RefRow {
                kind: "reference",
                listed: r,
            };
            let key = (r.agent.as_str(), r.account.as_str(), 1);
            all.push((key, value(serde_json::to_value(&row))?));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let all: Vec<_> = all.into_iter().map(|(_, v)| v).collect();
        super::status::emit(
            &serde_json::to_string_pretty(&all)
                .map_err(|e| airlock::Error::Other(e.to_string()))?,
        );
        return vault_error.map_or(Ok(()), Err);
    }
    if rows.is_empty() && refs.is_empty() {
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
    let mut lines: Vec<(SortKey<'_>, [String; 7])> = Vec::new();
    for r in &rows {
        lines.push((
            (r.agent, r.account, 0),
            [
                r.agent.to_owned(),
                r.account.to_owned(),
                r.method.to_string(),
                status::date(r.created_at),
                r.expires_at.map(status::date).unwrap_or_else(|| "-".into()),
                r.source.to_owned(),
                r.label.unwrap_or("").to_owned(),
            ],
        ));
    }
    for r in &refs {
        lines.push((
            (&r.agent, &r.account, 1),
            [
                r.agent.clone(),
                r.account.clone(),
                r.method.map_or("-".into(), |m| m.to_string()),
                "-".into(),
                "-".into(),
                format!("ref {}", r.reference),
                r.problem
                    .as_ref()
                    .map_or(String::new(), |_| "(unusable: see airlock status)".into()),
            ],
        ));
    }
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, l) in lines {
        t.add_row(l);
    }
    super::status::emit(&t.trim_fmt());
    vault_error.map_or(Ok(()), Err)
}
