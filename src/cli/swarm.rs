//! `airlock swarm`: a Docker Swarm service whose replicas find the agents'
//! credentials, delivered as Swarm secrets (docs/cluster.md).

use std::io::Write as _;
use std::process::{Command, Stdio};

use airlock::cluster::swarm::{
    self, LABEL, ServiceRequest, SwarmSecret, check_shareable, create_args,
};
use airlock::engine::{self, EngineKind};
use airlock::error::{Error, Result};
use airlock::sandbox::{ContainerUser, launch};

use super::Ctx;
use super::run::{SandboxArgs, SyncUse};

/// Label on an airlock service: the agents it was made for.
const LABEL_AGENTS: &str = "airlock.agents";
/// Label on an airlock service: the user's `--entrypoint`, if any.
const LABEL_ENTRYPOINT: &str = "airlock.entrypoint";

/// Create a Docker Swarm service whose replicas are logged in.
///
///     airlock swarm --agent claude -- --replicas 2 --name dev IMAGE [COMMAND…]
///
/// Every credential value (and the entrypoint shim of `airlock run`) becomes
/// a Swarm secret, created from stdin (never a file or an argument), named
/// `airlock-<agent>-<account>-<fingerprint>` and labelled `airlock.swarm=1`.
/// The service mounts them read-only (mode 0400, the container user's) under
/// /run/airlock-in, gets a tmpfs at /run/airlock, and the shim as
/// entrypoint: each replica's genuine CLI is logged in, and no value is in
/// `docker service inspect`. The service flags go to `docker service
/// create`; airlock's flags may be anywhere before IMAGE, mixed with them
/// (as with `airlock run`; `--` ends airlock's). If creating the service
/// fails, the secrets made here are removed; an image without /bin/sh is
/// refused first.
///
/// A login session cannot be shared by replicas (its refresh tokens are
/// single-use): use a setup-token, an API key, or --rotation proxy.
///
/// --rotation proxy: the tasks hold placeholders (as Swarm secrets) and
/// reach this host's proxy at host.docker.internal (host-gateway); the
/// service is constrained to this node, the only one that reaches the
/// proxy (docs/cluster.md). A login session stays on this host, refreshed
/// by the sync watcher. The grant goes with the service.
///
/// `airlock swarm update SERVICE` rotates the secrets (a rolling update);
/// `airlock swarm rm SERVICE` removes the service and its airlock secrets.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,

    #[command(flatten)]
    sandbox: SandboxArgs,

    /// [SERVICE CREATE FLAGS] IMAGE [COMMAND…], airlock's flags among them.
    #[arg(
        value_name = "ARGS",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    Update(UpdateArgs),
    Rm(RmArgs),
}

/// Give a service made by `airlock swarm` the current credentials.
///
/// New secret versions are created, and `docker service update
/// --secret-rm OLD --secret-add NEW` rolls them out, one task after the
/// other as the service's update policy says; the old versions are then
/// removed (unless another service still uses them). Agents: --agent, else
/// the ones the service was made with.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    sandbox: SandboxArgs,

    /// The service (name or id).
    #[arg(value_name = "SERVICE")]
    service: String,
}

/// Remove a service made by `airlock swarm`, then its airlock secrets
/// (those no other service uses). Nothing else is touched.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// The service (name or id).
    #[arg(value_name = "SERVICE")]
    service: String,

    /// Keep the service; remove nothing (prints what would be removed).
    #[arg(long)]
    dry_run: bool,
}

/// Whether the service is made in proxy mode: only when `--rotation proxy`
/// is given (the service is then pinned to this node, the only one that
/// reaches this host's proxy). A configured default of proxy gives way to
/// access-only: pinning a service is not done behind the user's back.
fn wants_proxy(ctx: &Ctx, s: &mut SandboxArgs) -> Result<bool> {
    if !s.wants_proxy(ctx)? {
        return Ok(false);
    }
    if s.rotation.is_some() {
        return Ok(true);
    }
    tracing::info!(
        "the configured rotation is proxy, which would pin the service to this node: access-only here (pass --rotation proxy to use the proxy)"
    );
    s.rotation = Some("access-only".into());
    Ok(false)
}

