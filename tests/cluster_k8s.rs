//! `airlock k8s`: the manifests it prints deserialise into the k8s-openapi
//! types, hold secrets only in the Secret's data, are accepted by kubectl
//! offline, and — laid out the way the kubelet lays out a projected volume
//! and run in Docker — log the genuine Claude Code CLI in.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

#[path = "support/proxy_harness.rs"]
mod proxy_harness;

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
    // logs at the highest verbosity show no secret either
    let loud = ctx
        .cmd()
        .args(["-vvv", "k8s", "--agent", "claude", "--image", "img:1"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&loud.stderr);
    assert!(loud.status.success(), "{log}");
    assert!(
        !log.contains(CANARY) && !log.contains("sk-ant-oat"),
        "{log}"
    );
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
    // a Codex ChatGPT session through the proxy needs TLS, which the proxy's
    // certificate cannot give a cluster DNS name
    common::store_session(&ctx, "codex", &common::codex_session("k8s-access", "acc-1"));
    let out = ctx
        .cmd()
        .args([
            "k8s",
            "--agent",
            "codex",
            "--image",
            "img:1",
            "--rotation",
            "proxy",
        ])
        .args(["--proxy-url", "http://proxy.tools.svc:8787"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("TLS") && err.contains("api-key"), "{err}");
    assert!(out.stdout.is_empty());
    let grants = airlock::proxy::registry::Layout {
        dir: ctx.state_dir.join("proxy"),
    };
    assert!(airlock::proxy::registry::load(&grants).unwrap().is_empty());
    let ctx = token_ctx();
    for args in [
        &["--name", "Bad_Name"][..],
        &["--patch", "cronjob/x"],
        &["--user", "agent"],
        &["--patch", "deployment/web", "--", "sh"],
        &["--rotation", "proxy"],
        &["--grant-ttl", "1h"],
        &[
            "--rotation",
            "proxy",
            "--proxy-url",
            "http://10.0.0.5:8787",
            "--grant-ttl",
            "0s",
        ],
        &[
            "--rotation",
            "proxy",
            "--proxy-url",
            "http://10.0.0.5:8787",
            "--grant-ttl",
            "31d",
        ],
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
                .env("HOME", &ctx.home)
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

/// The Pod, run the way a kubelet would (see [`run_like_a_kubelet`]),
/// logs the genuine Claude Code CLI in.
#[test]
fn the_pod_logs_the_genuine_claude_cli_in() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let ctx = token_ctx();
    let image = common::user_image();
    let args = [
        "--agent", "claude", "--image", &image, "--", "claude", "auth", "status",
    ];
    let (started, inspect) = run_like_a_kubelet(&ctx, &args, "claude");
    let stdout = String::from_utf8_lossy(&started.stdout);
    assert!(
        started.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["loggedIn"], true, "{stdout}");
    assert_eq!(status["authMethod"], "oauth_token", "{stdout}");
    assert!(!inspect.contains(CANARY));
}

/// The same for Codex with an API key: its auth.json is a file the shim
/// writes from the projected volume.
#[test]
fn the_pod_logs_the_genuine_codex_cli_in() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let ctx = TestContext::new();
    let mut auth = ctx
        .cmd()
        .args(["auth", "codex", "--method", "api-key", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let key = format!("sk-proj-{CANARY}-k8s-AAAAAAAAAAAAAAAAAAAAAAAA");
        auth.stdin
            .take()
            .unwrap()
            .write_all(key.as_bytes())
            .unwrap();
    }
    common::ok(&auth.wait_with_output().unwrap());
    let image = common::user_image();
    let args = [
        "--agent", "codex", "--image", &image, "--", "codex", "login", "status",
    ];
    let (started, inspect) = run_like_a_kubelet(&ctx, &args, "codex");
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(started.status.success(), "{stderr}");
    assert!(stderr.contains("API key configured"), "{stderr}");
    assert!(!stderr.contains(CANARY), "codex printed the key: {stderr}");
    assert!(!inspect.contains(CANARY));
}

/// Prints the manifests for `args`, lays the Secret out as the kubelet does
/// for the Pod's projected volume (items at their paths, mode 0400 plus the
/// 0440 an fsGroup adds, group fsGroup) and runs the Pod's container in
/// Docker with its uid, fsGroup, tmpfs, variables and command. Returns the
/// run's output and `docker inspect` of the container.
fn run_like_a_kubelet(
    ctx: &TestContext,
    args: &[&str],
    tag: &str,
) -> (std::process::Output, String) {
    run_like_a_kubelet_with(ctx, args, tag, &["--network", "none"])
}

/// [`run_like_a_kubelet`] with `net` as the container's network flags.
fn run_like_a_kubelet_with(
    ctx: &TestContext,
    args: &[&str],
    tag: &str,
    net: &[&str],
) -> (std::process::Output, String) {
    let out = k8s(ctx, args);
    let d = docs(&out);
    let secret: Secret = serde_saphyr::from_str(&d[0]).unwrap();
    let pod: Pod = serde_saphyr::from_str(&d[1]).unwrap();
    let spec = pod.spec.unwrap();
    let fs_group = spec.security_context.as_ref().unwrap().fs_group.unwrap() as u32;
    let vol = spec.volumes.as_ref().unwrap()[0].projected.clone().unwrap();
    let proj = vol.sources.unwrap()[0].secret.clone().unwrap();
    let dir = ctx.root.path().join("projected");
    // the items of this render only (a test may run several)
    let _ = std::fs::remove_dir_all(&dir);
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
        if sub.is_dir() {
            std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let c = &spec.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    let name = format!("airlock-k8s-{tag}-{}", std::process::id());
    let mut run = Command::new("docker");
    run.args(["create", "--name", &name])
        .args(net)
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
    (
        started,
        String::from_utf8_lossy(&inspect.stdout).into_owned(),
    )
}

/// A stand-in for the Kubernetes API server on loopback: it records every
/// request, answers GETs from `objects` (404 otherwise) and answers a
/// server-side apply with the applied object plus a `uid` (storing it
/// unless `dryRun`).
mod api {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use serde_json::Value as Json;

    #[derive(Debug, Clone)]
    pub struct Req {
        pub method: String,
        pub target: String,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Req {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        pub fn path(&self) -> &str {
            self.target.split('?').next().unwrap()
        }
        pub fn json(&self) -> Json {
            serde_json::from_str(&self.body).unwrap()
        }
    }

    pub struct StandIn {
        pub url: String,
        pub log: Arc<Mutex<Vec<Req>>>,
    }

    pub fn start(objects: HashMap<String, Json>) -> StandIn {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let objects = Arc::new(Mutex::new(objects));
        let (log2, objs) = (log.clone(), objects.clone());
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (log, objs) = (log2.clone(), objs.clone());
                std::thread::spawn(move || {
                    let mut w = conn.try_clone().unwrap();
                    let mut r = BufReader::new(conn);
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let method = parts.next().unwrap_or("").to_owned();
                        let target = parts.next().unwrap_or("").to_owned();
                        let mut headers = Vec::new();
                        loop {
                            let mut h = String::new();
                            r.read_line(&mut h).unwrap();
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            let (k, v) = h.split_once(':').unwrap();
                            headers.push((k.trim().to_owned(), v.trim().to_owned()));
                        }
                        let len: usize = headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                            .map(|(_, v)| v.parse().unwrap())
                            .unwrap_or(0);
                        let mut body = vec![0; len];
                        r.read_exact(&mut body).unwrap();
                        let req = Req {
                            method,
                            target,
                            headers,
                            body: String::from_utf8(body).unwrap(),
                        };
                        log.lock().unwrap().push(req.clone());
                        let path = req.path().to_owned();
                        let (code, answer) = match req.method.as_str() {
                            "GET" => match objs.lock().unwrap().get(&path) {
                                Some(o) => (200, o.clone()),
                                None => (404, serde_json::json!({"kind": "Status", "code": 404})),
                            },
                            "PATCH" => {
                                let mut o = req.json();
                                let name = path.rsplit('/').next().unwrap();
                                o["metadata"]["uid"] = Json::String(format!("uid-{name}"));
                                if !req.target.contains("dryRun=All") {
                                    objs.lock().unwrap().insert(path, o.clone());
                                }
                                (200, o)
                            }
                            _ => (405, serde_json::json!({"message": "no"})),
                        };
                        let b = answer.to_string();
                        write!(
                            w,
                            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                            b.len()
                        )
                        .unwrap();
                    }
                });
            }
        });
        StandIn { url, log }
    }

    pub fn kubeconfig(dir: &std::path::Path, url: &str, token: &str) -> std::path::PathBuf {
        let p = dir.join("kubeconfig");
        std::fs::write(
            &p,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: test\ncontexts:\n- name: test\n  context:\n    cluster: c\n    user: u\n    namespace: team\nclusters:\n- name: c\n  cluster:\n    server: {url}\nusers:\n- name: u\n  user:\n    token: {token}\n"
            ),
        )
        .unwrap();
        p
    }
}

