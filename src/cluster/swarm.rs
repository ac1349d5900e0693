//! Docker Swarm services (`airlock swarm`): which Swarm secrets a service
//! needs, their names and labels, and the `docker service create` arguments
//! that mount them. Pure: nothing here runs Docker (`cli/swarm.rs` does).
//!
//! Every value the shim of `airlock run` would read from its sandbox
//! directory (the secret variables `env/N`, the planned files `files/N` and
//! `init.sh` itself) becomes one Swarm secret mounted at the same path under
//! [`IN_DIR`] (Swarm accepts absolute targets on Linux), owned by the
//! container's user, mode 0400. The shim then runs unchanged in every
//! replica: `--entrypoint "/bin/sh /run/airlock-in/init.sh"`, a tmpfs at
//! [`STATE_DIR`] for the agents' files, and the image's own entrypoint and
//! command after it.
//!
//! A secret's name is `airlock-<agent>-<account>-<fingerprint>`, the
//! fingerprint a short SHA-256 of its target and content (never the
//! content): the same credential at the same place is the same secret, a
//! rotated one a new version. The service-create arguments hold names and
//! paths only.

use sha2::Digest as _;

use crate::engine::service_flags::{VALUE_LONG, VALUE_SHORT};
use crate::error::{Error, Result};
use crate::plan::{IN_DIR, STATE_DIR, SandboxPlan, Value};
use crate::render::shim_path;
use crate::sandbox::{ContainerUser, shim};
use crate::secret::Secret;
use crate::vault::Method;

/// Label on every Swarm secret and service airlock makes (value `1`).
pub const LABEL: &str = "airlock.swarm";
/// Label naming a secret's agent.
pub const LABEL_AGENT: &str = "airlock.agent";
/// Label naming a secret's account.
pub const LABEL_ACCOUNT: &str = "airlock.account";
/// Label holding a secret's path inside the containers.
pub const LABEL_TARGET: &str = "airlock.target";

/// Docker's limit on a secret's name.
const NAME_MAX: usize = 64;
/// Hex digits of the fingerprint in a name.
const FP_LEN: usize = 12;

/// One Swarm secret a service mounts.
#[derive(Debug, Clone)]
pub struct SwarmSecret {
    /// `airlock-<agent>-<account>-<fingerprint>`.
    pub name: String,
    /// The agent it belongs to (`shim` for the entrypoint script).
    pub agent: String,
    /// The account (empty for the shim).
    pub account: String,
    /// Absolute path inside the containers.
    pub target: String,
    /// Its content (the shim holds no secret, but travels the same way).
    pub content: Secret,
}

impl SwarmSecret {
    /// The labels `docker secret create` gets.
    pub fn labels(&self) -> Vec<(String, String)> {
        vec![
            (LABEL.into(), "1".into()),
            (LABEL_AGENT.into(), self.agent.clone()),
            (LABEL_ACCOUNT.into(), self.account.clone()),
            (LABEL_TARGET.into(), self.target.clone()),
        ]
    }

    /// `--secret` value for `docker service create`/`update --secret-add`.
    pub fn mount_spec(&self, user: ContainerUser) -> String {
        let gid = user.gid.unwrap_or(user.uid);
        format!(
            "source={},target={},uid={},gid={gid},mode=0400",
            self.name, self.target, user.uid
        )
    }
}

