//! Resolution: one credential per requested agent, then the sandbox's plan.
//!
//! For each agent, [`resolve`] walks a fixed chain and stops at the first
//! step that yields a usable credential:
//!
//! 0. **reference**: `[accounts.<agent>.<account>] secret_ref`, when the
//!    account has one ([`crate::secretref`]): a value kept in a secret
//!    manager. A reference that cannot be resolved is an error (exit 10,
//!    or 7 for a value that is not a valid credential), not a fallback;
//!    for an agent nobody asked for by name, a warning (the chain goes on).
//! 1. **vault**: the stored credential for `agent:account`. Valid → used;
//!    expiring (within `[status] expiring_days`) → used with a warning;
//!    expired → skipped with a warning.
//! 2. **host**: the host's live login (the agent's own file, or the macOS
//!    keychain), read and never modified. Skipped when an account other
//!    than `default` was asked for: the host login may belong to anyone.
//! 3. **secret-file**: `[agents.<name>] secret_file` from `config.toml`, a
//!    file managed by sops-nix, agenix or Docker secrets.
//! 4. **none**: a warning with setup instructions, and the sandbox starts
//!    with onboarding and trust only, or [`Error::NoAuth`] with
//!    `--require-auth`.
//!
//! Every step is logged at `-v` (`tracing::info!`): the step, the source and
//! the state, never the value. The same facts come back as a
//! [`Resolution`] per agent, for tests and `airlock verify`.

use std::collections::BTreeSet;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::agents::Agent;
use crate::agents::inject::{
    self, DEFAULT_WORKDIR, Delivery, InjectOptions, Rotation, withholds_refresh,
};
use crate::agents::validate::{SessionInfo, tilde};
use crate::agents::{self, BUILTIN, HostEnv};
use crate::capture;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::plan::{AgentSummary, SandboxPlan};
use crate::project::ProjectFile;
use crate::vault::{CredentialId, DEFAULT_ACCOUNT, Method, Record, Vault};

/// How usable a credential is at resolution time: [`crate::status::State`],
/// the one expiry rule, of which resolution produces `valid`, `expiring`
/// (used, with a warning), `expired` (skipped) and `refreshable` (a lapsed
/// session whose refresh token the sandbox receives: usable).
pub use crate::status::State as ExpiryState;

/// One agent to set up in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRequest {
    /// `claude`, `codex`, `gemini`, or a custom agent's name.
    pub agent: String,
    /// The account asked for; `None` falls back to the config's
    /// `[agents.<name>] account`, then `default`.
    pub account: Option<String>,
    /// Set for agents nobody asked for by name (the default "every built-in
    /// agent"): without a credential they are left out quietly instead of
    /// warned about, and `--require-auth` ignores them.
    pub optional: bool,
}

impl AgentRequest {
    /// Parses `agent` or `agent:account`.
    pub fn parse(spec: &str) -> Result<Self> {
        let id = CredentialId::parse(spec)?;
        Ok(AgentRequest {
            agent: id.agent,
            account: spec.contains(':').then_some(id.account),
            optional: false,
        })
    }
}

/// What to resolve and how the sandbox should look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The agents, in order.
    pub agents: Vec<AgentRequest>,
    /// Fail with [`Error::NoAuth`] (exit 9) instead of starting an agent
    /// without a credential.
    pub require_auth: bool,
    /// The work dir inside the container, trusted by every agent.
    pub workdir: String,
    /// Wrap agents so they run without permission prompts.
    pub aliases: bool,
    /// Copy cleaned host configs (`~/.claude.json`, `~/.codex/config.toml`).
    pub host_configs: bool,
    /// How rotating sessions are delivered (`Rotation::Sync` is only
    /// honoured by `airlock run`, which registers `plan.sync`).
    pub rotation: Rotation,
    /// Proxy mode: the proxy's base URL as the sandbox sees it.
    pub proxy_url: Option<String>,
}