const KUBE_TOKEN: &str = "kube-bearer-CANARYx7Q2zV9-api";

fn apply_cmd(
    ctx: &TestContext,
    kubeconfig: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    ctx.cmd()
        .env("KUBECONFIG", kubeconfig)
        .args([
            "k8s", "--agent", "claude", "--image", "img:1", "--name", "dev",
        ])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn apply_sends_server_side_apply_requests_and_owns_the_secret_by_the_pod() {
    let ctx = token_ctx();
    let srv = api::start(Default::default());
    let kc = api::kubeconfig(ctx.root.path(), &srv.url, KUBE_TOKEN);
    let out = apply_cmd(&ctx, &kc, &["--apply"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains(CANARY) && out.stdout.is_empty(), "{err}");
    assert!(
        err.contains("applied pod/dev") && err.contains("applied secret/dev-airlock"),
        "{err}"
    );
    let log = srv.log.lock().unwrap().clone();
    let calls: Vec<String> = log
        .iter()
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect();
    assert_eq!(
        calls,
        [
            "GET /api/v1/namespaces/team/secrets/dev-airlock",
            "GET /api/v1/namespaces/team/pods/dev",
            "PATCH /api/v1/namespaces/team/pods/dev",
            "PATCH /api/v1/namespaces/team/secrets/dev-airlock",
        ]
    );
    for r in &log {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {KUBE_TOKEN}").as_str())
        );
        if r.method == "PATCH" {
            assert!(
                r.target.ends_with("?fieldManager=airlock&force=true"),
                "{}",
                r.target
            );
            assert_eq!(
                r.header("content-type"),
                Some("application/apply-patch+yaml")
            );
        }
    }
    let pod = log[2].json();
    assert!(!log[2].body.contains(CANARY));
    let _: Pod = serde_json::from_value(pod.clone()).unwrap();
    assert_eq!(pod["metadata"]["namespace"], "team");
    let secret: Secret = serde_json::from_value(log[3].json()).unwrap();
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Pod", "dev", "uid-dev")
    );
    let token = String::from_utf8(secret.data.unwrap()["env-0"].0.clone()).unwrap();
    assert!(token.contains(CANARY));

    // Applying again (rotation) replaces the Secret: it is airlock's.
    let again = apply_cmd(&ctx, &kc, &["--apply"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn dry_run_changes_nothing_and_prints_redacted_answers() {
    let ctx = token_ctx();
    let srv = api::start(Default::default());
    let kc = api::kubeconfig(ctx.root.path(), &srv.url, KUBE_TOKEN);
    let out = apply_cmd(&ctx, &kc, &["--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("[redacted]") && stdout.contains("kind: Pod"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(CANARY) && !stdout.contains(&base64_canary()),
        "{stdout}"
    );
    let log = srv.log.lock().unwrap().clone();
    let patches: Vec<&api::Req> = log.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 2);
    assert!(patches.iter().all(|r| r.target.contains("&dryRun=All")));
    // nothing was stored: a second dry run sees no objects
    let out = apply_cmd(&ctx, &kc, &["--dry-run"]);
    assert!(out.status.success());
}

fn base64_canary() -> String {
    use base64::Engine as _;
    // the token's base64 starts with the encoding of its first 12 bytes
    base64::engine::general_purpose::STANDARD.encode("sk-ant-oat01")
}

#[test]
fn apply_refuses_objects_airlock_did_not_make_and_patches_existing_workloads() {
    let ctx = token_ctx();
    let foreign = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "dev-airlock", "namespace": "team", "labels": {"app": "theirs"}}});
    let srv = api::start(
        [(
            "/api/v1/namespaces/team/secrets/dev-airlock".to_owned(),
            foreign,
        )]
        .into(),
    );
    let kc = api::kubeconfig(ctx.root.path(), &srv.url, KUBE_TOKEN);
    let out = apply_cmd(&ctx, &kc, &["--apply"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not made by airlock"), "{err}");
    assert!(srv.log.lock().unwrap().iter().all(|r| r.method == "GET"));

    // --patch: the workload must exist; the Secret is owned by it.
    let dep = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team", "uid": "dep-uid"}});
    let srv = api::start(
        [(
            "/apis/apps/v1/namespaces/team/deployments/web".to_owned(),
            dep,
        )]
        .into(),
    );
    let kc = api::kubeconfig(ctx.root.path(), &srv.url, KUBE_TOKEN);
    let missing = apply_cmd(&ctx, &kc, &["--apply", "--patch", "deployment/nope"]);
    assert_eq!(missing.status.code(), Some(2));
    srv.log.lock().unwrap().clear();
    let out = apply_cmd(
        &ctx,
        &kc,
        &["--apply", "--patch", "deployment/web", "--container", "app"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = srv.log.lock().unwrap().clone();
    let calls: Vec<String> = log
        .iter()
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect();
    assert_eq!(
        calls,
        [
            "GET /api/v1/namespaces/team/secrets/dev-airlock",
            "GET /apis/apps/v1/namespaces/team/deployments/web",
            "PATCH /api/v1/namespaces/team/secrets/dev-airlock",
            "PATCH /apis/apps/v1/namespaces/team/deployments/web",
        ]
    );
    let secret = log[2].json();
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], "dep-uid");
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["kind"],
        "Deployment"
    );
    let d = log[3].json();
    assert!(d["spec"].get("selector").is_none());
    assert!(!log[3].body.contains(CANARY));

    // no kubeconfig at all
    let out = ctx
        .cmd()
        .args(["k8s", "--agent", "claude", "--image", "img:1", "--apply"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kubeconfig"));
}

/// `kubectl create --dry-run=client` needs an API server only for its
/// discovery documents (which kinds exist): the stand-in serves those, and
/// kubectl accepts both documents of both forms. (`--validate=false`: the
/// OpenAPI schema it would validate against is not served.)
#[test]
fn kubectl_create_dry_run_client_accepts_the_manifests() {
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kubectl is missing in CI"
        );
        eprintln!("skipping: kubectl is not installed");
        return;
    }
    let res = |name: &str, kind: &str| {
        serde_json::json!({"name": name, "singularName": "", "namespaced": true, "kind": kind,
            "verbs": ["create", "get", "patch"]})
    };
    let discovery = [
        (
            "/api",
            serde_json::json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": []}),
        ),
        (
            "/apis",
            serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]}),
        ),
        (
            "/api/v1",
            serde_json::json!({"kind": "APIResourceList", "groupVersion": "v1",
            "resources": [res("pods", "Pod"), res("secrets", "Secret")]}),
        ),
        (
            "/apis/apps/v1",
            serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": "apps/v1",
            "resources": [res("deployments", "Deployment"), res("statefulsets", "StatefulSet")]}),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into();
    let srv = api::start(discovery);
    let ctx = token_ctx();
    for (extra, want) in [
        (
            &[][..],
            "secret/airlock-agent-airlock created (dry run)\npod/airlock-agent created (dry run)\n",
        ),
        (
            &["--patch", "deployment/web"][..],
            "secret/airlock-agent-airlock created (dry run)\ndeployment.apps/web created (dry run)\n",
        ),
    ] {
        let out = k8s(
            &ctx,
            &[&["--agent", "claude", "--image", "img:1"][..], extra].concat(),
        );
        let f = ctx.root.path().join("m.yaml");
        std::fs::write(&f, out).unwrap();
        let got = common::ok(
            &Command::new("kubectl")
                .args(["create", "--dry-run=client", "--validate=false", "--server"])
                .arg(&srv.url)
                .arg("-f")
                .arg(&f)
                .env("KUBECONFIG", ctx.root.path().join("none"))
                // its discovery cache goes to $HOME/.kube/cache
                .env("HOME", &ctx.home)
                .output()
                .unwrap(),
        );
        assert_eq!(got, want);
    }
}

