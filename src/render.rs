//! Renderers: a [`SandboxPlan`] plus its [`Sandbox`] directory, turned into
//! engine `run` arguments, `docker run` flags, or a compose override.
//!
//! Renderers only translate; they never see a secret value (secrets are files
//! in the sandbox directory, referenced by path). Plain environment variables
//! become `-e NAME=value` / `environment:` entries.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::plan::{IN_DIR, STATE_DIR, SandboxPlan};
use crate::sandbox::{Access, LABEL, Sandbox, shim};

/// Where the shim is inside the container.
pub fn shim_path() -> String {
    format!("{IN_DIR}/init.sh")
}

/// Single-quotes `s` for POSIX sh, always.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `s` as one shell word, quoted only when needed.
pub fn sh_word(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if safe { s.to_owned() } else { sh_quote(s) }
}

/// How the container is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStyle {
    /// `--entrypoint /bin/sh IMAGE /run/airlock-in/init.sh CMD…`: works even
    /// where the mount is `noexec`; needs the script path after the image
    /// (`airlock run`, compose's list-form entrypoint).
    Shell,
    /// `--entrypoint /run/airlock-in/init.sh`: flags alone suffice
    /// (`docker-flags`); the script is executable by the container user.
    Direct,
}

/// The engine flags a sandbox needs (everything before the image), without
/// `--entrypoint`.
pub fn sandbox_flags(plan: &SandboxPlan, sb: &Sandbox, engine: &dyn Engine) -> Vec<String> {
    let mut f = vec![
        "--label".to_owned(),
        format!("{LABEL}={}", sb.id()),
        "--mount".to_owned(),
        format!("type=bind,src={},dst={IN_DIR},readonly", sb.dir().display()),
        "--tmpfs".to_owned(),
        format!(
            "{STATE_DIR}:{}",
            engine.tmpfs_options(sb.user().uid, sb.user().gid)
        ),
    ];
    match sb.access() {
        Access::Owner => {}
        Access::GroupAdd(g) => {
            f.push("--group-add".into());
            f.push(g.to_string());
        }
        Access::MapUser(flags) => f.extend(flags.iter().cloned()),
    }
    if !plan.proxy.is_empty() && engine.kind() == crate::engine::EngineKind::Docker {
        // proxy mode: Docker names the host only when asked (Podman always
        // adds host.containers.internal)
        f.push("--add-host".into());
        f.push(format!(
            "{}:host-gateway",
            crate::proxy::sandbox::DOCKER_HOST
        ));
    }
    for m in &plan.mounts {
        f.push("--mount".into());
        let mut spec = format!("type=bind,src={},dst={}", m.host, m.container);
        if m.read_only {
            spec.push_str(",readonly");
        }
        f.push(spec);
    }
    for (k, v) in shim::plain_env(plan) {
        f.push("-e".into());
        f.push(format!("{k}={v}"));
    }
    f
}

/// The full argument list for `<engine> run`: airlock's flags, the user's
/// flags, the shim as entrypoint, the image, the shim path and the user's
/// command.
pub fn run_argv(
    plan: &SandboxPlan,
    sb: &Sandbox,
    engine: &dyn Engine,
    req: &RunRequest,
) -> Vec<String> {
    let mut a = vec!["run".to_owned()];
    a.extend(sandbox_flags(plan, sb, engine));
    a.extend(req.flags.iter().cloned());
    a.extend(["--entrypoint".to_owned(), "/bin/sh".to_owned()]);
    a.push(req.image.clone());
    a.push(shim_path());
    a.extend(req.cmd.iter().cloned());
    a
}

/// `docker run` flags, one per line, shell-safe, for
/// `docker run $(airlock docker-flags …) IMAGE [CMD…]`.
pub fn docker_flags(plan: &SandboxPlan, sb: &Sandbox, engine: &dyn Engine) -> String {
    let mut flags = sandbox_flags(plan, sb, engine);
    flags.extend(["--entrypoint".to_owned(), shim_path()]);
    pairs_to_lines(&flags)
}