impl Default for Request {
    /// Every built-in agent (optional), `/workspace`, aliases and host
    /// configs on.
    fn default() -> Self {
        Request {
            agents: BUILTIN
                .iter()
                .map(|a| AgentRequest {
                    agent: (*a).to_owned(),
                    account: None,
                    optional: true,
                })
                .collect(),
            require_auth: false,
            workdir: DEFAULT_WORKDIR.to_owned(),
            aliases: true,
            host_configs: true,
            rotation: Rotation::default(),
            proxy_url: None,
        }
    }
}

/// What the command line said; `None`/empty means "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choices {
    /// Agent specs (`claude`, `claude:work`).
    pub agents: Vec<String>,
    /// `--workdir`.
    pub workdir: Option<String>,
    /// `--no-aliases` gives `Some(false)`.
    pub aliases: Option<bool>,
    /// `--require-auth`.
    pub require_auth: bool,
    /// `--no-host-configs` gives `Some(false)`.
    pub host_configs: Option<bool>,
    /// `--rotation`. Deliberately not settable from `.airlock.toml`: a
    /// cloned repository must not be able to ask for whole sessions.
    pub rotation: Option<Rotation>,
}

impl Request {
    /// Builds a request: the command line wins, then the project file, then
    /// the defaults. Agents named without an account take the project's
    /// `[accounts]` pin.
    pub fn from_choices(cli: &Choices, project: Option<&ProjectFile>) -> Result<Request> {
        let mut req = Request::default();
        let specs: &[String] = if !cli.agents.is_empty() {
            &cli.agents
        } else {
            project.map(|p| p.agents.as_slice()).unwrap_or(&[])
        };
        if !specs.is_empty() {
            req.agents = specs
                .iter()
                .map(|s| AgentRequest::parse(s))
                .collect::<Result<_>>()?;
        }
        if let Some(p) = project {
            for a in &mut req.agents {
                if a.account.is_none()
                    && let Some(acc) = p.accounts.get(&a.agent)
                {
                    a.account = Some(acc.clone());
                }
            }
            req.workdir = p.workdir.clone().unwrap_or(req.workdir);
            req.aliases = p.aliases.unwrap_or(req.aliases);
            req.host_configs = p.host_configs.unwrap_or(req.host_configs);
            req.require_auth = p.require_auth.unwrap_or(false);
        }
        if let Some(w) = &cli.workdir {
            req.workdir = w.clone();
        }
        req.aliases = cli.aliases.unwrap_or(req.aliases);
        req.host_configs = cli.host_configs.unwrap_or(req.host_configs);
        req.require_auth |= cli.require_auth;
        req.rotation = cli.rotation.unwrap_or(req.rotation);
        Ok(req)
    }
}

/// A step of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The stored credential.
    Vault,
    /// The host's live login.
    Host,
    /// The configured secret file.
    SecretFile,
    /// The account's secret reference (`[accounts.<agent>.<account>]
    /// secret_ref`, [`crate::secretref`]).
    Reference,
}

impl Step {
    /// The name used in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Vault => "vault",
            Step::Host => "host",
            Step::SecretFile => "secret-file",
            Step::Reference => "reference",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened at one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// This step's credential is the one the sandbox gets.
    Used {
        /// Its state.
        state: ExpiryState,
        /// When it expires, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_at: Option<Timestamp>,
    },
    /// Something was there but could not be used.
    Skipped {
        /// Why (never secret).
        reason: String,
    },
    /// Nothing there.
    Absent,
}

/// One step tried for one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The step.
    pub step: Step,
    /// Where it looked (`vault:claude:work`, `host:/home/u/.claude/.credentials.json`,
    /// `file:/run/secrets/x`).
    pub source: String,
    /// What came of it.
    pub outcome: Outcome,
}

/// How one agent was resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The agent.
    pub agent: String,
    /// The account looked up.
    pub account: String,
    /// Every step tried, in order.
    pub attempts: Vec<Attempt>,
    /// The winning step, if any.
    pub used: Option<Step>,
    /// The winning credential's method.
    pub method: Option<Method>,
}

