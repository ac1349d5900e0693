//! Read credentials' status: what `airlock status` prints, from the library.
//!
//! ```sh
//! cargo run --example status
//! ```
//!
//! Stores a fake Codex API key and a fake Gemini key in an in-memory vault,
//! then builds the status report (states, expiry, what a sandbox gets) and
//! prints it as the CLI's table and as JSON. Host logins and configured
//! secret files are left out here; the CLI passes `Agent::find_host_login`
//! results and `status::FileSource`s for them.

use std::collections::BTreeMap;

use airlock::Secret;
use airlock::agents::Agent;
use airlock::capture::{self, Input, Request, Source};
use airlock::config::Config;
use airlock::status::{self, VaultInfo};
use airlock::vault::{Method, Vault};
use jiff::Timestamp;

fn store(vault: &Vault, config: &Config, agent: &str, value: String) -> airlock::Result<()> {
    let req = Request {
        agent: agent.into(),
        account: "default".into(),
        method: Some(Method::ApiKey),
        source: Source::Stdin,
        settings: BTreeMap::new(),
        label: None,
    };
    let input = Input {
        secret: Secret::new(value),
        warnings: Vec::new(),
    };
    let p = capture::prepare(&req, config, input, Timestamp::now())?;
    capture::store(&**vault, p.record)?;
    Ok(())
}

fn main() -> airlock::Result<()> {
    let config = Config::default();
    let vault = Vault::in_memory();
    store(
        &vault,
        &config,
        "codex",
        format!("sk-proj-{}", "x".repeat(48)),
    )?;
    store(&vault, &config, "gemini", format!("AIza{}", "y".repeat(35)))?;

    let agents = Agent::all(&config);
    let report = status::report(
        &agents,
        &vault.list()?,
        &BTreeMap::new(),
        &BTreeMap::new(),
        VaultInfo {
            backend: vault.kind().to_string(),
            location: vault.location(),
        },
        Timestamp::now(),
        &config,
    );
    println!("{}", status::table(&report, false));
    let json =
        serde_json::to_string_pretty(&report).map_err(|e| airlock::Error::Other(e.to_string()))?;
    println!("{json}");
    Ok(())
}