/// The env-only mode of `docker-flags`: `-e NAME` for each secret variable
/// (the value comes from the calling environment and **is visible in
/// `docker inspect`**), `-e NAME=value` for plain ones. Files cannot be
/// delivered this way: secret files are an error, plain ones are skipped
/// (returned as warnings).
pub fn env_flags(plan: &SandboxPlan) -> Result<(String, Vec<String>)> {
    let mut warnings = Vec::new();
    for f in &plan.files {
        if f.content.is_secret() {
            return Err(Error::Usage(format!(
                "--mode env cannot deliver the credential file {}; use the default mode (files)",
                f.path
            )));
        }
        warnings.push(format!(
            "--mode env skips {} (a file); the agent may show first-run prompts",
            f.path
        ));
    }
    let mut flags = Vec::new();
    for e in &plan.env {
        shim::check_env_name(&e.name)?;
        match &e.value {
            crate::plan::Value::Plain(v) if v.starts_with(STATE_DIR) => {
                // Without the shim nothing creates the state tmpfs: an agent
                // pointed there would find no directory.
                warnings.push(format!(
                    "--mode env leaves out {}={v} (the directory exists only with the default mode)",
                    e.name
                ));
            }
            crate::plan::Value::Plain(v) => {
                flags.push("-e".to_owned());
                flags.push(format!("{}={v}", e.name));
            }
            crate::plan::Value::Secret(_) => {
                flags.push("-e".to_owned());
                flags.push(e.name.clone());
            }
        }
    }
    Ok((pairs_to_lines(&flags), warnings))
}

/// Prints flags with their values on one line each (`--mount 'type=…'`).
fn pairs_to_lines(flags: &[String]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < flags.len() {
        out.push_str(&sh_word(&flags[i]));
        let takes_value = flags[i].starts_with('-') && !flags[i].contains('=');
        if takes_value && i + 1 < flags.len() && !flags[i + 1].starts_with("--") {
            out.push(' ');
            out.push_str(&sh_word(&flags[i + 1]));
            i += 1;
        }
        out.push('\n');
        i += 1;
    }
    out
}

/// A compose override (YAML) for `service`: entrypoint, label, environment,
/// the sandbox mount and the state tmpfs. Strings are JSON-quoted, which is
/// valid YAML.
pub fn compose_override(
    plan: &SandboxPlan,
    sb: &Sandbox,
    engine: &dyn Engine,
    service: &str,
) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut y = String::new();
    y.push_str(&format!(
        "# Generated by airlock for sandbox {}. It holds no secret values: those are\n# files in {} (removed when the container exits; regenerate this file for each `up`).\n",
        sb.id(),
        sb.dir().display()
    ));
    if !plan.mounts.is_empty() {
        y.push_str("# The session directories (--rotation sync) are shared with the account's other\n# sandboxes and kept in step with the vault or host login by `airlock sync`.\n");
    }
    y.push_str("services:\n");
    y.push_str(&format!("  {}:\n", q(service)));
    y.push_str(&format!(
        "    entrypoint: [\"/bin/sh\", {}]\n",
        q(&shim_path())
    ));
    y.push_str(&format!(
        "    labels:\n      {}: {}\n",
        q(LABEL),
        q(sb.id())
    ));
    let env = shim::plain_env(plan);
    if !env.is_empty() {
        y.push_str("    environment:\n");
        for (k, v) in env {
            y.push_str(&format!("      {}: {}\n", q(&k), q(&v)));
        }
    }
    y.push_str("    volumes:\n");
    y.push_str(&format!(
        "      - type: bind\n        source: {}\n        target: {}\n        read_only: true\n",
        q(&sb.dir().display().to_string()),
        q(IN_DIR)
    ));
    for m in &plan.mounts {
        y.push_str(&format!(
            "      - type: bind\n        source: {}\n        target: {}\n        read_only: {}\n",
            q(&m.host),
            q(&m.container),
            m.read_only
        ));
    }
    y.push_str(&format!(
        "    tmpfs:\n      - {}\n",
        q(&format!(
            "{STATE_DIR}:{}",
            engine.tmpfs_options(sb.user().uid, sb.user().gid)
        ))
    ));
    if !plan.proxy.is_empty() && engine.kind() == crate::engine::EngineKind::Docker {
        // proxy mode: as `--add-host` in sandbox_flags
        y.push_str(&format!(
            "    extra_hosts:\n      - {}\n",
            q(&format!(
                "{}:host-gateway",
                crate::proxy::sandbox::DOCKER_HOST
            ))
        ));
    }
    match sb.access() {
        Access::Owner => {}
        Access::GroupAdd(g) => {
            y.push_str(&format!("    group_add:\n      - {}\n", q(&g.to_string())))
        }
        Access::MapUser(flags) => {
            if let Some(mode) = flags.iter().find_map(|f| f.strip_prefix("--userns=")) {
                y.push_str(&format!("    userns_mode: {}\n", q(mode)));
            }
        }
    }
    y
}

/// What the user asked `<engine> run` for, split out of their arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRequest {
    /// The user's engine flags, in order, minus `--entrypoint` (which
    /// airlock takes over and honours through the shim).
    pub flags: Vec<String>,
    /// The image.
    pub image: String,
    /// The command (may be empty: the image's `CMD` then).
    pub cmd: Vec<String>,
    /// `-u`/`--user`, if given.
    pub user: Option<String>,
    /// `--entrypoint`, if given (`Some("")` resets it).
    pub entrypoint: Option<String>,
    /// `-d`/`--detach`.
    pub detach: bool,
}

