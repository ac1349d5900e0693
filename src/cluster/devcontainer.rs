//! Dev Containers (`airlock devcontainer`, docs/cluster.md): the keys a
//! project's `.devcontainer/devcontainer.json` needs so that the container
//! the Dev Containers CLI (or an editor) starts gets the agents'
//! credentials the way `airlock run`'s containers do.
//!
//! * `runArgs`: the sandbox flags `airlock run` uses (the read-only mount of
//!   a sandbox directory at [`IN_DIR`], the tmpfs at [`STATE_DIR`], a label,
//!   user access), without any `-e`: plain variables go to `containerEnv`.
//!   The mount's source is a stable path (a symlink airlock keeps pointing
//!   at the current sandbox directory on the host's tmpfs).
//! * `initializeCommand` (on the host, before each start): `airlock
//!   devcontainer --refresh …` writes fresh credentials there.
//! * `postStartCommand`: the shim (which writes the agents' files into the
//!   tmpfs) followed by [`EXEC_HELPER`], which puts a wrapper per agent in
//!   [`EXEC_BIN`]: it loads the secret variables from the mounted files and
//!   runs the agent, so `devcontainer exec claude …` is logged in.
//! * `remoteEnv.PATH`: [`EXEC_BIN`] first.
//!
//! No secret value is in any of these: they hold paths and plain values.

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstRootNode};
use serde_json::{Value as Json, json};

use crate::error::{Error, Result};
use crate::plan::{IN_DIR, STATE_DIR, SandboxPlan, Value};
use crate::render::{sh_quote, shim_path};
use crate::sandbox::shim;

/// Where the wrappers for `devcontainer exec` sessions go.
pub const EXEC_BIN: &str = "/run/airlock/exec";
/// The container path of the helper that writes them (a plan file).
pub const EXEC_HELPER: &str = "/run/airlock/devcontainer.sh";

/// The script that writes one wrapper per agent command into [`EXEC_BIN`].
/// Runs after the shim, as the remote user; holds no secret.
pub fn exec_helper(commands: &[String]) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# airlock: wrappers that load the sandbox's secret variables for exec sessions.\nset -e\n",
    );
    s.push_str(&format!(
        "st={}\nx={}\nmkdir -p \"$x\"\n",
        sh_quote(STATE_DIR),
        sh_quote(EXEC_BIN)
    ));
    for c in commands {
        let valid = !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
        if !valid {
            continue;
        }
        let q = sh_quote(c);
        s.push_str(&format!(
            "if [ -x \"$st/bin\"/{q} ]; then t=\"$st/bin\"/{q}; else t=$(PATH=$(printf %s \"$PATH\" | sed \"s#$x:##\") command -v {q} 2>/dev/null) || t=; fi\n\
             case $t in \"$x\"/*) t= ;; esac\n\
             case $t in /*) printf '#!/bin/sh\\n. %s/env\\nexec %s \"$@\"\\n' \"$st\" \"$t\" > \"$x\"/{q}; chmod 700 \"$x\"/{q} ;; esac\n"
        ));
    }
    s
}

/// Adds [`EXEC_HELPER`] to `plan` for `commands` (the agents' commands).
pub fn add_exec_helper(plan: &mut SandboxPlan, commands: &[String]) {
    plan.add_file(EXEC_HELPER, Value::Plain(exec_helper(commands)), 0o700);
}

/// Proxy mode: the plan's plain variables holding the proxy's base URL
/// (`ANTHROPIC_BASE_URL`, `GOOGLE_GEMINI_BASE_URL`) travel in the sandbox
/// directory, read at each `devcontainer exec` like the secret variables,
/// instead of in `containerEnv`: the on-demand proxy's port may change
/// between two starts of the container, while `containerEnv` is fixed when
/// the container is created. Returns how many moved.
pub fn base_url_to_files(plan: &mut SandboxPlan, url: &str) -> usize {
    let mut n = 0;
    for e in &mut plan.env {
        if let Value::Plain(v) = &e.value
            && v.starts_with(url)
        {
            e.value = Value::Secret(crate::secret::Secret::from(v.as_str()));
            n += 1;
        }
    }
    n
}

/// The keys airlock sets in `devcontainer.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Engine flags (no `-e`).
    pub run_args: Vec<String>,
    /// Plain variables.
    pub container_env: Vec<(String, String)>,
    /// The host command that refreshes the sandbox directory.
    pub initialize: Vec<String>,
}

