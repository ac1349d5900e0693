//! Airlock's own flags wherever users put them among the engine's.
//!
//! Users write `airlock run -d --name web --agent claude IMAGE`: docker flags
//! and airlock flags in any order. Before clap sees the command line, this
//! module takes airlock's own flags (the subcommand's and the global ones)
//! out of everything before IMAGE and hands clap `OWN… -- ENGINE… IMAGE
//! CMD…`. Commands that do not pass engine flags on (`docker-flags`,
//! `compose`, `verify`) stop with airlock's own error that shows the
//! corrected command line instead of clap's "unexpected argument".
//!
//! The rules (also in each command's help):
//! - airlock's flags are few and named unlike any `docker run`/`podman run`
//!   flag, except `--workdir`, `--quiet`, `-v`, `-q` and `-h`: those are
//!   airlock's before the first engine flag (as they always were) and the
//!   engine's after it (`--workdir` there stops with the corrected line:
//!   airlock's is the directory the agents trust, the engine's `-w`);
//!   `-a stdin|stdout|stderr` is the engine's `--attach`, any other `-a`
//!   airlock's `--agent`;
//! - `--` ends airlock's flags: everything after it is the engine's;
//! - the image is the first word that is neither a flag nor a flag's value
//!   ([`airlock::engine::run_flags`] knows which engine flags take one); an
//!   engine flag airlock does not know, followed by a word, is ambiguous
//!   (is the word its value or the image?) and stops with the command
//!   written as `--flag=VALUE`.
//!
//! A new command that takes engine flags or an image adds one line to
//! [`COMMANDS`].

use std::ffi::OsString;

use airlock::engine::run_flags::{self, Takes};
use airlock::error::{Error, Result};
use airlock::render::sh_word;

/// What a command does with engine flags found among its arguments.
#[derive(Debug, Clone, Copy)]
pub enum EngineFlags {
    /// Passes them to the engine: `[ENGINE FLAGS] IMAGE [COMMAND…]` after
    /// `--` (`run`).
    Pass,
    /// Takes none: stops with the corrected command line this function
    /// writes from (airlock's flags, the engine flags, image and command).
    Refuse(fn(&Split) -> String),
}

/// The commands whose arguments are split, and how.
pub const COMMANDS: &[(&str, EngineFlags)] = &[
    ("run", EngineFlags::Pass),
    ("docker-flags", EngineFlags::Refuse(docker_flags_hint)),
    ("compose", EngineFlags::Refuse(compose_hint)),
    ("verify", EngineFlags::Refuse(verify_hint)),
    ("swarm", EngineFlags::Pass),
];

/// Flag names airlock and the engines both use, for different things.
const SHARED_LONG: &[&str] = &["workdir", "quiet"];
/// Short flags airlock and the engines both use (`-v` verbose / volume, `-q`
/// quiet / quiet pull, `-h` help / hostname; `-a` agent / attach goes by
/// its value).
const SHARED_SHORT: &str = "vqh";

/// One command's arguments, split.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Split {
    /// The subcommand's name.
    pub command: String,
    /// airlock's own flags with their values, in order.
    pub own: Vec<String>,
    /// The engine's flags with their values, in order.
    pub engine: Vec<String>,
    /// From the image (or a `--` the user wrote) on.
    pub rest: Vec<String>,
}

/// The flags a clap command (with its globals) defines, and the engine
/// flag table its engine flags are looked up in.
#[derive(Debug)]
pub struct Known {
    long: Vec<(String, bool)>,
    short: Vec<(char, bool)>,
    engine_long: fn(&str) -> Option<Takes>,
    engine_short: fn(char) -> Option<Takes>,
}

impl Default for Known {
    fn default() -> Known {
        Known {
            long: Vec::new(),
            short: Vec::new(),
            engine_long: run_flags::long,
            engine_short: run_flags::short,
        }
    }
}

impl Known {
    /// The flags of `sub` (a subcommand of the built `root`) and the
    /// global ones.
    pub fn of(root: &clap::Command, sub: &clap::Command) -> Known {
        let mut k = Known::default();
        for a in root.get_arguments().chain(sub.get_arguments()) {
            if a.is_positional() {
                continue;
            }
            let takes = a.get_action().takes_values();
            for l in a.get_long_and_visible_aliases().into_iter().flatten() {
                k.long.push((l.to_owned(), takes));
            }
            for s in a.get_short_and_visible_aliases().into_iter().flatten() {
                k.short.push((s, takes));
            }
        }
        if sub.get_name() == "swarm" {
            // `airlock swarm`'s engine flags are `docker service create`'s
            k.engine_long = airlock::engine::service_flags::long;
            k.engine_short = airlock::engine::service_flags::short;
        }
        k
    }

