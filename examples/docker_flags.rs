//! Get `docker run` flags for a sandbox: resolve the credentials into a
//! plan, write the sandbox directory, and render the flags, as
//! `airlock docker-flags` does.
//!
//! ```sh
//! cargo run --example docker_flags
//! ```
//!
//! The flags carry no secret value: secrets travel as files in the
//! sandbox's host directory (a tmpfs), mounted read-only and read by the
//! entrypoint shim. This example uses a temporary directory and an
//! in-memory vault with a fake Claude token; it starts no container.

use std::collections::BTreeMap;

use airlock::Secret;
use airlock::agents::HostEnv;
use airlock::capture::{self, Input, Request as CaptureRequest, Source};
use airlock::config::Config;
use airlock::engine::EngineKind;
use airlock::plan::Value;
use airlock::render;
use airlock::resolve::{self, Choices, Request};
use airlock::sandbox::{ContainerUser, Exec, Sandbox, SandboxSpec};
use airlock::vault::{Method, Vault};
use jiff::Timestamp;

fn main() -> airlock::Result<()> {
    let config = Config::default();
    let vault = Vault::in_memory();
    let token = format!("sk-ant-oat01-{}AA", "z".repeat(93));
    let p = capture::prepare(
        &CaptureRequest {
            agent: "claude".into(),
            account: "default".into(),
            method: Some(Method::SetupToken),
            source: Source::Stdin,
            settings: BTreeMap::new(),
            label: None,
        },
        &config,
        Input {
            secret: Secret::new(token.clone()),
            warnings: Vec::new(),
        },
        Timestamp::now(),
    )?;
    capture::store(&*vault, p.record)?;

    // A throwaway HOME: the example must not pick up the host's logins.
    let tmp = std::env::temp_dir().join(format!("airlock-example-{}", std::process::id()));
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).map_err(|e| airlock::Error::io("create", &home, e))?;
    let host = HostEnv {
        home,
        vars: BTreeMap::new(),
    };
    let req = Request::from_choices(
        &Choices {
            agents: vec!["claude".into()],
            ..Choices::default()
        },
        None,
    )?;
    let resolved = resolve::resolve(&req, &vault, &host, &config, Timestamp::now())?;
    for r in &resolved.resolutions {
        println!("# {}: {:?} via {:?}", r.agent, r.method, r.used);
    }
    let secret_vars: Vec<&str> = resolved
        .plan
        .env
        .iter()
        .filter(|e| matches!(e.value, Value::Secret(_)))
        .map(|e| e.name.as_str())
        .collect();
    println!("# secret variables (delivered as files): {secret_vars:?}");

    let engine = EngineKind::Docker.engine();
    let sandbox = Sandbox::create(
        &tmp.join("runtime"),
        SandboxSpec {
            plan: &resolved.plan,
            exec: Exec {
                entrypoint: Vec::new(),
                default_cmd: vec!["sh".into()],
            },
            user: ContainerUser::ROOT,
            engine: engine.as_ref(),
            owner_pid: Some(std::process::id()),
        },
    )?;
    let flags = render::docker_flags(&resolved.plan, &sandbox, engine.as_ref());
    assert!(!flags.contains(&token), "a secret in the flags");
    println!("{flags}");
    // Dropping the sandbox removes its directory; a real caller keeps it
    // until the container has exited.
    drop(sandbox);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
