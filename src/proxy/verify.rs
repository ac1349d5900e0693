//! `airlock verify --rotation proxy`: the proxy-mode parts of the check
//! (docs/proxy.md, "Verify"). The sandbox is planned as `airlock run
//! --rotation proxy` plans it (placeholders and the proxy's base URL), its
//! grants are registered with the proxy for the check's container, and
//! besides the agents' own login checks the container:
//!
//! * dumps its environment and the agents' files, which airlock scans on
//!   the host for every real credential value behind the grants (the dump
//!   is never printed: it holds placeholders);
//! * with `--online`, runs each agent's one-shot prompt, whose request goes
//!   through the proxy to the agent's API (or the test upstream); the
//!   proxy's audit log then tells what the upstream answered.

use std::path::PathBuf;

use super::audit;
use super::registry::Layout;
use crate::plan::{SandboxPlan, Value};
use crate::vault::Vault;

/// What verify needs to run a proxy-mode check.
#[derive(Debug, Clone)]
pub struct Check {
    /// The proxy's state directory.
    pub layout: Layout,
    /// The airlock executable (to start the proxy on demand).
    pub exe: PathBuf,
    /// Send one real request per agent through the proxy.
    pub online: bool,
}

/// The probe name of the environment and file dump.
pub const SCAN: &str = "proxy-scan";

/// The least time an online probe (a one-shot prompt) is given, seconds.
pub const ONLINE_MIN_SECS: u64 = 90;

/// The suffix of an agent's online probe (`claude-online`).
pub const ONLINE: &str = "-online";

/// The probe lines (for verify's probe script) that dump the container's
/// environment and the agents' files.
pub fn scan_probe(secs: u64) -> String {
    format!(
        "probe {SCAN} {secs} sh -c 'cat /proc/1/environ /proc/self/environ 2>/dev/null | tr \"\\000\" \"\\n\"; for p in /run/airlock-in \"$HOME/.claude\" \"$HOME/.claude.json\" \"$CLAUDE_CONFIG_DIR\" \"$CLAUDE_SECURESTORAGE_CONFIG_DIR\" \"$CODEX_HOME\" \"$HOME/.codex\" \"$GEMINI_CLI_HOME\" \"$HOME/.gemini\"; do [ -n \"$p\" ] && [ -e \"$p\" ] && find \"$p\" -type f -size -1024k -exec cat {{}} + 2>/dev/null; done; true'\n"
    )
}

/// The probe line of `agent`'s one-shot prompt through the proxy.
pub fn online_probe(agent: &str, secs: u64) -> Option<String> {
    let cmd = match agent {
        // IS_SANDBOX: Claude refuses its skip-permissions alias as root
        // otherwise; the check's container is a throwaway sandbox
        "claude" => "env IS_SANDBOX=1 claude -p 'Reply with the word OK.'",
        "codex" => "codex exec --skip-git-repo-check 'Reply with the word OK.'",
        "gemini" => "gemini -p 'Reply with the word OK.'",
        _ => return None,
    };
    // the check's throwaway container runs a fixed prompt: trust its dir
    let trust = if agent == "gemini" {
        "export GEMINI_CLI_TRUST_WORKSPACE=true\n"
    } else {
        ""
    };
    Some(format!("{trust}probe {agent}{ONLINE} {secs} {cmd}\n"))
}

