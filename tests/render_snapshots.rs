//! Snapshot tests pinning `docker-flags` and `compose` output for plans the
//! real per-agent injection code builds (no engine needed: rendering only
//! translates). Paths and the random sandbox id are redacted; the canary
//! secret must never appear.

mod common;

use airlock::Secret;
use airlock::agents::inject::Rotation;
use airlock::agents::inject::{InjectOptions, plan_for};
use airlock::config::Config;
use airlock::engine::EngineKind;
use airlock::plan::{Mount, SandboxPlan};
use airlock::render;
use airlock::sandbox::{ContainerUser, Exec, Sandbox, SandboxSpec};
use airlock::vault::{CredentialId, Metadata, Method, Record};

use common::{CANARY, TestContext};

fn record(agent: &str, method: Method, secret: &str) -> Record {
    Record {
        id: CredentialId::new(agent, "default").unwrap(),
        method,
        secret: Secret::from(secret),
        meta: Metadata::new("test"),
    }
}

fn plan() -> SandboxPlan {
    let cfg = Config::default();
    let opts = InjectOptions::default();
    let mut p = plan_for(
        &record(
            "claude",
            Method::SetupToken,
            &format!("sk-ant-oat01-{CANARY}"),
        ),
        &opts,
        &cfg,
    )
    .unwrap();
    p.merge(
        plan_for(
            &record("codex", Method::ApiKey, &format!("sk-proj-{CANARY}")),
            &opts,
            &cfg,
        )
        .unwrap(),
    );
    p
}

fn sandbox(
    ctx: &TestContext,
    kind: EngineKind,
    user: ContainerUser,
    plan: &SandboxPlan,
) -> Sandbox {
    let engine = kind.engine();
    Sandbox::create(
        &ctx.runtime_dir,
        SandboxSpec {
            plan,
            exec: Exec {
                entrypoint: vec!["/usr/local/bin/test-entrypoint".into()],
                default_cmd: vec!["sh".into()],
            },
            user,
            engine: engine.as_ref(),
            owner_pid: None,
        },
    )
    .unwrap()
}

fn settings(ctx: &TestContext, sb: &Sandbox) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(
        &regex_escape(&sb.dir().display().to_string()),
        "[SANDBOX_DIR]",
    );
    s.add_filter(&regex_escape(sb.id()), "[ID]");
    for (from, to) in ctx.filters() {
        s.add_filter(&from, to);
    }
    s
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let esc = "\\.+*?()|[]{}^$#&-~".contains(c);
            esc.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

fn user1000() -> ContainerUser {
    ContainerUser {
        uid: 1000,
        gid: Some(1000),
    }
}

#[test]
fn docker_flags_docker() {
    let ctx = TestContext::new();
    let p = plan();
    let sb = sandbox(&ctx, EngineKind::Docker, user1000(), &p);
    let out = render::docker_flags(&p, &sb, EngineKind::Docker.engine().as_ref());
    assert!(!out.contains(CANARY));
    settings(&ctx, &sb).bind(|| insta::assert_snapshot!(out));
}

#[test]
fn docker_flags_podman() {
    let ctx = TestContext::new();
    let p = plan();
    let sb = sandbox(&ctx, EngineKind::Podman, user1000(), &p);
    let out = render::docker_flags(&p, &sb, EngineKind::Podman.engine().as_ref());
    assert!(!out.contains(CANARY));
    settings(&ctx, &sb).bind(|| insta::assert_snapshot!(out));
}

#[test]
fn docker_flags_env_mode() {
    let cfg = Config::default();
    let p = plan_for(
        &record(
            "claude",
            Method::SetupToken,
            &format!("sk-ant-oat01-{CANARY}"),
        ),
        &InjectOptions::default(),
        &cfg,
    )
    .unwrap();
    let (out, warnings) = render::env_flags(&p).unwrap();
    assert!(!out.contains(CANARY));
    insta::assert_snapshot!(out);
    insta::assert_debug_snapshot!(warnings);
}

