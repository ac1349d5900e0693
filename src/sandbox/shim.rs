//! The entrypoint shim: a POSIX `sh` script generated per sandbox.
//!
//! It runs as the container's user before anything else and
//!
//! 1. exports the secret environment variables from files
//!    (`NAME=$(cat /run/airlock-in/env/N)`), so no value is ever in the
//!    container's configuration;
//! 2. creates the agents' files (umask 077, then the planned mode), owned by
//!    the container user because the shim runs as that user;
//! 3. writes command wrappers into `/run/airlock/bin` (the real command is
//!    found with `command -v` before that directory is put first on `PATH`);
//! 4. writes `/run/airlock/env`, a script `docker exec` sessions can source to
//!    get the same secret variables;
//! 5. `exec`s the image's original `ENTRYPOINT` with the user's command, or
//!    the image's `CMD` when none was given.
//!
//! The script holds paths and plain values only. It needs nothing but `sh`,
//! `cat`, `mkdir` and `chmod` in the image.

use crate::error::{Error, Result};
use crate::plan::{IN_DIR, STATE_DIR, SandboxPlan, Value};
use crate::render::sh_quote;

/// What the shim must `exec` in the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exec {
    /// The image's `ENTRYPOINT` (or the user's `--entrypoint`).
    pub entrypoint: Vec<String>,
    /// The command used when the container is started without one: the
    /// image's `CMD` (empty when the user overrode the entrypoint, as engines do).
    pub default_cmd: Vec<String>,
}

/// The files the shim reads, relative to the sandbox directory, in plan order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// `(variable name, relative file)` for each secret environment variable.
    pub secret_env: Vec<(String, String)>,
    /// `(relative source file, container path, mode)` for each planned file.
    pub files: Vec<(String, String, u32)>,
}

impl Layout {
    /// Assigns a file to every secret value and every planned file of `plan`.
    pub fn for_plan(plan: &SandboxPlan) -> Result<Layout> {
        let mut l = Layout::default();
        for (i, e) in plan.env.iter().filter(|e| e.value.is_secret()).enumerate() {
            check_env_name(&e.name)?;
            l.secret_env.push((e.name.clone(), format!("env/{i}")));
        }
        for (i, f) in plan.files.iter().enumerate() {
            check_container_path(&f.path)?;
            l.files
                .push((format!("files/{i}"), f.path.clone(), f.mode & 0o7777));
        }
        Ok(l)
    }
}

/// Checks that `name` can be a shell variable.
pub fn check_env_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("'{name}' is not a valid environment variable name"),
            "use letters, digits and underscores, not starting with a digit",
        ))
    }
}

fn check_container_path(path: &str) -> Result<()> {
    let ok = (path.starts_with('/') || path.starts_with("~/"))
        && !path.contains('\n')
        && !path.split('/').any(|c| c == "..")
        && !path.ends_with('/');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("'{path}' is not a usable file path inside the container"),
            "planned files need an absolute path (or one starting with ~/) without '..'",
        ))
    }
}

/// A container path as a shell word: `~/x` becomes `"$HOME"/'x'`.
fn path_word(path: &str) -> String {
    match path.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/{}", sh_quote(rest)),
        None => sh_quote(path),
    }
}

fn parent(path: &str) -> Option<&str> {
    let i = path.rfind('/')?;
    match &path[..i] {
        "" | "~" => None,
        p => Some(p),
    }
}

