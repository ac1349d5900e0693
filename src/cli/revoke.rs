//! `airlock revoke`: refuse a proxy-mode sandbox's placeholder at once.

use airlock::error::{Error, Result};
use airlock::proxy::registry::{self, Layout};

use super::Ctx;

/// Refuse a proxy-mode sandbox's placeholder from now on.
///
/// The proxy answers the sandbox's next request with 401 (and audits it);
/// other sandboxes keep working. SANDBOX is the sandbox id `airlock status`
/// shows, or its container's name or id (12 characters at least), or the
/// name of a Swarm service made with `airlock swarm --rotation proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sandbox, or its container's name or id.
    #[arg(value_name = "SANDBOX")]
    sandbox: String,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let layout = Layout::new(&ctx.paths);
    let mut name = a.sandbox.clone();
    if !registry::load(&layout)?.iter().any(|g| g.sandbox == name) {
        // a container name: ask the engines for its sandbox label
        if let Some(sb) =
            sandbox_of_container(&a.sandbox).or_else(|| sandbox_of_service(&a.sandbox))
        {
            name = sb;
        }
    }
    let n = registry::revoke(&layout, &name, jiff::Timestamp::now())?;
    if n == 0 {
        return Err(Error::NotFound {
            what: format!("a live proxy grant for {}", a.sandbox),
            fix: "`airlock audit` and `airlock status` name the proxy-mode sandboxes".into(),
        });
    }
    anstream::eprintln!(
        "airlock: revoked {n} placeholder(s) of {}: the proxy refuses them from now on",
        a.sandbox
    );
    Ok(())
}

fn sandbox_of_container(c: &str) -> Option<String> {
    for engine in ["docker", "podman"] {
        let out = std::process::Command::new(engine)
            .args([
                "container",
                "inspect",
                "--format",
                &format!(
                    "{{{{index .Config.Labels \"{}\"}}}}",
                    airlock::sandbox::LABEL
                ),
                c,
            ])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !s.is_empty() && s != "<no value>" {
            return Some(s);
        }
    }
    None
}

/// The proxy sandbox id of a Swarm service (`airlock swarm --rotation
/// proxy` labels it with `airlock.sandbox`).
fn sandbox_of_service(service: &str) -> Option<String> {
    let out = std::process::Command::new("docker")
        .args(["service", "inspect", "--format"])
        .arg(format!(
            "{{{{index .Spec.Labels \"{}\"}}}}",
            airlock::sandbox::LABEL
        ))
        .arg(service)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !s.is_empty() && s != "<no value>").then_some(s)
}
