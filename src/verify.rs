//! Health check: start a sandbox with exactly the injection `airlock run`
//! would give it, and ask the genuine agent CLIs inside whether they are
//! logged in.
//!
//! | agent | probe | logged in when |
//! |---|---|---|
//! | Claude Code | `claude auth status` (JSON on stdout) | `"loggedIn": true` (exit 0) |
//! | Codex CLI | `codex login status` (text on **stderr**) | `API key configured …` / `Logged in using ChatGPT` |
//! | Gemini CLI | `gemini -p hi --output-format json` | anything but exit 41 "Please set an Auth method" |
//!
//! All probes run in **one** container started with `--network none`:
//! the answers are the CLIs' offline view (no token is sent anywhere), and,
//! as important, no agent can *refresh* a rotating session inside the
//! throwaway container, which would use up the single-use refresh token
//! that the vault (or the host login) still holds. The consequence: a
//! session revoked server-side still reports logged in; a Gemini OAuth login
//! can only be checked for "an auth method is configured".
//!
//! The probe script holds no secret (it is visible in `docker inspect`),
//! and the CLIs' output is never passed on verbatim: details that reach a
//! [`AgentCheck`] are scrubbed of every secret value in the plan.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::agents::HostEnv;
use crate::config::Config;
use crate::engine::{self, EngineKind};
use crate::error::{Error, Result};
use crate::plan::{SandboxPlan, Value};
use crate::render::RunRequest;
use crate::resolve::{self, Request, Resolution};
use crate::sandbox::launch;
use crate::vault::{Method, Vault};

/// Default time limit of each probe, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 20;

/// Gemini cannot be asked "are you logged in"; its probe runs a prompt and is
/// cut short once it has passed the auth selection (it then says it retries
/// the unreachable network), or after this many seconds.
const GEMINI_PROBE_SECS: u64 = 12;

/// The line that starts each probe's section in the container's output.
const MARK: &str = "@@airlock-verify";

/// How to run the check.
#[derive(Debug, Clone)]
pub struct Options {
    /// The image with the agents' CLIs.
    pub image: String,
    /// `--engine`; `None` picks as `airlock run` does.
    pub engine: Option<EngineKind>,
    /// Time limit of each probe.
    pub timeout: Duration,
    /// Where the sandbox's host directory is created (a tmpfs).
    pub runtime_dir: std::path::PathBuf,
    /// `--rotation proxy`: the proxy-mode check ([`crate::proxy::verify`]).
    pub proxy: Option<crate::proxy::verify::Check>,
}

/// The verdict for one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// The CLI reports a login.
    LoggedIn,
    /// The CLI has an auth method configured but cannot confirm it offline
    /// (Gemini). Counts as a pass.
    Configured,
    /// The CLI reports no (usable) login.
    NotLoggedIn,
    /// airlock had no credential for the agent; nothing was probed.
    NoCredential,
    /// The probe could not run or gave an answer airlock does not understand.
    Error,
}

impl State {
    /// Whether this counts as a pass.
    pub fn ok(self) -> bool {
        matches!(self, State::LoggedIn | State::Configured)
    }

    /// The name used in the table and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            State::LoggedIn => "logged-in",
            State::Configured => "configured",
            State::NotLoggedIn => "not-logged-in",
            State::NoCredential => "no-credential",
            State::Error => "error",
        }
    }
}

/// One agent's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentCheck {
    /// Agent name.
    pub agent: String,
    /// The account looked up.
    pub account: String,
    /// Where the injected credential came from (`vault`, `host`, `secret-file`).
    pub source: Option<String>,
    /// airlock's method for the injected credential.
    pub method: Option<Method>,
    /// The verdict.
    pub state: State,
    /// How the CLI says it is authenticated (`oauth_token`, `api_key`,
    /// `claude.ai`, `api-key`, `chatgpt`, `gemini-api-key`, …).
    pub cli_method: Option<String>,
    /// What failed (never secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The probe's exit code, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Whether this agent was asked for by name (an agent nobody named and
    /// without a credential does not fail the check).
    pub required: bool,
    /// For a rotating session (Claude, Codex): the rotation mode `airlock
    /// run` delivers it in with the same choices (`sync`, `broker`,
    /// `access-only`, `copy`); for a Gemini login, `broker` when asked for.
    /// The probe itself always checks it offline, as access-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,
    /// `--rotation proxy`: what the proxy-mode check found for this agent
    /// (the request through the proxy, or that none was attempted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