impl Resolution {
    /// The attempt of `step`, if it was tried.
    pub fn attempt(&self, step: Step) -> Option<&Attempt> {
        self.attempts.iter().find(|a| a.step == step)
    }
}

/// The plan plus how each agent got its credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// What the sandbox receives.
    pub plan: SandboxPlan,
    /// One entry per requested agent, in request order.
    pub resolutions: Vec<Resolution>,
}

/// Resolves every requested agent and builds the sandbox's plan. See
/// [`resolve`].
pub fn build_plan(
    req: &Request,
    vault: &Vault,
    host: &HostEnv,
    config: &Config,
    now: Timestamp,
) -> Result<SandboxPlan> {
    resolve(req, vault, host, config, now).map(|r| r.plan)
}

/// Resolves every requested agent (see the module docs for the chain) and
/// builds the sandbox's plan. Fails on a bad request (unknown agent, a
/// relative work dir, an agent asked for twice), on vault errors, and with
/// [`Error::NoAuth`] when `req.require_auth` is set and a named agent has no
/// usable credential.
pub fn resolve(
    req: &Request,
    vault: &Vault,
    host: &HostEnv,
    config: &Config,
    now: Timestamp,
) -> Result<Resolved> {
    resolve_with(req, vault, host, config, now, &agents::host_login)
}

/// Reads the host's live login for an agent (see [`agents::host_login`]).
pub type HostLogin<'a> = &'a dyn Fn(&str, &HostEnv) -> Result<Option<Record>>;

/// [`resolve`] with the host-login reader passed in, so tests (and
/// `airlock verify`) can supply the host step.
pub fn resolve_with(
    req: &Request,
    vault: &Vault,
    host: &HostEnv,
    config: &Config,
    now: Timestamp,
    host_login: HostLogin<'_>,
) -> Result<Resolved> {
    check_workdir(&req.workdir)?;
    let mut seen = BTreeSet::new();
    for a in &req.agents {
        if !seen.insert(a.agent.as_str()) {
            return Err(Error::Usage(format!(
                "{} is asked for twice: a sandbox gets one account per agent",
                a.agent
            )));
        }
        // The same check as `airlock auth`: unknown agents and broken
        // custom definitions are usage errors.
        Agent::resolve(&a.agent, config)?;
    }

    let mut plan = SandboxPlan::default();
    let mut resolutions = Vec::new();
    let mut missing = Vec::new();
    let inputs = Inputs {
        req,
        vault,
        host,
        config,
        now,
        host_login,
    };
    for a in &req.agents {
        let r = resolve_agent(a, &inputs, &mut plan)?;
        if r.used.is_none() && !a.optional {
            missing.push(a.agent.clone());
        }
        resolutions.push(r);
    }
    let all_optional = req.agents.iter().all(|a| a.optional);
    if all_optional && !req.require_auth && resolutions.iter().all(|r| r.used.is_none()) {
        plan.warnings.push(
            "no agent has a credential, so the sandbox gets none: store one with `airlock auth <agent>`, or log in to an agent on the host"
                .into(),
        );
    }
    if req.require_auth {
        let nothing_at_all = resolutions.iter().all(|r| r.used.is_none());
        if !missing.is_empty() || (nothing_at_all && !resolutions.is_empty()) {
            let names: Vec<&str> = if missing.is_empty() {
                req.agents.iter().map(|a| a.agent.as_str()).collect()
            } else {
                missing.iter().map(String::as_str).collect()
            };
            let hints: Vec<String> = names.iter().map(|n| setup_hint(n)).collect();
            // What was found but skipped, and why: otherwise only the
            // warnings, which this error replaces, would say so.
            let skipped: Vec<String> = resolutions
                .iter()
                .filter(|r| names.contains(&r.agent.as_str()))
                .flat_map(|r| {
                    r.attempts.iter().filter_map(move |a| match &a.outcome {
                        Outcome::Skipped { reason } => {
                            Some(format!("{}: skipped {}: {reason}", r.agent, a.source))
                        }
                        _ => None,
                    })
                })
                .collect();
            let skipped = if skipped.is_empty() {
                String::new()
            } else {
                format!(" ({})", skipped.join("; "))
            };
            return Err(Error::NoAuth(format!(
                "--require-auth: no usable credential for {}{skipped}; {}",
                names.join(", "),
                hints.join("; ")
            )));
        }
    }
    Ok(Resolved { plan, resolutions })
}