#[test]
fn env_mode_refuses_session_files() {
    let cfg = Config::default();
    let p = plan_for(
        &record(
            "codex",
            Method::Session,
            &format!(
                r#"{{"auth_mode":"chatgpt","tokens":{{"id_token":"a.b.c","access_token":"{CANARY}","refresh_token":"r","account_id":"x"}}}}"#
            ),
        ),
        &InjectOptions::default(),
        &cfg,
    );
    if let Ok(p) = p {
        let e = render::env_flags(&p).unwrap_err().to_string();
        assert!(e.contains("--mode env cannot deliver"), "{e}");
        assert!(!e.contains(CANARY));
    }
}

#[test]
fn compose_override_docker() {
    let ctx = TestContext::new();
    let p = plan();
    let sb = sandbox(&ctx, EngineKind::Docker, user1000(), &p);
    let out = render::compose_override(&p, &sb, EngineKind::Docker.engine().as_ref(), "dev");
    assert!(!out.contains(CANARY));
    settings(&ctx, &sb).bind(|| insta::assert_snapshot!(out));
}

/// `compose --rotation sync`: the account's shared session directory is a
/// read-write bind of a directory, the plan's variable points Claude at it,
/// and no secret of the session is in the override or the sandbox files.
#[test]
fn compose_override_sync() {
    let ctx = TestContext::new();
    let session = format!(
        r#"{{"claudeAiOauth":{{"accessToken":"sk-ant-oat01-{CANARY}","refreshToken":"sk-ant-ort01-{CANARY}","expiresAt":4102444800000,"scopes":["user:inference"]}}}}"#
    );
    let opts = InjectOptions {
        rotation: Rotation::Sync,
        ..InjectOptions::default()
    };
    let mut p = plan_for(
        &record("claude", Method::Session, &session),
        &opts,
        &Config::default(),
    )
    .unwrap();
    assert_eq!(p.sync.len(), 1, "{:?}", p.sync);
    // What `register_sync` adds once the session is registered.
    let shared = ctx.runtime_dir.join("sync/claude-default");
    p.mounts.push(Mount {
        host: shared.display().to_string(),
        container: p.sync[0].container.clone(),
        read_only: false,
    });
    let sb = sandbox(&ctx, EngineKind::Docker, user1000(), &p);
    let out = render::compose_override(&p, &sb, EngineKind::Docker.engine().as_ref(), "dev");
    assert!(!out.contains(CANARY));
    assert!(
        out.contains(&format!(
            "      - type: bind\n        source: {:?}\n        target: \"/run/airlock/claude-session\"\n        read_only: false\n",
            shared.display().to_string()
        )),
        "{out}"
    );
    assert!(
        out.contains("\"CLAUDE_SECURESTORAGE_CONFIG_DIR\": \"/run/airlock/claude-session\""),
        "{out}"
    );
    for f in walk(sb.dir()) {
        let text = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains(CANARY),
            "{}",
            f.display()
        );
    }
    settings(&ctx, &sb).bind(|| insta::assert_snapshot!(out));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn shim_script() {
    let ctx = TestContext::new();
    let p = plan();
    let sb = sandbox(&ctx, EngineKind::Docker, user1000(), &p);
    let shim = std::fs::read_to_string(sb.dir().join("init.sh")).unwrap();
    assert!(!shim.contains(CANARY));
    settings(&ctx, &sb).bind(|| insta::assert_snapshot!(shim));
}

#[cfg(unix)]
#[test]
fn sandbox_directory_is_private_and_removed_on_drop() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let ctx = TestContext::new();
    let p = plan();
    let sb = sandbox(&ctx, EngineKind::Docker, user1000(), &p);
    let dir = sb.dir().to_path_buf();
    let md = std::fs::metadata(&dir).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o700);
    if airlock::fsutil::euid() == 0 {
        // root chowns the directory to the container's user
        assert_eq!(md.uid(), 1000);
    }
    let f = std::fs::metadata(dir.join("env/0")).unwrap();
    assert_eq!(f.permissions().mode() & 0o777, 0o400);
    let text = std::fs::read_to_string(dir.join("env/0")).unwrap();
    assert!(text.contains(CANARY), "the secret is in its file");
    drop(sb);
    assert!(!dir.exists());
}