impl AgentCheck {
    /// Whether this agent makes the whole check fail.
    pub fn failed(&self) -> bool {
        !self.state.ok() && (self.required || self.state != State::NoCredential)
    }
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The image the probes ran in.
    pub image: String,
    /// The engine used.
    pub engine: String,
    /// One entry per requested agent, in request order.
    pub agents: Vec<AgentCheck>,
    /// Resolution warnings (expiring credentials and the like).
    pub warnings: Vec<String>,
    /// Why `airlock run` could not sync a session with this image as this
    /// user (problem, fix); see `Sandbox::sync_refusal`. [`note_rotation`]
    /// turns it into a warning when the rotation is `sync`.
    #[serde(skip)]
    pub sync_refusal: Option<crate::sandbox::SyncRefusal>,
    /// `--rotation proxy`: the result of scanning the container for the
    /// real credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_scan: Option<String>,
}

impl Report {
    /// True when every checked agent passed (see [`AgentCheck::failed`])
    /// and at least one was checked: with no credential at all there is
    /// nothing to vouch for.
    pub fn ok(&self) -> bool {
        !self.agents.iter().any(AgentCheck::failed) && self.agents.iter().any(|a| a.state.ok())
    }

    /// A plain-text table, one line per agent, then fixes.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<8} {:<10} {:<14} {:<14} {}\n",
            "AGENT", "ACCOUNT", "STATE", "METHOD", "CLI SAYS"
        );
        for a in &self.agents {
            s.push_str(&format!(
                "{:<8} {:<10} {:<14} {:<14} {}\n",
                a.agent,
                a.account,
                a.state.as_str(),
                a.method.map(Method::as_str).unwrap_or("-"),
                a.cli_method.as_deref().unwrap_or("-"),
            ));
        }
        for a in &self.agents {
            if let Some(r) = &a.rotation {
                s.push_str(&format!(
                    "\n{}: airlock run delivers the session with rotation {r} (checked here offline, without refresh)\n",
                    a.agent
                ));
            }
        }
        if let Some(scan) = &self.proxy_scan {
            s.push_str(&format!("\nproxy mode: {scan}\n"));
        }
        for a in &self.agents {
            if let Some(p) = &a.proxy {
                s.push_str(&format!("{}: {p}\n", a.agent));
            }
        }
        for a in &self.agents {
            if let Some(p) = &a.problem {
                s.push_str(&format!("\n{}: {p}", a.agent));
                if let Some(f) = &a.fix {
                    s.push_str(&format!("\n  fix: {f}"));
                }
                s.push('\n');
            }
        }
        s
    }
}

/// Resolves `req` exactly as `airlock run` does, starts one sandbox from
/// `opts.image` with `--network none`, runs each agent's status probe in it
/// and reports per agent. Fails only when the check itself cannot run
/// (bad request, vault error, engine missing: [`Error::Engine`]); agents
/// that are not logged in are reported in the [`Report`].
pub fn verify(
    req: &Request,
    vault: &Vault,
    host: &HostEnv,
    config: &Config,
    opts: &Options,
    now: Timestamp,
) -> Result<Report> {
    // Proxy mode needs the engine first: the proxy's address depends on it.
    let (proxy_req, early) = match &opts.proxy {
        Some(p) => {
            let d = engine::detect(opts.engine, &opts.image)?;
            let mut r = req.clone();
            r.proxy_url = Some(crate::proxy::attach::url(
                &p.layout,
                d.engine.kind(),
                &p.exe,
            )?);
            (Some(r), Some(d))
        }
        None => (None, None),
    };
    let req = proxy_req.as_ref().unwrap_or(req);
    let resolved = resolve::resolve(req, vault, host, config, now)?;
    let mut checks: Vec<AgentCheck> = resolved
        .resolutions
        .iter()
        .zip(&req.agents)
        .map(|(r, a)| initial(r, !a.optional))
        .collect();
    let probed: Vec<&str> = checks
        .iter()
        .filter(|c| c.state != State::NoCredential)
        .map(|c| c.agent.as_str())
        .collect();
    let detected = match early {
        Some(d) => d,
        None => engine::detect(opts.engine, &opts.image)?,
    };
    let engine_name = detected.engine.kind().to_string();
    let mut sync_refusal = None;
    let mut proxy_scan = None;
    if !probed.is_empty() {
        let mut script = probe_script(&probed, opts.timeout);
        let proxied = opts
            .proxy
            .as_ref()
            .filter(|_| !resolved.plan.proxy.is_empty());
        let mut online_secs = 0u64;
        let real = match proxied {
            Some(p) => {
                let secs = opts.timeout.as_secs().max(1);
                let mut extra = crate::proxy::verify::scan_probe(secs);
                if p.online {
                    // a model's answer takes longer than a status check
                    let online = secs.max(crate::proxy::verify::ONLINE_MIN_SECS);
                    for a in &probed {
                        if resolved.plan.proxy.iter().any(|g| g.agent == *a) {
                            extra.extend(crate::proxy::verify::online_probe(a, online));
                            online_secs += online;
                        }
                    }
                }
                script = script.replace("rm -rf \"$d\"\n", &format!("{extra}rm -rf \"$d\"\n"));
                // Gemini's login probe runs a prompt: with the proxy
                // reachable it would go upstream. It stays offline; only
                // `--online`'s own prompt is sent.
                script = script.replace(
                    " gemini -p hi ",
                    " env GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:9 CODE_ASSIST_ENDPOINT=http://127.0.0.1:9 gemini -p hi ",
                );
                crate::proxy::verify::real_values(&resolved.plan, vault)
            }
            None => Vec::new(),
        };
        // the scan, and the online probes' time in units of the timeout
        let extra = proxied.map_or(0, |_| {
            1 + online_secs.div_ceil(opts.timeout.as_secs().max(1))
        });
        let probes = probed.len() + usize::try_from(extra).unwrap_or(usize::MAX / 2);
        let (out, sandbox) = run_probe(&detected, &resolved.plan, opts, &script, probes, &real)?;
        let mut secrets = secret_values(&resolved.plan);
        secrets.extend(real.iter().cloned());
        sync_refusal = out.sync_refusal.clone();
        let sections = parse_sections(&out.stdout);
        for c in checks.iter_mut().filter(|c| c.state != State::NoCredential) {
            match sections.iter().find(|s| s.agent == c.agent) {
                Some(s) => judge(c, s, &secrets, &opts.image),
                None => {
                    c.state = State::Error;
                    c.problem = Some(format!(
                        "the probe did not run in {} (container exit {}): {}",
                        opts.image,
                        out.code,
                        scrub(&first_lines(&out.stderr), &secrets)
                    ));
                    c.fix = Some(
                        "check that the image starts a shell (`sh`) and that its entrypoint runs the given command".into(),
                    );
                }
            }
        }
        if let (Some(p), Some(sb)) = (proxied, &sandbox) {
            proxy_scan = Some(judge_proxy(
                &mut checks,
                &resolved.plan,
                &sections,
                p,
                sb,
                &real,
                &secrets,
            ));
            crate::proxy::attach::forget(&p.layout, sb);
        }
    }
    Ok(Report {
        image: opts.image.clone(),
        engine: engine_name,
        agents: checks,
        warnings: resolved.plan.warnings.clone(),
        sync_refusal,
        proxy_scan,
    })
}

