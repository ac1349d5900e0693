//! `airlock k8s`: Kubernetes manifests (a Secret and a Pod, or a workload
//! patch) that give a pod the agents' credentials (docs/cluster.md).

use std::io::IsTerminal;

use airlock::cluster::k8s::{self, Spec, Target};
use airlock::cluster::kubeapi;
use airlock::error::{Error, Result};
use airlock::plan::SandboxPlan;
use airlock::sandbox::ContainerUser;
use airlock::vault::Method;

use super::Ctx;
use super::run::{SandboxArgs, SyncUse};

/// Print Kubernetes manifests that give a pod the agents' credentials.
///
///     airlock k8s --agent claude --image IMG --name dev | kubectl apply -f -
///
/// The output is a YAML stream: a Secret (type Opaque, labelled
/// app.kubernetes.io/managed-by=airlock) holding the shim and the secret
/// values, and a Pod that mounts it read-only at /run/airlock-in (projected
/// volume, mode 0400, readable through the pod's fsGroup), keeps the agents'
/// files in an in-memory emptyDir at /run/airlock and starts through the
/// shim, which then runs COMMAND (default: wait, for `kubectl exec`). No
/// secret is in an `env:` value or a command.
///
/// With --patch deployment/NAME (or statefulset/NAME) the second document is
/// a partial workload instead of a Pod: apply it with `kubectl apply
/// --server-side --field-manager airlock -f -` (or as the body of `kubectl
/// patch`). It adds the volumes, an init container running the shim (same
/// image and uid), and the secret variables as secretKeyRefs; the
/// workload's own command is kept.
///
/// --apply sends them to the current kubeconfig context instead
/// (server-side apply, field manager airlock); --dry-run asks the API
/// server what it would store.
///
/// Pods cannot share a rotating login session (single-use refresh tokens):
/// give them a setup-token (`airlock login claude --method token`), an
/// API key, or --rotation proxy. The Secret data is in the output: airlock
/// refuses to print it to a terminal.
///
/// --rotation proxy needs --proxy-url: the pods then hold placeholders and
/// talk to an `airlock proxy` on this host that you make reachable from the
/// cluster (`airlock proxy --listen ADDR --port PORT` behind a tunnel or a
/// Service; docs/cluster.md); the grants are registered on this host. They
/// expire after --grant-ttl (default 24h): `airlock k8s renew ID` extends
/// them. A login session stays on this host, refreshed by the sync watcher
/// while the grant lives.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,

    #[command(flatten)]
    sandbox: SandboxArgs,

    /// The container image (it needs /bin/sh, like `airlock run`'s).
    #[arg(long, value_name = "IMAGE", required = true)]
    image: Option<String>,

    /// The namespace of the Secret and Pod (default: kubectl's current one).
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: Option<String>,

    /// The Pod's name; the Secret is NAME-airlock.
    #[arg(long, value_name = "NAME", default_value = "airlock-agent")]
    name: String,

    /// The container's name (with --patch: the workload's container that
    /// gets the credentials). Default: agent.
    #[arg(long, value_name = "NAME", default_value = "agent")]
    container: String,

    /// The uid[:gid] the container runs as (numeric; default 1000:1000).
    #[arg(long, short = 'u', value_name = "UID[:GID]", default_value = "1000")]
    user: String,

    /// Patch an existing workload instead of creating a Pod:
    /// deployment/NAME or statefulset/NAME.
    #[arg(long, value_name = "KIND/NAME")]
    patch: Option<String>,

    /// Print the manifests even to a terminal (they hold the Secret's data).
    #[arg(long)]
    force_tty: bool,

    /// Apply the manifests to the current kubeconfig context ($KUBECONFIG,
    /// else ~/.kube/config) with server-side apply (field manager airlock)
    /// instead of printing them. The Secret is owner-referenced to the Pod,
    /// or to the patched workload. Running it again replaces the Secret's data.
    #[arg(long, conflicts_with = "dry_run")]
    apply: bool,

    /// Like --apply, with the API server's dry run (nothing is changed):
    /// prints what the server would store, the Secret's values redacted.
    #[arg(long)]
    dry_run: bool,

    /// Proxy mode (--rotation proxy): the base URL, http(s)://HOST[:PORT]
    /// without a path, at which the pods reach an `airlock proxy` running on
    /// this host (you expose it to the cluster; docs/cluster.md).
    #[arg(long, value_name = "URL")]
    proxy_url: Option<String>,

    /// Proxy mode: how long the pods' grant lives (30m, 24h, 7d; at most
    /// 30d; default 24h). The proxy cannot see pods: after this it refuses
    /// their placeholders (401) until `airlock k8s renew ID` (or rendering
    /// again) extends it, and drops the grant an hour later.
    #[arg(long, value_name = "DURATION")]
    grant_ttl: Option<String>,

    /// The command the shim runs in the Pod (after `--`).
    #[arg(value_name = "COMMAND", last = true)]
    command: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    Renew(RenewArgs),
}

