//! Beyond one machine: the same sandbox plan delivered through a cluster's
//! or an editor's own machinery (docs/cluster.md).

pub mod devcontainer;
pub mod k8s;
pub mod kubeapi;
pub mod swarm;

use crate::error::{Error, Result};
use crate::plan::SandboxPlan;

/// Proxy mode for `target` (pods) serves API keys and setup-tokens; a
/// login session is refused: nothing on this host knows
/// when the pods are gone, so nothing could stop refreshing it.
pub fn refuse_proxied_sessions(plan: &SandboxPlan, target: &str) -> Result<()> {
    for g in &plan.proxy {
        if g.method == crate::vault::Method::Session {
            return Err(Error::Usage(format!(
                "{}: a login session is not served through the proxy to {target} (nothing would refresh it while it runs); use a setup-token (`airlock login claude --method token`) or an API key (`airlock auth {} --method api-key --stdin`)",
                g.agent, g.agent
            )));
        }
    }
    Ok(())
}