/// Records in `report` the rotation mode `airlock run` would deliver each
/// rotating session in (`rotation`: asked for, or `sync`, run's default).
pub fn note_rotation(report: &mut Report, rotation: crate::agents::inject::Rotation) {
    for c in &mut report.agents {
        if c.method == Some(Method::Session) && matches!(c.agent.as_str(), "claude" | "codex") {
            c.rotation = Some(rotation.as_str().to_owned());
            if rotation == crate::agents::inject::Rotation::Sync
                && let Some(r) = &report.sync_refusal
            {
                let what = if r.root_under_docker {
                    "airlock run would use broker mode (by default; --rotation sync would be refused) for"
                } else {
                    "airlock run would refuse to sync"
                };
                report.warnings.push(format!(
                    "{what} the {} session with this image: {}; {}",
                    c.agent, r.problem, r.fix
                ));
            }
        }
        if c.method == Some(Method::Session)
            && c.agent == "gemini"
            && rotation == crate::agents::inject::Rotation::Broker
        {
            // a running gemini cannot take a new access token (docs/broker.md)
            c.rotation = Some(rotation.as_str().to_owned());
            report
                .warnings
                .push(crate::agents::gemini::inject::BROKER_NOTE.to_owned());
        }
    }
}

fn initial(r: &Resolution, required: bool) -> AgentCheck {
    let mut c = AgentCheck {
        agent: r.agent.clone(),
        account: r.account.clone(),
        source: r.used.map(|s| s.as_str().to_owned()),
        method: r.method,
        state: State::LoggedIn,
        cli_method: None,
        problem: None,
        fix: None,
        exit_code: None,
        required,
        rotation: None,
        proxy: None,
    };
    if r.used.is_none() {
        c.state = State::NoCredential;
        let why: Vec<String> = r
            .attempts
            .iter()
            .filter_map(|a| match &a.outcome {
                resolve::Outcome::Skipped { reason } => Some(format!("{}: {reason}", a.source)),
                _ => None,
            })
            .collect();
        c.problem = Some(if why.is_empty() {
            format!("airlock has no credential for {}:{}", r.agent, r.account)
        } else {
            format!(
                "no usable credential for {}:{} ({})",
                r.agent,
                r.account,
                why.join("; ")
            )
        });
        c.fix = Some(setup_fix(&r.agent, &r.account));
    } else if !crate::agents::BUILTIN.contains(&r.agent.as_str()) {
        // Custom agents have no known status command.
        c.state = State::Configured;
        c.problem = None;
    }
    c
}

fn account_flag(account: &str) -> String {
    if account == crate::vault::DEFAULT_ACCOUNT {
        String::new()
    } else {
        format!(" --account {account}")
    }
}

fn setup_fix(agent: &str, account: &str) -> String {
    let acc = account_flag(account);
    format!(
        "store one with `airlock auth {agent}{acc}`, or log in through a container with `airlock login {agent}{acc} --image IMAGE`"
    )
}

