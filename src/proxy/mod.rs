//! Proxy mode (`--rotation proxy`, docs/proxy.md): the sandbox holds only a
//! revocable placeholder, and `airlock proxy` on the host swaps it for the
//! real credential on the way to the agent's API.
//!
//! * [`placeholder`]: minting placeholders shaped like the real credential.
//! * [`sandbox`]: what a proxy-mode sandbox gets (the plan side).
//! * [`registry`]: the grants (placeholder hashes → account, sandbox).
//! * [`server`]: the proxy; [`audit`]: its log; [`metrics`]: its counters.
//! * [`refresh`]: a session refreshed after an upstream 401.
//! * [`verify`](mod@verify): `airlock verify --rotation proxy`.

pub mod attach;
pub mod audit;
pub mod ca;
mod changes;
pub mod daemon;
mod guard;
mod hostile;
pub mod metrics;
pub mod placeholder;
pub mod refresh;
pub mod registry;
pub mod sandbox;
pub mod server;
pub mod tls;
pub mod tune;
pub mod upstream;
pub mod verify;

/// One proxy-mode sandbox, for `airlock status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SandboxStatus {
    /// The sandbox id.
    pub sandbox: String,
    /// `agent:account`.
    pub credential: String,
    /// Revoked with `airlock revoke`.
    pub revoked: bool,
    /// Requests audited for it (in the current and the previous log file).
    pub requests: usize,
    /// Of those, refused by the proxy.
    pub refused: usize,
    /// When its grants expire (pods: `airlock k8s --grant-ttl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<jiff::Timestamp>,
}

/// The proxy's state for `airlock status`: whether it runs (and its port),
/// each sandbox holding a grant with its request counts, and why the grants
/// could not be read, if they could not (then no sandbox is listed).
pub fn status(layout: &registry::Layout) -> (Option<u16>, Vec<SandboxStatus>, Option<String>) {
    let (grants, problem) = match registry::load(layout) {
        Ok(g) => (g, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let entries = audit::read(&layout.audit());
    let mut out: Vec<SandboxStatus> = Vec::new();
    for g in grants {
        if out.iter().any(|s| s.sandbox == g.sandbox) {
            continue;
        }
        let mine = entries
            .iter()
            .filter(|e| e.sandbox.as_deref() == Some(g.sandbox.as_str()));
        let (requests, refused) = mine.fold((0, 0), |(n, r), e| {
            (n + 1, r + usize::from(e.refused.is_some()))
        });
        out.push(SandboxStatus {
            credential: format!("{}:{}", g.agent, g.account),
            revoked: g.revoked_at.is_some(),
            expires: g.expires_at,
            sandbox: g.sandbox,
            requests,
            refused,
        });
    }
    (daemon::port(layout), out, problem)
}