    fn long(&self, name: &str) -> Option<bool> {
        self.long.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }

    fn short(&self, c: char) -> Option<bool> {
        self.short.iter().find(|(s, _)| *s == c).map(|(_, t)| *t)
    }
}

/// Rewrites the process's arguments for clap (see the module docs).
/// Arguments that are not UTF-8 and commands not in [`COMMANDS`] pass
/// through unchanged.
pub fn normalize(argv: Vec<OsString>, root: &clap::Command) -> Result<Vec<OsString>> {
    let Some(strs) = argv
        .iter()
        .map(|a| a.to_str().map(str::to_owned))
        .collect::<Option<Vec<String>>>()
    else {
        return Ok(argv);
    };
    let mut root = root.clone();
    root.build();
    let Some(at) = subcommand_at(&strs, &root) else {
        return Ok(argv);
    };
    let name = strs[at].as_str();
    let Some((_, mode)) = COMMANDS.iter().find(|(n, _)| *n == name) else {
        return Ok(argv);
    };
    let Some(sub) = root.find_subcommand(name) else {
        return Ok(argv);
    };
    // `airlock swarm update …`: a subcommand of its own, not an image
    if strs
        .get(at + 1)
        .is_some_and(|a| sub.find_subcommand(a).is_some() || a == "help")
    {
        return Ok(argv);
    }
    let known = Known::of(&root, sub);
    let split = split(
        name,
        &strs[at + 1..],
        &known,
        matches!(mode, EngineFlags::Pass),
    )?;
    let mut out: Vec<String> = strs[..=at].to_vec();
    match mode {
        // `airlock swarm --agent codex update web`: the subcommand's flags
        EngineFlags::Pass
            if split.engine.is_empty()
                && split
                    .rest
                    .first()
                    .is_some_and(|a| sub.find_subcommand(a).is_some()) =>
        {
            out.push(split.rest[0].clone());
            out.extend(split.own);
            out.extend(split.rest[1..].iter().cloned());
        }
        EngineFlags::Pass => {
            out.extend(split.own);
            out.push("--".to_owned());
            let mut rest = split.rest.as_slice();
            if split.engine.is_empty() && rest.first().is_some_and(|a| a == "--") {
                rest = &rest[1..];
            }
            out.extend(split.engine);
            out.extend(rest.iter().cloned());
        }
        EngineFlags::Refuse(hint) => {
            // A flag nobody knows (a typo): clap's error, with its
            // "a similar argument exists" tip, says more.
            let typo = split.own.iter().any(|a| match a.strip_prefix("--") {
                Some(l) => known.long(l.split('=').next().unwrap_or(l)).is_none(),
                None => {
                    a.starts_with('-') && a.chars().nth(1).is_some_and(|c| known.short(c).is_none())
                }
            });
            if typo {
                return Ok(argv);
            }
            if !split.engine.is_empty() || !split.rest.is_empty() {
                return Err(Error::Usage(hint(&split)));
            }
            out.extend(split.own);
        }
    }
    Ok(out.into_iter().map(OsString::from).collect())
}

/// Where the subcommand's name is in `argv` (after the program and any
/// global flags).
fn subcommand_at(argv: &[String], root: &clap::Command) -> Option<usize> {
    let mut i = 1;
    while let Some(a) = argv.get(i) {
        if a == "--" {
            return None;
        }
        let Some(flag) = a.strip_prefix('-') else {
            return Some(i);
        };
        if let Some(long) = flag.strip_prefix('-') {
            let takes = !long.contains('=')
                && root
                    .get_arguments()
                    .any(|x| x.get_long() == Some(long) && x.get_action().takes_values());
            i += if takes { 2 } else { 1 };
        } else {
            i += 1;
        }
    }
    None
}