impl Fragment {
    /// Builds the fragment from `airlock run`'s sandbox flags (`-e` pairs are
    /// dropped: `containerEnv` carries the plan's plain variables).
    pub fn new(plan: &SandboxPlan, sandbox_flags: &[String], initialize: Vec<String>) -> Fragment {
        let mut run_args = Vec::new();
        let mut i = 0;
        while i < sandbox_flags.len() {
            let f = &sandbox_flags[i];
            let takes_value = !f.contains('=')
                && i + 1 < sandbox_flags.len()
                && f.starts_with('-')
                && !sandbox_flags[i + 1].starts_with('-');
            if f == "-e" && takes_value {
                i += 2;
                continue;
            }
            if takes_value {
                run_args.push(format!("{f}={}", sandbox_flags[i + 1]));
                i += 2;
            } else {
                run_args.push(f.clone());
                i += 1;
            }
        }
        Fragment {
            run_args,
            container_env: shim::plain_env(plan),
            initialize,
        }
    }

    /// The command run after each start.
    pub fn post_start() -> Vec<String> {
        vec![
            "/bin/sh".into(),
            shim_path(),
            "/bin/sh".into(),
            EXEC_HELPER.into(),
        ]
    }

    /// The fragment as JSON (what `airlock devcontainer` prints).
    pub fn to_json(&self) -> Json {
        let env: serde_json::Map<String, Json> = self
            .container_env
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        json!({
            "initializeCommand": self.initialize,
            "runArgs": self.run_args,
            "containerEnv": env,
            "remoteEnv": {"PATH": format!("{EXEC_BIN}:${{containerEnv:PATH}}")},
            "postStartCommand": Fragment::post_start(),
        })
    }
}

/// Whether a `runArgs` entry is one airlock added (replaced on each write).
fn ours(arg: &str) -> bool {
    arg.starts_with("--label=airlock.")
        || (arg.starts_with("--mount=") && arg.contains(&format!("dst={IN_DIR},")))
        || arg.starts_with(&format!("--tmpfs={STATE_DIR}:"))
}

fn input(v: &Json) -> CstInputValue {
    match v {
        Json::Null => CstInputValue::Null,
        Json::Bool(b) => CstInputValue::Bool(*b),
        Json::Number(n) => CstInputValue::Number(n.to_string()),
        Json::String(s) => CstInputValue::String(s.clone()),
        Json::Array(a) => CstInputValue::Array(a.iter().map(input).collect()),
        Json::Object(o) => {
            CstInputValue::Object(o.iter().map(|(k, v)| (k.clone(), input(v))).collect())
        }
    }
}

