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
use crate::vault::Record;

use super::placeholder;

/// The host name a Docker sandbox reaches the host by
/// (`--add-host host.docker.internal:host-gateway`, added by the render).
pub const DOCKER_HOST: &str = "host.docker.internal";
/// The host name Podman gives every container for the host.
pub const PODMAN_HOST: &str = "host.containers.internal";

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
    let stand_in = InjectOptions {
        // the placeholder document is whole: nothing to withhold
        rotation: Rotation::Copy,
        proxy_url: Some(base),
        ..opts.clone()
    };
    let mut plan = inject::plan_for_agent(agent, &minted.record, &stand_in)?;
    plan.proxy.push(ProxyGrant {
        agent: record.id.agent.clone(),
        account: record.id.account.clone(),
        method: record.method,
        placeholder: Value::Secret(minted.token),
        truth: None,
    });
    Ok(plan)
}
