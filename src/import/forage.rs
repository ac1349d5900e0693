//! forage (firefly-forage): the long-lived Claude token `forage-ctl claude
//! token store` keeps in `<stateDir>/tokens/claude-oauth.json`
//! (`{"token", "createdAt", "expiresAt"}`), and, when given with
//! `--secrets-map`, the `services.firefly-forage.secrets` name → path map
//! of its NixOS module (as JSON, from `nix eval --json`).
//!
//! The token becomes a Claude setup-token record whose metadata keeps
//! forage's dates (`created_at` = `createdAt`, `expires_at` =
//! `expiresAt`). Secret files are references, never copies: each becomes a
//! `file:` secret reference in airlock's config file (docs/secret-refs.md),
//! under an account named after the secret.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Found, Scan, Tool, parse_date, parse_json, prepare_value, read_file};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::Method;

/// forage's default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/firefly-forage";

/// The token file, relative to the state directory.
pub const TOKEN_FILE: &str = "tokens/claude-oauth.json";

#[derive(Deserialize)]
struct TokenFile {
    #[serde(with = "crate::secret::serde_expose")]
    token: Secret,
    #[serde(rename = "createdAt")]
    created_at: Option<String>,
    #[serde(rename = "expiresAt")]
    expires_at: Option<String>,
}

/// Reads forage's token file (`--from` is the state directory or the token
/// file itself) and, with `--secrets-map`, its secrets.
pub fn scan(s: &Scan<'_>) -> Result<Found> {
    let base = s
        .from
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let file = if base.is_dir() {
        base.join(TOKEN_FILE)
    } else {
        base.clone()
    };
    let mut found = Found::new(Tool::Forage, s.show(&base));
    if std::fs::symlink_metadata(&base).is_err() {
        return Err(Error::NotFound {
            what: format!("forage's state directory {}", s.show(&base)),
            fix: "point --from at forage's stateDir (services.firefly-forage.stateDir; /var/lib/firefly-forage by default) or at its tokens/claude-oauth.json".into(),
        });
    }
    let shown = s.show(&file);
    if std::fs::symlink_metadata(&file).is_err() {
        found.skip(
            "a long-lived Claude token",
            &shown,
            "forage has no stored token (`forage-ctl claude token store` was not run)",
        );
    } else {
        token(s, &file, &shown, &mut found)?;
    }
    if let Some(map) = &s.secrets_map {
        secrets(s, map, &mut found)?;
    }
    Ok(found)
}

fn token(s: &Scan<'_>, file: &std::path::Path, shown: &str, found: &mut Found) -> Result<()> {
    let fix = "renew it with `claude setup-token` and `forage-ctl claude token store`, or import the token with `airlock auth claude --method token --stdin`";
    let input = read_file(file, fix)?;
    let what = format!("forage's token file {shown}");
    let t: TokenFile = parse_json(input.text.expose(), &what, fix)?;
    let created = t
        .created_at
        .as_deref()
        .map(|d| parse_date(d, &format!("createdAt in {what}"), fix))
        .transpose()?;
    let expires = t
        .expires_at
        .as_deref()
        .map(|d| parse_date(d, &format!("expiresAt in {what}"), fix))
        .transpose()?;
    let mut item = prepare_value(
        s,
        Tool::Forage,
        "claude",
        Some(Method::SetupToken),
        t.token,
        shown,
    )?;
    item.prepared.warnings.extend(input.warnings);
    if let Some(e) = expires
        && e <= s.now
    {
        found.skip(
            "a long-lived Claude token",
            shown,
            format!(
                "it expired on {}: renew it with `claude setup-token`, then `airlock auth claude --method token --stdin`",
                crate::status::date(e)
            ),
        );
        return Ok(());
    }
    let meta = &mut item.prepared.record.meta;
    if let Some(c) = created {
        meta.created_at = c;
    }
    if expires.is_some() {
        meta.expires_at = expires;
    }
    found.items.push(item);
    Ok(())
}

/// The agent a forage secret is for, guessed from its name.
fn agent_of(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    if n.contains("anthropic") || n.contains("claude") {
        Some("claude")
    } else if n.contains("openai") || n.contains("codex") {
        Some("codex")
    } else if n.contains("gemini") || n.contains("google") {
        Some("gemini")
    } else {
        None
    }
}

fn secrets(s: &Scan<'_>, map: &std::path::Path, found: &mut Found) -> Result<()> {
    let shown = s.show(map);
    let fix = "write it with `nix eval --json <flake>#nixosConfigurations.<host>.config.services.firefly-forage.secrets > FILE`: a JSON object of secret names and file paths";
    let input = read_file(map, fix)?;
    let what = format!("the forage secrets map {shown}");
    let names: BTreeMap<String, String> = parse_json(input.text.expose(), &what, fix)?;
    for (name, path) in names {
        let label = format!("secret {}", crate::secret::shown(&name));
        if path.is_empty() || !path.starts_with('/') {
            return Err(crate::agents::validate::invalid(
                &format!("the {label} in {what}"),
                "is not an absolute path",
                fix,
            ));
        }
        let Some(agent) = agent_of(&name) else {
            found.skip(
                label,
                &shown,
                format!(
                    "its name says no agent (claude, codex or gemini): reference it yourself with `airlock auth <agent> --account {} --ref file:{path}`",
                    if crate::vault::validate_name("account", &name).is_ok() { name.as_str() } else { "NAME" }
                ),
            );
            continue;
        };
        // Its own account, named after the secret: a reference comes before
        // a stored credential of the same account (docs/secret-refs.md), so
        // it must not shadow forage's token under `default`.
        let Ok(id) = crate::vault::CredentialId::new(agent, &name) else {
            found.skip(
                label,
                &shown,
                format!(
                    "its name is not an airlock account name: reference it with `airlock auth {agent} --account NAME --ref file:{path}`"
                ),
            );
            continue;
        };
        let reference = crate::secretref::Reference::parse(&format!("file:{path}"), &s.env.home)?;
        found.references.push(super::RefItem {
            spec: crate::secretref::Spec {
                id,
                reference,
                method: None,
                timeout: crate::secretref::DEFAULT_TIMEOUT,
                cache: crate::secretref::DEFAULT_CACHE,
            },
            source: shown.clone(),
        });
    }
    Ok(())
}
