//! Set up a credential: read a Claude setup-token from an environment
//! variable, validate it as `airlock auth claude --method token --from-env`
//! does, and store it in a vault.
//!
//! ```sh
//! CLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat01-… cargo run --example setup_credential
//! ```
//!
//! Without the variable it stores a built-in fake token, so the example
//! runs anywhere. It uses an in-memory vault; a program wanting airlock's
//! real one opens it with `vault::open(vault::OpenOptions::new(&paths,
//! &config, interactive)?)` (the OS keyring or the encrypted file, chosen
//! as the CLI chooses it).

use std::collections::BTreeMap;

use airlock::Secret;
use airlock::capture::{self, Input, Request, Source};
use airlock::config::Config;
use airlock::vault::{Method, Vault};
use jiff::Timestamp;

const VAR: &str = "CLAUDE_CODE_OAUTH_TOKEN";

fn main() -> airlock::Result<()> {
    // The secret never goes through argv: an env var, stdin or a file.
    let secret = match std::env::var_os(VAR) {
        Some(v) => capture::read_env(VAR, Some(v))?,
        None => {
            eprintln!("{VAR} is not set: using a fake token");
            Secret::new(format!("sk-ant-oat01-{}AA", "x".repeat(93)))
        }
    };
    let config = Config::default();
    let req = Request {
        agent: "claude".into(),
        account: "work".into(),
        method: Some(Method::SetupToken),
        source: Source::Env(VAR.into()),
        settings: BTreeMap::new(),
        label: Some("example".into()),
    };
    // Validation first: nothing is stored unless the value is usable.
    let prepared = capture::prepare(
        &req,
        &config,
        Input {
            secret,
            warnings: Vec::new(),
        },
        Timestamp::now(),
    )?;
    let vault = Vault::in_memory();
    let replaced = capture::store(&*vault, prepared.record)?;
    // Records print without their secret: `Secret`'s Debug is redacted.
    for r in vault.list()? {
        println!(
            "stored {} ({}), expires {}, sandbox gets: {}",
            r.id,
            r.method,
            r.meta
                .expires_at
                .map(|t| t.to_string())
                .unwrap_or_else(|| "never".into()),
            prepared.delivery
        );
    }
    println!("replaced an older one: {replaced}");
    Ok(())
}