/// Extend the proxy grant of pods made with `airlock k8s --rotation proxy`.
///
/// The grant's new expiry is now plus --grant-ttl. An expired grant can be
/// renewed for an hour after it expired (the proxy drops it then: render
/// the manifests again). A revoked grant is not renewed.
#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// The grant: `k8s-<namespace>-<name>` (`k8s-<namespace>-<kind>-<name>`
    /// for --patch), as `airlock k8s` printed it and `airlock status` shows.
    #[arg(value_name = "GRANT")]
    grant: String,

    /// How long from now (30m, 24h, 7d; at most 30d).
    #[arg(long, value_name = "DURATION", default_value = k8s::DEFAULT_GRANT_TTL)]
    grant_ttl: String,
}

fn renew(ctx: &Ctx, a: RenewArgs) -> Result<()> {
    let ttl = k8s::parse_grant_ttl(&a.grant_ttl)?;
    let layout = airlock::proxy::registry::Layout::new(&ctx.paths);
    let now = jiff::Timestamp::now();
    let until = now
        .checked_add(ttl)
        .map_err(|e| Error::Usage(format!("--grant-ttl {}: {e}", a.grant_ttl)))?;
    let n = airlock::proxy::registry::renew(&layout, &a.grant, now, until)?;
    if n == 0 {
        return Err(Error::NotFound {
            what: format!("a pods' proxy grant {} to renew", a.grant),
            fix: "`airlock status` lists the grants; a revoked one, or one that expired over an hour ago, is not renewed: render the manifests again (`airlock k8s --rotation proxy …`)".into(),
        });
    }
    anstream::eprintln!(
        "airlock: grant {} renewed until {}",
        a.grant,
        until.round(jiff::Unit::Second).unwrap_or(until)
    );
    Ok(())
}

/// Proxy mode for pods: they run on a cluster that is generally not this
/// host, so the proxy's address must come from the user (`--proxy-url`);
/// without it `--rotation proxy` is refused. Returns the base URL.
fn proxy_url(ctx: &Ctx, sandbox: &SandboxArgs, given: Option<&str>) -> Result<Option<String>> {
    let wanted = sandbox.wants_proxy(ctx)?;
    match (wanted, given) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(Error::Usage(
            "--proxy-url is for proxy mode: add --rotation proxy".into(),
        )),
        (true, None) => Err(Error::Usage(
            "--rotation proxy (flag, AIRLOCK_ROTATION or [sync] rotation) needs --proxy-url for pods: they run on the cluster, which cannot reach the proxy airlock starts on this machine. Run `airlock proxy --listen ADDR --port PORT` where the cluster can reach it and pass --proxy-url http://HOST:PORT (docs/cluster.md), or give the pods a setup-token or an API key (--rotation access-only)".into(),
        )),
        (true, Some(u)) => k8s::check_proxy_url(u).map(Some),
    }
}

/// Refuses rotating sessions: replicas would refresh and break each other.
pub(crate) fn refuse_rotating(plan: &SandboxPlan, target: &str) -> Result<()> {
    for a in &plan.agents {
        if a.method == Some(Method::Session) && matches!(a.agent.as_str(), "claude" | "codex") {
            return Err(Error::Usage(format!(
                "{}: a login session cannot be shared by {target} (its refresh token is single-use: copies break each other and the host login). Use a setup-token (`airlock login claude --method token`) or an API key (`airlock auth {} --method api-key --stdin`), or keep the session on this machine behind airlock's proxy (--rotation proxy, docs/proxy.md)",
                a.agent, a.agent
            )));
        }
    }
    Ok(())
}