/// `--rotation proxy`: without `--proxy-url` refused (the cluster cannot
/// reach the proxy airlock starts here); with it, the manifests hold a
/// placeholder and the base URL, the grant is registered on this host, and
/// the Pod, run the way a kubelet would with the proxy reachable at that
/// URL, gets its answer from a TLS mock through the proxy, which alone sent
/// the real token.
#[test]
fn proxy_mode_needs_a_proxy_url_and_answers_through_it() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let mock = mock_upstream::MockUpstream::start();
    let token = format!("sk-ant-oat01-{CANARY}-k8sproxy-{}", "0123456789".repeat(6));
    let mut ctx = common::tmpfs_context("docker", "k8sproxy");
    common::claude_token_behind_proxy(&mut ctx, &mock.origin(), &mock.ca_pem, &token);
    // for the Codex session below (read by the proxy when it starts)
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_CODEX", &mock.origin());
    ctx.set_env("AIRLOCK_PROXY_UPSTREAM_GEMINI_SESSION", &mock.origin());
    let image = common::user_image();
    for (extra, says) in [
        (&["--rotation", "proxy"][..], "needs --proxy-url"),
        (
            &["--proxy-url", "http://10.0.0.5:8787"],
            "add --rotation proxy",
        ),
        (
            &["--rotation", "proxy", "--proxy-url", "http://h:1/v1"],
            "only a scheme, a host and a port",
        ),
    ] {
        let out = ctx
            .cmd()
            .args(["k8s", "--agent", "claude", "--image", &image])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    // a configured default of proxy is refused the same way
    let out = ctx
        .cmd()
        .env("AIRLOCK_ROTATION", "proxy")
        .args(["k8s", "--agent", "claude", "--image", &image])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs --proxy-url"), "{err}");
    let layout = airlock::proxy::registry::Layout {
        dir: ctx.state_dir.join("proxy"),
    };
    assert!(airlock::proxy::registry::load(&layout).unwrap().is_empty());

    // the proxy the user runs (here on the bridges, reached through
    // Docker's host-gateway as the cluster would reach it through theirs)
    let proxy = proxy_harness::start_proxy_with(&ctx, &[]);
    let port = proxy.port;
    let url = format!("http://host.docker.internal:{port}");
    let args = [
        "--rotation",
        "proxy",
        "--proxy-url",
        &url,
        "--agent",
        "claude",
        "--image",
        &image,
        "--name",
        "dev",
        "--",
        "sh",
        "-c",
        "env | grep -c sk-ant-oat01-airlock- ; claude -p hi",
    ];
    let printed = k8s(&ctx, &args);
    assert!(!printed.contains(CANARY));
    let d = docs(&printed);
    let secret: Secret = serde_saphyr::from_str(&d[0]).unwrap();
    let data = secret.data.unwrap();
    let values: Vec<String> = data
        .values()
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .collect();
    assert!(
        values
            .iter()
            .any(|v| v.starts_with("sk-ant-oat01-airlock-"))
    );
    assert!(values.iter().all(|v| !v.contains(CANARY)));
    assert!(d[1].contains(&url), "the base URL is in the Pod: {}", d[1]);
    let (started, inspect) = run_like_a_kubelet_with(
        &ctx,
        &args,
        "proxy",
        &["--add-host", "host.docker.internal:host-gateway"],
    );
    let grants = airlock::proxy::registry::load(&layout).unwrap();
    let stdout = String::from_utf8_lossy(&started.stdout);
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(started.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("1\n"), "the placeholder: {stdout}");
    assert!(stdout.contains(mock_upstream::REPLY), "{stdout}\n{stderr}");
    assert!(!inspect.contains(CANARY));
    mock.assert_messages_carried(&token);
    // one grant for the Pod, replaced (not added to) by the second render
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].sandbox, "k8s-default-dev");

    // login sessions (Claude's, Codex's ChatGPT one, Gemini's Google one)
    // stay on this host: the Pod holds placeholder sessions, the proxy
    // sends the sessions' access tokens, and the watcher keeps them fresh
    // until the grant is gone (expired and dropped)
    let access = format!("sk-ant-oat01-{CANARY}-k8saccess");
    let refresh = format!("sk-ant-ort01-{CANARY}-k8srefresh");
    common::store_session(&ctx, "claude", &common::claude_session(&access, &refresh));
    let codex_access = format!("{CANARY}-k8scodexaccess");
    common::store_session(
        &ctx,
        "codex",
        &common::codex_session(&codex_access, "acc-k8s"),
    );
    let gemini_access = format!("ya29.{CANARY}-k8sgeminiaccess");
    common::store_session(&ctx, "gemini", &common::gemini_session(&gemini_access));
    let mut args = args.to_vec();
    args[9] = "sess";
    args.splice(6..6, ["--agent", "codex", "--agent", "gemini"]);
    // (the command names the tokens' tags, never the canary: it is in
    // `docker inspect`)
    let check = format!(
        "grep -rls -e k8saccess -e k8srefresh -e k8scodex -e k8sgemini /run/airlock /run/airlock-in /proc/self/environ | head -1 | grep -q . && echo CREDENTIAL-IN-POD; {}",
        common::three_agents_script()
    );
    let last = args.len() - 1;
    args[last] = &check;
    let before = mock.seen().len();
    let (started, inspect) = run_like_a_kubelet_with(
        &ctx,
        &args,
        "proxysess",
        &["--add-host", "host.docker.internal:host-gateway"],
    );
    let stdout = String::from_utf8_lossy(&started.stdout);
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(started.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("CREDENTIAL-IN-POD"), "{stdout}");
    assert!(stdout.contains(mock_upstream::REPLY), "{stdout}\n{stderr}");
    assert!(!inspect.contains(CANARY));
    mock.assert_messages_since(before, &access);
    common::assert_line_answered(&started, "codex", mock_upstream::REPLY);
    mock.assert_codex_session_carried(&codex_access, "acc-k8s");
    common::assert_line_answered(&started, "gemini", mock_upstream::REPLY);
    mock.assert_gemini_session_carried(&gemini_access);
    let sync = airlock::sync::Layout {
        state: ctx.state_dir.join("sync"),
        runtime: ctx.runtime_dir.join("sync"),
    };
    let names = || -> Vec<String> {
        airlock::sync::list_sandboxes(&sync)
            .unwrap()
            .into_iter()
            .map(|e| e.sandbox)
            .collect()
    };
    let first = names();
    assert_eq!(
        first.len(),
        3,
        "the watcher refreshes the three sessions: {first:?}"
    );
    for (n, agent) in first.iter().zip(["claude", "codex", "gemini"]) {
        assert!(
            n.starts_with("k8s-default-sess-") && n.ends_with(&format!("-{agent}")),
            "{first:?}"
        );
    }
    // rendered again: the new grant's hold takes over, the old one hands
    // its registrations back (the sessions are never let go)
    k8s(&ctx, &args);
    common::wait_until(
        "the replaced grant's hold hands back",
        std::time::Duration::from_secs(20),
        || {
            let now = names();
            assert!(now.len() >= 3, "a session was let go: {now:?}");
            now.len() == 3 && now.iter().all(|n| !first.contains(n))
        },
    );
    // revoked: the pods are cut off, and the hold hands the sessions back
    common::ok(
        &ctx.cmd()
            .args(["revoke", "k8s-default-sess"])
            .output()
            .unwrap(),
    );
    common::wait_until(
        "the sessions handed back once the grant is revoked",
        std::time::Duration::from_secs(20),
        || names().is_empty(),
    );
    // expired over an hour ago: the proxy drops the grants
    let now = jiff::Timestamp::now();
    let past = now - airlock::proxy::registry::EXPIRED_KEPT - jiff::SignedDuration::from_mins(1);
    assert_eq!(
        airlock::proxy::registry::renew(&layout, "k8s-default-sess", now, past).unwrap(),
        0,
        "revoked grants are not renewed"
    );
    let mut grants = airlock::proxy::registry::load(&layout).unwrap();
    for g in grants
        .iter_mut()
        .filter(|g| g.sandbox == "k8s-default-sess")
    {
        g.expires_at = Some(past);
        airlock::proxy::registry::add(&layout, g).unwrap();
    }
    common::wait_until(
        "the proxy dropped the stale grant",
        std::time::Duration::from_secs(20),
        || {
            !airlock::proxy::registry::load(&layout)
                .unwrap()
                .iter()
                .any(|g| g.sandbox == "k8s-default-sess")
        },
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}