fn renew_fix(c: &AgentCheck) -> String {
    let acc = account_flag(&c.account);
    match c.source.as_deref() {
        Some("host") => format!(
            "the {} login on this machine was injected: log in again on the host, or store a credential with `airlock auth {}{acc}`",
            c.agent, c.agent
        ),
        _ => format!(
            "renew the stored credential: `airlock auth {}{acc}` (or `airlock login {}{acc} --image IMAGE`), then run `airlock verify` again",
            c.agent, c.agent
        ),
    }
}

/// The shell script run in the container. No secret values: it is part of
/// the container's configuration.
pub fn probe_script(agents: &[&str], timeout: Duration) -> String {
    let secs = timeout.as_secs().max(1);
    let mut s = String::from(
        r#"d=$(mktemp -d 2>/dev/null) || { d=/tmp/airlock-verify.$$; mkdir -p "$d"; }
t() {
  s=$1; shift
  if [ -n "$stop" ]; then
    "$@" & p=$!; i=0
    while kill -0 "$p" 2>/dev/null; do
      if grep -q "$stop" "$d/e" 2>/dev/null || [ "$i" -ge "$s" ]; then
        kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; return 124
      fi
      sleep 1; i=$((i+1))
    done
    wait "$p"; return $?
  fi
  if command -v timeout >/dev/null 2>&1; then timeout -s KILL "$s" "$@"; else "$@"; fi
}
stop=
probe() {
  name=$1; shift
  if ! command -v "$2" >/dev/null 2>&1; then rc=127; : >"$d/o"; echo "$2: not found on PATH" >"$d/e"
  else t "$@" >"$d/o" 2>"$d/e" </dev/null; rc=$?; fi
  printf '\n@@airlock-verify %s %s out\n' "$name" "$rc"; cat "$d/o"
  printf '\n@@airlock-verify %s %s err\n' "$name" "$rc"; cat "$d/e"
  printf '\n@@airlock-verify %s %s end\n' "$name" "$rc"
}
export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
"#,
    );
    for a in agents {
        match *a {
            "claude" => s.push_str(&format!("probe claude {secs} claude auth status\n")),
            "codex" => s.push_str(&format!("probe codex {secs} codex login status\n")),
            // Past the auth selection Gemini calls the (absent) network and
            // says it will retry: stop it there instead of at the limit.
            "gemini" => s.push_str(&format!(
                "stop='Retrying with backoff'\nprobe gemini {} gemini -p hi --output-format json\nstop=\n",
                secs.min(GEMINI_PROBE_SECS)
            )),
            _ => {}
        }
    }
    s.push_str("rm -rf \"$d\"\n");
    s
}

/// The container's captured output.
#[derive(Debug)]
struct ProbeOutput {
    code: i32,
    stdout: String,
    stderr: String,
    sync_refusal: Option<crate::sandbox::SyncRefusal>,
}

fn run_probe(
    detected: &engine::Detected,
    plan: &SandboxPlan,
    opts: &Options,
    script: &str,
    probes: usize,
    real: &[String],
) -> Result<(ProbeOutput, Option<String>)> {
    let engine = detected.engine.as_ref();
    // Proxy mode: the container must reach the proxy on the host; it holds
    // no credential, only placeholders.
    let network: &[&str] = if plan.proxy.is_empty() {
        &["--network", "none"]
    } else {
        &[]
    };
    let args: Vec<String> = ["--rm"]
        .iter()
        .chain(network)
        .chain(&[
            "--label",
            "airlock.verify=1",
            &opts.image,
            "sh",
            "-c",
            script,
        ])
        .map(|s| (*s).to_owned())
        .collect();
    let mut request = RunRequest::parse(&args)?;
    let name = format!("airlock-verify-{}-{}", std::process::id(), now_nanos());
    request.flags.extend(["--name".to_owned(), name.clone()]);
    let mut sandbox = None;
    let prepared = launch::prepare_with(
        engine,
        &detected.image,
        plan,
        request,
        &opts.runtime_dir,
        |sb| {
            if let Some(p) = opts.proxy.as_ref().filter(|_| !plan.proxy.is_empty()) {
                crate::proxy::attach::register(&p.layout, plan, sb.id(), engine.kind())?;
                sandbox = Some(sb.id().to_owned());
            }
            Ok(Vec::new())
        },
    )?;
    if crate::proxy::verify::leaks(&prepared.argv.join(" "), real) {
        if let (Some(p), Some(sb)) = (&opts.proxy, &sandbox) {
            crate::proxy::attach::forget(&p.layout, sb);
        }
        return Err(Error::Other(
            "proxy mode: the container's command line would hold a real credential; not started"
                .into(),
        ));
    }
    tracing::debug!(engine = %engine.kind(), argv = ?prepared.argv, "verify container");
    let sync_refusal = prepared.sandbox.sync_refusal();
    // Every probe has its own limit inside; this bounds the whole container
    // (an image without `timeout`, a hanging entrypoint).
    let n = u32::try_from(probes).unwrap_or(3);
    let limit = opts.timeout * n + Duration::from_secs(30);
    let run = launch::run_captured_within(engine, prepared, &name, limit)?;
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    let code = run.status.and_then(|s| s.code()).unwrap_or(-1);
    // 126/127 from the OCI runtime: no /bin/sh for the shim.
    if launch::shell_missing(code, run.stderr.as_slice()) {
        return Err(launch::no_shell(engine, &opts.image, code));
    }
    // 125: the engine itself failed (image, flags, daemon).
    if code == 125 && !stdout.contains(MARK) {
        return Err(Error::Engine(format!(
            "{} could not start the check container from {}: {}",
            engine.kind(),
            opts.image,
            first_lines(&stderr)
        )));
    }
    Ok((
        ProbeOutput {
            code,
            stdout,
            stderr,
            sync_refusal,
        },
        sandbox,
    ))
}