fn check_workdir(w: &str) -> Result<()> {
    if !w.starts_with('/') || w.chars().any(char::is_control) {
        return Err(Error::Usage(format!(
            "the container work dir {w:?} must be an absolute path such as /workspace"
        )));
    }
    Ok(())
}

/// A credential found at one step, before it is judged.
struct Candidate {
    record: Record,
    source: String,
    stored: bool,
    /// The host file a linked vault record follows ([`crate::sync::link`]).
    link: Option<std::path::PathBuf>,
    /// The secret reference it was read from, for the proxy to resolve.
    reference: Option<crate::plan::ProxyReference>,
}

/// What every agent's resolution reads ([`resolve_with`]'s arguments).
#[derive(Clone, Copy)]
struct Inputs<'a> {
    req: &'a Request,
    vault: &'a Vault,
    host: &'a HostEnv,
    config: &'a Config,
    now: Timestamp,
    host_login: HostLogin<'a>,
}

fn resolve_agent(
    a: &AgentRequest,
    inputs: &Inputs<'_>,
    plan: &mut SandboxPlan,
) -> Result<Resolution> {
    let Inputs {
        req,
        vault,
        host,
        config,
        now,
        host_login,
    } = *inputs;
    let agent = a.agent.as_str();
    let builtin = BUILTIN.contains(&agent);
    let kind = Agent::resolve(agent, config)?;
    let custom = config.agents.custom.get(agent);
    let configured_account = config
        .agents
        .builtin(agent)
        .and_then(|c| c.account.clone())
        .or_else(|| custom.and_then(|c| c.account.clone()));
    let account = a
        .account
        .clone()
        .or(configured_account)
        .unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned());
    let id = CredentialId::new(agent, &account)?;

    let mut opts = InjectOptions {
        workdir: req.workdir.clone(),
        aliases: req.aliases,
        host_config: None,
        rotation: req.rotation,
        proxy_url: req.proxy_url.clone(),
    };
    if req.host_configs {
        opts.host_config = read_host_config(agent, host, plan);
    }

    let mut res = Resolution {
        agent: agent.to_owned(),
        account: account.clone(),
        attempts: Vec::new(),
        used: None,
        method: None,
    };
    let expiring_days = config.status.expiring_days;
    let try_candidate = |step: Step,
                         cand: Candidate,
                         res: &mut Resolution,
                         plan: &mut SandboxPlan|
     -> bool {
        let mut rotation = req.rotation;
        let mut judged = judge(kind, &cand.record, now, expiring_days, rotation);
        // `--rotation sync` needs a rotating session and a source of truth
        // it can write back to (a vault record or a host file); anything
        // else keeps the access-only delivery.
        let mut truth = None;
        let mut sync_note = None;
        if rotation.is_shared()
            && let Ok((_, _, info)) = &judged
        {
            // (a Gemini login does not rotate, but broker mode keeps its
            // refresh token on the host all the same)
            let rotating = cand.record.method == Method::Session
                && info
                    .as_ref()
                    .is_some_and(|i| (i.rotates || rotation == Rotation::Broker) && i.refreshable);
            truth = rotating
                .then(|| match &cand.link {
                    Some(path) => Some(crate::sync::Truth::HostFile { path: path.clone() }),
                    None => sync_truth(step, &cand.record, &cand.source, host),
                })
                .flatten();
            if truth.is_none() {
                if rotating {
                    sync_note = Some(format!(
                        "{agent}: the session from {} cannot be synced back (only a vault record or a host file can), so the sandbox gets it without its refresh token (rotation = access-only)",
                        cand.source
                    ));
                }
                rotation = Rotation::AccessOnly;
                judged = judge(kind, &cand.record, now, expiring_days, rotation);
            }
        }
        let (state, expires_at, info) = match judged {
            Ok(j) => j,
            Err(e) => {
                skip(step, &cand.source, agent, e.to_string(), res, plan);
                return false;
            }
        };
        let mut opts = opts.clone();
        opts.rotation = rotation;
        if !state.usable() {
            let why = expired_reason(&cand.record, expires_at, info.as_ref(), rotation);
            skip(step, &cand.source, agent, why, res, plan);
            return false;
        }
        let mut agent_plan = match inject::plan_for(&cand.record, &opts, config) {
            Ok(p) => p,
            Err(e) => {
                skip(step, &cand.source, agent, e.to_string(), res, plan);
                return false;
            }
        };
        for m in &mut agent_plan.sync {
            m.truth = truth.clone();
        }
        if !agent_plan.proxy.is_empty()
            && let Some(r) = cand
                .reference
                .as_ref()
                .filter(|r| !r.text.starts_with("env:"))
        {
            // the proxy resolves the reference itself (`env:` is the
            // environment of this command, which the proxy does not share)
            for g in &mut agent_plan.proxy {
                g.truth = Some(crate::sync::Truth::Vault {
                    id: cand.record.id.clone(),
                });
                g.reference = Some(r.clone());
            }
        } else if !agent_plan.proxy.is_empty() {
            // the proxy reads the real credential where it is kept
            let kept = match &cand.link {
                Some(path) => Some(crate::sync::Truth::HostFile { path: path.clone() }),
                None => sync_truth(step, &cand.record, &cand.source, host),
            };
            let Some(kept) = kept else {
                skip(
                    step,
                    &cand.source,
                    agent,
                    format!(
                        "--rotation proxy needs a credential the proxy can read on its own (stored with `airlock auth {agent}`, or the host's login file); {} is not one",
                        cand.source
                    ),
                    res,
                    plan,
                );
                return false;
            };
            for g in &mut agent_plan.proxy {
                g.truth = Some(kept.clone());
            }
        }
        agent_plan.warnings.extend(sync_note);
        tracing::info!(
            agent,
            step = step.as_str(),
            source = %cand.source,
            method = cand.record.method.as_str(),
            state = state.as_str(),
            "credential resolution: using this credential"
        );
        if state == ExpiryState::Expiring {
            agent_plan.warnings.push(expiring_warning(
                &cand.record,
                &cand.source,
                expires_at,
                now,
                info.as_ref(),
                rotation,
            ));
        }
        if rotation == Rotation::Copy
            && cand.record.method == Method::Session
            && info.as_ref().is_some_and(|i| i.rotates && i.refreshable)
        {
            agent_plan.warnings.push(format!(
                "{agent}: the sandbox gets the whole session from {} (rotation = copy); its first refresh invalidates every other copy, the host's login included",
                cand.source
            ));
        }
        agent_plan.agents.push(AgentSummary {
            agent: agent.to_owned(),
            credential: cand.stored.then(|| cand.record.id.clone()),
            method: Some(cand.record.method),
            source: cand.source.clone(),
            delivers: {
                let mut d = Delivery::of(&agent_plan).names();
                for m in &agent_plan.sync {
                    if !d.is_empty() {
                        d.push_str(", ");
                    }
                    if m.broker {
                        d.push_str(&format!("{} (broker: access token only)", m.container));
                    } else {
                        d.push_str(&format!("{} (synced)", m.container));
                    }
                }
                d
            },
        });
        plan.merge(agent_plan);
        res.attempts.push(Attempt {
            step,
            source: cand.source,
            outcome: Outcome::Used { state, expires_at },
        });
        res.used = Some(step);
        res.method = Some(cand.record.method);
        true
    };

    // 0. the account's secret reference, when one is configured: it comes
    // first, and a reference that fails is an error, not a fallback (a
    // warning for an agent nobody named)
    if let Some(spec) = crate::secretref::configured(config, &id, &host.home)? {
        let source = spec.reference.to_string();
        match crate::secretref::resolve(kind, &spec, now) {
            Ok(mut v) => {
                for w in std::mem::take(&mut v.warnings) {
                    plan.warnings.push(format!("{agent}: {w}"));
                }
                let cand = Candidate {
                    record: v.into_record(id.clone(), source.clone(), now),
                    source,
                    stored: false,
                    link: None,
                    reference: Some(crate::plan::ProxyReference {
                        text: spec.reference.to_string(),
                        timeout_ms: spec.timeout.as_millis() as u64,
                        cache_ms: spec.cache.as_millis() as u64,
                    }),
                };
                if try_candidate(Step::Reference, cand, &mut res, plan) {
                    return Ok(res);
                }
            }
            Err(e) if a.optional => {
                skip(
                    Step::Reference,
                    &source,
                    agent,
                    e.to_string(),
                    &mut res,
                    plan,
                );
            }
            Err(e) => return Err(e),
        }
    }

    // 1. vault
    let vault_source = format!("vault:{id}");
    match vault.get(&id)? {
        Some(mut record) => {
            let link = follow_link(&mut record, inputs, plan);
            let cand = Candidate {
                record,
                source: vault_source,
                stored: true,
                link,
                reference: None,
            };
            if try_candidate(Step::Vault, cand, &mut res, plan) {
                return Ok(res);
            }
        }
        None => absent(Step::Vault, vault_source, agent, &mut res),
    }

    // 2. host login
    if builtin {
        if account != DEFAULT_ACCOUNT {
            let reason = format!(
                "account {account:?} was asked for; the host's login may belong to another account"
            );
            tracing::info!(agent, step = "host", state = "skipped", %reason, "credential resolution");
            res.attempts.push(Attempt {
                step: Step::Host,
                source: "host".into(),
                outcome: Outcome::Skipped { reason },
            });
        } else {
            match host_login(agent, host) {
                Ok(Some(mut record)) => {
                    let source = if record.meta.source.starts_with("host") {
                        record.meta.source.clone()
                    } else {
                        "host".to_owned()
                    };
                    record.id = id.clone();
                    let cand = Candidate {
                        record,
                        source,
                        stored: false,
                        link: None,
                        reference: None,
                    };
                    if try_candidate(Step::Host, cand, &mut res, plan) {
                        return Ok(res);
                    }
                }
                Ok(None) => absent(Step::Host, "host".into(), agent, &mut res),
                Err(e) => skip(Step::Host, "host", agent, e.to_string(), &mut res, plan),
            }
        }
    }

    // 3. configured secret file, read and validated as `airlock auth
    // --from-file` reads and validates it
    if let Some(file) = kind.secret_file(config) {
        let source = format!("file:{}", file.path.display());
        let location = tilde(&file.path, &host.home);
        match capture::read_secret_file(kind, &file, &location, now).0 {
            Ok(mut v) => {
                for w in std::mem::take(&mut v.warnings) {
                    plan.warnings.push(format!("{agent}: {w}"));
                }
                let cand = Candidate {
                    record: v.into_record(id.clone(), source.clone(), now),
                    source,
                    stored: false,
                    link: None,
                    reference: None,
                };
                if try_candidate(Step::SecretFile, cand, &mut res, plan) {
                    return Ok(res);
                }
            }
            Err(e) => skip(
                Step::SecretFile,
                &source,
                agent,
                e.to_string(),
                &mut res,
                plan,
            ),
        }
    }

    // 4. nothing
    if a.optional {
        tracing::info!(
            agent,
            state = "none",
            "credential resolution: no credential; agent not requested by name, left out"
        );
        return Ok(res);
    }
    tracing::info!(
        agent,
        state = "none",
        "credential resolution: no usable credential"
    );
    let mut agent_plan = inject::onboarding_for(agent, &opts)?;
    if !req.require_auth {
        agent_plan.warnings.push(format!(
            "no usable credential for {agent}; starting without one. To set one up: {}",
            setup_hint(agent)
        ));
    }
    agent_plan.agents.push(AgentSummary {
        agent: agent.to_owned(),
        credential: None,
        method: None,
        source: "none".into(),
        delivers: "onboarding and trust only".into(),
    });
    plan.merge(agent_plan);
    Ok(res)
}

