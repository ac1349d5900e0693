//! `airlock doctor`: checks the installation and prints a fix for each problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock::agents::Agent;
use airlock::agents::HostEnv;
use airlock::error::{Error, Result};
use airlock::status::{self, State};
use airlock::vault::BackendKind;
use jiff::Timestamp;
use serde::Serialize;

use super::Ctx;

/// How long `docker info` / `podman info` may take.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(10);

/// Check the vault backend, file permissions, host logins and container
/// engines, and print a fix for every problem found.
///
/// Exits 0 when everything is fine (warnings included) and 11 when a check failed.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the result as JSON: {"ok": bool, "vault": {"backend", "why", "location",
    /// "persistent"} or null, "checks": [{"name", "status", "detail", "fix"}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    name: String,
    status: Level,
    detail: String,
    fix: Option<String>,
}

fn check(
    name: impl Into<String>,
    status: Level,
    detail: impl Into<String>,
    fix: Option<String>,
) -> Check {
    Check {
        name: name.into(),
        status,
        detail: detail.into(),
        fix,
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let mut checks = Vec::new();
    config_checks(ctx, &mut checks);
    let vault = vault_checks(ctx, &mut checks);
    host_checks(ctx, &mut checks);
    secret_file_checks(ctx, &mut checks);
    secret_ref_checks(ctx, &mut checks);
    engine_checks(&mut checks);

    let failed = checks.iter().filter(|c| c.status == Level::Fail).count();
    if a.json {
        let doc = serde_json::json!({ "ok": failed == 0, "vault": vault, "checks": checks });
        println!("{doc:#}");
    } else {
        for c in &checks {
            let tag = match c.status {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            println!("{tag}  {}: {}", c.name, c.detail);
            if let Some(f) = &c.fix {
                println!("      fix: {f}");
            }
        }
    }
    if failed > 0 {
        Err(Error::CheckFailed(format!(
            "{failed} check{} failed (see the fixes above)",
            if failed == 1 { "" } else { "s" }
        )))
    } else {
        Ok(())
    }
}

fn config_checks(ctx: &Ctx, checks: &mut Vec<Check>) {
    for (name, def) in &ctx.config.agents.custom {
        match airlock::agents::custom::check(name, def) {
            Ok(()) => checks.push(check(
                format!("custom agent {name}"),
                Level::Ok,
                format!("key in {}", def.api_key_env),
                None,
            )),
            Err(problem) => checks.push(check(
                format!("custom agent {name}"),
                Level::Fail,
                problem,
                Some(format!(
                    "edit [agents.custom.{name}] in {}",
                    ctx.paths.config_file().display()
                )),
            )),
        }
    }
}

/// Runs the vault checks; returns the selected backend's description for
/// `--json` (null when it could not be opened).
fn vault_checks(ctx: &Ctx, checks: &mut Vec<Check>) -> serde_json::Value {
    let v = match ctx.open_vault() {
        Ok(v) => v,
        Err(e) => {
            checks.push(check("vault backend", Level::Fail, e.to_string(), Some(
                "set AIRLOCK_KEYRING_BACKEND=file to use the encrypted file, or fix the backend named above".into(),
            )));
            return serde_json::Value::Null;
        }
    };
    let described = serde_json::json!({
        "backend": v.kind().as_str(),
        "why": v.why(),
        "location": v.location(),
        "persistent": v.persistent(),
    });
    checks.push(check(
        "vault backend",
        Level::Ok,
        format!("{} ({}) at {}", v.kind(), v.why(), v.location()),
        None,
    ));
    if !v.persistent() {
        checks.push(check(
            "vault persistence",
            Level::Warn,
            format!("the {} backend does not survive a reboot", v.kind()),
            Some("use the file or Secret Service backend for long-lived credentials".into()),
        ));
    }
    match v.list() {
        Ok(records) => {
            let now = Timestamp::now();
            checks.push(check(
                "vault contents",
                Level::Ok,
                format!("{} credential(s) stored", records.len()),
                None,
            ));
            for r in &records {
                let Ok(agent) = Agent::resolve(&r.id.agent, &ctx.config) else {
                    checks.push(check(
                        format!("credential {}", r.id),
                        Level::Warn,
                        format!(
                            "no agent named {} is known (a custom agent removed from the config?)",
                            r.id.agent
                        ),
                        Some(format!(
                            "define [agents.custom.{}] again, or `airlock remove {} --account {}`",
                            r.id.agent, r.id.agent, r.id.account
                        )),
                    ));
                    continue;
                };
                let env = HostEnv::from_process(ctx.paths.home.clone());
                let host = airlock::agents::host_login(&r.id.agent, &env)
                    .ok()
                    .flatten();
                if let Some((problem, fix)) = airlock::sync::link::moved_on(r, host.as_ref(), &env)
                {
                    checks.push(check(
                        format!("credential {}", r.id),
                        Level::Warn,
                        problem,
                        Some(fix),
                    ));
                }
                let e = status::record_entry(agent, r, "", now, ctx.config.status.expiring_days);
                let level = match e.state {
                    State::Valid | State::Refreshable => continue,
                    State::Expiring => Level::Warn,
                    _ => Level::Fail,
                };
                checks.push(check(
                    format!("credential {}", r.id),
                    level,
                    match e.state {
                        State::Invalid => e.problem.unwrap_or_default(),
                        s => format!("{s} {}", status::when(e.expires_at, now)),
                    },
                    e.fix,
                ));
            }
        }
        Err(e) => checks.push(check("vault contents", Level::Fail, e.to_string(), None)),
    }
    if v.kind() == BackendKind::File {
        let file = ctx.vault_file();
        if let Some(dir) = file.parent() {
            permission_check(checks, "vault directory", dir, true);
        }
        permission_check(checks, "vault file", &file, false);
    }
    described
}

fn permission_check(checks: &mut Vec<Check>, name: &str, path: &Path, dir: bool) {
    if std::fs::symlink_metadata(path).is_err() {
        checks.push(check(
            name,
            Level::Ok,
            format!(
                "{} does not exist yet (created on first store)",
                path.display()
            ),
            None,
        ));
        return;
    }
    let r = if dir {
        airlock::fsutil::ensure_private_dir(path)
    } else {
        airlock::fsutil::check_private_file(path)
    };
    match r {
        Ok(()) => checks.push(check(
            name,
            Level::Ok,
            format!("{} is private", path.display()),
            None,
        )),
        Err(Error::Unsafe { problem, fix, .. }) => checks.push(check(
            name,
            Level::Fail,
            format!("{}: {problem}", path.display()),
            Some(fix),
        )),
        Err(e) => checks.push(check(name, Level::Fail, e.to_string(), None)),
    }
}

fn host_checks(ctx: &Ctx, checks: &mut Vec<Check>) {
    let env = HostEnv::from_process(ctx.paths.home.clone());
    let now = Timestamp::now();
    for agent in Agent::all(&ctx.config) {
        if matches!(agent, Agent::Custom(..)) {
            continue;
        }
        let name = format!("host login {}", agent.name());
        match agent.find_host_login(&env) {
            Ok(None) => checks.push(check(name, Level::Ok, "none on this machine", None)),
            Ok(Some(h)) => {
                let st = status::state(
                    h.record.method,
                    h.record.meta.expires_at,
                    h.refreshable,
                    now,
                    ctx.config.status.expiring_days,
                );
                if !h.warnings.is_empty() {
                    for w in &h.warnings {
                        let fix = w
                            .split_once(": run ")
                            .map(|(_, f)| format!("run {f}"))
                            .or_else(|| Some("replace the link with the file itself".into()));
                        checks.push(check(name.clone(), Level::Warn, w.clone(), fix));
                    }
                } else if st == State::Expired {
                    checks.push(check(
                        name,
                        Level::Warn,
                        format!("{} in {} has expired", h.record.method, h.location),
                        Some(agent.renewal(h.record.method, "default")),
                    ));
                } else {
                    checks.push(check(
                        name,
                        Level::Ok,
                        format!("{} in {} ({st})", h.record.method, h.location),
                        None,
                    ));
                }
            }
            Err(e) => checks.push(check(
                name,
                Level::Fail,
                e.to_string(),
                Some(format!(
                    "{}; airlock never changes this file",
                    agent.host_login_hint()
                )),
            )),
        }
    }
}

fn secret_file_checks(ctx: &Ctx, checks: &mut Vec<Check>) {
    let now = Timestamp::now();
    for agent in Agent::all(&ctx.config) {
        let Some(f) = airlock::capture::configured_file(agent, &ctx.config, &ctx.paths.home, now)
        else {
            continue;
        };
        let name = format!("secret file {}", agent.name());
        match &f.read {
            Ok(v) if !v.warnings.is_empty() => {
                for w in &v.warnings {
                    let fix = w.split_once(": run ").map(|(_, f)| format!("run {f}"));
                    checks.push(check(name.clone(), Level::Warn, w.clone(), fix));
                }
            }
            Ok(v) => checks.push(check(
                name,
                Level::Ok,
                format!("{} in {}", v.method, f.location),
                None,
            )),
            Err(Error::Invalid { problem, fix }) => {
                checks.push(check(name, Level::Fail, problem.clone(), Some(fix.clone())))
            }
            Err(e) => checks.push(check(name, Level::Fail, e.to_string(), None)),
        }
    }
}

/// Secret references (docs/secret-refs.md): checked without running or
/// reading anything, plus each one's last result.
fn secret_ref_checks(ctx: &Ctx, checks: &mut Vec<Check>) {
    use airlock::secretref;
    let last = secretref::read_last_results(&ctx.paths.state_dir);
    let agents = Agent::all(&ctx.config);
    for (id, text, spec) in secretref::all_configured(&ctx.config, &agents, &ctx.paths.home) {
        let name = format!("secret reference {id}");
        let spec = match spec {
            Ok(s) => s,
            Err(e) => {
                checks.push(check(name, Level::Fail, e.to_string(), None));
                continue;
            }
        };
        let r = &spec.reference;
        match secretref::precheck(r) {
            Err((problem, fix)) => {
                let level = if matches!(r, secretref::Reference::Env(_)) {
                    Level::Warn
                } else {
                    Level::Fail
                };
                checks.push(check(name, level, format!("{r}: {problem}"), Some(fix)));
            }
            Ok(detail) => {
                let last = last
                    .get(&id.to_string())
                    .filter(|l| l.reference == r.to_string());
                match last {
                    Some(l) if l.result != "ok" => checks.push(check(
                        name,
                        Level::Warn,
                        format!(
                            "{r}: {detail}; it failed when last resolved ({}): {}",
                            airlock::status::date(l.at),
                            l.reason.as_deref().unwrap_or("no reason recorded")
                        ),
                        Some(format!(
                            "`airlock auth {} --account {} --ref '{text}'` tries it now",
                            id.agent, id.account
                        )),
                    )),
                    Some(l) => checks.push(check(
                        name,
                        Level::Ok,
                        format!(
                            "{r}: {detail}; last resolved fine {}",
                            airlock::status::date(l.at)
                        ),
                        None,
                    )),
                    None => checks.push(check(
                        name,
                        Level::Ok,
                        format!("{r}: {detail}; not resolved yet"),
                        None,
                    )),
                }
            }
        }
    }
}

fn engine_checks(checks: &mut Vec<Check>) {
    let mut answering = 0;
    let mut found = Vec::new();
    for engine in ["docker", "podman"] {
        let Some(path) = which(engine) else {
            continue;
        };
        found.push(engine);
        match probe(&path) {
            Ok(()) => {
                answering += 1;
                checks.push(check(
                    format!("engine {engine}"),
                    Level::Ok,
                    format!("{} answers `{engine} info`", path.display()),
                    None,
                ));
            }
            Err(why) => checks.push(check(
                format!("engine {engine}"),
                Level::Warn,
                format!("{} is installed but `{engine} info` {why}", path.display()),
                Some(match engine {
                    "docker" => "start the Docker daemon (sudo systemctl start docker, or Docker Desktop), and check that your user may use it (group docker)".into(),
                    _ => "run `podman info` to see the error (on macOS: `podman machine start`)".into(),
                }),
            )),
        }
    }
    if found.is_empty() {
        checks.push(check(
            "container engine",
            Level::Fail,
            "neither docker nor podman is on PATH",
            Some(
                "install Docker (apt-get install docker.io) or Podman (apt-get install podman)"
                    .into(),
            ),
        ));
    } else if answering == 0 {
        checks.push(check(
            "container engine",
            Level::Fail,
            format!("{} installed, but none answers", found.join(" and ")),
            Some("start one of them (see the fixes above)".into()),
        ));
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs `<engine> info` with a timeout.
fn probe(engine: &Path) -> std::result::Result<(), String> {
    let mut child = Command::new(engine)
        .arg("info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start ({e})"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(()),
            Ok(Some(s)) => return Err(format!("failed ({s})")),
            Ok(None) if start.elapsed() > ENGINE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not answer within {} s",
                    ENGINE_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("could not be waited for ({e})")),
        }
    }
}