/// `--rotation proxy`: judges the container's scan (any real credential
/// fails every agent) and each agent's request through the proxy; returns
/// the scan's verdict for the report.
fn judge_proxy(
    checks: &mut [AgentCheck],
    plan: &SandboxPlan,
    sections: &[Section],
    p: &crate::proxy::verify::Check,
    sandbox: &str,
    real: &[String],
    secrets: &[String],
) -> String {
    use crate::proxy::verify::{ONLINE, SCAN, leaks, requests};
    let scan = sections.iter().find(|s| s.agent == SCAN);
    let leaked = scan.is_some_and(|s| leaks(&s.stdout, real) || leaks(&s.stderr, real));
    let verdict = match scan {
        None => "the container could not be scanned for the real credentials".to_owned(),
        Some(_) if leaked => "a REAL credential is inside the container".to_owned(),
        Some(_) => "no real credential in the container's environment, the agents' files or its command line: placeholders only".to_owned(),
    };
    for c in checks.iter_mut() {
        if !plan.proxy.iter().any(|g| g.agent == c.agent) {
            continue;
        }
        if leaked {
            c.state = State::Error;
            c.problem = Some("proxy mode: a real credential is inside the container".into());
            c.fix = Some("report this as a bug in airlock; revoke and renew the credential".into());
            continue;
        }
        if !p.online {
            c.proxy = Some("holds a placeholder only; no request was sent upstream (`--online` sends one through the proxy)".into());
            continue;
        }
        let seen = requests(&p.layout, sandbox, &c.agent);
        let audited = match &seen {
            Some((n, st)) => format!(
                "{n} request(s) through the proxy, HTTP {}",
                st.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
            ),
            None => "no request reached the proxy".into(),
        };
        let online = format!("{}{ONLINE}", c.agent);
        match sections.iter().find(|s| s.agent == online) {
            Some(s) if s.code == 0 && seen.is_some() => {
                c.proxy = Some(format!("answered through the proxy ({audited})"));
            }
            Some(_) if !c.state.ok() => {
                // the login check failed already: its problem stands
                c.proxy = Some(audited);
            }
            Some(s) => {
                c.state = State::Error;
                c.proxy = Some(audited.clone());
                c.problem = Some(format!(
                    "its request through the proxy failed (exit {}; {audited}): {}",
                    s.code,
                    scrub(
                        &first_lines(&format!("{}\n{}", s.stderr, s.stdout)),
                        secrets
                    )
                ));
                c.fix = Some(format!(
                    "see `airlock audit --sandbox {sandbox}` and docs/proxy.md"
                ));
            }
            None => {
                c.state = State::Error;
                c.problem = Some("its request through the proxy did not run".into());
            }
        }
    }
    verdict
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0)
}

/// One probe's output.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Section {
    agent: String,
    code: i32,
    stdout: String,
    stderr: String,
}

fn parse_sections(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut cur: Option<(Section, &str)> = None;
    for line in text.split('\n') {
        if let Some(rest) = line.strip_prefix(MARK) {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            if let [agent, code, part] = parts[..] {
                let code = code.parse().unwrap_or(-1);
                match part {
                    "out" => {
                        cur = Some((
                            Section {
                                agent: agent.to_owned(),
                                code,
                                ..Section::default()
                            },
                            "out",
                        ))
                    }
                    "err" => {
                        if let Some((_, p)) = &mut cur {
                            *p = "err";
                        }
                    }
                    _ => {
                        if let Some((s, _)) = cur.take() {
                            out.push(s);
                        }
                    }
                }
                continue;
            }
        }
        if let Some((s, part)) = &mut cur {
            let buf = if *part == "out" {
                &mut s.stdout
            } else {
                &mut s.stderr
            };
            buf.push_str(line);
            buf.push('\n');
        }
    }
    out
}

