//! `airlock teardown`: remove airlock's own state, never the agents' files.

use std::path::{Path, PathBuf};

use airlock::agents::Agent;
use airlock::agents::HostEnv;
use airlock::error::{Error, Result};
use airlock::vault::BackendKind;

use super::Ctx;

/// Remove airlock's own state: stored credentials, state and runtime files
///
/// Removes every credential in the vault, the vault file, and the state and
/// runtime directories. The agents' own files on this machine (~/.claude,
/// ~/.codex, ~/.gemini) are never touched, and the config file is kept.
///
/// Refuses (exit 5) when an agent's credential path is a symbolic link into
/// airlock's directories, since removing them would break that login;
/// --force removes them anyway.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove even when an agent's credential path is a symlink into airlock's state.
    #[arg(long)]
    force: bool,

    /// Do not ask for confirmation (needed without a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let env = HostEnv::from_process(ctx.paths.home.clone());
    let vault_file = ctx.vault_file();
    let mut ours: Vec<PathBuf> = vec![
        ctx.paths.data_dir.clone(),
        ctx.paths.state_dir.clone(),
        ctx.paths.runtime_dir.clone(),
        ctx.paths.config_dir.clone(),
    ];
    if let Some(p) = vault_file.parent() {
        ours.push(p.to_path_buf());
    }
    let ours_real: Vec<PathBuf> = ours.iter().filter_map(|p| p.canonicalize().ok()).collect();

    // Host credential paths, and the agents' directories holding them.
    let mut host: Vec<PathBuf> = Vec::new();
    for agent in Agent::all(&ctx.config) {
        for p in agent.host_paths(&env) {
            if let Some(parent) = p.parent() {
                host.push(parent.to_path_buf());
            }
            host.push(p);
        }
    }
    let linked: Vec<(PathBuf, PathBuf)> = host
        .iter()
        .filter_map(|p| {
            let real = p.canonicalize().ok()?;
            let is_link = std::fs::symlink_metadata(p).ok()?.file_type().is_symlink();
            (is_link && ours_real.iter().any(|o| real.starts_with(o))).then(|| (p.clone(), real))
        })
        .collect();
    if let Some((p, real)) = linked.first() {
        if !a.force {
            return Err(Error::unsafe_path(
                p,
                format!(
                    "it is a symbolic link into airlock's state ({}), so teardown would break this login",
                    real.display()
                ),
                format!(
                    "replace it with a real copy (cp --remove-destination '{}' '{}') and run teardown again, or pass --force (the agent will then need a new login)",
                    real.display(),
                    p.display()
                ),
            ));
        }
        anstream::eprintln!(
            "airlock: warning: --force: {} points into airlock's state and will stop working",
            p.display()
        );
    }

    if !a.yes {
        if !ctx.interactive {
            return Err(Error::Usage(
                "teardown removes every stored credential: pass --yes to confirm without a terminal".into(),
            ));
        }
        let ok = inquire::Confirm::new(
            "Remove every credential airlock stored, and its state? (the agents' own logins stay)",
        )
        .with_default(false)
        .prompt()
        .unwrap_or(false);
        if !ok {
            return Err(Error::Usage("cancelled: nothing was removed".into()));
        }
    }

    let mut removed = Vec::new();
    let mut problems = Vec::new();
    // 1. The vault.
    match ctx.open_vault() {
        Ok(v) if v.kind() == BackendKind::File => {
            // Forget the cached unlock key too (kept in the kernel keyring).
            if let Err(e) = v.lock() {
                problems.push(format!("the cached vault key: {e}"));
            }
            remove_vault_files(&vault_file, &mut removed, &mut problems)
        }
        Ok(v) => match v.list() {
            Ok(records) => {
                for r in records {
                    match v.remove(&r.id) {
                        Ok(_) => removed.push(format!("{} from the {} vault", r.id, v.kind())),
                        Err(e) => problems.push(format!("{}: {e}", r.id)),
                    }
                }
            }
            Err(e) => problems.push(format!("the {} vault: {e}", v.kind())),
        },
        Err(e) => problems.push(format!("the vault: {e}")),
    }
    // Always clean up a vault file left by an earlier backend choice.
    if vault_file.exists() {
        remove_vault_files(&vault_file, &mut removed, &mut problems);
    }
    // 2. State, runtime and (emptied) data directories.
    for dir in [
        &ctx.paths.state_dir,
        &ctx.paths.runtime_dir,
        &ctx.paths.data_dir,
    ] {
        remove_dir(
            dir,
            &ctx.paths.home,
            &host,
            a.force,
            &mut removed,
            &mut problems,
        );
    }
    for r in &removed {
        anstream::eprintln!("airlock: removed {r}");
    }
    if removed.is_empty() {
        anstream::eprintln!("airlock: nothing to remove");
    }
    anstream::eprintln!(
        "airlock: kept the agents' own files and the config file {}",
        ctx.paths.config_file().display()
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "teardown left some things behind: {}",
            problems.join("; ")
        )))
    }
}

/// The vault file and its side files (`vault.airlock*`, `.vault.airlock.tmp.*`).
fn remove_vault_files(file: &Path, removed: &mut Vec<String>, problems: &mut Vec<String>) {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return;
    };
    let name = name.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&name) || n.starts_with(&format!(".{name}")) {
            match std::fs::remove_file(e.path()) {
                Ok(()) => removed.push(e.path().display().to_string()),
                Err(err) => problems.push(format!("{}: {err}", e.path().display())),
            }
        }
    }
}

/// Removes `dir` with its contents, unless it is the home directory or one
/// of its ancestors, or holds an agent's files: then only when empty. A
/// host path that only *links* into `dir` does not protect it under `--force`.
fn remove_dir(
    dir: &Path,
    home: &Path,
    host: &[PathBuf],
    force: bool,
    removed: &mut Vec<String>,
    problems: &mut Vec<String>,
) {
    let Ok(md) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if md.file_type().is_symlink() || !md.is_dir() {
        problems.push(format!(
            "{} is not a plain directory; left as it is",
            dir.display()
        ));
        return;
    }
    let real = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let real_home = home.canonicalize().unwrap_or_else(|_| home.to_path_buf());
    let holds_host = host.iter().any(|h| {
        h.starts_with(dir) || (!force && h.canonicalize().is_ok_and(|r| r.starts_with(&real)))
    });
    let ours = !real_home.starts_with(&real) && real.parent().is_some();
    let empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    let result = if empty {
        std::fs::remove_dir(dir)
    } else if ours && !holds_host {
        std::fs::remove_dir_all(dir)
    } else {
        problems.push(format!(
            "{} is not airlock's own directory (or holds an agent's files); remove what you no longer need by hand",
            dir.display()
        ));
        return;
    };
    match result {
        Ok(()) => removed.push(dir.display().to_string()),
        Err(e) => problems.push(format!("{}: {e}", dir.display())),
    }
}
