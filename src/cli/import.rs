//! `airlock import <tool>`: take over the credentials another tool keeps.

use std::path::PathBuf;

use airlock::agents::HostEnv;
use airlock::capture;
use airlock::error::{Error, Result};
use airlock::import::{self, Found, Scan, Tool};
use airlock::secretref;
use airlock::status;
use jiff::Timestamp;
use serde::Serialize;

use super::Ctx;

/// Import credentials from cloister, forage, caw, headjack or claude-hub
///
/// Reads the other tool's files or keyring entries (never modifying them),
/// validates every credential with the same rules as `airlock auth`, and
/// reports what it found and what it would store: agent, account, kind,
/// source and dates, never a value. Nothing is stored without --apply; with
/// it, everything is validated before anything is stored (exit code 7 when
/// something is rejected). See docs/import.md for what each tool's import
/// reads and what it leaves out.
///
/// Examples:
///   airlock import cloister                       # what would be imported
///   airlock import forage --from /var/lib/firefly-forage --apply
///   airlock import claude-hub --from ./claude-hub --account ci --apply
///   airlock import headjack --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The tool to import from.
    #[arg(value_enum)]
    tool: Tool,

    /// The tool's file or directory, when not in its default place
    /// (cloister's config.yaml, forage's stateDir, caw's manifest.json, a
    /// captured claude-hub directory).
    #[arg(long, value_name = "PATH")]
    from: Option<PathBuf>,

    /// Store what was found (without it, only report).
    #[arg(long)]
    apply: bool,

    /// The account name to store under (default: default).
    #[arg(long, value_name = "NAME")]
    account: Option<String>,

    /// Replace credentials already stored under the same agent and account
    /// (without it, --apply refuses and stores nothing).
    #[arg(long, requires = "apply")]
    replace: bool,

    /// forage: its `secrets` name → path map, as JSON (`nix eval --json
    /// …services.firefly-forage.secrets`).
    #[arg(long, value_name = "FILE")]
    secrets_map: Option<PathBuf>,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    tool: &'static str,
    from: &'a str,
    applied: bool,
    items: Vec<Row>,
    not_imported: &'a [import::Skipped],
}

#[derive(Serialize)]
struct Row {
    agent: String,
    account: String,
    kind: String,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<Timestamp>,
    action: &'static str,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let account = import::account_or_default(a.account);
    airlock::vault::validate_name("account", &account)?;
    let now = Timestamp::now();
    let scan = Scan {
        config: &ctx.config,
        env: HostEnv::from_process(ctx.paths.home.clone()),
        from: a.from,
        account,
        secrets_map: a.secrets_map,
        now,
    };
    let found = import::scan(a.tool, &scan)?;
    let nothing = found.items.is_empty() && found.references.is_empty();
    let (actions, ref_actions) = if a.apply && !nothing {
        apply(ctx, &found, a.replace, now)?
    } else {
        dry_run(ctx, &found)
    };
    let mut rows: Vec<Row> = found
        .items
        .iter()
        .zip(actions)
        .map(|(i, action)| {
            let r = &i.prepared.record;
            Row {
                agent: r.id.agent.clone(),
                account: r.id.account.clone(),
                kind: i.kind.clone(),
                source: i.source.clone(),
                created_at: Some(r.meta.created_at),
                expires_at: r.meta.expires_at,
                action,
            }
        })
        .collect();
    rows.extend(
        found
            .references
            .iter()
            .zip(ref_actions)
            .map(|(r, action)| Row {
                agent: r.spec.id.agent.clone(),
                account: r.spec.id.account.clone(),
                kind: format!("{} reference", r.spec.reference.kind()),
                source: format!("{} (from {})", r.spec.reference, r.source),
                created_at: None,
                expires_at: None,
                action,
            }),
    );
    for i in &found.items {
        for w in &i.prepared.warnings {
            anstream::eprintln!("airlock: warning: {w}");
        }
    }
    if a.json {
        let report = Report {
            tool: a.tool.name(),
            from: &found.from,
            applied: a.apply,
            items: rows,
            not_imported: &found.skipped,
        };
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Other(format!("could not write the report: {e}")))?;
        println!("{text}");
    } else {
        print_text(&found, &rows, a.apply, now);
    }
    Ok(())
}