fn secret_values(plan: &SandboxPlan) -> Vec<String> {
    let mut v = Vec::new();
    let mut add = |val: &Value| {
        if let Value::Secret(s) = val {
            let e = s.expose();
            if e.len() >= 8 {
                v.push(e.to_owned());
                // JSON documents: their string members too.
                if let Ok(doc) = serde_json::from_str::<serde_json::Value>(e) {
                    collect_strings(&doc, &mut v);
                }
            }
        }
    };
    for e in &plan.env {
        add(&e.value);
    }
    for f in &plan.files {
        add(&f.content);
    }
    v
}

fn collect_strings(doc: &serde_json::Value, out: &mut Vec<String>) {
    match doc {
        serde_json::Value::String(s) if s.len() >= 8 => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// Replaces every secret value (and every long token-looking word) with
/// `[redacted]`.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut t = text.to_owned();
    for s in secrets {
        if t.contains(s.as_str()) {
            t = t.replace(s.as_str(), "[redacted]");
        }
    }
    t.split_inclusive(char::is_whitespace)
        .map(|w| {
            let word = w.trim_end();
            let tokenish = word.len() >= 24
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if tokenish {
                format!("[redacted]{}", &w[word.len()..])
            } else {
                w.to_owned()
            }
        })
        .collect()
}

fn first_lines(s: &str) -> String {
    let lines: Vec<&str> = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "airlock-test-entrypoint")
        .take(3)
        .collect();
    let mut t: String = lines.join(" / ").chars().take(300).collect();
    if t.is_empty() {
        t = "no output".into();
    }
    t
}

fn judge(c: &mut AgentCheck, s: &Section, secrets: &[String], image: &str) {
    c.exit_code = Some(s.code);
    let cli = match c.agent.as_str() {
        "claude" => "claude",
        "codex" => "codex",
        _ => "gemini",
    };
    if s.code == 127 && s.stderr.contains("not found on PATH") {
        c.state = State::Error;
        c.problem = Some(format!("{image} has no `{cli}` on PATH"));
        c.fix = Some(format!(
            "use an image with the {} CLI installed (--image)",
            c.agent
        ));
        return;
    }
    // GNU timeout: 124 (or 137 after KILL); busybox with -s KILL: 9.
    if matches!(s.code, 9 | 124 | 137 | 143) {
        if c.agent == "gemini" {
            // Killed while retrying the (absent) network: it got past the
            // auth selection, so an auth method is configured.
            c.state = State::Configured;
            c.cli_method = gemini_method(c);
            return;
        }
        c.state = State::Error;
        c.problem = Some(format!("`{cli}` did not answer within the time limit"));
        c.fix = Some("retry with a longer --timeout".into());
        return;
    }
    match c.agent.as_str() {
        "claude" => judge_claude(c, s, secrets),
        "codex" => judge_codex(c, s, secrets),
        _ => judge_gemini(c, s),
    }
}

fn judge_claude(c: &mut AgentCheck, s: &Section, secrets: &[String]) {
    let json = s
        .stdout
        .find('{')
        .zip(s.stdout.rfind('}'))
        .filter(|(a, b)| a < b)
        .and_then(|(a, b)| serde_json::from_str::<serde_json::Value>(&s.stdout[a..=b]).ok());
    let Some(doc) = json else {
        c.state = State::Error;
        c.problem = Some(format!(
            "`claude auth status` gave no JSON (exit {}): {}",
            s.code,
            scrub(&first_lines(&s.stderr), secrets)
        ));
        c.fix = Some("check the Claude Code version in the image (2.x prints JSON)".into());
        return;
    };
    let logged_in = doc.get("loggedIn").and_then(serde_json::Value::as_bool) == Some(true);
    let method = doc
        .get("authMethod")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    c.cli_method = method.clone();
    if logged_in {
        c.state = State::LoggedIn;
        let expected = match c.method {
            Some(Method::SetupToken) => Some("oauth_token"),
            Some(Method::ApiKey) => Some("api_key"),
            Some(Method::Session) => Some("claude.ai"),
            None => None,
        };
        if let (Some(e), Some(m)) = (expected, method.as_deref())
            && e != m
        {
            c.problem = Some(format!(
                "Claude is logged in, but with {m}, not the injected {} (which would show as {e}): something in the image takes precedence",
                c.method.map(Method::as_str).unwrap_or("credential")
            ));
            c.fix = Some(
                "check the image's environment (ANTHROPIC_AUTH_TOKEN, ANTHROPIC_API_KEY, apiKeyHelper)".into(),
            );
        }
    } else {
        c.state = State::NotLoggedIn;
        c.problem = Some(match c.method {
            Some(Method::Session) => "Claude Code does not accept the injected login: the credentials file lacks the user:inference scope or its tokens were cleared".into(),
            _ => format!(
                "Claude Code reports not logged in (authMethod {})",
                method.as_deref().unwrap_or("none")
            ),
        });
        c.fix = Some(renew_fix(c));
    }
}