/// Label on a proxy-mode service: the sandbox id its proxy grants are
/// registered under (`airlock.sandbox`, as on `airlock run`'s containers).
const LABEL_PROXY: &str = airlock::sandbox::LABEL;

/// Proxy mode: this node's id, the base URL the tasks reach the proxy at
/// (`host.docker.internal`, Docker's host-gateway), and a fresh sandbox id.
struct ProxyTarget {
    node: String,
    url: String,
    id: String,
}

fn proxy_target(ctx: &Ctx) -> Result<ProxyTarget> {
    let node = docker_out(&["info", "--format", "{{.Swarm.NodeID}}"], "`docker info`")?
        .trim()
        .to_owned();
    let exe = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot find the airlock executable: {e}")))?;
    let layout = airlock::proxy::registry::Layout::new(&ctx.paths);
    let url = airlock::proxy::attach::url(&layout, EngineKind::Docker, &exe)?;
    let mut r = [0u8; 8];
    getrandom::fill(&mut r)
        .map_err(|e| Error::Other(format!("no randomness for a sandbox id: {e}")))?;
    let id: String = r.iter().map(|b| format!("{b:02x}")).collect();
    Ok(ProxyTarget {
        node,
        url,
        id: format!("swarm-{id}"),
    })
}

pub fn run(ctx: &Ctx, mut a: Args) -> Result<()> {
    match a.action {
        Some(Action::Update(u)) => return update(ctx, u),
        Some(Action::Rm(r)) => return rm(ctx, r),
        None => {}
    }
    let req = ServiceRequest::parse(&a.args)?;
    check_engine(&a.sandbox)?;
    let proxy = wants_proxy(ctx, &mut a.sandbox)?;
    ensure_manager()?;
    let proxy = if proxy {
        Some(proxy_target(ctx)?)
    } else {
        None
    };
    if let Some(p) = &proxy {
        a.sandbox.proxy_url = Some(p.url.clone());
    }
    // The image (entrypoint, user, /bin/sh) is examined while the
    // credentials are resolved, as `airlock run` does.
    let docker = EngineKind::Docker.engine();
    let (resolved, probed) = std::thread::scope(|s| {
        let probe = s.spawn(|| -> Result<_> {
            let image = docker.image_config(&req.image)?;
            let exec = launch::exec_for(&image, req.entrypoint.as_deref());
            let user =
                launch::container_user(docker.as_ref(), &req.image, &image, req.user.as_deref())?;
            check_shell(docker.as_ref(), &req.image)?;
            Ok((exec, user))
        });
        let resolved = a.sandbox.resolve(ctx, SyncUse::Refused);
        let probed = probe
            .join()
            .unwrap_or_else(|_| Err(Error::Other("the image check failed unexpectedly".into())));
        (resolved, probed)
    });
    let (plan, vault) = resolved?;
    if proxy.is_none() {
        // behind the proxy a session stays on this host: the replicas
        // share a placeholder, and the watcher alone refreshes
        check_shareable(&plan)?;
    }
    let (exec, user) = probed?;
    let secrets = swarm::secrets(&plan, &exec)?;
    let proxy_layout = airlock::proxy::registry::Layout::new(&ctx.paths);
    if let Some(p) = &proxy {
        // registered before the service exists: its first tasks are served
        airlock::proxy::attach::register_as(
            &proxy_layout,
            &plan,
            &p.id,
            airlock::proxy::daemon::SWARM,
        )?;
        if let Err(e) = super::proxy_hold::serve_sessions(ctx, &vault, &plan, &p.id) {
            airlock::proxy::attach::forget(&proxy_layout, &p.id);
            return Err(e);
        }
    }
    let made = match create_secrets(&secrets) {
        Ok(m) => m,
        Err(e) => {
            if let Some(p) = &proxy {
                airlock::proxy::attach::forget(&proxy_layout, &p.id);
            }
            return Err(e);
        }
    };
    let mut args = create_args(&plan, &secrets, user, &req);
    // where update finds what it needs again (names and paths, no secret)
    let agents: Vec<String> = plan
        .agents
        .iter()
        .map(|a| match &a.credential {
            Some(c) => format!("{}:{}", c.agent, c.account),
            None => a.agent.clone(),
        })
        .collect();
    let mut extra = vec![
        "--label".to_owned(),
        format!("{LABEL_AGENTS}={}", agents.join(",")),
    ];
    if let Some(ep) = &req.entrypoint {
        extra.extend(["--label".into(), format!("{LABEL_ENTRYPOINT}={ep}")]);
    }
    if let Some(p) = &proxy {
        extra.extend(swarm::proxy_args(&p.id, &p.node));
        eprintln!(
            "airlock: proxy mode: the service is constrained to this node (node.id=={}), the only one whose tasks reach this host's proxy ({})",
            p.node, p.url
        );
    }
    args.splice(4..4, extra);
    // docker's own output (the service id, or its progress without -d) goes
    // straight to the terminal
    let st = docker_cmd(&args).stdin(Stdio::null()).status();
    match st {
        Ok(st) if st.success() => Ok(()),
        other => {
            remove_secrets(&made);
            if let Some(p) = &proxy {
                airlock::proxy::attach::forget(&proxy_layout, &p.id);
            }
            Err(Error::Engine(match other {
                Ok(_) => "`docker service create` failed (its message is above); the secrets airlock had created were removed".into(),
                Err(e) => format!("could not run docker: {e}"),
            }))
        }
    }
}

