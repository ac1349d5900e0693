//! headjack: the credentials `hjk auth <agent>` keeps in the system keyring
//! under the service `com.headjack.cli`, one entry per agent
//! (`claude-credential`, `codex-credential`, `gemini-credential`), each the
//! JSON `{"type": "subscription" | "apikey", "value": "..."}`.
//!
//! headjack picks its backend like this on Linux: the Secret Service
//! (GNOME Keyring, KWallet) when a D-Bus session is there, else the kernel
//! keyring (keyctl), else an encrypted file; `HEADJACK_KEYRING_BACKEND`
//! forces one. airlock reads the same way, read only:
//!
//! * Secret Service: items whose attribute `profile` is the entry name (how
//!   headjack's keyring library files them, in a collection named after the
//!   service; the secret is that library's item JSON, whose `Data` is the
//!   entry), or items with `service=com.headjack.cli` and `username` (or
//!   `account`) set to the entry name, whose secret is the entry itself.
//! * Kernel keyring: the `user` key named after the entry in the keyring
//!   `com.headjack.cli`, reached from the session (or user) keyring.
//! * Encrypted file (`~/.config/headjack/`): headjack does not document its
//!   format, so it is reported and not read.
//!
//! `subscription` becomes a Claude setup-token, a Codex session (the value
//! is `auth.json`) or a Gemini session; `apikey` an API key.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Found, Item, Scan, Tool, parse_json, prepare_value};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::{Method, SecretBytes};

/// headjack's keyring service name.
pub const SERVICE: &str = "com.headjack.cli";

/// The agents headjack stores, with their entry names.
pub const ENTRIES: [(&str, &str); 3] = [
    ("claude", "claude-credential"),
    ("codex", "codex-credential"),
    ("gemini", "gemini-credential"),
];

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(with = "crate::secret::serde_expose")]
    value: Secret,
}

/// The item JSON of headjack's keyring library (Secret Service backend).
#[derive(Deserialize)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct LibraryItem {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Data", with = "crate::secret::serde_expose")]
    data: Secret,
}

/// One entry's raw payload and where it was read.
struct Raw {
    agent: &'static str,
    origin: String,
    bytes: SecretBytes,
}