/// A vault record linked to the host's login follows the host file
/// ([`crate::sync::link`]); the vault record is brought in step with it.
fn follow_link(
    record: &mut Record,
    inputs: &Inputs<'_>,
    plan: &mut SandboxPlan,
) -> Option<std::path::PathBuf> {
    use crate::sync::link::{self, Link};
    let host_rec = (inputs.host_login)(&record.id.agent, inputs.host)
        .ok()
        .flatten();
    let before = record.clone();
    let found = link::follow(record, host_rec.as_ref(), inputs.host);
    if *record != before
        && let Err(e) = link::store(inputs.vault.backend(), record)
    {
        tracing::warn!(error = %e, "could not update the linked vault record");
    }
    match found {
        Link::None => None,
        Link::Linked { path, new } => {
            tracing::info!(id = %record.id, path = %path.display(), new, "vault record linked to the host login");
            Some(path)
        }
        Link::Moved { path } => {
            plan.warnings.push(format!(
                "{}: {} now holds another account's login, so the vault record is no longer linked to it (it keeps its own session, and the host file is never written with it)",
                record.id,
                tilde(&path, &inputs.host.home)
            ));
            None
        }
    }
}

fn absent(step: Step, source: String, agent: &str, res: &mut Resolution) {
    tracing::info!(agent, step = step.as_str(), source = %source, state = "absent", "credential resolution");
    res.attempts.push(Attempt {
        step,
        source,
        outcome: Outcome::Absent,
    });
}

