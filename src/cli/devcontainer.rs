//! `airlock devcontainer`: the devcontainer.json keys that give a Dev
//! Container the agents' credentials (docs/cluster.md).

use std::path::{Path, PathBuf};

use airlock::cluster::devcontainer::{self, Fragment};
use airlock::engine;
use airlock::error::{Error, Result};
use airlock::fsutil;
use airlock::render;
use airlock::sandbox::shim::Exec;
use airlock::sandbox::{ContainerUser, Sandbox, SandboxSpec};

use super::Ctx;
use super::run::{SandboxArgs, SyncUse};

/// Give a Dev Container (devcontainer.json) the agents' credentials.
///
///     airlock devcontainer --agent claude --write
///     devcontainer up --workspace-folder .
///     devcontainer exec --workspace-folder . claude auth status
///
/// Writes the sandbox directory `airlock run` would write (on the host's
/// tmpfs, behind a stable path per project) and prints the keys to merge
/// into .devcontainer/devcontainer.json, or merges them in place with
/// --write (keeping your keys and comments): runArgs mounting that
/// directory read-only at /run/airlock-in with a tmpfs at /run/airlock,
/// containerEnv (plain values only), an initializeCommand that refreshes
/// the directory on the host before each start (`airlock` must be on the
/// PATH there), a postStartCommand running the shim, and remoteEnv.PATH
/// with wrappers that load the secret variables for `devcontainer exec`
/// sessions. No secret is written into devcontainer.json.
///
/// A Claude or Codex login session is delivered access-only (no refresh
/// token); the initializeCommand hands a fresh one over at each start.
///
/// --rotation proxy: the container holds a placeholder and reaches this
/// host's proxy at host.docker.internal; each start registers a new grant,
/// which goes with the container (a login session stays on this host,
/// refreshed by the sync watcher meanwhile).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    sandbox: SandboxArgs,

    /// The project folder (holding .devcontainer/). Default: the current directory.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,

    /// The uid[:gid] the container runs as (numeric; default 1000).
    #[arg(long, short = 'u', value_name = "UID[:GID]", default_value = "1000")]
    user: String,

    /// Merge the keys into .devcontainer/devcontainer.json (or
    /// .devcontainer.json) instead of printing them.
    #[arg(long)]
    write: bool,

    /// Only refresh the sandbox directory (what the initializeCommand runs).
    #[arg(long, conflicts_with = "write")]
    refresh: bool,
}

/// `dc-<folder>-<8 hex of sha256(path)>`: the project's stable directory name.
fn slug(ws: &Path) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(ws.as_os_str().as_encoded_bytes());
    let hex: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    let base: String = ws
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    format!("dc-{base}-{hex}")
}

/// Points `stable` at the fresh sandbox: the first time a symlink to it;
/// later the fresh files are moved into the directory it already points
/// at (a running container sees them: its mount is that directory).
fn install(stable: &Path, sb: Sandbox) -> Result<()> {
    let io = |op, p: &Path, e| Error::io(op, p, e);
    if let Ok(target) = std::fs::read_link(stable) {
        let target = stable.parent().unwrap_or(Path::new("/")).join(target);
        if target.is_dir() && target != sb.dir() {
            let fresh = sb.dir().to_path_buf();
            for entry in std::fs::read_dir(&fresh).map_err(|e| io("read", &fresh, e))? {
                let entry = entry.map_err(|e| io("read", &fresh, e))?;
                let (from, to) = (entry.path(), target.join(entry.file_name()));
                if entry.path().is_dir() && to.is_dir() {
                    let keep: Vec<_> = std::fs::read_dir(&from)
                        .map_err(|e| io("read", &from, e))?
                        .flatten()
                        .map(|e| e.file_name())
                        .collect();
                    for n in &keep {
                        std::fs::rename(from.join(n), to.join(n))
                            .map_err(|e| io("replace", &to.join(n), e))?;
                    }
                    for old in std::fs::read_dir(&to)
                        .map_err(|e| io("read", &to, e))?
                        .flatten()
                    {
                        if !keep.contains(&old.file_name()) {
                            let _ = std::fs::remove_file(old.path());
                        }
                    }
                } else {
                    std::fs::rename(&from, &to).map_err(|e| io("replace", &to, e))?;
                }
            }
            return sb.remove();
        }
    }
    let name = sb.dir().file_name().map(PathBuf::from).unwrap_or_default();
    let tmp = fsutil::temp_name(stable);
    std::os::unix::fs::symlink(&name, &tmp).map_err(|e| io("create symlink", &tmp, e))?;
    std::fs::rename(&tmp, stable).map_err(|e| io("replace", stable, e))?;
    sb.persist();
    Ok(())
}

