//! `airlock run --rotation proxy`: starting the proxy, registering a
//! sandbox's grants, and forgetting them when it is gone.

use std::path::Path;

use crate::engine::EngineKind;
use crate::error::{Error, Result};
use crate::plan::{SandboxPlan, Value};

use super::placeholder;
use super::registry::{self, Grant, Layout};

/// Makes sure the proxy runs and returns the base URL a sandbox of
/// `engine` reaches it at.
pub fn url(layout: &Layout, engine: EngineKind, exe: &Path) -> Result<String> {
    // no engine flags here (docker-flags, compose): rootless Podman refused
    super::sandbox::proxy_host(engine, &[])?;
    let pass = std::env::var_os(crate::vault::file::PASSPHRASE_ENV).is_some();
    let port = super::daemon::ensure_running(layout, exe, pass)?;
    super::ca::offer_to_sandboxes(layout, Some(port));
    Ok(super::sandbox::url(engine, port))
}

/// Like [`url`], for a sandbox started with the user's engine `flags`
/// (`airlock run`): checks first that such a sandbox can reach the proxy
/// ([`super::sandbox::proxy_host`]; rootless Podman needs the user's
/// consent), then starts it.
pub fn url_for(
    layout: &Layout,
    engine: EngineKind,
    exe: &Path,
    flags: &[String],
) -> Result<String> {
    let host = super::sandbox::proxy_host(engine, flags)?;
    let pass = std::env::var_os(crate::vault::file::PASSPHRASE_ENV).is_some();
    let port = super::daemon::ensure_running(layout, exe, pass)?;
    super::ca::offer_to_sandboxes(layout, Some(port));
    Ok(format!("http://{host}:{port}"))
}

/// Offers the proxy's CA to the sandboxes planned next, for a proxy this
/// process did not start and cannot check (`airlock k8s --proxy-url`:
/// the pods' URL may lead through a tunnel): [`super::ca::offer_to_sandboxes`]
/// without the TLS handshake check.
pub fn offer_ca(layout: &Layout) {
    super::ca::offer_to_sandboxes(layout, None);
}

/// Registers `plan`'s grants for `sandbox`; returns how many. The
/// placeholders are stored hashed.
pub fn register(
    layout: &Layout,
    plan: &SandboxPlan,
    sandbox: &str,
    engine: EngineKind,
) -> Result<usize> {
    register_as(layout, plan, sandbox, engine.as_str())
}

/// [`register`] for a sandbox the proxy finds by `engine`'s own means:
/// `docker`/`podman` (a running container labelled with the sandbox id) or
/// `swarm` (a Swarm service labelled with it).
pub fn register_as(
    layout: &Layout,
    plan: &SandboxPlan,
    sandbox: &str,
    engine: &str,
) -> Result<usize> {
    let n = register_until(layout, plan, sandbox, engine, None)?;
    if n > 0 {
        // the proxy started for this sandbox may have exited (idle) since
        super::daemon::serving(layout)?;
    }
    Ok(n)
}

/// [`register_as`] for grants that expire at `expires_at` (pods: the proxy
/// cannot see them, so their grants carry an expiry instead).
pub fn register_until(
    layout: &Layout,
    plan: &SandboxPlan,
    sandbox: &str,
    engine: &str,
    expires_at: Option<jiff::Timestamp>,
) -> Result<usize> {
    let now = jiff::Timestamp::now();
    for g in &plan.proxy {
        let Value::Secret(ph) = &g.placeholder else {
            return Err(Error::Other("a proxy placeholder must be secret".into()));
        };
        let truth = g.truth.clone().ok_or_else(|| {
            Error::Other(format!("the {} grant names no credential source", g.agent))
        })?;
        registry::add(
            layout,
            &Grant {
                sandbox: sandbox.to_owned(),
                agent: g.agent.clone(),
                account: g.account.clone(),
                method: g.method,
                placeholder_sha256: placeholder::hash(ph.expose()),
                truth,
                container: None,
                engine: Some(engine.to_owned()),
                created: now,
                revoked_at: None,
                reference: g.reference.clone(),
                expires_at,
            },
        )?;
    }
    Ok(plan.proxy.len())
}