fn skip(
    step: Step,
    source: &str,
    agent: &str,
    reason: String,
    res: &mut Resolution,
    plan: &mut SandboxPlan,
) {
    tracing::info!(agent, step = step.as_str(), source = %source, state = "skipped", %reason, "credential resolution");
    plan.warnings
        .push(format!("{agent}: skipped {source}: {reason}"));
    res.attempts.push(Attempt {
        step,
        source: source.to_owned(),
        outcome: Outcome::Skipped { reason },
    });
}

/// Where a synced session goes back to: the vault record it was read from,
/// or the host agent's file (`host:<path>`). `None` for anything else
/// (the macOS keychain, a configured secret file).
fn sync_truth(
    step: Step,
    record: &Record,
    source: &str,
    host: &HostEnv,
) -> Option<crate::sync::Truth> {
    match step {
        Step::Vault => Some(crate::sync::Truth::Vault {
            id: record.id.clone(),
        }),
        Step::Host => {
            let loc = source.strip_prefix("host:")?;
            let path = match loc.strip_prefix("~/") {
                Some(rest) => host.home.join(rest),
                None => std::path::PathBuf::from(loc),
            };
            (path.is_absolute() && path.is_file()).then_some(crate::sync::Truth::HostFile { path })
        }
        _ => None,
    }
}