/// The devcontainer.json to write: .devcontainer/devcontainer.json, else
/// .devcontainer.json.
fn config_file(ws: &Path) -> Result<PathBuf> {
    let a = ws.join(".devcontainer").join("devcontainer.json");
    let b = ws.join(".devcontainer.json");
    if a.is_file() {
        Ok(a)
    } else if b.is_file() {
        Ok(b)
    } else {
        Err(Error::Usage(format!(
            "no .devcontainer/devcontainer.json or .devcontainer.json in {}: create one (an \"image\" or \"build\" at least), or run without --write and merge the printed keys",
            ws.display()
        )))
    }
}

pub fn run(ctx: &Ctx, mut a: Args) -> Result<()> {
    let user = ContainerUser::parse_numeric(&a.user).ok_or_else(|| {
        Error::Usage(format!(
            "--user '{}': give a numeric UID or UID:GID",
            a.user
        ))
    })?;
    let ws = a.workspace.clone().unwrap_or_else(|| PathBuf::from("."));
    let ws = ws
        .canonicalize()
        .map_err(|e| Error::io("open the workspace folder", &ws, e))?;
    let engine = engine::choose_without_probe(a.sandbox.engine_choice()?)?;
    let proxy = a.sandbox.wants_proxy(ctx)?;
    let proxy_layout = airlock::proxy::registry::Layout::new(&ctx.paths);
    if proxy {
        let exe = std::env::current_exe()
            .map_err(|e| Error::Other(format!("cannot find the airlock executable: {e}")))?;
        a.sandbox.proxy_url = Some(airlock::proxy::attach::url(
            &proxy_layout,
            engine.kind(),
            &exe,
        )?);
    }
    let (mut plan, vault) = a.sandbox.resolve(ctx, SyncUse::Refused)?;
    if let Some(url) = &a.sandbox.proxy_url {
        devcontainer::base_url_to_files(&mut plan, url);
    }
    let commands: Vec<String> = plan.agents.iter().map(|s| s.agent.clone()).collect();
    devcontainer::add_exec_helper(&mut plan, &commands);
    let sb = Sandbox::create_in(
        &ctx.paths.runtime_dir,
        "devcontainers",
        SandboxSpec {
            plan: &plan,
            exec: Exec::default(),
            user,
            engine: engine.as_ref(),
            owner_pid: None,
        },
    )?;
    let slug = slug(&ws);
    let stable = ctx.paths.runtime_dir.join("devcontainers").join(&slug);
    let id_dir = sb.dir().display().to_string();
    let mut flags: Vec<String> = render::sandbox_flags(&plan, &sb, engine.as_ref())
        .into_iter()
        .map(|f| {
            if f.starts_with(&format!("{}=", airlock::sandbox::LABEL)) {
                format!("airlock.devcontainer={slug}")
            } else {
                f.replace(
                    &format!("src={id_dir},"),
                    &format!("src={},", stable.display()),
                )
            }
        })
        .collect();
    if proxy {
        // the proxy keeps the project's grants while a container labelled
        // with its slug runs, and forgets them once it is gone
        flags.extend([
            "--label".to_owned(),
            format!("{}={slug}", airlock::sandbox::LABEL),
        ]);
    }
    install(&stable, sb)?;
    if proxy {
        // A new placeholder at each refresh (each start); the older ones of
        // a container still running keep working until it is gone.
        airlock::proxy::attach::register(&proxy_layout, &plan, &slug, engine.kind())?;
        // a login session stays on this host, refreshed by the watcher for
        // as long as the grant lives
        super::proxy_hold::serve_sessions(ctx, &vault, &plan, &slug)?;
    }
    if a.refresh {
        return Ok(());
    }
    let mut init = vec![
        "airlock".to_owned(),
        "devcontainer".to_owned(),
        "--refresh".to_owned(),
        "--workspace".to_owned(),
        "${localWorkspaceFolder}".to_owned(),
        "--user".to_owned(),
        a.user.clone(),
    ];
    for ag in &a.sandbox.agents {
        init.extend(["--agent".to_owned(), ag.clone()]);
    }
    let s = &a.sandbox;
    if proxy && s.rotation.is_none() {
        init.extend(["--rotation".to_owned(), "proxy".to_owned()]);
    }
    for (flag, v) in [
        ("--workdir", &s.workdir),
        ("--rotation", &s.rotation),
        ("--engine", &s.engine),
    ] {
        if let Some(v) = v {
            init.extend([flag.to_owned(), v.clone()]);
        }
    }
    for (flag, on) in [
        ("--no-aliases", s.no_aliases),
        ("--no-host-configs", s.no_host_configs),
        ("--require-auth", s.require_auth),
    ] {
        if on {
            init.push(flag.to_owned());
        }
    }
    let frag = Fragment::new(&plan, &flags, init);
    if a.write {
        let path = config_file(&ws)?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
        let merged = devcontainer::merge(&text, &frag)?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o644)
        };
        fsutil::write_atomic(&path, merged.as_bytes(), mode)?;
        anstream::eprintln!("airlock: updated {}", path.display());
    } else {
        let json = serde_json::to_string_pretty(&frag.to_json())
            .map_err(|e| Error::Other(format!("could not encode the keys: {e}")))?;
        println!("{json}");
    }
    Ok(())
}