/// Forgets `sandbox`'s grants (its container exited): its placeholders are
/// refused from now on.
pub fn forget(layout: &Layout, sandbox: &str) {
    if let Err(e) = registry::remove(layout, sandbox) {
        tracing::warn!(sandbox, error = %e, "could not remove the sandbox's proxy grants (the proxy drops them once it sees the container gone)");
    }
}

/// Replaces the grants of `sandbox` by `plan`'s, expiring at `expires_at`
/// (pods rendered again): the new ones are registered and `serve` run (the
/// hold of their sessions) while the old ones still stand, so a session is
/// never let go in between; then the old ones go. When `serve` fails, the
/// new ones go and the old ones stay: the running pods keep working.
pub fn replace_grants(
    layout: &Layout,
    plan: &SandboxPlan,
    sandbox: &str,
    engine: &str,
    expires_at: Option<jiff::Timestamp>,
    serve: impl FnOnce() -> Result<()>,
) -> Result<usize> {
    let old: Vec<String> = registry::load(layout)?
        .into_iter()
        .filter(|g| g.sandbox == sandbox)
        .map(|g| g.placeholder_sha256)
        .collect();
    let new: Vec<String> = plan
        .proxy
        .iter()
        .filter_map(|g| match &g.placeholder {
            Value::Secret(p) => Some(placeholder::hash(p.expose())),
            Value::Plain(_) => None,
        })
        .collect();
    let registered = register_until(layout, plan, sandbox, engine, expires_at).and_then(|n| {
        serve()?;
        Ok(n)
    });
    match registered {
        Ok(n) => {
            registry::remove_hashes(layout, &old)?;
            Ok(n)
        }
        Err(e) => {
            if let Err(e2) = registry::remove_hashes(layout, &new) {
                tracing::warn!(sandbox, error = %e2, "could not remove the new proxy grants");
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(ph: &str) -> SandboxPlan {
        let mut p = SandboxPlan::default();
        p.proxy.push(crate::plan::ProxyGrant {
            agent: "claude".into(),
            account: "default".into(),
            method: crate::vault::Method::SetupToken,
            placeholder: Value::Secret(crate::secret::Secret::new(ph.into())),
            truth: Some(crate::sync::Truth::Vault {
                id: crate::vault::CredentialId::parse("claude").unwrap(),
            }),
            reference: None,
        });
        p
    }

    /// Rendering the pods again: the old grant stands while the new one's
    /// sessions are served, goes once they are; when serving fails the old
    /// one (the running pods') stays and the new one goes.
    #[test]
    fn replaced_grants_go_only_once_the_new_ones_are_served() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout {
            dir: d.path().join("proxy"),
        };
        let id = "k8s-team-dev";
        let has = |ph: &str| registry::lookup(&registry::load(&l).unwrap(), ph).is_some();
        replace_grants(&l, &plan("ph-1"), id, "k8s", None, || Ok(())).unwrap();
        assert!(has("ph-1"));
        let e = replace_grants(&l, &plan("ph-2"), id, "k8s", None, || {
            assert!(has("ph-1") && has("ph-2"), "both stand while serving");
            Err(Error::Other("the hold could not start".into()))
        })
        .unwrap_err();
        assert!(e.to_string().contains("hold"));
        assert!(has("ph-1") && !has("ph-2"), "the running pods keep theirs");
        replace_grants(&l, &plan("ph-3"), id, "k8s", None, || {
            assert!(has("ph-1") && has("ph-3"));
            Ok(())
        })
        .unwrap();
        assert!(!has("ph-1") && has("ph-3"));
    }
}