/// The state of `record` at `now` by [`crate::status::state`], where a
/// session counts as refreshable only if the sandbox receives its refresh
/// token (access-only rotation withholds rotating ones).
fn judge(
    agent: Agent<'_>,
    record: &Record,
    now: Timestamp,
    expiring_days: u32,
    rotation: Rotation,
) -> Result<(ExpiryState, Option<Timestamp>, Option<SessionInfo>)> {
    let info = if record.method == Method::Session {
        Some(agent.session_info(&record.secret)?)
    } else {
        None
    };
    let expires_at = info
        .as_ref()
        .and_then(|i| i.expires_at)
        .or(record.meta.expires_at);
    let delivers_refresh = info
        .as_ref()
        .is_some_and(|i| i.refreshable && !withholds_refresh(i, rotation));
    let state = crate::status::state(
        record.method,
        expires_at,
        delivers_refresh,
        now,
        expiring_days,
    );
    Ok((state, expires_at, info))
}

fn expired_reason(
    record: &Record,
    expires_at: Option<Timestamp>,
    info: Option<&SessionInfo>,
    rotation: Rotation,
) -> String {
    let when = expires_at.map(|t| format!(" at {}", crate::status::date(t)));
    let when = when.unwrap_or_default();
    let withheld = info.is_some_and(|i| withholds_refresh(i, rotation));
    if withheld {
        format!(
            "its access token expired{when}, and the sandbox would not get the refresh token (rotation = access-only, so copies cannot invalidate each other); run `{}` on the host to refresh it, or store a long-lived credential",
            record.id.agent
        )
    } else {
        format!("it expired{when}; {}", setup_hint(&record.id.agent))
    }
}