/// A short fingerprint of a target and its content: 12 hex digits of SHA-256.
pub fn fingerprint(target: &str, content: &[u8]) -> String {
    let mut h = sha2::Sha256::new();
    h.update(target.as_bytes());
    h.update([0u8]);
    h.update(content);
    let d = h.finalize();
    let mut s = String::with_capacity(FP_LEN);
    for b in d.iter().take(FP_LEN / 2) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `airlock-<agent>-<account>-<fingerprint>` (`airlock-shim-<fingerprint>`
/// without an account), shortened to Docker's limit.
pub fn secret_name(agent: &str, account: &str, fp: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut middle = if account.is_empty() {
        clean(agent)
    } else {
        format!("{}-{}", clean(agent), clean(account))
    };
    let room = NAME_MAX - "airlock-".len() - 1 - fp.len();
    middle.truncate(room);
    format!("airlock-{middle}-{fp}")
}

/// Refuses login sessions: their refresh tokens are single-use, so replicas
/// sharing one would log each other out.
pub fn check_shareable(plan: &SandboxPlan) -> Result<()> {
    let sessions: Vec<String> = plan
        .agents
        .iter()
        .filter(|a| a.method == Some(Method::Session))
        .map(|a| match &a.credential {
            Some(c) => format!("{}:{}", c.agent, c.account),
            None => a.agent.clone(),
        })
        .collect();
    if sessions.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{} would get a login session, whose refresh tokens are single-use: the replicas of a service cannot share it (the first refresh logs the others out). Give the service a credential that does not rotate: a setup-token (`claude setup-token`, then `airlock auth claude --method token`; or `airlock login claude --method token`), an API key (`airlock auth <agent> --method api-key`), or use proxy mode (docs/proxy.md)",
        sessions.join(", ")
    )))
}

/// Which agent a planned value belongs to: a file under `STATE_DIR/<agent>`,
/// or a variable named after the agent or its vendor; else the first agent.
fn owner<'a>(plan: &'a SandboxPlan, path: Option<&str>, var: Option<&str>) -> (&'a str, &'a str) {
    let ids: Vec<(&str, &str)> = plan
        .agents
        .iter()
        .map(|a| match &a.credential {
            Some(c) => (c.agent.as_str(), c.account.as_str()),
            None => (a.agent.as_str(), crate::vault::DEFAULT_ACCOUNT),
        })
        .collect();
    let hit = ids.iter().find(|(agent, _)| {
        if let Some(p) = path {
            let dir = format!("{STATE_DIR}/{agent}/");
            if p.starts_with(&dir) || p.starts_with(&format!("~/.{agent}")) {
                return true;
            }
        }
        if let Some(v) = var {
            let vendor = match *agent {
                "claude" => "ANTHROPIC_",
                "codex" => "OPENAI_",
                "gemini" => "GOOGLE_",
                _ => "\0",
            };
            let own = format!("{}_", agent.to_ascii_uppercase().replace('-', "_"));
            if v.starts_with(&own) || v.starts_with(vendor) {
                return true;
            }
        }
        false
    });
    hit.or(ids.first())
        .copied()
        .unwrap_or(("agents", crate::vault::DEFAULT_ACCOUNT))
}

/// The Swarm secrets a service needs for `plan`: one per secret variable and
/// planned file (at the shim's paths under [`IN_DIR`]), and the shim itself.
pub fn secrets(plan: &SandboxPlan, exec: &shim::Exec) -> Result<Vec<SwarmSecret>> {
    let layout = shim::Layout::for_plan(plan)?;
    let mut out = Vec::new();
    let mut push = |agent: &str, account: &str, rel: &str, content: Secret| {
        let target = format!("{IN_DIR}/{rel}");
        let fp = fingerprint(&target, content.expose().as_bytes());
        out.push(SwarmSecret {
            name: secret_name(agent, account, &fp),
            agent: agent.to_owned(),
            account: account.to_owned(),
            target,
            content,
        });
    };
    let secret_env = plan.env.iter().filter(|e| e.value.is_secret());
    for (e, (_, rel)) in secret_env.zip(&layout.secret_env) {
        let (agent, account) = owner(plan, None, Some(&e.name));
        push(agent, account, rel, value_secret(&e.value));
    }
    for (f, (rel, path, _)) in plan.files.iter().zip(&layout.files) {
        let (agent, account) = owner(plan, Some(path), None);
        push(agent, account, rel, value_secret(&f.content));
    }
    let script = shim::script(plan, &layout, exec, "swarm");
    push("shim", "", "init.sh", Secret::from(script));
    Ok(out)
}

fn value_secret(v: &Value) -> Secret {
    match v {
        Value::Plain(s) => Secret::from(s.as_str()),
        Value::Secret(s) => s.clone(),
    }
}