/// Generates the shim for `plan`. `id` is only used in a comment.
pub fn script(plan: &SandboxPlan, layout: &Layout, exec: &Exec, id: &str) -> String {
    let mut s = String::new();
    let line = |s: &mut String, l: &str| {
        s.push_str(l);
        s.push('\n');
    };
    line(&mut s, "#!/bin/sh");
    line(
        &mut s,
        &format!("# airlock sandbox {id}: generated entrypoint shim."),
    );
    line(
        &mut s,
        "# It holds no secret value: those are read from the files next to it.",
    );
    line(&mut s, "set -e");
    line(&mut s, "umask 077");
    line(&mut s, &format!("in={}", sh_quote(IN_DIR)));
    line(&mut s, &format!("st={}", sh_quote(STATE_DIR)));
    line(
        &mut s,
        "[ -d \"$st\" ] && [ -w \"$st\" ] || { echo \"airlock: $st is missing or not writable by uid $(id -u 2>/dev/null); start the container with airlock's flags\" >&2; exit 125; }",
    );

    // Secret environment, as a sourceable file for `docker exec` sessions too.
    let mut env_lines = String::new();
    for (name, rel) in &layout.secret_env {
        env_lines.push_str(&format!(
            "{name}=$(cat \"$in\"/{}) && export {name}\n",
            sh_quote(rel)
        ));
    }
    if !plan.aliases.is_empty() {
        env_lines.push_str("case \":$PATH:\" in *\":$st/bin:\"*) ;; *) PATH=\"$st/bin:$PATH\"; export PATH ;; esac\n");
    }

    // Files.
    let mut made: Vec<&str> = Vec::new();
    for (rel, path, mode) in &layout.files {
        if let Some(p) = parent(path)
            && !made.contains(&p)
        {
            made.push(p);
            line(&mut s, &format!("mkdir -p {}", path_word(p)));
        }
        let dst = path_word(path);
        // A file in a synced directory (shared by the account's sandboxes,
        // `--rotation sync`) is only written when that directory has none:
        // another sandbox's copy (and what the agent did to it) is kept.
        let shared = plan.sync.iter().any(|m| {
            path.strip_prefix(m.container.as_str())
                .is_some_and(|r| r.starts_with('/'))
        });
        if shared {
            line(
                &mut s,
                &format!(
                    "[ -e {dst} ] || {{ cat \"$in\"/{} > {dst} && chmod {mode:o} {dst}; }}",
                    sh_quote(rel)
                ),
            );
        } else {
            line(&mut s, &format!("cat \"$in\"/{} > {dst}", sh_quote(rel)));
            line(&mut s, &format!("chmod {mode:o} {dst}"));
        }
    }

    // Aliases: find the real command before our bin dir goes first on PATH.
    if !plan.aliases.is_empty() {
        line(&mut s, "mkdir -p \"$st/bin\"");
        for a in &plan.aliases {
            let valid = !a.command.is_empty()
                && a.command
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !valid {
                continue;
            }
            let mut rest: Vec<String> = a.args.iter().map(|x| sh_quote(x)).collect();
            rest.push("\"$@\"".into());
            let cmd = sh_quote(&a.command);
            line(
                &mut s,
                &format!(
                    "if p=$(command -v {cmd} 2>/dev/null); then case $p in *\\'*|\"$st\"/*) ;; /*) {{ printf '#!/bin/sh\\nexec '\\''%s'\\'' ' \"$p\"; printf '%s\\n' {}; }} > \"$st/bin\"/{cmd}; chmod 700 \"$st/bin\"/{cmd} ;; esac; fi",
                    sh_quote(&rest.join(" "))
                ),
            );
        }
    }

    line(&mut s, "cat > \"$st/env\" <<'AIRLOCK_ENV'");
    line(&mut s, &format!("in={}", sh_quote(IN_DIR)));
    line(&mut s, &format!("st={}", sh_quote(STATE_DIR)));
    s.push_str(&env_lines);
    line(&mut s, "AIRLOCK_ENV");
    line(&mut s, ". \"$st/env\"");

    // Finally, the image's own entrypoint and command.
    if !exec.default_cmd.is_empty() {
        let words: Vec<String> = exec.default_cmd.iter().map(|w| sh_quote(w)).collect();
        line(
            &mut s,
            &format!("[ \"$#\" -gt 0 ] || set -- {}", words.join(" ")),
        );
    }
    let ep: Vec<String> = exec.entrypoint.iter().map(|w| sh_quote(w)).collect();
    if ep.is_empty() {
        line(
            &mut s,
            "[ \"$#\" -gt 0 ] || { echo 'airlock: the image has no ENTRYPOINT or CMD and no command was given' >&2; exit 125; }",
        );
        line(&mut s, "exec \"$@\"");
    } else {
        line(&mut s, &format!("exec {} \"$@\"", ep.join(" ")));
    }
    s
}

