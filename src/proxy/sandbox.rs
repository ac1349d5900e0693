//! The sandbox side of proxy mode: the plan for a sandbox whose agent talks
//! to `airlock proxy` instead of its API. The agent's own injection module
//! plans the sandbox from a stand-in record holding a placeholder
//! ([`super::placeholder::mint`]) and points the agent's base URL at the
//! proxy ([`InjectOptions::proxy_url`]); the plan carries a
//! [`ProxyGrant`] for `airlock run` to register with the proxy.

use crate::agents::Agent;
use crate::agents::inject::{self, InjectOptions, Rotation};
use crate::engine::EngineKind;
use crate::error::{Error, Result};
use crate::plan::{ProxyGrant, SandboxPlan, Value};
use crate::vault::{Method, Record};

use super::placeholder;

/// The host name a Docker sandbox reaches the host by
/// (`--add-host host.docker.internal:host-gateway`, added by the render).
pub const DOCKER_HOST: &str = "host.docker.internal";
/// The host name Podman gives every container for the host.
pub const PODMAN_HOST: &str = "host.containers.internal";

/// Where slirp4netns (rootless Podman's network) puts the host's loopback
/// when asked to (`allow_host_loopback=true`).
pub const SLIRP_HOST_LOOPBACK: &str = "10.0.2.2";

/// Where a Codex sandbox finds the proxy's CA certificates, and the
/// variable that tells Codex (0.169) to trust them.
pub const CODEX_CA_FILE: &str = "/run/airlock/codex/airlock-proxy-ca.pem";
/// Codex's own variable for extra trusted CA certificates (PEM).
pub const CODEX_CA_ENV: &str = "CODEX_CA_CERTIFICATE";

/// The network the user's engine flags choose (`--network X`,
/// `--network=X`, `--net X`, `--net=X`; the last one wins).
pub fn network_flag(flags: &[String]) -> Option<&str> {
    let mut found = None;
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        for name in ["--network", "--net"] {
            if f == name {
                found = it.next().map(String::as_str);
            } else if let Some(v) = f.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                found = Some(v);
            }
        }
    }
    found
}

/// The host name (or address) a sandbox of `engine`, started with the
/// user's engine `flags`, reaches the proxy at. The proxy listens on the
/// host's 127.0.0.1 and container bridges. Rootless Podman (Podman and
/// airlock not root) has no bridge on the host: its sandbox reaches the
/// host's loopback only through slirp4netns with `allow_host_loopback`
/// (then at 10.0.2.2), or by sharing the host's network (`--network host`).
/// Both let the sandbox reach every other service on the host's
/// 127.0.0.1 too, so airlock does not choose them for the user: without
/// one of them, a clear refusal.
pub fn proxy_host(engine: EngineKind, flags: &[String]) -> Result<String> {
    if engine == EngineKind::Podman && crate::fsutil::euid() != 0 {
        return match network_flag(flags) {
            Some("host") => Ok("127.0.0.1".into()),
            Some(n)
                if n.starts_with("slirp4netns")
                    && n.split([':', ',']).any(|o| o == "allow_host_loopback=true") =>
            {
                Ok(SLIRP_HOST_LOOPBACK.into())
            }
            _ => Err(Error::Usage(
                "--rotation proxy with rootless Podman: the sandbox can reach the proxy on this host's 127.0.0.1 only through slirp4netns with allow_host_loopback=true (or --network host), and either also lets it reach every other service listening on this host's 127.0.0.1. To accept that, add `--network slirp4netns:allow_host_loopback=true` to the engine flags (`airlock run --rotation proxy … -- --network slirp4netns:allow_host_loopback=true IMAGE`); otherwise use Docker or rootful Podman for proxy mode, or another --rotation (docs/proxy.md)"
                    .into(),
            )),
        };
    }
    Ok(match engine {
        EngineKind::Docker => DOCKER_HOST,
        EngineKind::Podman => PODMAN_HOST,
    }
    .into())
}

/// The proxy's base URL as seen from a sandbox of `engine`.
pub fn url(engine: EngineKind, port: u16) -> String {
    let host = match engine {
        EngineKind::Docker => DOCKER_HOST,
        EngineKind::Podman => PODMAN_HOST,
    };
    format!("http://{host}:{port}")
}