/// Splits the arguments after a subcommand's name. `passes`: the command
/// passes engine flags on (an ambiguous one must then be resolved; a
/// refusing command shows the corrected line anyway).
pub fn split(command: &str, args: &[String], known: &Known, passes: bool) -> Result<Split> {
    let mut s = Split {
        command: command.to_owned(),
        ..Split::default()
    };
    let mut i = 0;
    // After the first engine flag, the shared names are the engine's.
    let mut engine_seen = false;
    // The previous argument, when it was airlock's `-v`, `-q` or `-h`.
    let mut last_own_bool: Option<char> = None;
    while i < args.len() {
        let a = &args[i];
        if a == "--" || !a.starts_with('-') || a == "-" {
            break;
        }
        last_own_bool = None;
        let next = args.get(i + 1);
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let shared = engine_seen && SHARED_LONG.contains(&name);
            if let Some(takes) = known.long(name).filter(|_| !shared) {
                s.own.push(a.clone());
                if takes && inline.is_none() {
                    if let Some(v) = next {
                        s.own.push(v.clone());
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            if name == "workdir" && passes {
                return Err(Error::Usage(workdir_hint(command, args, i, known)));
            }
            if !passes && (known.engine_long)(name).is_none() {
                // Neither airlock's nor the engine's: clap says so (with
                // its "a similar argument exists" tip).
                s.own.push(a.clone());
                i += 1;
                continue;
            }
            engine_seen = true;
            s.engine.push(a.clone());
            match (known.engine_long)(name) {
                Some(Takes::Value) if inline.is_none() => {
                    if let Some(v) = next {
                        s.engine.push(v.clone());
                    }
                    i += 1;
                }
                Some(_) => {}
                None => {
                    if inline.is_none() && passes && next.is_some_and(|v| !v.starts_with('-')) {
                        return Err(Error::Usage(unknown_hint(command, args, i, name, known)));
                    }
                }
            }
            i += 1;
            continue;
        }
        // A short flag or a cluster: `-a claude`, `-aclaude`, `-it`,
        // `-e X=1`, `-vv`.
        let body = &a[1..];
        let mut chars = body.chars();
        let first = chars.next().unwrap_or('-');
        let tail: String = chars.collect();
        let value = if tail.is_empty() {
            next.map(String::as_str).unwrap_or("")
        } else {
            tail.trim_start_matches('=')
        };
        let attach = first == 'a'
            && ["stdin", "stdout", "stderr"].contains(&value.to_ascii_lowercase().as_str());
        let shared = engine_seen && SHARED_SHORT.contains(first);
        let own_first = known.short(first).filter(|_| !shared && !attach);
        let own_cluster = match own_first {
            Some(true) => true,
            // `-vv`, `-qq`: a cluster of airlock's own booleans.
            Some(false) => tail.chars().all(|c| c == first),
            None => !passes && body.chars().any(|c| (known.engine_short)(c).is_none()),
        };
        if own_cluster {
            s.own.push(a.clone());
            if own_first == Some(true) && tail.is_empty() {
                if let Some(v) = next {
                    s.own.push(v.clone());
                }
                i += 1;
            }
            if own_first == Some(false) {
                last_own_bool = Some(first);
            }
            i += 1;
            continue;
        }
        engine_seen = true;
        s.engine.push(a.clone());
        let cs: Vec<char> = body.chars().collect();
        for (j, c) in cs.iter().enumerate() {
            match (known.engine_short)(*c) {
                Some(Takes::Nothing) => continue,
                Some(Takes::Value) => {
                    if j + 1 == cs.len() {
                        if let Some(v) = next {
                            s.engine.push(v.clone());
                        }
                        i += 1;
                    }
                    break;
                }
                None => {
                    if passes {
                        return Err(Error::Usage(format!(
                            "-{c} (in {a}) is neither an airlock flag of `{command}` nor a `docker run`/`podman run` flag airlock knows; write engine flags airlock does not know in their long form as --flag=VALUE"
                        )));
                    }
                    break;
                }
            }
        }
        i += 1;
    }
    s.rest = args[i.min(args.len())..].to_vec();
    if passes
        && let (Some(c), Some(img)) = (last_own_bool, s.rest.first())
        && (img.starts_with(['/', '.', '~']) || img.contains(":/"))
    {
        return Err(Error::Usage(format!(
            "`{img}` is not an image: -{c} before the first engine flag is airlock's own (-v verbose, -q quiet, -h help); for the engine's -{c}, put it after `--`: {}",
            line(
                command,
                &s.own[..s.own.len() - 1],
                &[&[format!("-{c}")], &s.engine[..], &s.rest[..]].concat()
            )
        )));
    }
    Ok(s)
}

/// `airlock COMMAND OWN… -- ENGINE…`, shell-quoted.
fn line(command: &str, own: &[String], engine: &[String]) -> String {
    let mut w = vec!["airlock".to_owned(), command.to_owned()];
    w.extend(own.iter().map(|a| sh_word(a)));
    if !engine.is_empty() {
        w.push("--".to_owned());
        w.extend(engine.iter().map(|a| sh_word(a)));
    }
    w.join(" ")
}

fn words(a: &[String]) -> String {
    a.iter().map(|w| sh_word(w)).collect::<Vec<_>>().join(" ")
}

/// The command line `args` written as airlock passes it on (own flags,
/// `--`, the engine's, image, command), or as given if it does not split.
fn corrected(command: &str, args: Vec<String>, known: &Known) -> String {
    match split(command, &args, known, true) {
        Ok(s) => line(command, &s.own, &[s.engine, s.rest].concat()),
        Err(_) => line(command, &args, &[]),
    }
}

/// `--workdir` (at `i`) after an engine flag: airlock's (the directory the
/// agents trust) or the engine's (the container's working directory)?
fn workdir_hint(command: &str, args: &[String], i: usize, known: &Known) -> String {
    let (value, skip) = match args[i].split_once('=') {
        Some((_, v)) => (v.to_owned(), 1),
        None => (args.get(i + 1).cloned().unwrap_or_default(), 2),
    };
    let mut both = vec!["--workdir".to_owned(), value.clone()];
    both.extend(args[..i].iter().cloned());
    both.extend(["-w".to_owned(), value]);
    both.extend(args[(i + skip).min(args.len())..].iter().cloned());
    format!(
        "--workdir after an engine flag is ambiguous: airlock's --workdir is the directory the agents trust, the engine's sets the container's working directory. For both, write airlock's before the engine flags and the engine's as -w: {}",
        corrected(command, both, known)
    )
}

/// An engine flag airlock does not know (at `i`), followed by a word.
fn unknown_hint(command: &str, args: &[String], i: usize, name: &str, known: &Known) -> String {
    let v = args.get(i + 1).cloned().unwrap_or_default();
    let mut as_value = args[..i].to_vec();
    as_value.push(format!("--{name}={v}"));
    as_value.extend(args[(i + 2).min(args.len())..].iter().cloned());
    let mut as_bool = args[..i].to_vec();
    as_bool.push(format!("--{name}=true"));
    as_bool.extend(args[(i + 1).min(args.len())..].iter().cloned());
    format!(
        "airlock does not know the engine flag --{name}, so `{v}` could be its value or the image. If it takes a value: {}   If it takes none: {}",
        corrected(command, as_value, known),
        corrected(command, as_bool, known)
    )
}

/// The value of airlock's flag `--name` among `own`, if given.
fn own_value(own: &[String], name: &str) -> Option<String> {
    let flag = format!("--{name}");
    let mut it = own.iter();
    while let Some(a) = it.next() {
        if *a == flag {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
            return Some(v.to_owned());
        }
    }
    None
}

/// The image named by `--image` or else as the first positional.
fn image_of(s: &Split) -> (Vec<String>, String) {
    let mut own = s.own.clone();
    let image = match own_value(&s.own, "image") {
        Some(i) => i,
        None => match s.rest.iter().find(|a| *a != "--") {
            Some(i) => {
                own.extend(["--image".to_owned(), i.clone()]);
                i.clone()
            }
            None => "IMAGE".to_owned(),
        },
    };
    (own, image)
}

fn docker_flags_hint(s: &Split) -> String {
    let (own, image) = image_of(s);
    let cmd: Vec<String> = s
        .rest
        .iter()
        .skip_while(|a| *a == "--")
        .skip(1)
        .cloned()
        .collect();
    let engine = if s.engine.is_empty() {
        String::new()
    } else {
        format!("{} ", words(&s.engine))
    };
    let cmd = if cmd.is_empty() {
        String::new()
    } else {
        format!(" {}", words(&cmd))
    };
    format!(
        "docker-flags prints flags for your own `docker run`, which is where engine flags and the image go (airlock's own flags may be in any order): docker run {engine}$({}) {}{cmd}",
        line("docker-flags", &own, &[]),
        sh_word(&image)
    )
}

fn compose_hint(s: &Split) -> String {
    let (own, _) = image_of(s);
    let engine = if s.engine.is_empty() {
        String::new()
    } else {
        format!(
            "; set the engine options ({}) on the service in your compose file",
            words(&s.engine)
        )
    };
    format!(
        "compose takes airlock's flags only (in any order), with the service's image as --image: {}{engine}",
        line("compose", &own, &[])
    )
}

fn verify_hint(s: &Split) -> String {
    let (own, _) = image_of(s);
    let engine = if s.engine.is_empty() {
        String::new()
    } else {
        format!(
            "; verify starts its own throwaway container without network and takes no engine flags ({})",
            words(&s.engine)
        )
    };
    format!(
        "verify takes airlock's flags only (in any order), with the image as --image: {}{engine}",
        line("verify", &own, &[])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    fn norm(args: &[&str]) -> Result<Vec<String>> {
        let mut argv = vec!["airlock".to_owned()];
        argv.extend(v(args));
        let out = normalize(
            argv.into_iter().map(OsString::from).collect(),
            &super::super::Cli::command(),
        )?;
        Ok(out[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect())
    }

    fn usage(args: &[&str]) -> String {
        match norm(args) {
            Err(Error::Usage(m)) => m,
            other => panic!("expected a usage error for {args:?}, got {other:?}"),
        }
    }

    #[test]
    fn swarm_splits_with_the_service_create_table() {
        assert_eq!(
            norm(&[
                "swarm",
                "--replicas",
                "2",
                "-a",
                "claude",
                "--no-resolve-image",
                "-d",
                "--name",
                "web",
                "img",
                "sleep",
                "9"
            ])
            .unwrap(),
            v(&[
                "swarm",
                "-a",
                "claude",
                "--",
                "--replicas",
                "2",
                "--no-resolve-image",
                "-d",
                "--name",
                "web",
                "img",
                "sleep",
                "9"
            ])
        );
        // the subcommands are left to clap
        assert_eq!(
            norm(&["swarm", "update", "web", "--agent", "codex"]).unwrap(),
            v(&["swarm", "update", "web", "--agent", "codex"])
        );
        assert_eq!(
            norm(&["swarm", "rm", "web"]).unwrap(),
            v(&["swarm", "rm", "web"])
        );
        assert_eq!(
            norm(&["swarm", "--agent", "codex", "update", "web"]).unwrap(),
            v(&["swarm", "update", "--agent", "codex", "web"])
        );
    }

    #[test]
    fn own_flags_anywhere_before_the_image() {
        assert_eq!(
            norm(&["run", "-d", "--name", "web", "--agent", "claude", "img"]).unwrap(),
            v(&[
                "run", "--agent", "claude", "--", "-d", "--name", "web", "img"
            ])
        );
        assert_eq!(
            norm(&[
                "run",
                "--rm",
                "-e",
                "X=1",
                "--rotation=copy",
                "-v",
                "a:/b",
                "-a",
                "codex",
                "-it",
                "--require-auth",
                "img",
                "sh",
                "--agent",
                "x"
            ])
            .unwrap(),
            v(&[
                "run",
                "--rotation=copy",
                "-a",
                "codex",
                "--require-auth",
                "--",
                "--rm",
                "-e",
                "X=1",
                "-v",
                "a:/b",
                "-it",
                "img",
                "sh",
                "--agent",
                "x"
            ])
        );
    }

    #[test]
    fn the_old_spelling_still_works() {
        assert_eq!(
            norm(&["run", "--agent", "claude", "--", "--rm", "img"]).unwrap(),
            v(&["run", "--agent", "claude", "--", "--rm", "img"])
        );
        // `--` ends airlock's flags: after it, even `--agent` is the engine's.
        assert_eq!(
            norm(&["run", "--", "-d", "--agent", "x", "img"]).unwrap(),
            v(&["run", "--", "-d", "--agent", "x", "img"])
        );
        // A `--` after engine flags keeps its meaning (end of flags).
        assert_eq!(
            norm(&["run", "--rm", "--agent", "claude", "--", "img"]).unwrap(),
            v(&["run", "--agent", "claude", "--", "--rm", "--", "img"])
        );
        // Global flags before the subcommand are left alone.
        assert_eq!(
            norm(&[
                "-v", "--color", "never", "run", "--rm", "-a", "claude", "img"
            ])
            .unwrap(),
            v(&[
                "-v", "--color", "never", "run", "-a", "claude", "--", "--rm", "img"
            ])
        );
        // Other commands are not touched.
        assert_eq!(
            norm(&["status", "--json"]).unwrap(),
            v(&["status", "--json"])
        );
    }

    #[test]
    fn values_of_engine_flags_are_not_the_image() {
        assert_eq!(
            norm(&[
                "run",
                "-e",
                "A",
                "--network",
                "none",
                "-u",
                "1000",
                "-w",
                "/src",
                "-eB=1",
                "-itu",
                "0",
                "--agent=gemini",
                "img"
            ])
            .unwrap(),
            v(&[
                "run",
                "--agent=gemini",
                "--",
                "-e",
                "A",
                "--network",
                "none",
                "-u",
                "1000",
                "-w",
                "/src",
                "-eB=1",
                "-itu",
                "0",
                "img"
            ])
        );
        // Engine flags with a value that looks like airlock's flag.
        assert_eq!(
            norm(&["run", "--name", "--agent", "img"]).unwrap(),
            v(&["run", "--", "--name", "--agent", "img"])
        );
    }

    #[test]
    fn shared_names() {
        // Before the first engine flag: airlock's.
        assert_eq!(
            norm(&["run", "-v", "--workdir", "/src", "img"]).unwrap(),
            v(&["run", "-v", "--workdir", "/src", "--", "img"])
        );
        // After it: the engine's.
        assert_eq!(
            norm(&["run", "--rm", "-v", "/a:/b", "-q", "-h", "box", "img"]).unwrap(),
            v(&["run", "--", "--rm", "-v", "/a:/b", "-q", "-h", "box", "img"])
        );
        // -a: an agent, unless it names a stream.
        assert_eq!(
            norm(&["run", "-a", "stdout", "-a", "claude", "img"]).unwrap(),
            v(&["run", "-a", "claude", "--", "-a", "stdout", "img"])
        );
        assert_eq!(
            norm(&["run", "-aSTDERR", "-acodex", "img"]).unwrap(),
            v(&["run", "-acodex", "--", "-aSTDERR", "img"])
        );
        // `-vv` is airlock's verbosity, `-it` the engine's.
        assert_eq!(
            norm(&["run", "-vv", "-it", "img"]).unwrap(),
            v(&["run", "-vv", "--", "-it", "img"])
        );
    }

    #[test]
    fn ambiguities_stop_with_the_corrected_line() {
        let m = usage(&["run", "--rm", "--workdir", "/src", "-a", "claude", "img"]);
        assert!(
            m.contains("airlock run --workdir /src -a claude -- --rm -w /src img"),
            "{m}"
        );
        let m = usage(&["run", "--agent", "claude", "--frobnicate", "x", "img"]);
        assert!(
            m.contains("airlock run --agent claude -- --frobnicate=x img"),
            "{m}"
        );
        assert!(
            m.contains("airlock run --agent claude -- --frobnicate=true x img"),
            "{m}"
        );
        // Known unknowns written unambiguously pass.
        assert_eq!(
            norm(&["run", "--frobnicate=x", "img"]).unwrap(),
            v(&["run", "--", "--frobnicate=x", "img"])
        );
        assert_eq!(
            norm(&["run", "--frobnicate", "--rm", "img"]).unwrap(),
            v(&["run", "--", "--frobnicate", "--rm", "img"])
        );
        let m = usage(&["run", "-v", "/a:/b", "img"]);
        assert!(m.contains("airlock run -- -v /a:/b img"), "{m}");
        let m = usage(&["run", "-Z", "img"]);
        assert!(m.contains("-Z"), "{m}");
    }

    #[test]
    fn refusing_commands_show_the_corrected_line() {
        assert_eq!(
            norm(&[
                "docker-flags",
                "-a",
                "claude",
                "--image",
                "img",
                "-u",
                "1000"
            ])
            .unwrap(),
            v(&[
                "docker-flags",
                "-a",
                "claude",
                "--image",
                "img",
                "-u",
                "1000"
            ])
        );
        let m = usage(&[
            "docker-flags",
            "--rm",
            "-it",
            "--agent",
            "claude",
            "img",
            "sh",
        ]);
        assert!(
            m.contains(
                "docker run --rm -it $(airlock docker-flags --agent claude --image img) img sh"
            ),
            "{m}"
        );
        let m = usage(&[
            "compose",
            "--service",
            "dev",
            "--network",
            "x",
            "--image",
            "i",
        ]);
        assert!(
            m.contains("airlock compose --service dev --image i;"),
            "{m}"
        );
        assert!(m.contains("--network x"), "{m}");
        let m = usage(&["verify", "--agent", "claude", "img"]);
        assert!(
            m.contains("airlock verify --agent claude --image img"),
            "{m}"
        );
    }
}