/// `[SERVICE CREATE FLAGS] IMAGE [CMD…]`, split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRequest {
    /// The user's flags, in order, minus `--entrypoint` (the shim runs it).
    pub flags: Vec<String>,
    /// The image.
    pub image: String,
    /// The command (empty: the image's `CMD`).
    pub cmd: Vec<String>,
    /// `-u`/`--user`, if given.
    pub user: Option<String>,
    /// `--entrypoint`, if given.
    pub entrypoint: Option<String>,
    /// `--name`, if given.
    pub name: Option<String>,
}

impl ServiceRequest {
    /// Splits `[SERVICE CREATE FLAGS] IMAGE [CMD…]`; a leading `--` is skipped.
    pub fn parse(args: &[String]) -> Result<ServiceRequest> {
        let mut r = ServiceRequest::default();
        let mut i = usize::from(args.first().is_some_and(|a| a == "--"));
        let need = |i: usize, flag: &str| -> Result<String> {
            args.get(i)
                .cloned()
                .ok_or_else(|| Error::Usage(format!("the service flag {flag} needs a value")))
        };
        while i < args.len() {
            let a = &args[i];
            if a == "--" {
                i += 1;
                break;
            }
            if !a.starts_with('-') || a == "-" {
                break;
            }
            let (name, value, words): (String, Option<String>, usize) =
                if let Some(long) = a.strip_prefix("--") {
                    match long.split_once('=') {
                        Some((n, v)) => (n.to_owned(), Some(v.to_owned()), 1),
                        None if VALUE_LONG.contains(&long) => {
                            (long.to_owned(), Some(need(i + 1, a)?), 2)
                        }
                        None => (long.to_owned(), None, 1),
                    }
                } else {
                    // a cluster of booleans, possibly ending in a value flag
                    let chars: Vec<char> = a[1..].chars().collect();
                    match chars.iter().position(|c| VALUE_SHORT.contains(*c)) {
                        Some(p) => {
                            let rest: String = chars[p + 1..].iter().collect();
                            let long = match chars[p] {
                                'u' => "user",
                                'e' => "env",
                                'l' => "label",
                                'p' => "publish",
                                _ => "workdir",
                            };
                            if rest.is_empty() {
                                (long.to_owned(), Some(need(i + 1, a)?), 2)
                            } else {
                                (
                                    long.to_owned(),
                                    Some(rest.trim_start_matches('=').into()),
                                    1,
                                )
                            }
                        }
                        None => (String::new(), None, 1),
                    }
                };
            match name.as_str() {
                "entrypoint" => {
                    r.entrypoint = value;
                    i += words;
                    continue;
                }
                "user" => r.user = value,
                "name" => r.name = value,
                _ => {}
            }
            r.flags.extend(args[i..i + words].iter().cloned());
            i += words;
        }
        let Some(image) = args.get(i) else {
            return Err(Error::Usage(
                "airlock swarm needs an image: airlock swarm --agent AGENT -- [SERVICE CREATE FLAGS] IMAGE [COMMAND…]".into(),
            ));
        };
        r.image = image.clone();
        r.cmd = args[i + 1..].to_vec();
        Ok(r)
    }
}

/// The arguments of `docker service create` (after the program name): the
/// secrets mounted by name, the tmpfs, plain variables, labels and the shim
/// as entrypoint, then the user's flags, image and command. No secret value.
pub fn create_args(
    plan: &SandboxPlan,
    secrets: &[SwarmSecret],
    user: ContainerUser,
    req: &ServiceRequest,
) -> Vec<String> {
    let mut a: Vec<String> = vec!["service".into(), "create".into()];
    a.extend(["--label".into(), format!("{LABEL}=1")]);
    for s in secrets {
        a.extend(["--secret".into(), s.mount_spec(user)]);
    }
    a.extend([
        "--mount".into(),
        format!("type=tmpfs,dst={STATE_DIR}"),
        "--entrypoint".into(),
        format!("/bin/sh {}", shim_path()),
    ]);
    for (k, v) in shim::plain_env(plan) {
        a.extend(["-e".into(), format!("{k}={v}")]);
    }
    a.extend(req.flags.iter().cloned());
    a.push(req.image.clone());
    a.extend(req.cmd.iter().cloned());
    a
}