/// Refuses an image without a usable `/bin/sh` (the shim's), before anything
/// is created: its tasks would fail over and over. Runs `/bin/sh -c :` in a
/// throwaway container without network (about 0.2 s); any other failure is
/// left to the service.
fn check_shell(docker: &dyn engine::Engine, image: &str) -> Result<()> {
    let out = docker
        .command()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/bin/sh",
        ])
        .args(["--", image, "-c", ":"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Engine(format!("could not run docker: {e}")))?;
    let code = out.status.code().unwrap_or(1);
    if launch::shell_missing(code, &out.stderr) {
        return Err(launch::no_shell(docker, image, code));
    }
    Ok(())
}

fn check_engine(s: &SandboxArgs) -> Result<()> {
    match s.engine_choice()? {
        Some(EngineKind::Podman) => Err(Error::Usage(
            "Swarm services are Docker's: drop --engine podman".into(),
        )),
        _ => Ok(()),
    }
}

fn docker_cmd(args: &[String]) -> Command {
    let mut c = EngineKind::Docker.engine().command();
    c.args(args);
    c
}

/// Runs docker with `args`, returning stdout; errors name `what`.
fn docker_out(args: &[&str], what: &str) -> Result<String> {
    let out = EngineKind::Docker
        .engine()
        .command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Engine(format!("could not run docker: {e}")))?;
    if !out.status.success() {
        return Err(Error::Engine(format!(
            "{what} failed: {}",
            engine::stderr_text(&out)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Refuses unless this Docker is a Swarm manager.
fn ensure_manager() -> Result<()> {
    let s = docker_out(
        &[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ],
        "`docker info`",
    )?;
    if s.trim() == "active true" {
        return Ok(());
    }
    Err(Error::Engine(format!(
        "this Docker is not a Swarm manager (swarm state: {}); run `docker swarm init` (or use a manager node's DOCKER_HOST)",
        s.trim()
    )))
}

/// Whether a Swarm secret exists: `Some(true)` if airlock made it.
fn secret_owner(name: &str) -> Result<Option<bool>> {
    let out = EngineKind::Docker
        .engine()
        .command()
        .args(["secret", "inspect", "--format"])
        .arg(format!("{{{{index .Spec.Labels \"{LABEL}\"}}}}"))
        .arg(name)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Engine(format!("could not run docker: {e}")))?;
    if !out.status.success() {
        let err = engine::stderr_text(&out);
        if err.to_ascii_lowercase().contains("no such secret") || err.contains("not found") {
            return Ok(None);
        }
        return Err(Error::Engine(format!(
            "`docker secret inspect {name}` failed: {err}"
        )));
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).trim() == "1"))
}

/// Creates the secrets that do not exist yet (content on stdin). Returns
/// the names created; on error, removes them again.
fn create_secrets(secrets: &[SwarmSecret]) -> Result<Vec<String>> {
    let mut made = Vec::new();
    for s in secrets {
        match create_secret(s) {
            Ok(true) => made.push(s.name.clone()),
            Ok(false) => {}
            Err(e) => {
                remove_secrets(&made);
                return Err(e);
            }
        }
    }
    Ok(made)
}

fn create_secret(s: &SwarmSecret) -> Result<bool> {
    match secret_owner(&s.name)? {
        Some(true) => return Ok(false),
        Some(false) => {
            return Err(Error::Usage(format!(
                "a Swarm secret named {} exists and airlock did not make it (no {LABEL} label); airlock never replaces it: remove or rename it",
                s.name
            )));
        }
        None => {}
    }
    let mut c = EngineKind::Docker.engine().command();
    c.args(["secret", "create"]);
    for (k, v) in s.labels() {
        c.args(["--label", &format!("{k}={v}")]);
    }
    c.args([s.name.as_str(), "-"]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Engine(format!("could not run docker: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(s.content.expose().as_bytes())
            .map_err(|e| Error::Engine(format!("could not hand a secret to docker: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Engine(format!("could not run docker: {e}")))?;
    if !out.status.success() {
        return Err(Error::Engine(format!(
            "`docker secret create {}` failed: {}",
            s.name,
            engine::stderr_text(&out)
        )));
    }
    tracing::info!(name = %s.name, target = %s.target, "swarm secret created");
    Ok(true)
}

/// Removes secrets, best effort (one still in use by a service stays).
fn remove_secrets(names: &[String]) {
    for n in names {
        match docker_out(&["secret", "rm", n], "`docker secret rm`") {
            Ok(_) => tracing::info!(name = %n, "swarm secret removed"),
            Err(e) => tracing::info!(name = %n, error = %e, "swarm secret kept"),
        }
    }
}

/// What `update` and `rm` need of a service.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceInfo {
    #[serde(default)]
    labels: std::collections::HashMap<String, String>,
    task_template: TaskTemplate,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskTemplate {
    container_spec: ContainerSpec,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerSpec {
    image: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    secrets: Vec<SecretRef>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretRef {
    secret_name: String,
}

fn inspect_service(service: &str) -> Result<ServiceInfo> {
    let json = docker_out(
        &["service", "inspect", "--format", "{{json .Spec}}", service],
        &format!("`docker service inspect {service}`"),
    )
    .map_err(|e| Error::NotFound {
        what: format!("the Swarm service {service}"),
        fix: format!("{e}; `docker service ls` lists the services"),
    })?;
    let info: ServiceInfo = serde_json::from_str(&json)
        .map_err(|e| Error::Engine(format!("unexpected `docker service inspect` output: {e}")))?;
    if info.labels.get(LABEL).map(String::as_str) != Some("1") {
        return Err(Error::Usage(format!(
            "the service {service} was not made by `airlock swarm` (no {LABEL} label); airlock leaves it alone"
        )));
    }
    Ok(info)
}

/// The airlock secrets a service mounts (names).
fn airlock_secrets(info: &ServiceInfo) -> Vec<&SecretRef> {
    info.task_template
        .container_spec
        .secrets
        .iter()
        .filter(|s| s.secret_name.starts_with("airlock-"))
        .collect()
}

fn update(ctx: &Ctx, a: UpdateArgs) -> Result<()> {
    check_engine(&a.sandbox)?;
    ensure_manager()?;
    let info = inspect_service(&a.service)?;
    if info.labels.contains_key(LABEL_PROXY) {
        eprintln!(
            "airlock: {} runs in proxy mode: its tasks hold placeholders, and the proxy always sends the current credential; nothing to rotate",
            a.service
        );
        return Ok(());
    }
    let mut sargs = a.sandbox.clone();
    if sargs.rotation.as_deref() == Some("proxy") {
        return Err(Error::Usage(format!(
            "{} was not made in proxy mode; to move it to the proxy, remove it (`airlock swarm rm {}`) and create it again with --rotation proxy",
            a.service, a.service
        )));
    }
    wants_proxy(ctx, &mut sargs)?;
    if sargs.agents.is_empty()
        && let Some(list) = info.labels.get(LABEL_AGENTS)
    {
        sargs.agents = list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    let (plan, _vault) = sargs.resolve(ctx, SyncUse::Refused)?;
    check_shareable(&plan)?;
    let docker = EngineKind::Docker.engine();
    let spec = &info.task_template.container_spec;
    // a pinned `name@sha256:…` may only be known locally by its name
    let image_name = spec.image.split('@').next().unwrap_or(&spec.image);
    let image = docker
        .image_config(&spec.image)
        .or_else(|_| docker.image_config(image_name))?;
    let exec = launch::exec_for(
        &image,
        info.labels.get(LABEL_ENTRYPOINT).map(String::as_str),
    );
    let user_spec = (!spec.user.is_empty()).then_some(spec.user.as_str());
    let user: ContainerUser =
        launch::container_user(docker.as_ref(), image_name, &image, user_spec)?;
    let secrets = swarm::secrets(&plan, &exec)?;
    let old = airlock_secrets(&info);
    let old_names: Vec<String> = old.iter().map(|s| s.secret_name.clone()).collect();
    let new_names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
    let to_rm: Vec<&String> = old_names
        .iter()
        .filter(|n| !new_names.contains(&n.as_str()))
        .collect();
    let to_add: Vec<&SwarmSecret> = secrets
        .iter()
        .filter(|s| !old_names.contains(&s.name))
        .collect();
    if to_rm.is_empty() && to_add.is_empty() {
        eprintln!("airlock: {} already has the current credentials", a.service);
        return Ok(());
    }
    let to_create: Vec<SwarmSecret> = to_add.iter().map(|s| (*s).clone()).collect();
    let made = create_secrets(&to_create)?;
    let mut args: Vec<String> = vec!["service".into(), "update".into(), "--quiet".into()];
    for n in &to_rm {
        args.extend(["--secret-rm".into(), (*n).clone()]);
    }
    for s in &to_add {
        args.extend(["--secret-add".into(), s.mount_spec(user)]);
    }
    // plain variables (CODEX_HOME, …) as the new plan has them
    for (k, v) in airlock::sandbox::shim::plain_env(&plan) {
        args.extend(["--env-add".into(), format!("{k}={v}")]);
    }
    args.push(a.service.clone());
    let st = docker_cmd(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| Error::Engine(format!("could not run docker: {e}")))?;
    if !st.success() {
        remove_secrets(&made);
        return Err(Error::Engine(format!(
            "`docker service update {}` failed (its message is above); the new secrets were removed, the service keeps the old ones",
            a.service
        )));
    }
    let gone: Vec<String> = to_rm.into_iter().cloned().collect();
    remove_secrets(&gone);
    eprintln!(
        "airlock: {} updated: {} secret(s) replaced",
        a.service,
        to_add.len()
    );
    Ok(())
}

fn rm(ctx: &Ctx, a: RmArgs) -> Result<()> {
    ensure_manager()?;
    let info = inspect_service(&a.service)?;
    let names: Vec<String> = airlock_secrets(&info)
        .iter()
        .map(|s| s.secret_name.clone())
        .collect();
    if a.dry_run {
        println!("service {}", a.service);
        for n in &names {
            println!("secret {n}");
        }
        return Ok(());
    }
    docker_out(
        &["service", "rm", &a.service],
        &format!("`docker service rm {}`", a.service),
    )?;
    // proxy mode: its placeholders are refused from now on
    if let Some(id) = info.labels.get(LABEL_PROXY) {
        let layout = airlock::proxy::registry::Layout::new(&ctx.paths);
        airlock::proxy::attach::forget(&layout, id);
    }
    // Swarm refuses to remove a secret while a service still uses it: one
    // shared with another airlock service stays.
    remove_secrets(&names);
    eprintln!("airlock: removed {} and its airlock secrets", a.service);
    Ok(())
}

/// One airlock Swarm secret, for `airlock status --swarm`.
#[derive(Debug, serde::Serialize)]
pub(super) struct StatusSecret {
    name: String,
    agent: String,
    account: String,
    target: String,
    created_at: String,
    services: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretLs {
    #[serde(default)]
    created_at: String,
    spec: SecretSpec,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretSpec {
    name: String,
    #[serde(default)]
    labels: std::collections::HashMap<String, String>,
}

/// The Swarm secrets airlock made (label `airlock.swarm=1`) and the
/// services mounting each, for `status --swarm`. `Err`: why they could not
/// be listed (no Docker, not a swarm manager).
pub(super) fn status_secrets(agent: Option<&str>) -> Result<Vec<StatusSecret>> {
    ensure_manager()?;
    let ids = docker_out(
        &[
            "secret",
            "ls",
            "-q",
            "--filter",
            &format!("label={LABEL}=1"),
        ],
        "`docker secret ls`",
    )?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["secret", "inspect", "--format", "{{json .}}"];
    args.extend(&ids);
    let text = docker_out(&args, "`docker secret inspect`")?;
    let mut users: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let services = docker_out(&["service", "ls", "-q"], "`docker service ls`")?;
    let services: Vec<&str> = services.split_whitespace().collect();
    if !services.is_empty() {
        let mut args = vec![
            "service",
            "inspect",
            "--format",
            "{{.Spec.Name}}{{range .Spec.TaskTemplate.ContainerSpec.Secrets}} {{.SecretName}}{{end}}",
        ];
        args.extend(&services);
        for line in docker_out(&args, "`docker service inspect`")?.lines() {
            let mut w = line.split_whitespace();
            if let Some(svc) = w.next() {
                for s in w {
                    users.entry(s.to_owned()).or_default().push(svc.to_owned());
                }
            }
        }
    }
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let s: SecretLs = serde_json::from_str(line).map_err(|e| {
            Error::Engine(format!("unexpected `docker secret inspect` output: {e}"))
        })?;
        let labels = s.spec.labels;
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let entry = StatusSecret {
            services: users.remove(&s.spec.name).unwrap_or_default(),
            agent: label(swarm::LABEL_AGENT),
            account: label(swarm::LABEL_ACCOUNT),
            target: label(swarm::LABEL_TARGET),
            created_at: s.created_at,
            name: s.spec.name,
        };
        if agent.is_none_or(|a| a == entry.agent) {
            out.push(entry);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `status --swarm` as JSON: `{"secrets": […]}` or `{"error": "…"}`.
pub(super) fn status_json(r: &Result<Vec<StatusSecret>>) -> serde_json::Value {
    match r {
        Ok(s) => serde_json::json!({ "secrets": s }),
        Err(e) => serde_json::json!({ "secrets": [], "error": e.to_string() }),
    }
}

/// `status --swarm` as a table.
pub(super) fn status_table(r: &Result<Vec<StatusSecret>>) -> String {
    let mut t = String::from("\nSwarm secrets made by `airlock swarm`:\n");
    match r {
        Err(e) => t.push_str(&format!("  (not listed: {e})\n")),
        Ok(s) if s.is_empty() => t.push_str("  none\n"),
        Ok(s) => {
            for x in s {
                let used = if x.services.is_empty() {
                    "unused".to_owned()
                } else {
                    format!("used by {}", x.services.join(", "))
                };
                let who = if x.account.is_empty() {
                    x.agent.clone()
                } else {
                    format!("{}:{}", x.agent, x.account)
                };
                t.push_str(&format!("  {}  {who}  {}  {used}\n", x.name, x.target));
            }
        }
    }
    t
}