/// What `--apply` would do with each item and reference: store it, or
/// replace a stored credential or a configured reference (which needs
/// --replace). The vault is only read, and only when it opens without a
/// prompt; otherwise every item reads "would store".
fn dry_run(ctx: &Ctx, found: &Found) -> (Vec<&'static str>, Vec<&'static str>) {
    let vault = if found.items.is_empty() {
        None
    } else {
        ctx.open_vault_unattended()
            .inspect_err(|e| tracing::info!(error = %e, "dry run: the vault was not read"))
            .ok()
    };
    let items = found
        .items
        .iter()
        .map(|i| {
            let taken = vault
                .as_ref()
                .is_some_and(|v| matches!(v.get(&i.prepared.record.id), Ok(Some(_))));
            if taken {
                "would replace (needs --replace)"
            } else {
                "would store"
            }
        })
        .collect();
    let refs = found
        .references
        .iter()
        .map(|r| {
            if configured(ctx, &r.spec.id) {
                "would replace its reference (needs --replace)"
            } else {
                "would reference"
            }
        })
        .collect();
    (items, refs)
}

/// Whether the config file already has a reference for `id`.
fn configured(ctx: &Ctx, id: &airlock::vault::CredentialId) -> bool {
    matches!(
        secretref::configured(&ctx.config, id, &ctx.paths.home),
        Ok(Some(_)) | Err(_)
    )
}

/// Checks every reference (reading it once, validated as `airlock auth
/// --ref` does) and that nothing would be replaced without `replace`; then
/// stores every item and writes every reference.
fn apply(
    ctx: &Ctx,
    found: &Found,
    replace: bool,
    now: Timestamp,
) -> Result<(Vec<&'static str>, Vec<&'static str>)> {
    for r in &found.references {
        let agent = airlock::agents::Agent::resolve(&r.spec.id.agent, &ctx.config)?;
        let v = secretref::resolve(agent, &r.spec, now)?;
        for w in &v.warnings {
            anstream::eprintln!("airlock: warning: {w}");
        }
    }
    let vault = if found.items.is_empty() {
        None
    } else {
        Some(ctx.open_vault()?)
    };
    if !replace {
        let mut taken = Vec::new();
        if let Some(vault) = &vault {
            for i in &found.items {
                let id = &i.prepared.record.id;
                if vault.get(id)?.is_some() {
                    taken.push(format!("{id} (in the {} vault)", vault.kind()));
                }
            }
        }
        for r in &found.references {
            if configured(ctx, &r.spec.id) {
                taken.push(format!("{} (a secret_ref in the config file)", r.spec.id));
            }
        }
        if !taken.is_empty() {
            return Err(Error::Usage(format!(
                "already stored: {}; nothing was imported: give another --account NAME, or add --replace to overwrite",
                taken.join(", "),
            )));
        }
    }
    let mut actions = Vec::new();
    if let Some(vault) = &vault {
        for i in &found.items {
            let id = i.prepared.record.id.clone();
            let session = i.prepared.record.method == airlock::vault::Method::Session;
            let replaced = capture::store(&**vault, i.prepared.record.clone())?;
            if replaced && session {
                super::kick_sync(ctx, &id);
            }
            actions.push(if replaced { "replaced" } else { "stored" });
        }
    }
    let path = ctx.paths.config_file();
    let mut refs = Vec::new();
    for r in &found.references {
        let replaced =
            secretref::store_in_config(&path, &r.spec.id, &r.spec.reference, r.spec.method)?;
        refs.push(if replaced {
            "replaced its reference"
        } else {
            "referenced"
        });
    }
    Ok((actions, refs))
}

fn print_text(found: &Found, rows: &[Row], applied: bool, now: Timestamp) {
    println!("{} ({})", found.tool.name(), found.from);
    if rows.is_empty() {
        println!("  nothing to import");
    }
    for r in rows {
        println!("  {} {}:{} ({})", r.action, r.agent, r.account, r.kind);
        println!("    source:   {}", r.source);
        let Some(created) = r.created_at else {
            continue;
        };
        println!("    created:  {}", status::date(created));
        match r.expires_at {
            Some(t) => println!(
                "    expires:  {} ({})",
                status::date(t),
                status::relative(t, now)
            ),
            None => println!("    expires:  never"),
        }
    }
    if !found.skipped.is_empty() {
        println!("not imported:");
        for s in &found.skipped {
            println!("  {} ({}): {}", s.what, s.source, s.reason);
        }
    }
    if !applied && !rows.is_empty() {
        println!("nothing was stored: add --apply to store this");
    }
}