/// The plan for `record` in proxy mode: the agent's usual plan for a
/// placeholder of the same shape, the base URL, and the grant.
pub fn plan(record: &Record, opts: &InjectOptions) -> Result<SandboxPlan> {
    let agent = match record.id.agent.as_str() {
        "claude" => Agent::Claude,
        "codex" => Agent::Codex,
        "gemini" => Agent::Gemini,
        other => {
            return Err(Error::Usage(format!(
                "--rotation proxy serves claude, codex and gemini, not the custom agent {other}; use another --rotation for it"
            )));
        }
    };
    let base = opts.proxy_url.clone().ok_or_else(|| {
        Error::Usage(
            "--rotation proxy needs airlock to start the proxy and register the sandbox: use it with `airlock run`, `airlock docker-flags --image IMAGE` (files mode), `airlock compose` or `airlock verify`"
                .into(),
        )
    })?;
    let minted = placeholder::mint(record)?;
    // Codex refuses a ChatGPT backend that is not https://: it talks TLS
    // to the proxy (same port), trusting the proxy's CA (certificates only)
    let tls = match (agent, record.method, base.strip_prefix("http://")) {
        (Agent::Codex, Method::Session, Some(rest)) => {
            super::ca::for_codex()?.map(|pem| (pem, rest.to_owned()))
        }
        _ => None,
    };
    let base = match &tls {
        Some((_, rest)) => format!("https://{rest}"),
        None => base,
    };
    let stand_in = InjectOptions {
        // the placeholder document is whole: nothing to withhold
        rotation: Rotation::Copy,
        proxy_url: Some(base),
        ..opts.clone()
    };
    let mut plan = inject::plan_for_agent(agent, &minted.record, &stand_in)?;
    if let Some((pem, _)) = tls {
        plan.add_file(CODEX_CA_FILE, Value::Plain(pem), 0o644);
        plan.set_env(CODEX_CA_ENV, Value::Plain(CODEX_CA_FILE.into()));
    }
    plan.proxy.push(ProxyGrant {
        agent: record.id.agent.clone(),
        account: record.id.account.clone(),
        method: record.method,
        placeholder: Value::Secret(minted.token),
        truth: None,
        reference: None,
    });
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_codex_session_talks_tls_to_the_proxy_trusting_its_ca() {
        let d = tempfile::tempdir().unwrap();
        let layout = super::super::registry::Layout {
            dir: d.path().join("proxy"),
        };
        // port 1: nothing listens there, so the TLS check is skipped
        super::super::ca::offer_to_sandboxes(&layout, Some(1));
        let session = r#"{"auth_mode":"chatgpt","tokens":{"id_token":"e30.e30.REALSIG","access_token":"REAL-AT","refresh_token":"REAL-RT","account_id":"acc"}}"#;
        let record = |method, secret: &str| Record {
            id: crate::vault::CredentialId::parse("codex").unwrap(),
            method,
            secret: crate::secret::Secret::new(secret.to_owned()),
            meta: crate::vault::Metadata::new("stdin"),
        };
        let opts = InjectOptions {
            proxy_url: Some("http://host.docker.internal:4242".into()),
            ..InjectOptions::default()
        };
        let p = plan(&record(Method::Session, session), &opts).unwrap();
        let config = p
            .files
            .iter()
            .find(|f| f.path.ends_with("/config.toml"))
            .unwrap();
        let text = match &config.content {
            Value::Plain(t) => t.clone(),
            Value::Secret(s) => s.expose().to_owned(),
        };
        assert!(
            text.contains(r#"chatgpt_base_url = "https://host.docker.internal:4242/backend-api/""#),
            "{text}"
        );
        assert!(text.contains(
            r#"openai_base_url = "https://host.docker.internal:4242/backend-api/codex""#
        ));
        assert!(CODEX_CA_FILE.starts_with(crate::agents::codex::inject::CODEX_HOME));
        let ca = p.files.iter().find(|f| f.path == CODEX_CA_FILE).unwrap();
        assert!(
            matches!(&ca.content, Value::Plain(t) if t.starts_with("-----BEGIN CERTIFICATE") && !t.contains("PRIVATE"))
        );
        assert!(
            p.env
                .iter()
                .any(|e| e.name == CODEX_CA_ENV && e.value == Value::Plain(CODEX_CA_FILE.into()))
        );
        // an API key keeps plain HTTP and gets no CA
        let p = plan(&record(Method::ApiKey, "sk-proj-REAL"), &opts).unwrap();
        assert!(p.files.iter().all(|f| f.path != CODEX_CA_FILE));
        assert!(p.env.iter().all(|e| e.name != CODEX_CA_ENV));
    }

    #[test]
    fn the_network_flag_is_found_in_every_spelling() {
        assert_eq!(network_flag(&v(&["--rm", "-it"])), None);
        assert_eq!(network_flag(&v(&["--network", "host"])), Some("host"));
        assert_eq!(network_flag(&v(&["--net=none"])), Some("none"));
        assert_eq!(
            network_flag(&v(&["--network=slirp4netns:allow_host_loopback=true"])),
            Some("slirp4netns:allow_host_loopback=true")
        );
        // the last one wins, as with the engines
        assert_eq!(
            network_flag(&v(&["--net", "none", "--network", "bridge"])),
            Some("bridge")
        );
        // a value that merely starts like the flag is not it
        assert_eq!(network_flag(&v(&["--network-alias", "x"])), None);
    }
}
