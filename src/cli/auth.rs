//! `airlock auth <agent>`: store a credential.

use std::collections::BTreeMap;
use std::path::PathBuf;

use airlock::agents::Agent;
use airlock::agents::HostEnv;
use airlock::agents::gemini;
use airlock::capture::{self, Prepared, Request, Source};
use airlock::error::{Error, Result};
use airlock::status;
use airlock::vault::{DEFAULT_ACCOUNT, Method};
use jiff::Timestamp;

use super::Ctx;

/// Store an agent's credential in the vault
///
/// In a terminal, without flags, a wizard offers the login found on this
/// machine, or asks for a token or an API key (typed hidden). Scripts and CI
/// pass --method and one of --stdin, --from-file, --from-env, --from-command
/// or --from-host (or store a reference with --ref);
/// a secret is never accepted as an argument. Every input is validated
/// before anything is stored (exit code 7 when it is rejected).
///
/// Examples:
///   airlock auth claude                                    # the wizard
///   printenv CLAUDE_CODE_OAUTH_TOKEN | airlock auth claude --method token --stdin
///   airlock auth codex --from-host                         # the ChatGPT login in ~/.codex/auth.json
///   airlock auth gemini --method api-key --from-env GEMINI_API_KEY
///   airlock auth claude --account work --method token --from-file /run/secrets/claude
///   airlock auth claude --method token --from-command 'pass show anthropic'
///   airlock auth claude --account work --ref 'cmd:op read op://Private/Anthropic/token'
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The agent: claude, codex, gemini, or a custom agent from the config file.
    agent: String,

    /// The account name, to keep several credentials for one agent.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ACCOUNT)]
    account: String,

    /// The kind of credential: token (from `claude setup-token`), session (the
    /// agent's login files) or api-key. Detected from the value when left out.
    #[arg(long, value_name = "METHOD", value_parser = ["token", "setup-token", "session", "api-key"])]
    method: Option<String>,

    /// Read the secret from standard input (to the end).
    #[arg(long, group = "source")]
    stdin: bool,

    /// Read the secret from a file (a sops/agenix secret path, `<(command)` or
    /// `/dev/stdin`; at most 1 MiB).
    #[arg(long, value_name = "PATH", group = "source")]
    from_file: Option<PathBuf>,

    /// Read the secret from an environment variable.
    #[arg(long, value_name = "NAME", group = "source")]
    from_env: Option<String>,

    /// Store the login already present on this machine (read, never modified).
    #[arg(long, group = "source")]
    from_host: bool,

    /// Run this command once and store what it prints on stdout, such as
    /// `pass show anthropic` or `op read op://vault/item/key`. No shell: the
    /// words are split like a shell would split them. Its stderr is shown,
    /// its output never; it is stopped after 10 seconds.
    #[arg(long, value_name = "COMMAND", group = "source")]
    from_command: Option<String>,

    /// Store a reference instead of a value: file:PATH, env:NAME or
    /// cmd:COMMAND, read again whenever a sandbox starts (docs/secret-refs.md).
    /// It is checked once now, then written to config.toml under
    /// [accounts.AGENT.ACCOUNT]; it comes before a stored credential of the
    /// same account.
    #[arg(long = "ref", value_name = "REFERENCE", group = "source")]
    reference: Option<String>,

    /// Vertex AI: the Google Cloud project (gemini api-key only).
    #[arg(long, value_name = "ID", requires = "location")]
    project: Option<String>,

    /// Vertex AI: the location, such as us-central1 (gemini api-key only).
    #[arg(long, value_name = "LOCATION", requires = "project")]
    location: Option<String>,

    /// A free-form label shown by `airlock accounts`.
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,

    /// Catches a secret typed as an argument, so that clap's error does not
    /// print it back.
    #[arg(hide = true, num_args = 0..)]
    stray: Vec<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    if !a.stray.is_empty() {
        return Err(Error::Usage(format!(
            "`airlock auth` takes only the agent as an argument, and {} more: it was not stored or printed. A secret never goes on the command line (it ends up in your shell history and the process list): pipe it to --stdin, or use --from-file or --from-env",
            if a.stray.len() == 1 {
                "one".to_owned()
            } else {
                a.stray.len().to_string()
            }
        )));
    }
    let agent = Agent::resolve(&a.agent, &ctx.config)?;
    airlock::vault::validate_name("account", &a.account)?;
    let method = a.method.as_deref().map(str::parse::<Method>).transpose()?;
    let settings = if a.project.is_some() || a.location.is_some() {
        gemini::capture::vertex_settings(a.project.as_deref(), a.location.as_deref())?
    } else {
        BTreeMap::new()
    };
    let source = if a.stdin {
        Some(Source::Stdin)
    } else if let Some(p) = a.from_file {
        Some(Source::File(p))
    } else if let Some(n) = a.from_env {
        Some(Source::Env(n))
    } else if a.from_host {
        Some(Source::Host)
    } else if let Some(c) = a.from_command {
        Some(Source::Command(c))
    } else if let Some(r) = &a.reference {
        return store_reference(ctx, agent, &a.account, method, r);
    } else {
        None
    };
    let env = HostEnv::from_process(ctx.paths.home.clone());
    let now = Timestamp::now();
    let mut req = Request {
        agent: agent.name().to_owned(),
        account: a.account.clone(),
        method,
        source: source.clone().unwrap_or(Source::Prompt),
        settings,
        label: a.label,
    };
    let prepared = match source {
        Some(Source::Host) => capture::prepare_host(&req, &ctx.config, &env, now)?,
        Some(s) => {
            let input = capture::read_source(&s)?;
            capture::prepare(&req, &ctx.config, input, now)?
        }
        None if ctx.interactive => {
            if method.is_some() || !req.settings.is_empty() {
                return Err(Error::Usage(
                    "--method, --project and --location need a source: add --stdin, --from-file PATH, --from-env NAME or --from-host (or leave them out to use the wizard)".into(),
                ));
            }
            let mut p = capture::wizard::run(agent.name(), &a.account, &ctx.config, &env, now)?;
            p.record.meta.label = req.label.take();
            p
        }
        None => {
            let m = agent
                .methods()
                .first()
                .map(|m| {
                    if *m == Method::SetupToken {
                        "token"
                    } else {
                        m.as_str()
                    }
                })
                .unwrap_or("api-key");
            return Err(Error::Usage(format!(
                "stdin is not a terminal, so airlock cannot prompt: say where the secret comes from with --stdin, --from-file PATH, --from-env NAME or --from-host (for example `printenv SECRET | airlock auth {} --method {m} --stdin`)",
                agent.name()
            )));
        }
    };
    store(ctx, agent, prepared, now)
}

