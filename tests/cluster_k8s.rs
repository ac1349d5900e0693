//! `airlock k8s`: the manifests it prints deserialise into the k8s-openapi
//! types, hold secrets only in the Secret's data, are accepted by kubectl
//! offline, and — laid out the way the kubelet lays out a projected volume
//! and run in Docker — log the genuine Claude Code CLI in.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{CANARY, TestContext};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};

/// Runs `airlock k8s ARGS` for a Claude setup-token and returns its stdout.
fn k8s(ctx: &TestContext, args: &[&str]) -> String {
    common::ok(&ctx.cmd().arg("k8s").args(args).output().unwrap())
}

fn token_ctx() -> TestContext {
    let ctx = TestContext::new();
    common::claude_secret_file(&ctx, "k8s");
    ctx
}

/// The two documents of a manifest stream, as text.
fn docs(yaml: &str) -> Vec<String> {
    let docs: Vec<String> = yaml
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(docs.len(), 2, "{yaml}");
    docs
}

/// The Secret with its values redacted (the shim, which holds no secret,
/// kept as text) and its YAML, for snapshots.
fn redacted(secret: &Secret) -> String {
    let mut s = secret.clone();
    let shim = s.data.as_ref().unwrap()["init.sh"].clone();
    for v in s.data.as_mut().unwrap().values_mut() {
        *v = ByteString(b"[redacted]".to_vec());
    }
    let shim = String::from_utf8(shim.0).unwrap();
    format!("{}# init.sh:\n{shim}", serde_saphyr::to_string(&s).unwrap())
}

#[test]
fn pod_manifests_parse_and_keep_secrets_in_the_secret() {
    let ctx = token_ctx();
    let out = k8s(
        &ctx,
        &[
            "--agent", "claude", "--image", "img:1", "--name", "dev", "-n", "team", "--", "claude",
            "auth", "status",
        ],
    );
    assert!(!out.contains(CANARY), "a plain canary in the output");
    let d = docs(&out);
    let secret: Secret = serde_saphyr::from_str(&d[0]).unwrap();
    let pod: Pod = serde_saphyr::from_str(&d[1]).unwrap();
    // The secret is in the Secret's data, and only there.
    let data = secret.data.as_ref().unwrap();
    let token = String::from_utf8(data["env-0"].0.clone()).unwrap();
    assert!(token.contains(CANARY), "{token}");
    let pod_yaml = serde_saphyr::to_string(&pod).unwrap();
    assert!(!pod_yaml.contains(CANARY));
    let c = &pod.spec.as_ref().unwrap().containers[0];
    for e in c.env.as_deref().unwrap_or_default() {
        assert!(
            !e.value.as_deref().unwrap_or("").contains("sk-ant"),
            "{e:?}"
        );
    }
    assert_eq!(secret.metadata.namespace.as_deref(), Some("team"));
    assert_eq!(
        secret.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
        "airlock"
    );
    let filters = ctx.filters();
    let filters: Vec<(&str, &str)> = filters
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!("k8s_secret", redacted(&secret));
        insta::assert_snapshot!("k8s_pod", &d[1]);
    });
}

#[test]
fn patch_manifests_parse_into_a_secret_and_a_deployment() {
    let ctx = token_ctx();
    let out = k8s(
        &ctx,
        &[
            "--agent",
            "claude",
            "--image",
            "img:1",
            "--name",
            "web",
            "--container",
            "app",
            "--patch",
            "deployment/web",
        ],
    );
    let d = docs(&out);
    let _: Secret = serde_saphyr::from_str(&d[0]).unwrap();
    let dep: Deployment = serde_saphyr::from_str(&d[1]).unwrap();
    let ps = dep.spec.unwrap().template.spec.unwrap();
    assert_eq!(ps.containers[0].name, "app");
    assert!(
        ps.containers[0].image.is_none(),
        "the patch keeps the image"
    );
    // server-side apply must not take over the selector
    assert!(!d[1].contains("selector"), "{}", d[1]);
    assert!(!d[1].contains(CANARY));
    insta::assert_snapshot!("k8s_patch_deployment", &d[1]);
}