/// Merges `frag` into the JSONC text of a `devcontainer.json`, keeping the
/// user's other keys, comments and formatting. `runArgs` keeps the user's
/// entries; `containerEnv` and `remoteEnv` keep the user's variables
/// (airlock's win on a clash, and a user `remoteEnv.PATH` is refused);
/// `initializeCommand` and `postStartCommand` must not be set to something
/// else already.
pub fn merge(text: &str, frag: &Fragment) -> Result<String> {
    let bad = |what: String| {
        Error::Usage(format!(
            "devcontainer.json: {what}; merge the keys `airlock devcontainer` prints (without --write) by hand"
        ))
    };
    let text = if text.trim().is_empty() { "{}\n" } else { text };
    let root = CstRootNode::parse(text, &ParseOptions::default())
        .map_err(|e| bad(format!("not valid JSONC: {e}")))?;
    let obj = root
        .object_value_or_create()
        .ok_or_else(|| bad("the top level is not an object".into()))?;
    let want = frag.to_json();
    // Plain values parsed back for comparison (comments are dropped there).
    let current: Json = jsonc_parser::parse_to_serde_value(text, &ParseOptions::default())
        .map_err(|e| bad(format!("not valid JSONC: {e}")))?;
    for key in ["initializeCommand", "postStartCommand"] {
        match (obj.get(key), current.get(key)) {
            (Some(p), Some(cur)) => {
                if *cur != want[key] && !is_ours_command(cur) {
                    return Err(bad(format!(
                        "it already has a {key} ({cur}); airlock needs its own there"
                    )));
                }
                p.set_value(input(&want[key]));
            }
            _ => {
                obj.append(key, input(&want[key]));
            }
        }
    }
    // runArgs: the user's entries, then airlock's.
    let mut args: Vec<Json> = current
        .get("runArgs")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter(|v| {
                    !v.as_str()
                        .is_some_and(|s| ours(s) || frag.run_args.iter().any(|x| x == s))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    args.extend(want["runArgs"].as_array().into_iter().flatten().cloned());
    set(&obj, "runArgs", &Json::Array(args));
    for key in ["containerEnv", "remoteEnv"] {
        let mut m = current
            .get(key)
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        if key == "remoteEnv"
            && let Some(p) = m.get("PATH")
            && p != &want["remoteEnv"]["PATH"]
        {
            return Err(bad(format!(
                "remoteEnv.PATH is already set ({p}); airlock needs {EXEC_BIN} first on it"
            )));
        }
        for (k, v) in want[key].as_object().into_iter().flatten() {
            m.insert(k.clone(), v.clone());
        }
        set(&obj, key, &Json::Object(m));
    }
    Ok(root.to_string())
}

fn set(obj: &jsonc_parser::cst::CstObject, key: &str, v: &Json) {
    match obj.get(key) {
        Some(p) => p.set_value(input(v)),
        None => {
            obj.append(key, input(v));
        }
    }
}

/// An `initializeCommand`/`postStartCommand` airlock wrote earlier.
fn is_ours_command(v: &Json) -> bool {
    let first_two: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .take(2)
        .filter_map(Json::as_str)
        .collect();
    matches!(first_two.as_slice(), [_, "devcontainer"])
        || first_two.get(1) == Some(&shim_path().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag() -> Fragment {
        let mut p = SandboxPlan::default();
        p.set_env(
            "CLAUDE_CONFIG_DIR",
            Value::Plain("/run/airlock/claude".into()),
        );
        p.set_env(
            "TOKEN",
            Value::Secret(crate::secret::Secret::from("CANARY")),
        );
        let flags: Vec<String> = [
            "--label",
            "airlock.sandbox=dc-x",
            "--mount",
            "type=bind,src=/r/dc-x,dst=/run/airlock-in,readonly",
            "--tmpfs",
            "/run/airlock:uid=1000",
            "--group-add",
            "4242",
            "-e",
            "CLAUDE_CONFIG_DIR=/run/airlock/claude",
        ]
        .map(String::from)
        .to_vec();
        Fragment::new(&p, &flags, vec!["airlock".into(), "devcontainer".into()])
    }

    #[test]
    fn merge_keeps_comments_and_user_keys_and_is_idempotent() {
        let text = "{\n  // my container\n  \"image\": \"img\",\n  \"runArgs\": [\"--cap-add=SYS_PTRACE\"], /* keep */\n  \"containerEnv\": {\"MINE\": \"1\"}\n}\n";
        let once = merge(text, &frag()).unwrap();
        assert!(
            once.contains("// my container") && once.contains("/* keep */"),
            "{once}"
        );
        let v: Json = jsonc_parser::parse_to_serde_value(&once, &ParseOptions::default()).unwrap();
        assert_eq!(v["image"], "img");
        assert_eq!(v["runArgs"][0], "--cap-add=SYS_PTRACE");
        assert_eq!(v["runArgs"][1], "--label=airlock.sandbox=dc-x");
        assert_eq!(v["runArgs"][4], "--group-add=4242");
        assert_eq!(v["runArgs"].as_array().unwrap().len(), 5);
        assert_eq!(v["containerEnv"]["MINE"], "1");
        assert_eq!(
            v["containerEnv"]["CLAUDE_CONFIG_DIR"],
            "/run/airlock/claude"
        );
        assert!(!once.contains("CANARY") && !once.contains("-e"));
        let twice = merge(&once, &frag()).unwrap();
        assert_eq!(once, twice);
    }

    #[test]
    fn the_proxy_url_leaves_container_env() {
        let mut p = SandboxPlan::default();
        p.set_env(
            "ANTHROPIC_BASE_URL",
            Value::Plain("http://host.docker.internal:4242".into()),
        );
        p.set_env("CLAUDE_CONFIG_DIR", Value::Plain("/run/airlock/c".into()));
        assert_eq!(
            base_url_to_files(&mut p, "http://host.docker.internal:4242"),
            1
        );
        let env = shim::plain_env(&p);
        assert_eq!(
            env,
            vec![("CLAUDE_CONFIG_DIR".into(), "/run/airlock/c".into())]
        );
    }

    #[test]
    fn a_foreign_post_start_command_is_refused() {
        let text = "{\"postStartCommand\": \"npm install\"}";
        assert!(merge(text, &frag()).is_err());
        let text = "{\"remoteEnv\": {\"PATH\": \"/x\"}}";
        assert!(merge(text, &frag()).is_err());
        assert!(merge("[1]", &frag()).is_err());
    }
}