/// A Codex ChatGPT session needs TLS to the proxy (Codex refuses an
/// `http://` ChatGPT backend); over `http://` that needs the proxy's own
/// certificate, which covers only the names and private addresses its CA
/// may sign for.
fn refuse_codex_session_without_tls(plan: &SandboxPlan, url: &str) -> Result<()> {
    let codex_session = plan
        .proxy
        .iter()
        .any(|g| g.agent == "codex" && g.method == Method::Session);
    if codex_session && url.starts_with("http://") && !k8s::proxy_tls_possible(url) {
        return Err(Error::Usage(format!(
            "codex: a ChatGPT session talks TLS to the proxy, and the proxy's certificate cannot name the host of --proxy-url {url}: give the address the proxy listens on (a private or VPN address: `airlock proxy --listen ADDR`, docs/proxy.md), an https:// URL of a TLS front the pods trust, or an API key for Codex (`airlock auth codex --method api-key --stdin`)"
        )));
    }
    Ok(())
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    if let Some(Action::Renew(r)) = a.action {
        return renew(ctx, r);
    }
    let image = a
        .image
        .ok_or_else(|| Error::Usage("--image IMAGE is required".into()))?;
    let user = ContainerUser::parse_numeric(&a.user).ok_or_else(|| {
        Error::Usage(format!(
            "--user '{}': give a numeric UID or UID:GID (Kubernetes runs pods by number)",
            a.user
        ))
    })?;
    let target = match &a.patch {
        Some(p) => Target::parse_patch(p)?,
        None => Target::Pod,
    };
    if matches!(target, Target::Patch { .. }) && !a.command.is_empty() {
        return Err(Error::Usage(
            "a COMMAND cannot be given with --patch: the workload keeps its own".into(),
        ));
    }
    let remote = a.apply || a.dry_run;
    if !remote && std::io::stdout().is_terminal() && !a.force_tty {
        return Err(Error::Usage(
            "the manifests hold the Secret's data: pipe them to `kubectl apply -f -` or redirect them to a file (--force-tty prints them here anyway)".into(),
        ));
    }
    let client = if remote {
        let path = kubeapi::kubeconfig_path(&ctx.paths.home).ok_or_else(|| {
            Error::Usage(
                "no kubeconfig: set KUBECONFIG or create ~/.kube/config (or print the manifests without --apply)".into(),
            )
        })?;
        Some(kubeapi::Client::from_kubeconfig(&path)?)
    } else {
        None
    };
    let mut sargs = a.sandbox.clone();
    sargs.proxy_url = proxy_url(ctx, &sargs, a.proxy_url.as_deref())?;
    if a.grant_ttl.is_some() && sargs.proxy_url.is_none() {
        return Err(Error::Usage(
            "--grant-ttl is for proxy mode: add --rotation proxy --proxy-url URL".into(),
        ));
    }
    let ttl_text = a.grant_ttl.as_deref().unwrap_or(k8s::DEFAULT_GRANT_TTL);
    let ttl = k8s::parse_grant_ttl(ttl_text)?;
    let proxy_layout = airlock::proxy::registry::Layout::new(&ctx.paths);
    if let Some(u) = &sargs.proxy_url
        && k8s::proxy_tls_possible(u)
    {
        // Codex's ChatGPT backend must be https://: the pods then talk TLS
        // to the proxy (same port), trusting its CA's certificates
        airlock::proxy::attach::offer_ca(&proxy_layout);
    }
    let (plan, vault) = sargs.resolve(ctx, SyncUse::Refused)?;
    match &sargs.proxy_url {
        // behind the proxy a session stays on this host: the pods share a
        // placeholder, and the watcher alone refreshes
        None => refuse_rotating(&plan, "pods")?,
        Some(u) => refuse_codex_session_without_tls(&plan, u)?,
    }
    let namespace = a
        .namespace
        .or_else(|| client.as_ref().map(|c| c.namespace.clone()));
    if sargs.proxy_url.is_some() && !a.dry_run {
        // one grant per pod or workload, replaced when run again (its
        // Secret then holds the new placeholder)
        let id = k8s::sandbox_id(namespace.as_deref(), &a.name, a.patch.as_deref());
        let layout = proxy_layout;
        let until = jiff::Timestamp::now()
            .checked_add(ttl)
            .map_err(|e| Error::Usage(format!("--grant-ttl {ttl_text}: {e}")))?;
        // the new grants and their hold first, then the old ones go (their
        // hold hands its session back); a login session is refreshed by the
        // watcher until the grant is gone. On failure the old grants stay.
        airlock::proxy::attach::replace_grants(&layout, &plan, &id, "k8s", Some(until), || {
            super::proxy_hold::serve_sessions_of_grants(ctx, &vault, &plan, &id)
        })?;
        if airlock::proxy::daemon::port(&layout).is_none() {
            anstream::eprintln!(
                "airlock: warning: no airlock proxy runs on this host: start one the cluster reaches at {} (`airlock proxy --listen ADDR --port PORT`, docs/cluster.md)",
                sargs.proxy_url.as_deref().unwrap_or_default()
            );
        }
        anstream::eprintln!(
            "airlock: proxy mode: grant {id} registered on this host until {} (`airlock k8s renew {id}` extends it, `airlock revoke {id}` cuts the pods off)",
            until.round(jiff::Unit::Second).unwrap_or(until)
        );
    }
    let spec = Spec {
        name: a.name,
        namespace: namespace.clone(),
        image,
        container: a.container,
        command: a.command,
        uid: user.uid,
        gid: user.gid.unwrap_or(user.uid),
        target,
    };
    let mut m = k8s::build(&plan, &spec)?;
    let Some(client) = client else {
        print!("{}", m.to_yaml()?);
        return Ok(());
    };
    let ns = namespace.unwrap_or_else(|| "default".into());
    let applied = kubeapi::apply(&client, &ns, &mut m, a.dry_run)?;
    for (what, answer) in applied {
        if a.dry_run {
            let yaml = serde_saphyr::to_string(&kubeapi::redact(answer))
                .map_err(|e| Error::Other(format!("could not encode the answer: {e}")))?;
            print!("---\n{yaml}");
        } else {
            anstream::eprintln!(
                "airlock: applied {what} (namespace {ns}, context {})",
                client.context
            );
        }
    }
    Ok(())
}