fn judge_codex(c: &mut AgentCheck, s: &Section, secrets: &[String]) {
    let text = format!("{}\n{}", s.stderr, s.stdout);
    if text.contains("API key configured") {
        c.state = State::LoggedIn;
        c.cli_method = Some("api-key".into());
    } else if text.contains("Logged in using ChatGPT") {
        c.state = State::LoggedIn;
        c.cli_method = Some("chatgpt".into());
    } else if text.contains("Not logged in") {
        c.state = State::NotLoggedIn;
        c.problem =
            Some("Codex reports `Not logged in`: it found no auth.json in CODEX_HOME".into());
        c.fix = Some(renew_fix(c));
    } else if let Some(line) = text
        .lines()
        .find(|l| l.contains("Error checking login status"))
    {
        c.state = State::NotLoggedIn;
        c.problem = Some(format!(
            "Codex cannot read the injected login: {}",
            scrub(line.trim(), secrets)
        ));
        c.fix = Some(renew_fix(c));
    } else {
        c.state = State::Error;
        c.problem = Some(format!(
            "`codex login status` gave an unexpected answer (exit {}): {}",
            s.code,
            scrub(&first_lines(&text), secrets)
        ));
        c.fix = Some("check the Codex CLI version in the image".into());
    }
}

fn gemini_method(c: &AgentCheck) -> Option<String> {
    match c.method {
        Some(Method::Session) => Some("oauth-personal".into()),
        Some(Method::ApiKey) => Some("gemini-api-key".into()),
        _ => None,
    }
}