/// The placeholder in the Secret of a printed `airlock k8s --rotation proxy`.
fn placeholder_in(printed: &str, prefix: &str) -> String {
    let secret: Secret = serde_saphyr::from_str(&docs(printed)[0]).unwrap();
    secret
        .data
        .unwrap()
        .values()
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .find(|v| v.starts_with(prefix))
        .expect("a placeholder in the Secret")
}

/// A pods' grant has a lifetime (`--grant-ttl`): the user's proxy answers
/// until then, refuses the placeholder afterwards (401, audited as expired)
/// also after a restart (the expiry is in the grants file), and `airlock k8s
/// renew` brings it back; `airlock status` shows the expiry.
#[test]
fn a_pods_grant_expires_and_renewal_brings_it_back() {
    let mock = mock_upstream::MockUpstream::start();
    let token = format!("sk-ant-oat01-{CANARY}-k8sttl-{}", "0123456789".repeat(6));
    let mut ctx = TestContext::new();
    common::claude_token_behind_proxy(&mut ctx, &mock.origin(), &mock.ca_pem, &token);
    let proxy = proxy_harness::start_proxy_with(&ctx, &[]);
    let port = proxy.port;
    let url = format!("http://127.0.0.1:{port}");
    let out = ctx
        .cmd()
        .args(["k8s", "--rotation", "proxy", "--proxy-url", &url])
        .args(["--grant-ttl", "2s", "--agent", "claude", "--image", "img:1"])
        .args(["--name", "ttl"])
        .output()
        .unwrap();
    let printed = common::ok(&out);
    let rendered = std::time::Instant::now();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("until") && err.contains("airlock k8s renew k8s-default-ttl"),
        "{err}"
    );
    let ph = placeholder_in(&printed, "sk-ant-oat01-airlock-");
    let r = proxy_harness::response(proxy_harness::send(port, "POST", "/v1/messages", &ph));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains(mock_upstream::REPLY), "{r}");
    let status = common::ok(&ctx.cmd().arg("status").output().unwrap());
    assert!(
        status.contains("k8s-default-ttl") && status.contains("(expires "),
        "{status}"
    );

    std::thread::sleep(std::time::Duration::from_secs(2).saturating_sub(rendered.elapsed()));
    let r = proxy_harness::response(proxy_harness::send(port, "POST", "/v1/messages", &ph));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(r.contains("airlock k8s renew k8s-default-ttl"), "{r}");
    // the expiry survives a restart of the proxy
    drop(proxy);
    let proxy = proxy_harness::start_proxy_with(&ctx, &[]);
    let port = proxy.port;
    let r = proxy_harness::response(proxy_harness::send(port, "POST", "/v1/messages", &ph));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let audit = ctx.state_dir.join("proxy").join("audit.jsonl");
    let audit = std::fs::read_to_string(audit).unwrap();
    assert_eq!(audit.matches("\"expired\"").count(), 2, "{audit}");
    assert!(!audit.contains(&ph) && !audit.contains(CANARY));
    let status = common::ok(&ctx.cmd().arg("status").output().unwrap());
    assert!(status.contains("(expired "), "{status}");
    let json: serde_json::Value = serde_json::from_str(&common::ok(
        &ctx.cmd().args(["status", "--json"]).output().unwrap(),
    ))
    .unwrap();
    let sandboxes = json["proxy"]["sandboxes"].as_array().unwrap();
    assert!(
        sandboxes
            .iter()
            .any(|s| s["sandbox"] == "k8s-default-ttl" && s["expires"].is_string()),
        "{json}"
    );

    // renewed: answered again, with the same placeholder
    let out = ctx
        .cmd()
        .args(["k8s", "renew", "k8s-default-ttl", "--grant-ttl", "1h"])
        .output()
        .unwrap();
    common::ok(&out);
    let r = proxy_harness::response(proxy_harness::send(port, "POST", "/v1/messages", &ph));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = mock.seen();
    assert_eq!(seen.len(), 2, "refused requests never went upstream");
    mock.assert_messages_carried(&token);
    let out = ctx
        .cmd()
        .args(["k8s", "renew", "k8s-default-nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    drop(proxy);
}

/// Proxy mode for Codex and Gemini (API keys): one Pod, run the way a
/// kubelet would and reaching a user-run proxy at `--proxy-url`, where the
/// genuine `codex exec` and `gemini -p` answer from the TLS mock; the mock
/// saw the real keys, the Secret and the container held placeholders only.
#[test]
fn proxy_mode_serves_codex_and_gemini_to_a_pod() {
    if !common::require_real("AIRLOCK_TEST_DOCKER") {
        return;
    }
    let mock = mock_upstream::MockUpstream::start();
    let mut ctx = common::tmpfs_context("docker", "k8scg");
    let (codex, gemini) =
        common::codex_and_gemini_keys_behind_proxy(&mut ctx, "k8s", (&mock.origin(), &mock.ca_pem));
    let proxy = proxy_harness::start_proxy_with(&ctx, &[]);
    let port = proxy.port;
    let url = format!("http://host.docker.internal:{port}");
    let image = common::user_image();
    let script = common::codex_and_gemini_script();
    let args = [
        "--rotation",
        "proxy",
        "--proxy-url",
        &url,
        "--agent",
        "codex",
        "--agent",
        "gemini",
        "--image",
        &image,
        "--name",
        "cg",
        "--",
        "sh",
        "-c",
        &script,
    ];
    let printed = k8s(&ctx, &args);
    assert!(!printed.contains(CANARY));
    let (started, inspect) = run_like_a_kubelet_with(
        &ctx,
        &args,
        "proxycg",
        &["--add-host", "host.docker.internal:host-gateway"],
    );
    drop(proxy);
    common::assert_codex_and_gemini_answered(&started, mock_upstream::REPLY);
    assert!(!inspect.contains(CANARY));
    mock.assert_codex_and_gemini_carried(&codex, &gemini);
    let _ = std::fs::remove_dir_all(&ctx.runtime_dir);
}