fn expiring_warning(
    record: &Record,
    source: &str,
    expires_at: Option<Timestamp>,
    now: Timestamp,
    info: Option<&SessionInfo>,
    rotation: Rotation,
) -> String {
    let agent = &record.id.agent;
    let left = expires_at
        .map(|t| human_left(t.duration_since(now)))
        .unwrap_or_default();
    let withheld = info.is_some_and(|i| withholds_refresh(i, rotation));
    if withheld {
        format!(
            "{agent}: the session from {source} works in the sandbox for {left} only: it is delivered without its refresh token (rotation = access-only) so that copies cannot invalidate each other; for long runs {}",
            long_lived_hint(agent)
        )
    } else {
        format!(
            "{agent}: the credential from {source} expires in {left}; renew it soon: {}",
            setup_hint(agent)
        )
    }
}

fn human_left(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
        s => format!("{} minutes", s / 60),
    }
}

fn long_lived_hint(agent: &str) -> String {
    match agent {
        "claude" => {
            "store a setup-token: `claude setup-token`, then `airlock auth claude --method token`"
                .into()
        }
        "codex" => "store an API key: `airlock auth codex --method api-key`".into(),
        other => setup_hint(other),
    }
}

/// How to give `agent` a credential, for warnings and `--require-auth`.
pub fn setup_hint(agent: &str) -> String {
    match agent {
        "claude" => "run `claude setup-token` on the host, then `airlock auth claude --method token`; or log in on the host with `claude auth login`".into(),
        "codex" => "log in on the host with `codex login`, or store an API key with `airlock auth codex --method api-key`".into(),
        "gemini" => "store an API key with `airlock auth gemini --method api-key`, or log in on the host with `gemini`".into(),
        other => format!(
            "store its key with `airlock auth {other} --method api-key`, or set secret_file under [agents.custom.{other}] in config.toml"
        ),
    }
}

/// The text of the host's config file for `agent`, if it has one and it
/// can be read; a read error is a warning, not a failure.
fn read_host_config(agent: &str, host: &HostEnv, plan: &mut SandboxPlan) -> Option<String> {
    let path = match agent {
        "claude" => agents::claude::inject::host_config_path(host),
        "codex" => agents::codex::inject::host_config_path(host),
        _ => return None,
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => {
            tracing::info!(agent, path = %path.display(), "copying a cleaned host config");
            Some(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            plan.warnings.push(format!(
                "{agent}: could not read {} ({e}); the sandbox gets a fresh config",
                path.display()
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(
            human_left(SignedDuration::from_hours(24 * 12 + 3)),
            "12 days"
        );
        assert_eq!(human_left(SignedDuration::from_hours(7)), "7 hours");
        assert_eq!(human_left(SignedDuration::from_mins(42)), "42 minutes");
        assert_eq!(human_left(SignedDuration::from_mins(-5)), "0 minutes");
    }

    #[test]
    fn agent_specs_parse() {
        let a = AgentRequest::parse("claude:work").unwrap();
        assert_eq!(
            (a.agent.as_str(), a.account.as_deref()),
            ("claude", Some("work"))
        );
        assert_eq!(AgentRequest::parse("codex").unwrap().account, None);
        assert!(AgentRequest::parse("Claude").is_err());
    }
}