impl RunRequest {
    /// Splits `[ENGINE RUN FLAGS] IMAGE [CMD…]`. A leading `--` is skipped.
    pub fn parse(args: &[String]) -> Result<RunRequest> {
        let mut r = RunRequest::default();
        let mut i = 0;
        if args.first().is_some_and(|a| a == "--") {
            i = 1;
        }
        while i < args.len() {
            let a = &args[i];
            if a == "--" {
                i += 1;
                break;
            }
            if !a.starts_with('-') || a == "-" {
                break;
            }
            if let Some(long) = a.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_owned())),
                    None => (long, None),
                };
                let value = if crate::engine::run_flags::BOOL_LONG.contains(&name) {
                    inline
                } else if let Some(v) = inline {
                    Some(v)
                } else {
                    i += 1;
                    Some(args.get(i).cloned().ok_or_else(|| {
                        Error::Usage(format!("the engine flag --{name} needs a value"))
                    })?)
                };
                match name {
                    "entrypoint" => {
                        r.entrypoint = value;
                        i += 1;
                        continue;
                    }
                    "user" => r.user = value.clone(),
                    "detach" => r.detach = value.as_deref().is_none_or(|v| v != "false"),
                    _ => {}
                }
                r.flags.push(a.clone());
                if !crate::engine::run_flags::BOOL_LONG.contains(&name) && !a.contains('=') {
                    r.flags.push(args[i].clone());
                }
                i += 1;
                continue;
            }
            // Short flags: a cluster of booleans, possibly ending in one that
            // takes a value (`-it`, `-e X=1`, `-eX=1`, `-itu 1000`).
            r.flags.push(a.clone());
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                if crate::engine::run_flags::BOOL_SHORT.contains(c) {
                    if c == 'd' {
                        r.detach = true;
                    }
                    j += 1;
                    continue;
                }
                let rest: String = chars[j + 1..].iter().collect();
                let value = if rest.is_empty() {
                    i += 1;
                    let v = args.get(i).cloned().ok_or_else(|| {
                        Error::Usage(format!("the engine flag -{c} needs a value"))
                    })?;
                    r.flags.push(v.clone());
                    v
                } else {
                    rest.trim_start_matches('=').to_owned()
                };
                if c == 'u' {
                    r.user = Some(value);
                }
                break;
            }
            i += 1;
        }
        let Some(image) = args.get(i) else {
            return Err(Error::Usage(
                "no image given: airlock run [AIRLOCK FLAGS] [ENGINE RUN FLAGS] IMAGE [COMMAND…]"
                    .into(),
            ));
        };
        r.image = image.clone();
        r.cmd = args[i + 1..].to_vec();
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn run_args_split_at_the_image() {
        let r = RunRequest::parse(&v(&[
            "--rm",
            "-it",
            "-e",
            "A=1",
            "--network",
            "none",
            "-u",
            "1000",
            "--name=x",
            "img",
            "sh",
            "-c",
            "id",
        ]))
        .unwrap();
        assert_eq!(r.image, "img");
        assert_eq!(r.cmd, v(&["sh", "-c", "id"]));
        assert_eq!(r.user.as_deref(), Some("1000"));
        assert_eq!(
            r.flags,
            v(&[
                "--rm",
                "-it",
                "-e",
                "A=1",
                "--network",
                "none",
                "-u",
                "1000",
                "--name=x"
            ])
        );
        assert!(!r.detach);
    }

    #[test]
    fn entrypoint_is_taken_over_and_detach_seen() {
        let r = RunRequest::parse(&v(&["--", "-d", "--entrypoint", "/x", "--user=a:b", "img"]))
            .unwrap();
        assert_eq!(r.entrypoint.as_deref(), Some("/x"));
        assert_eq!(r.user.as_deref(), Some("a:b"));
        assert!(r.detach);
        assert_eq!(r.flags, v(&["-d", "--user=a:b"]));
        assert!(r.cmd.is_empty());
        let r = RunRequest::parse(&v(&["-du1000", "img", "--rm"])).unwrap();
        assert!(r.detach);
        assert_eq!(r.user.as_deref(), Some("1000"));
        assert_eq!(r.cmd, v(&["--rm"]));
    }

    #[test]
    fn missing_image_or_value_is_a_usage_error() {
        assert!(RunRequest::parse(&v(&["--rm"])).is_err());
        assert!(RunRequest::parse(&v(&["--network"])).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_word("--rm"), "--rm");
        assert_eq!(sh_word("a b"), "'a b'");
        assert_eq!(sh_word(""), "''");
    }
}