/// Plain (non-secret) environment variables of a plan, in order.
pub fn plain_env(plan: &SandboxPlan) -> Vec<(String, String)> {
    plan.env
        .iter()
        .filter_map(|e| match &e.value {
            Value::Plain(v) => Some((e.name.clone(), v.clone())),
            Value::Secret(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn script_has_paths_not_values() {
        let mut p = SandboxPlan::default();
        p.set_env("TOKEN", Value::Secret(Secret::from("CANARY-1")));
        p.set_env("PLAIN", Value::Plain("v".into()));
        p.add_file(
            "/run/airlock/c/x.json",
            Value::Secret(Secret::from("CANARY-2")),
            0o600,
        );
        p.add_file("~/.x", Value::Plain("p".into()), 0o644);
        let l = Layout::for_plan(&p).unwrap();
        let exec = Exec {
            entrypoint: vec!["/ep".into()],
            default_cmd: vec!["sh".into(), "-c".into(), "echo 'hi'".into()],
        };
        let s = script(&p, &l, &exec, "abc");
        assert!(!s.contains("CANARY"), "{s}");
        assert!(
            s.contains("TOKEN=$(cat \"$in\"/'env/0') && export TOKEN"),
            "{s}"
        );
        assert!(s.contains("mkdir -p '/run/airlock/c'"), "{s}");
        assert!(s.contains("cat \"$in\"/'files/1' > \"$HOME\"/'.x'"), "{s}");
        assert!(s.contains("chmod 644"), "{s}");
        assert!(s.contains("set -- 'sh' '-c' 'echo '\\''hi'\\'''"), "{s}");
        assert!(s.ends_with("exec '/ep' \"$@\"\n"), "{s}");
    }

    #[test]
    fn files_in_a_synced_directory_are_written_only_when_absent() {
        let mut p = SandboxPlan::default();
        p.add_file(
            "/run/airlock/codex/config.toml",
            Value::Plain("x".into()),
            0o600,
        );
        p.add_file("/run/airlock/codexy/other", Value::Plain("y".into()), 0o600);
        p.sync.push(crate::plan::SyncMount {
            agent: "codex".into(),
            account: "default".into(),
            truth: None,
            container: "/run/airlock/codex".into(),
            broker: false,
        });
        let l = Layout::for_plan(&p).unwrap();
        let exec = Exec {
            entrypoint: vec![],
            default_cmd: vec!["sh".into()],
        };
        let s = script(&p, &l, &exec, "abc");
        assert!(
            s.contains("[ -e '/run/airlock/codex/config.toml' ] || { cat \"$in\"/'files/0' > '/run/airlock/codex/config.toml' && chmod 600 '/run/airlock/codex/config.toml'; }"),
            "{s}"
        );
        // a sibling directory with the same prefix is not the synced one
        assert!(
            s.contains("cat \"$in\"/'files/1' > '/run/airlock/codexy/other'\n"),
            "{s}"
        );
    }

    #[test]
    fn bad_names_and_paths_are_refused() {
        let mut p = SandboxPlan::default();
        p.set_env("A B", Value::Secret(Secret::from("x")));
        assert!(Layout::for_plan(&p).is_err());
        let mut p = SandboxPlan::default();
        p.add_file("relative/x", Value::Plain("x".into()), 0o600);
        assert!(Layout::for_plan(&p).is_err());
        let mut p = SandboxPlan::default();
        p.add_file("/run/../etc/x", Value::Plain("x".into()), 0o600);
        assert!(Layout::for_plan(&p).is_err());
    }
}