/// `--ref`: checks the reference once, then writes it to the config file.
fn store_reference(
    ctx: &Ctx,
    agent: Agent<'_>,
    account: &str,
    method: Option<Method>,
    text: &str,
) -> Result<()> {
    use airlock::secretref;
    let id = airlock::vault::CredentialId::new(agent.name(), account)?;
    let reference = secretref::Reference::parse(text, &ctx.paths.home)?;
    // the account's configured timeout, if any, applies to the check too
    let timeout = ctx
        .config
        .accounts
        .get(&id.agent)
        .and_then(|m| m.get(&id.account))
        .and_then(|a| a.timeout_seconds)
        .map_or(secretref::DEFAULT_TIMEOUT, std::time::Duration::from_secs);
    let spec = secretref::Spec {
        id: id.clone(),
        reference: reference.clone(),
        method,
        timeout,
        cache: secretref::DEFAULT_CACHE,
    };
    let now = Timestamp::now();
    let v = secretref::resolve(agent, &spec, now)?;
    for w in &v.warnings {
        anstream::eprintln!("airlock: warning: {w}");
    }
    let path = ctx.paths.config_file();
    let replaced = secretref::store_in_config(&path, &id, &reference, method)?;
    anstream::eprintln!(
        "airlock: {} the reference of {id}: {reference} (checked now: a valid {}), in {} under [accounts.{}.{}]",
        if replaced { "replaced" } else { "stored" },
        v.method,
        path.display(),
        id.agent,
        id.account
    );
    anstream::eprintln!(
        "  it is read again whenever a sandbox starts, and comes before a credential stored for {id}"
    );
    Ok(())
}

fn store(ctx: &Ctx, agent: Agent<'_>, p: Prepared, now: Timestamp) -> Result<()> {
    for w in &p.warnings {
        anstream::eprintln!("airlock: warning: {w}");
    }
    if let Ok(Some(spec)) =
        airlock::secretref::configured(&ctx.config, &p.record.id, &ctx.paths.home)
    {
        anstream::eprintln!(
            "airlock: warning: {} has a secret reference in the config file ({}), which comes first: sandboxes use it, not this credential; remove secret_ref under [accounts.{}.{}] to use this one",
            p.record.id,
            spec.reference,
            p.record.id.agent,
            p.record.id.account
        );
    }
    let vault = ctx.open_vault()?;
    let id = p.record.id.clone();
    let method = p.record.method;
    let expires = p.record.meta.expires_at;
    let replaced = capture::store(&*vault, p.record)?;
    if replaced && method == Method::Session {
        super::kick_sync(ctx, &id);
    }
    anstream::eprintln!(
        "airlock: {} {id} ({method}) in the {} vault",
        if replaced { "replaced" } else { "stored" },
        vault.kind()
    );
    if let Some(d) = &p.detail {
        anstream::eprintln!("  about:    {d}");
    }
    match (expires, p.refreshable) {
        (Some(t), true) => anstream::eprintln!(
            "  expires:  access token {} {}; a refresh token is present",
            status::date(t),
            format_args!("({})", status::relative(t, now))
        ),
        (Some(t), false) => anstream::eprintln!(
            "  expires:  {} ({})",
            status::date(t),
            status::relative(t, now)
        ),
        (None, _) => anstream::eprintln!("  expires:  never"),
    }
    anstream::eprintln!("  sandbox:  {}", p.delivery);
    if method == Method::Session && matches!(agent, Agent::Claude | Agent::Codex) {
        // See docs/injection.md, "Sessions and rotation".
        anstream::eprintln!(
            "airlock: note: this login's refresh token is single-use: `airlock run` shares one synced copy per account between its sandboxes and hands refreshes back (--rotation sync); docker-flags and compose give a sandbox only its access token by default ({}), which can never break this machine's login; with those, long runs need --rotation sync or {}",
            if agent == Agent::Claude {
                "about 8 hours"
            } else {
                "until it expires"
            },
            if agent == Agent::Claude {
                "a setup-token (`claude setup-token`, then `airlock auth claude --method token`) or an API key"
            } else {
                "an API key (`airlock auth codex --method api-key`)"
            }
        );
    }
    Ok(())
}