/// Reads headjack's entries from every reachable backend.
pub fn scan(s: &Scan<'_>) -> Result<Found> {
    let forced = std::env::var("HEADJACK_KEYRING_BACKEND")
        .ok()
        .filter(|v| !v.is_empty());
    let wants = |b: &str| forced.as_deref().is_none_or(|f| f == b);
    let mut found = Found::new(
        Tool::Headjack,
        match &forced {
            Some(b) => format!("service {SERVICE} (HEADJACK_KEYRING_BACKEND={b})"),
            None => format!("service {SERVICE}"),
        },
    );
    let mut raws: Vec<Raw> = Vec::new();
    if wants("secret-service") {
        match secret_service(&mut raws, &mut found) {
            // Locked, or the service went away: the other backends may
            // still hold the entries.
            Err(e @ Error::Backend { .. }) => {
                found.skip("the Secret Service backend", SERVICE, e.to_string())
            }
            r => r?,
        }
    }
    if wants("keyctl") {
        keyctl(&mut raws, &mut found)?;
    }
    if wants("file") {
        file_backend(s, &mut found);
    }
    if let Some(b) = &forced
        && !["secret-service", "keyctl", "file"].contains(&b.as_str())
    {
        found.skip(
            format!("the {b} backend"),
            "HEADJACK_KEYRING_BACKEND",
            "airlock reads headjack's secret-service and keyctl backends on Linux",
        );
    }
    // Validate everything first: a malformed entry fails the whole import.
    let mut items: Vec<(&'static str, Item)> = Vec::new();
    for raw in raws {
        if let Some((_, first)) = items.iter().find(|(a, _)| *a == raw.agent) {
            found.skip(
                format!("{}-credential", raw.agent),
                raw.origin,
                format!("also found in {}, which is imported", first.source),
            );
            continue;
        }
        if let Some(item) = entry(s, &raw, &mut found)? {
            items.push((raw.agent, item));
        }
    }
    found.items.extend(items.into_iter().map(|(_, i)| i));
    Ok(found)
}

fn entry(s: &Scan<'_>, raw: &Raw, found: &mut Found) -> Result<Option<Item>> {
    let what = format!("headjack's entry {}", raw.origin);
    let fix = format!(
        "run `hjk auth {}` again to rewrite it, or store the credential with `airlock auth {}`",
        raw.agent, raw.agent
    );
    let text = std::str::from_utf8(&raw.bytes)
        .map_err(|_| crate::agents::validate::invalid(&what, "is not UTF-8 text", fix.clone()))?;
    let e: Entry = parse_json(text, &what, &fix)?;
    let method = match (e.kind.as_str(), raw.agent) {
        ("apikey", _) => Method::ApiKey,
        ("subscription", "claude") => Method::SetupToken,
        ("subscription", _) => Method::Session,
        (other, _) => {
            return Err(crate::agents::validate::invalid(
                &what,
                format!(
                    "has type {}, not subscription or apikey",
                    crate::secret::shown(other)
                ),
                fix,
            ));
        }
    };
    match prepare_value(
        s,
        Tool::Headjack,
        raw.agent,
        Some(method),
        e.value,
        &raw.origin,
    ) {
        Ok(i) => Ok(Some(i)),
        // headjack's combined Gemini document is not documented: say so
        // rather than failing the other agents' import.
        Err(err @ Error::Invalid { .. }) if raw.agent == "gemini" && method == Method::Session => {
            found.skip(
                "gemini-credential",
                &raw.origin,
                format!(
                    "headjack's combined Gemini login is not a layout airlock knows ({err}); import the host's login with `airlock auth gemini --from-host` instead"
                ),
            );
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

#[cfg(target_os = "linux")]
fn secret_service(raws: &mut Vec<Raw>, found: &mut Found) -> Result<()> {
    use crate::vault::secret_service::{SecretServiceBackend, probe};
    use base64::Engine as _;
    use std::collections::HashMap;
    if let Err(why) = probe() {
        found.skip(
            "the Secret Service backend",
            "D-Bus session bus",
            format!("not reachable ({why})"),
        );
        return Ok(());
    }
    let ss = SecretServiceBackend::connect_with_lock_dir(None)?;
    // The collection headjack's library creates: its name, with
    // non-alphanumeric bytes escaped as `_XX` in the object path.
    let collection = format!("/collection/{}/", escape(SERVICE));
    for (agent, name) in ENTRIES {
        let origin = format!("Secret Service {SERVICE}/{name}");
        for it in ss.read_foreign(HashMap::from([("profile", name)]))? {
            let in_collection = it.path.contains(&collection);
            let text = std::str::from_utf8(&it.secret).unwrap_or("");
            match serde_json::from_str::<LibraryItem>(text) {
                Ok(li) if li.key == name => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(li.data.expose().trim())
                        .map_err(|_| {
                            crate::agents::validate::invalid(
                                &format!("headjack's entry {origin}"),
                                "has a Data field that is not base64",
                                format!("run `hjk auth {agent}` again to rewrite it"),
                            )
                        })?;
                    raws.push(Raw {
                        agent,
                        origin: origin.clone(),
                        bytes: SecretBytes::new(bytes),
                    });
                }
                // Someone else's `profile` item, unless it sits in
                // headjack's collection (then it is headjack's, malformed).
                _ if !in_collection => {}
                _ => raws.push(Raw {
                    agent,
                    origin: origin.clone(),
                    bytes: it.secret,
                }),
            }
        }
        for user_attr in ["username", "account"] {
            for it in ss.read_foreign(HashMap::from([("service", SERVICE), (user_attr, name)]))? {
                raws.push(Raw {
                    agent,
                    origin: origin.clone(),
                    bytes: it.secret,
                });
            }
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn keyctl(raws: &mut Vec<Raw>, found: &mut Found) -> Result<()> {
    for (agent, name) in ENTRIES {
        match crate::vault::keyutils::read_foreign(SERVICE, name) {
            Ok(Some(bytes)) => raws.push(Raw {
                agent,
                origin: format!("kernel keyring {SERVICE}/{name}"),
                bytes,
            }),
            Ok(None) => {}
            Err(e @ Error::Backend { .. }) => {
                found.skip("the keyctl backend", "kernel keyring", e.to_string());
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn secret_service(_: &mut Vec<Raw>, found: &mut Found) -> Result<()> {
    found.skip("the Secret Service backend", SERVICE, "Linux only");
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn keyctl(_: &mut Vec<Raw>, found: &mut Found) -> Result<()> {
    found.skip("the keyctl backend", SERVICE, "Linux only");
    Ok(())
}

/// headjack's encrypted-file backend: listed, not read.
fn file_backend(s: &Scan<'_>, found: &mut Found) {
    let dir: PathBuf = s
        .from
        .clone()
        .unwrap_or_else(|| s.env.home.join(".config/headjack"));
    for (_, name) in ENTRIES {
        let f = dir.join(name);
        if f.is_file() {
            found.skip(
                name,
                s.show(&f),
                "headjack's encrypted-file backend: headjack does not document its format, so airlock does not read it; switch headjack to the secret-service or keyctl backend (HEADJACK_KEYRING_BACKEND) and run `hjk auth` again, or store the credential with `airlock auth`",
            );
        }
    }
}

/// `com.headjack.cli` → `com_2eheadjack_2ecli`, as D-Bus object paths spell it.
fn escape(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("_{b:02x}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn collection_names_are_escaped_as_in_object_paths() {
        assert_eq!(super::escape("com.headjack.cli"), "com_2eheadjack_2ecli");
    }
}