fn judge_gemini(c: &mut AgentCheck, s: &Section) {
    let text = format!("{}\n{}", s.stderr, s.stdout);
    if text.contains("Please set an Auth method") {
        c.state = State::NotLoggedIn;
        c.problem = Some("Gemini CLI has no auth method configured (exit 41)".into());
        c.fix = Some(renew_fix(c));
    } else if s.code == 55 || text.contains("not running in a trusted directory") {
        c.state = State::Error;
        c.problem = Some("Gemini CLI refused to run: the work dir is not trusted (exit 55)".into());
        c.fix = Some("check the image's GEMINI_CLI_TRUST_WORKSPACE or trustedFolders.json".into());
    } else {
        // Past the auth selection: the API key is accepted locally, or the
        // OAuth login needs the network to be confirmed.
        c.state = State::Configured;
        c.cli_method = gemini_method(c);
        if s.code == 0 {
            c.state = State::LoggedIn;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_split_per_agent() {
        let text = "noise\n\n@@airlock-verify claude 0 out\n{\"loggedIn\":true}\n\n@@airlock-verify claude 0 err\n\n@@airlock-verify claude 0 end\n\n@@airlock-verify codex 1 out\n\n@@airlock-verify codex 1 err\nNot logged in\n\n@@airlock-verify codex 1 end\n";
        let s = parse_sections(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].agent, "claude");
        assert!(s[0].stdout.contains("loggedIn"));
        assert_eq!(s[1].code, 1);
        assert!(s[1].stderr.contains("Not logged in"));
    }

    #[test]
    fn scrub_hides_secrets_and_tokenish_words() {
        let out = scrub(
            "bad key sk-proj-abcdefghijklmnopqrstuvwxyz123 and CANARYSECRETVALUE here",
            &["CANARYSECRETVALUE".into()],
        );
        assert!(!out.contains("abcdefghij"), "{out}");
        assert!(!out.contains("CANARY"), "{out}");
        assert!(out.contains("bad key"));
    }

    #[test]
    fn the_script_has_one_probe_per_agent() {
        let s = probe_script(&["claude", "gemini"], Duration::from_secs(30));
        assert!(s.contains("probe claude 30 claude auth status"));
        assert!(s.contains("probe gemini 12 gemini"));
        assert!(!s.contains("codex login"));
    }

    fn check(agent: &str, method: Method) -> AgentCheck {
        AgentCheck {
            agent: agent.into(),
            account: "default".into(),
            source: Some("vault".into()),
            method: Some(method),
            state: State::LoggedIn,
            cli_method: None,
            problem: None,
            fix: None,
            exit_code: None,
            required: true,
            rotation: None,
            proxy: None,
        }
    }

    #[test]
    fn a_sync_that_run_would_refuse_is_a_warning() {
        let mut r = Report {
            image: "img".into(),
            engine: "docker".into(),
            agents: vec![
                check("claude", Method::Session),
                check("codex", Method::ApiKey),
            ],
            warnings: Vec::new(),
            sync_refusal: Some(crate::sandbox::SyncRefusal {
                problem: "root's files".into(),
                fix: "use -u".into(),
                root_under_docker: false,
            }),
            proxy_scan: None,
        };
        note_rotation(&mut r, crate::agents::inject::Rotation::AccessOnly);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        note_rotation(&mut r, crate::agents::inject::Rotation::Sync);
        assert_eq!(
            r.warnings,
            [
                "airlock run would refuse to sync the claude session with this image: root's files; use -u"
            ]
        );
    }

    #[test]
    fn rotating_sessions_name_their_rotation_mode() {
        let mut r = Report {
            image: "img".into(),
            engine: "docker".into(),
            agents: vec![
                check("claude", Method::Session),
                check("codex", Method::ApiKey),
            ],
            warnings: Vec::new(),
            sync_refusal: None,
            proxy_scan: None,
        };
        note_rotation(&mut r, crate::agents::inject::Rotation::Broker);
        assert_eq!(r.agents[0].rotation.as_deref(), Some("broker"));
        assert_eq!(r.agents[1].rotation, None);
        assert!(
            r.table()
                .contains("claude: airlock run delivers the session with rotation broker")
        );
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["agents"][0]["rotation"], "broker");
        assert!(j["agents"][1].get("rotation").is_none());
    }

    fn section(agent: &str, code: i32, stdout: &str, stderr: &str) -> Section {
        Section {
            agent: agent.into(),
            code,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    // The outputs below are the genuine CLIs' (agent-formats.md, section 5).
    #[test]
    fn claude_answers() {
        let mut c = check("claude", Method::SetupToken);
        let out = r#"{"loggedIn":true,"authMethod":"oauth_token","apiProvider":"firstParty"}"#;
        judge(&mut c, &section("claude", 0, out, ""), &[], "img");
        assert_eq!(c.state, State::LoggedIn);
        assert_eq!(c.cli_method.as_deref(), Some("oauth_token"));
        assert!(c.problem.is_none());

        let mut c = check("claude", Method::SetupToken);
        let out = r#"{"loggedIn":true,"authMethod":"api_key","apiProvider":"firstParty","apiKeySource":"ANTHROPIC_API_KEY"}"#;
        judge(&mut c, &section("claude", 0, out, ""), &[], "img");
        assert_eq!(c.state, State::LoggedIn);
        assert!(c.problem.as_deref().unwrap().contains("takes precedence"));

        let mut c = check("claude", Method::Session);
        let out = r#"{"loggedIn":false,"authMethod":"none","apiProvider":"firstParty"}"#;
        judge(&mut c, &section("claude", 1, out, ""), &[], "img");
        assert_eq!(c.state, State::NotLoggedIn);
        assert!(c.fix.as_deref().unwrap().contains("airlock auth claude"));
        assert!(c.failed());
    }

    #[test]
    fn codex_answers() {
        let mut c = check("codex", Method::ApiKey);
        let err = "API key configured - sk-proj-***E1234\nAuthentication is checked when you send a request.\n";
        judge(&mut c, &section("codex", 0, "", err), &[], "img");
        assert_eq!(c.state, State::LoggedIn);
        assert_eq!(c.cli_method.as_deref(), Some("api-key"));

        let mut c = check("codex", Method::Session);
        judge(
            &mut c,
            &section("codex", 1, "", "Not logged in\n"),
            &[],
            "img",
        );
        assert_eq!(c.state, State::NotLoggedIn);

        let mut c = check("codex", Method::Session);
        let err = "Error checking login status: failed to deserialize CLI auth from file: invalid credential JSON (Data at line 1 column 53)\n";
        judge(&mut c, &section("codex", 1, "", err), &[], "img");
        assert_eq!(c.state, State::NotLoggedIn);
        assert!(
            c.problem
                .as_deref()
                .unwrap()
                .contains("invalid credential JSON")
        );
    }

    #[test]
    fn gemini_answers() {
        let mut c = check("gemini", Method::ApiKey);
        let err = r#"{"error":{"type":"Error","message":"Please set an Auth method in your /h/.gemini/settings.json or specify one of the following environment variables before running: GEMINI_API_KEY","code":41}}"#;
        judge(&mut c, &section("gemini", 41, "", err), &[], "img");
        assert_eq!(c.state, State::NotLoggedIn);

        let mut c = check("gemini", Method::Session);
        let err = "FatalAuthenticationError: Manual authorization is required but the current session is non-interactive";
        judge(&mut c, &section("gemini", 41, "", err), &[], "img");
        assert_eq!(c.state, State::Configured);
        assert_eq!(c.cli_method.as_deref(), Some("oauth-personal"));

        let mut c = check("gemini", Method::ApiKey);
        judge(
            &mut c,
            &section(
                "gemini",
                124,
                "",
                "Attempt 1 failed. Retrying with backoff... fetch failed",
            ),
            &[],
            "img",
        );
        assert_eq!(c.state, State::Configured);

        let mut c = check("gemini", Method::ApiKey);
        judge(
            &mut c,
            &section("gemini", 127, "", "gemini: not found on PATH"),
            &[],
            "img",
        );
        assert_eq!(c.state, State::Error);
        assert!(c.failed());
    }
}