/// Every real credential value behind `plan`'s grants, as the proxy reads
/// it (API keys, and the tokens and keys of session documents), except
/// values the placeholders carry on purpose and short ones.
pub fn real_values(plan: &SandboxPlan, vault: &Vault) -> Vec<String> {
    let mut placeholders = Vec::new();
    let mut add_ph = |v: &Value| {
        if let Value::Secret(s) = v {
            placeholders.push(s.expose().to_owned());
        }
    };
    plan.env.iter().for_each(|e| add_ph(&e.value));
    plan.files.iter().for_each(|f| add_ph(&f.content));
    plan.proxy.iter().for_each(|g| add_ph(&g.placeholder));
    let mut out = Vec::new();
    for g in &plan.proxy {
        let bytes = if let Some(r) = &g.reference {
            // the value the proxy resolves: the scan must look for it too
            let Ok(reference) =
                crate::secretref::Reference::parse(&r.text, std::path::Path::new("/"))
            else {
                continue;
            };
            match crate::secretref::fetch(
                &reference,
                std::time::Duration::from_millis(r.timeout_ms),
            ) {
                Ok(s) => zeroize::Zeroizing::new(s.expose().as_bytes().to_vec()),
                Err(_) => continue,
            }
        } else {
            let Some(truth) = &g.truth else { continue };
            let Ok(Some(bytes)) = truth.read(Some(vault.backend())) else {
                continue;
            };
            bytes
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let text = text.trim();
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(doc @ serde_json::Value::Object(_)) => strings(&doc, &mut out),
            _ => out.push(text.to_owned()),
        }
    }
    // the proxy's CA key never enters a sandbox either
    out.extend(super::ca::offered_key_lines());
    out.retain(|s| s.len() >= 20 && !placeholders.iter().any(|p| p.contains(s.as_str())));
    out.sort();
    out.dedup();
    out
}

/// The credential members of a session document: strings under a key
/// naming a token or a key (`accessToken`, `refresh_token`, `id_token`,
/// `OPENAI_API_KEY`, …), not its plan names or tiers.
fn strings(doc: &serde_json::Value, out: &mut Vec<String>) {
    match doc {
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                let k = k.to_ascii_lowercase();
                match v {
                    serde_json::Value::String(s) if k.contains("token") || k.contains("key") => {
                        out.push(s.clone())
                    }
                    _ => strings(v, out),
                }
            }
        }
        _ => {}
    }
}

/// Whether `dump` holds any of `real`.
pub fn leaks(dump: &str, real: &[String]) -> bool {
    real.iter().any(|r| dump.contains(r.as_str()))
}

/// What the proxy's audit log says about `agent`'s requests from
/// `sandbox`: how many, and their statuses. `None`: no request.
/// A served request's line is written with its batch, just after the
/// response ends ([`audit::Audit`]): the log is read again for up to a
/// second before concluding that no request came.
pub fn requests(layout: &Layout, sandbox: &str, agent: &str) -> Option<(usize, Vec<u16>)> {
    let read = || -> Vec<audit::Entry> {
        audit::read(&layout.audit())
            .into_iter()
            .filter(|e| e.sandbox.as_deref() == Some(sandbox) && e.agent.as_deref() == Some(agent))
            .collect()
    };
    let mut entries = read();
    for _ in 0..20 {
        if !entries.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        entries = read();
    }
    if entries.is_empty() {
        return None;
    }
    let mut statuses: Vec<u16> = entries.iter().map(|e| e.status).collect();
    statuses.sort_unstable();
    statuses.dedup();
    Some((entries.len(), statuses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_name_no_secret_and_one_per_agent() {
        assert!(scan_probe(5).starts_with("probe proxy-scan 5 sh -c"));
        assert!(
            online_probe("codex", 9)
                .unwrap()
                .contains("probe codex-online 9 codex exec")
        );
        assert!(online_probe("custom", 9).is_none());
    }

    #[test]
    fn session_documents_give_their_tokens_only() {
        let doc = serde_json::json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-aaaaaaaaaaaaaaaaaaaa",
            "refreshToken": "sk-ant-ort01-bbbbbbbbbbbbbbbbbbbb", "rateLimitTier": "default_claude_max_20x",
            "scopes": ["user:inference"]}, "tokens": {"id_token": "eyJhbGciOiJub25lIn0.e30.sig-cccccc"}});
        let mut out = Vec::new();
        strings(&doc, &mut out);
        out.sort();
        assert_eq!(
            out,
            [
                "eyJhbGciOiJub25lIn0.e30.sig-cccccc",
                "sk-ant-oat01-aaaaaaaaaaaaaaaaaaaa",
                "sk-ant-ort01-bbbbbbbbbbbbbbbbbbbb"
            ]
        );
    }

    #[test]
    fn a_leak_is_any_real_value_in_the_dump() {
        let real = vec!["sk-ant-oat01-real-0123456789".to_owned()];
        assert!(leaks("X=1\nTOKEN=sk-ant-oat01-real-0123456789\n", &real));
        assert!(!leaks("TOKEN=sk-ant-oat01-airlock-abc\n", &real));
    }
}