#[test]
fn rotating_sessions_and_bad_input_are_refused() {
    let ctx = TestContext::new();
    common::store_session(
        &ctx,
        "claude",
        &serde_json::json!({"claudeAiOauth": {"accessToken": format!("sk-ant-oat01-{CANARY}"),
            "refreshToken": format!("sk-ant-ort01-{CANARY}"), "expiresAt": 4_102_444_800_000u64,
            "scopes": ["user:inference"], "subscriptionType": "max"}})
        .to_string(),
    );
    let out = ctx
        .cmd()
        .args(["k8s", "--agent", "claude", "--image", "img:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("setup-token") && err.contains("proxy"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert!(!err.contains(CANARY));
    let ctx = token_ctx();
    for args in [
        &["--name", "Bad_Name"][..],
        &["--patch", "cronjob/x"],
        &["--user", "agent"],
        &["--patch", "deployment/web", "--", "sh"],
    ] {
        let out = ctx
            .cmd()
            .args(["k8s", "--agent", "claude", "--image", "img:1"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// kubectl decodes both documents without a server (`--local`).
#[test]
fn kubectl_reads_the_manifests_offline() {
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        // scripts/install-test-deps.sh installs it (kubernetes-client)
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kubectl is missing in CI"
        );
        eprintln!("skipping: kubectl is not installed");
        return;
    }
    let ctx = token_ctx();
    for extra in [&[][..], &["--patch", "statefulset/db"][..]] {
        let out = k8s(
            &ctx,
            &[&["--agent", "claude", "--image", "img:1"][..], extra].concat(),
        );
        let f = ctx.root.path().join("m.yaml");
        std::fs::write(&f, out).unwrap();
        let got = common::ok(
            &Command::new("kubectl")
                .args(["label", "--local", "-o", "name", "checked=yes", "-f"])
                .arg(&f)
                .output()
                .unwrap(),
        );
        let want = if extra.is_empty() {
            "secret/airlock-agent-airlock\npod/airlock-agent\n"
        } else {
            "secret/airlock-agent-airlock\nstatefulset.apps/db\n"
        };
        assert_eq!(got, want);
    }
}

/// Lays the Secret out as the kubelet does for the Pod's projected volume
/// (items at their paths, mode 0400 plus the 0440 an fsGroup adds, group
/// fsGroup) and runs the Pod's container in Docker with the genuine CLI.
#[test]
fn the_pod_logs_the_genuine_claude_cli_in() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let ctx = token_ctx();
    let out = k8s(
        &ctx,
        &[
            "--agent",
            "claude",
            "--image",
            &common::user_image(),
            "--",
            "claude",
            "auth",
            "status",
        ],
    );
    let d = docs(&out);
    let secret: Secret = serde_saphyr::from_str(&d[0]).unwrap();
    let pod: Pod = serde_saphyr::from_str(&d[1]).unwrap();
    let spec = pod.spec.unwrap();
    let fs_group = spec.security_context.as_ref().unwrap().fs_group.unwrap() as u32;
    let vol = spec.volumes.as_ref().unwrap()[0].projected.clone().unwrap();
    let proj = vol.sources.unwrap()[0].secret.clone().unwrap();
    let dir = ctx.root.path().join("projected");
    let data = secret.data.unwrap();
    for item in proj.items.unwrap() {
        let p = dir.join(&item.path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &data[&item.key].0).unwrap();
        let mode = item.mode.or(vol.default_mode).unwrap() as u32 | 0o440;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&p, Some(0), Some(fs_group)).unwrap();
    }
    for sub in [dir.clone(), dir.join("env"), dir.join("files")] {
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let c = &spec.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    let name = format!("airlock-k8s-{}", std::process::id());
    let mut run = Command::new("docker");
    run.args(["create", "--name", &name, "--network", "none"])
        .arg(format!(
            "--user={}:{}",
            sc.run_as_user.unwrap(),
            sc.run_as_group.unwrap()
        ))
        .arg(format!("--group-add={fs_group}"))
        .arg(format!(
            "--mount=type=bind,src={},dst=/run/airlock-in,readonly",
            dir.display()
        ))
        .arg("--tmpfs=/run/airlock:mode=1777");
    for e in c.env.as_deref().unwrap_or_default() {
        run.arg("-e")
            .arg(format!("{}={}", e.name, e.value.as_deref().unwrap()));
    }
    let cmd = c.command.as_ref().unwrap();
    run.arg(format!("--entrypoint={}", cmd[0]))
        .arg(c.image.as_ref().unwrap())
        .args(&cmd[1..])
        .args(c.args.as_ref().unwrap());
    common::ok(&run.output().unwrap());
    let started = Command::new("docker")
        .args(["start", "-a", &name])
        .output()
        .unwrap();
    let inspect = Command::new("docker")
        .args(["inspect", &name])
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    let stdout = String::from_utf8_lossy(&started.stdout);
    assert!(
        started.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["loggedIn"], true, "{stdout}");
    assert_eq!(status["authMethod"], "oauth_token", "{stdout}");
    assert!(!String::from_utf8_lossy(&inspect.stdout).contains(CANARY));
}