/// Proxy mode's `docker service create` flags: the service label holding
/// the sandbox id the proxy's grants are registered under, Docker's
/// host-gateway as `host.docker.internal` (where the proxy listens: the
/// docker0 bridge's host address), and a constraint to `node` (this node,
/// the only one whose tasks reach this host's proxy).
pub fn proxy_args(id: &str, node: &str) -> Vec<String> {
    vec![
        "--label".into(),
        format!("{}={id}", crate::sandbox::LABEL),
        "--host".into(),
        format!("{}:host-gateway", crate::proxy::sandbox::DOCKER_HOST),
        "--constraint".into(),
        format!("node.id=={node}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::AgentSummary;
    use crate::vault::CredentialId;

    fn plan(method: Method) -> SandboxPlan {
        let mut p = SandboxPlan::default();
        p.set_env(
            "CLAUDE_CONFIG_DIR",
            Value::Plain("/run/airlock/claude".into()),
        );
        p.set_env(
            "CLAUDE_CODE_OAUTH_TOKEN",
            Value::Secret(Secret::from("CANARY-tok")),
        );
        p.set_env("OPENAI_API_KEY", Value::Secret(Secret::from("CANARY-key")));
        p.add_file(
            "/run/airlock/claude/.claude.json",
            Value::Plain("{}".into()),
            0o600,
        );
        p.add_file(
            "/run/airlock/codex/auth.json",
            Value::Secret(Secret::from("CANARY-auth")),
            0o600,
        );
        for (agent, account) in [("claude", "work"), ("codex", "default")] {
            p.agents.push(AgentSummary {
                agent: agent.into(),
                credential: Some(CredentialId {
                    agent: agent.into(),
                    account: account.into(),
                }),
                method: Some(method),
                source: "vault".into(),
                delivers: "x".into(),
            });
        }
        p
    }

    fn exec() -> shim::Exec {
        shim::Exec {
            entrypoint: vec!["/ep".into()],
            default_cmd: vec![],
        }
    }

    #[test]
    fn secrets_are_named_by_agent_account_and_fingerprint() {
        let p = plan(Method::ApiKey);
        let s = secrets(&p, &exec()).unwrap();
        let names: Vec<(&str, &str)> = s
            .iter()
            .map(|s| (s.name.as_str(), s.target.as_str()))
            .collect();
        assert_eq!(s.len(), 5, "{names:?}");
        assert!(s[0].name.starts_with("airlock-claude-work-"), "{names:?}");
        assert_eq!(s[0].target, "/run/airlock-in/env/0");
        assert!(s[1].name.starts_with("airlock-codex-default-"), "{names:?}");
        assert!(s[2].name.starts_with("airlock-claude-work-"), "{names:?}");
        assert!(s[3].name.starts_with("airlock-codex-default-"), "{names:?}");
        assert_eq!(s[3].target, "/run/airlock-in/files/1");
        assert!(s[4].name.starts_with("airlock-shim-"), "{names:?}");
        assert_eq!(s[4].name.len(), "airlock-shim-".len() + FP_LEN, "{names:?}");
        assert_eq!(s[4].target, "/run/airlock-in/init.sh");
        for x in &s {
            assert!(!x.name.contains("CANARY"));
            assert!(x.name.len() <= NAME_MAX);
        }
        // same content, same name; another content, another name
        let again = secrets(&p, &exec()).unwrap();
        assert_eq!(s[1].name, again[1].name);
        let mut rotated = p.clone();
        rotated.set_env("OPENAI_API_KEY", Value::Secret(Secret::from("CANARY-new")));
        let r = secrets(&rotated, &exec()).unwrap();
        assert!(
            r.iter()
                .all(|x| x.name != s[0].name || x.target != "/run/airlock-in/env/1")
        );
        assert!(
            r.iter()
                .any(|x| x.target == "/run/airlock-in/env/1" && x.name != s[1].name)
        );
    }

    #[test]
    fn long_names_fit_dockers_limit() {
        let n = secret_name("claude", &"a".repeat(64), "0123456789ab");
        assert_eq!(n.len(), NAME_MAX);
        assert!(n.ends_with("-0123456789ab"));
    }

    #[test]
    fn sessions_are_refused_with_the_choices() {
        let err = check_shareable(&plan(Method::Session))
            .unwrap_err()
            .to_string();
        assert!(err.contains("claude:work"), "{err}");
        assert!(
            err.contains("setup-token") && err.contains("API key"),
            "{err}"
        );
        assert!(err.contains("proxy mode (docs/proxy.md)"), "{err}");
        check_shareable(&plan(Method::SetupToken)).unwrap();
    }

    #[test]
    fn create_args_mount_secrets_by_name_only() {
        let p = plan(Method::ApiKey);
        let s = secrets(&p, &exec()).unwrap();
        let args: Vec<String> = [
            "--replicas",
            "2",
            "-u",
            "1000",
            "--entrypoint",
            "/x",
            "--name=web",
            "-d",
            "img",
            "sleep",
            "9",
        ]
        .map(String::from)
        .to_vec();
        let req = ServiceRequest::parse(&args).unwrap();
        assert_eq!(req.user.as_deref(), Some("1000"));
        assert_eq!(req.entrypoint.as_deref(), Some("/x"));
        assert_eq!(req.name.as_deref(), Some("web"));
        assert_eq!(req.image, "img");
        assert_eq!(req.cmd, ["sleep", "9"]);
        let user = ContainerUser {
            uid: 1000,
            gid: None,
        };
        let a = create_args(&p, &s, user, &req);
        let joined = a.join(" ");
        assert!(!joined.contains("CANARY"), "{joined}");
        assert!(joined.contains(&format!(
            "--secret source={},target=/run/airlock-in/env/0,uid=1000,gid=1000,mode=0400",
            s[0].name
        )));
        assert!(
            joined.contains("--entrypoint /bin/sh /run/airlock-in/init.sh"),
            "{joined}"
        );
        assert!(
            joined.contains("-e CLAUDE_CONFIG_DIR=/run/airlock/claude"),
            "{joined}"
        );
        assert!(
            joined.ends_with("--replicas 2 -u 1000 --name=web -d img sleep 9"),
            "{joined}"
        );
    }

    #[test]
    fn service_flags_in_every_spelling() {
        let a: Vec<String> = [
            "--entrypoint=/x",
            "-de",
            "A=1",
            "-qtuagent",
            "--init",
            "--mode=global",
            "--",
            "img",
            "-c",
        ]
        .map(String::from)
        .to_vec();
        let r = ServiceRequest::parse(&a).unwrap();
        assert_eq!(r.entrypoint.as_deref(), Some("/x"));
        assert_eq!(r.user.as_deref(), Some("agent"));
        assert_eq!(
            r.flags,
            ["-de", "A=1", "-qtuagent", "--init", "--mode=global"]
        );
        assert_eq!(r.image, "img");
        assert_eq!(r.cmd, ["-c"]);
    }

    #[test]
    fn values_go_to_their_agent() {
        let mut p = SandboxPlan::default();
        p.set_env("GEMINI_API_KEY", Value::Secret(Secret::from("k1")));
        p.set_env("ANTHROPIC_API_KEY", Value::Secret(Secret::from("k2")));
        p.add_file("/run/airlock/gemini/x", Value::Plain("{}".into()), 0o600);
        for agent in ["claude", "gemini"] {
            p.agents.push(AgentSummary {
                agent: agent.into(),
                credential: Some(CredentialId {
                    agent: agent.into(),
                    account: "ci".into(),
                }),
                method: Some(Method::ApiKey),
                source: "vault".into(),
                delivers: "x".into(),
            });
        }
        let s = secrets(&p, &exec()).unwrap();
        let agents: Vec<&str> = s.iter().map(|x| x.agent.as_str()).collect();
        assert_eq!(agents, ["gemini", "claude", "gemini", "shim"]);
        assert!(s[0].name.starts_with("airlock-gemini-ci-"));
        assert_eq!(
            s[0].labels()[2],
            (LABEL_ACCOUNT.to_owned(), "ci".to_owned())
        );
    }

    #[test]
    fn parse_errors_are_usage() {
        assert!(ServiceRequest::parse(&["--replicas".into()]).is_err());
        assert!(ServiceRequest::parse(&["-d".into()]).is_err());
        let r = ServiceRequest::parse(&["-uroot".into(), "i".into()]).unwrap();
        assert_eq!(r.user.as_deref(), Some("root"));
    }
}
