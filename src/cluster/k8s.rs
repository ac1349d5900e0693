//! Kubernetes manifests for a sandbox plan (`airlock k8s`, docs/cluster.md).
//!
//! The plan becomes
//!
//! * a **Secret** (type Opaque, labelled `app.kubernetes.io/managed-by:
//!   airlock`) holding the same files `airlock run` writes into a sandbox's
//!   host directory: the shim (`init.sh`, which holds no secret), one key per
//!   secret environment variable (`env-N`) and one per planned file
//!   (`files-N`);
//! * a **Pod** that mounts that Secret as a read-only projected volume at
//!   [`IN_DIR`] (mode 0400, group-readable by the pod's `fsGroup` as the
//!   kubelet adds 0440 for it), an `emptyDir` in memory at [`STATE_DIR`]
//!   for the agents' files, and runs the shim as its entrypoint under the
//!   container's uid; or, with a [`Target::Patch`], a partial
//!   Deployment/StatefulSet (a strategic-merge / server-side-apply body)
//!   adding the same volumes, an init container running the shim, and the
//!   secret variables as `secretKeyRef`s.
//!
//! No secret value is ever in an `env:` value, a command or an annotation:
//! only in the Secret's `data`. Everything is built from the typed
//! `k8s-openapi` structs; [`Manifests::to_yaml`] serialises them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath, Pod, PodSecurityContext,
    PodSpec, PodTemplateSpec, ProjectedVolumeSource, Secret, SecretKeySelector, SecretProjection,
    SecurityContext, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::plan::{IN_DIR, STATE_DIR, SandboxPlan, Value};
use crate::render::shim_path;
use crate::sandbox::shim::{self, Exec, Layout};

/// The label every object airlock makes carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "airlock");
/// The Secret key holding the shim.
pub const SHIM_KEY: &str = "init.sh";
/// The projected volume's (and every item's) mode.
pub const SECRET_MODE: i32 = 0o400;
/// Name of the volume mounted at [`IN_DIR`].
pub const IN_VOLUME: &str = "airlock-in";
/// Name of the in-memory volume mounted at [`STATE_DIR`].
pub const STATE_VOLUME: &str = "airlock-state";
/// Name of the init container (`--patch`).
pub const INIT_CONTAINER: &str = "airlock-init";
/// Size limit of the in-memory state volume.
pub const STATE_SIZE: &str = "16Mi";

/// The command a Pod runs when none is given: wait, so that `kubectl exec`
/// can start the agents, and stop at once on SIGTERM.
pub const IDLE_COMMAND: [&str; 3] = [
    "sh",
    "-c",
    "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
];

/// A workload kind `--patch` can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
}

impl WorkloadKind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
        }
    }
}

/// What the manifests are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A new Pod named like the spec.
    Pod,
    /// A patch for an existing workload's pod template.
    Patch {
        /// Its kind.
        kind: WorkloadKind,
        /// Its name.
        name: String,
    },
}

impl Target {
    /// Parses `--patch KIND/NAME` (`deployment/web`, `sts/db`).
    pub fn parse_patch(s: &str) -> Result<Target> {
        let bad = || {
            Error::Usage(format!(
                "--patch '{s}': expected KIND/NAME with KIND deployment or statefulset (e.g. deployment/web)"
            ))
        };
        let (kind, name) = s.split_once('/').ok_or_else(bad)?;
        let kind = match kind.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" => WorkloadKind::Deployment,
            "statefulset" | "statefulsets" | "sts" => WorkloadKind::StatefulSet,
            _ => return Err(bad()),
        };
        check_name("--patch", name, 253)?;
        Ok(Target::Patch {
            kind,
            name: name.to_owned(),
        })
    }
}

/// Proxy mode (`--proxy-url`): checks the base URL the pods reach an
/// `airlock proxy` at, `http(s)://HOST[:PORT]` without user, path, query or
/// fragment (the agents append their API paths to it). Returns it without a
/// trailing slash.
pub fn check_proxy_url(url: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::Usage(format!(
            "--proxy-url '{url}': {why}; give http://HOST:PORT (or https://) where the pods reach `airlock proxy`"
        ))
    };
    let u = url.strip_suffix('/').unwrap_or(url);
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| bad("not an http(s) URL"))?;
    if rest.is_empty() {
        return Err(bad("no host"));
    }
    if rest.contains(['/', '?', '#', '@']) || rest.chars().any(|c| c.is_whitespace()) {
        return Err(bad("only a scheme, a host and a port are allowed"));
    }
    if let Some((_, port)) = rest.rsplit_once(':')
        && !rest.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(bad("the port is not a number"));
    }
    Ok(u.to_owned())
}

/// Proxy mode: whether the pods may talk TLS to the proxy at `url` (an
/// `http://` `--proxy-url`) with the proxy's own certificate, which Codex
/// needs for a ChatGPT session: its host must be a name or an address the
/// proxy's CA may sign for (`host.docker.internal`, a private or VPN
/// address the proxy listens on; docs/proxy.md).
pub fn proxy_tls_possible(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => rest.rsplit_once(':').map_or(rest, |(h, _)| h),
    };
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => crate::proxy::ca::permitted(ip),
        Err(_) => crate::proxy::ca::PERMITTED_DNS.contains(&host),
    }
}

/// Proxy mode: the name under which the sync watcher holds the pods'
/// sessions of the grant whose (first) placeholder hash is `hash`, before
/// `-<agent>`: `<id>-<8 hex digits>`, or `k8s-<8 hex digits>` when that
/// would leave no room for the agent in the registry's 64 characters.
/// Rendering again gives the new grant a new name, so that the hold of the
/// replaced grant hands back only its own registrations.
pub fn session_registration(id: &str, hash: &str) -> String {
    let tag = &hash[..hash.len().min(8)];
    if id.len() + tag.len() + "-".len() + "-claude".len() <= 64 {
        format!("{id}-{tag}")
    } else {
        format!("k8s-{tag}")
    }
}

/// Proxy mode: how long a pods' grant lives unless `--grant-ttl` says
/// otherwise. The proxy cannot see pods, so a grant ends by its expiry
/// (`airlock k8s renew` or rendering again extends it).
pub const DEFAULT_GRANT_TTL: &str = "24h";
/// The longest `--grant-ttl`.
pub const MAX_GRANT_TTL_DAYS: i64 = 30;

/// Parses a `--grant-ttl`: a whole number and a unit, `s`, `m`, `h` or `d`
/// (`90m`, `24h`, `7d`), more than nothing and at most
/// [`MAX_GRANT_TTL_DAYS`] days.
pub fn parse_grant_ttl(s: &str) -> Result<jiff::SignedDuration> {
    let bad = || {
        Error::Usage(format!(
            "--grant-ttl {s:?}: give a whole number and a unit (30m, 24h, 7d), at most {MAX_GRANT_TTL_DAYS}d"
        ))
    };
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(bad)?;
    if secs <= 0 || secs > MAX_GRANT_TTL_DAYS * 86_400 {
        return Err(bad());
    }
    Ok(jiff::SignedDuration::from_secs(secs))
}

/// The proxy sandbox id of a Pod (`--name`) or a patched workload in
/// `namespace`: `k8s-<namespace>-<name>` (`k8s-<ns>-<kind>-<name>` for a
/// workload); the grants are registered under it.
pub fn sandbox_id(namespace: Option<&str>, name: &str, patch: Option<&str>) -> String {
    let ns = namespace.unwrap_or("default");
    match patch {
        Some(p) => format!("k8s-{ns}-{}", p.replace('/', "-").to_ascii_lowercase()),
        None => format!("k8s-{ns}-{name}"),
    }
}

/// Everything besides the plan that the manifests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The Pod's name (`--name`), also the base of the Secret's name.
    pub name: String,
    /// The namespace, if given (else kubectl's current one).
    pub namespace: Option<String>,
    /// The container image (it must have `/bin/sh`).
    pub image: String,
    /// The container's name.
    pub container: String,
    /// The command the shim finally runs (empty: [`IDLE_COMMAND`]).
    pub command: Vec<String>,
    /// The container's uid.
    pub uid: u32,
    /// The container's gid (also the pod's `fsGroup`).
    pub gid: u32,
    /// A Pod or a patch.
    pub target: Target,
}

/// The workload document: a Pod, or a partial Deployment/StatefulSet.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Workload {
    /// A new Pod.
    Pod(Box<Pod>),
    /// A patch for a Deployment.
    Deployment(Box<Deployment>),
    /// A patch for a StatefulSet.
    StatefulSet(Box<StatefulSet>),
}

/// The manifests for one sandbox. Its `Debug` shows no secret data.
#[derive(Clone, PartialEq)]
pub struct Manifests {
    /// The Secret holding the shim and the secret values.
    pub secret: Secret,
    /// The Pod, or the workload patch.
    pub workload: Workload,
}

impl std::fmt::Debug for Manifests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifests")
            .field("secret", &self.secret.metadata.name)
            .field("workload", &self.workload)
            .finish()
    }
}

/// Checks a DNS-1123 name (`what` names the flag in the message).
pub fn check_name(what: &str, name: &str, max: usize) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{what} '{name}' is not a valid Kubernetes name: use at most {max} lower-case letters, digits and '-', starting and ending with a letter or digit"
        )))
    }
}

/// The Secret's name for a sandbox named `name`.
pub fn secret_name(name: &str) -> String {
    format!("{name}-airlock")
}

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        ("app.kubernetes.io/name".to_owned(), name.to_owned()),
    ])
}

fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Plain(s) => s.as_bytes().to_vec(),
        Value::Secret(s) => s.expose().as_bytes().to_vec(),
    }
}

/// The Secret key of a sandbox-relative file (`env/0` → `env-0`).
fn key_of(rel: &str) -> String {
    rel.replace('/', "-")
}

/// Builds the manifests for `plan`.
pub fn build(plan: &SandboxPlan, spec: &Spec) -> Result<Manifests> {
    check_spec(spec)?;
    let layout = Layout::for_plan(plan)?;
    let (secret, items, secret_refs) = secret_for(plan, spec, &layout);
    let secret_name = secret_name(&spec.name);
    let parts = PodParts {
        volumes: volumes(&secret_name, items),
        mounts: mounts(),
        env: shim::plain_env(plan)
            .into_iter()
            .map(|(name, value)| EnvVar {
                name,
                value: Some(value),
                value_from: None,
            })
            .collect(),
        user: SecurityContext {
            run_as_user: Some(spec.uid.into()),
            run_as_group: Some(spec.gid.into()),
            run_as_non_root: (spec.uid != 0).then_some(true),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        },
        shim_cmd: vec!["/bin/sh".to_owned(), shim_path()],
    };
    let workload = match &spec.target {
        Target::Pod => pod(spec, parts),
        Target::Patch { kind, name } => patch(spec, *kind, name, parts, &secret_name, secret_refs),
    };
    Ok(Manifests { secret, workload })
}

fn check_spec(spec: &Spec) -> Result<()> {
    check_name("--name", &spec.name, 63 - "-airlock".len())?;
    if let Some(ns) = &spec.namespace {
        check_name("--namespace", ns, 63)?;
    }
    check_name("--container", &spec.container, 63)?;
    if spec.image.is_empty() || spec.image.chars().any(char::is_whitespace) {
        return Err(Error::Usage(format!(
            "--image '{}' is not an image reference",
            spec.image
        )));
    }
    Ok(())
}

/// The Secret (the sandbox directory's files, one key each), the projected
/// volume's items, and `(variable, key)` for each secret variable.
fn secret_for(
    plan: &SandboxPlan,
    spec: &Spec,
    layout: &Layout,
) -> (Secret, Vec<KeyToPath>, Vec<(String, String)>) {
    let exec = Exec {
        entrypoint: vec![],
        default_cmd: match spec.target {
            // the init container's shim writes the files, then exits
            Target::Patch { .. } => vec!["true".into()],
            Target::Pod => IDLE_COMMAND.iter().map(|s| (*s).to_owned()).collect(),
        },
    };
    let script = shim::script(plan, layout, &exec, &spec.name);
    let mut data = BTreeMap::new();
    let mut items = Vec::new();
    let mut add = |key: String, path: String, bytes: Vec<u8>| {
        data.insert(key.clone(), ByteString(bytes));
        items.push(KeyToPath {
            key,
            path,
            mode: Some(SECRET_MODE),
        });
    };
    add(SHIM_KEY.into(), SHIM_KEY.into(), script.into_bytes());
    let mut secret_refs = Vec::new();
    let secret_env = plan.env.iter().filter(|e| e.value.is_secret());
    for (e, (name, rel)) in secret_env.zip(&layout.secret_env) {
        add(key_of(rel), rel.clone(), value_bytes(&e.value));
        secret_refs.push((name.clone(), key_of(rel)));
    }
    for (f, (rel, _, _)) in plan.files.iter().zip(&layout.files) {
        add(key_of(rel), rel.clone(), value_bytes(&f.content));
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&spec.name)),
            namespace: spec.namespace.clone(),
            labels: Some(labels(&spec.name)),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        immutable: Some(false),
        data: Some(data),
        ..Default::default()
    };
    (secret, items, secret_refs)
}

/// The projected Secret at [`IN_DIR`] and the in-memory state volume.
fn volumes(secret_name: &str, items: Vec<KeyToPath>) -> Vec<Volume> {
    vec![
        Volume {
            name: IN_VOLUME.into(),
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(SECRET_MODE),
                sources: Some(vec![VolumeProjection {
                    secret: Some(SecretProjection {
                        name: secret_name.to_owned(),
                        items: Some(items),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        },
        Volume {
            name: STATE_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity(STATE_SIZE.into())),
            }),
            ..Default::default()
        },
    ]
}

fn mounts() -> Vec<VolumeMount> {
    vec![
        VolumeMount {
            name: IN_VOLUME.into(),
            mount_path: IN_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: STATE_VOLUME.into(),
            mount_path: STATE_DIR.into(),
            ..Default::default()
        },
    ]
}

/// What the Pod and the patch share.
struct PodParts {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
    env: Vec<EnvVar>,
    user: SecurityContext,
    shim_cmd: Vec<String>,
}

fn pod(spec: &Spec, p: PodParts) -> Workload {
    let container = Container {
        name: spec.container.clone(),
        image: Some(spec.image.clone()),
        command: Some(p.shim_cmd),
        args: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: (!p.env.is_empty()).then_some(p.env),
        volume_mounts: Some(p.mounts),
        security_context: Some(p.user),
        ..Default::default()
    };
    Workload::Pod(Box::new(Pod {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            namespace: spec.namespace.clone(),
            labels: Some(labels(&spec.name)),
            ..Default::default()
        },
        spec: Some(PodSpec {
            automount_service_account_token: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_user: Some(spec.uid.into()),
                run_as_group: Some(spec.gid.into()),
                fs_group: Some(spec.gid.into()),
                run_as_non_root: (spec.uid != 0).then_some(true),
                ..Default::default()
            }),
            containers: vec![container],
            volumes: Some(p.volumes),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// The workload keeps its own command: an init container (same image, same
/// uid) runs the shim, which writes the agents' files into the shared
/// in-memory volume and exits; the secret variables come from the Secret
/// by reference.
fn patch(
    spec: &Spec,
    kind: WorkloadKind,
    name: &str,
    mut p: PodParts,
    secret_name: &str,
    secret_refs: Vec<(String, String)>,
) -> Workload {
    for (var, key) in secret_refs {
        p.env.push(EnvVar {
            name: var,
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret_name.to_owned(),
                    key,
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        });
    }
    let init = Container {
        name: INIT_CONTAINER.into(),
        image: Some(spec.image.clone()),
        command: Some(p.shim_cmd),
        volume_mounts: Some(p.mounts.clone()),
        security_context: Some(p.user),
        ..Default::default()
    };
    let main = Container {
        name: spec.container.clone(),
        env: (!p.env.is_empty()).then_some(p.env),
        volume_mounts: Some(p.mounts),
        ..Default::default()
    };
    let template = PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            security_context: Some(PodSecurityContext {
                fs_group: Some(spec.gid.into()),
                ..Default::default()
            }),
            init_containers: Some(vec![init]),
            containers: vec![main],
            volumes: Some(p.volumes),
            ..Default::default()
        }),
    };
    let meta = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: spec.namespace.clone(),
        ..Default::default()
    };
    match kind {
        WorkloadKind::Deployment => Workload::Deployment(Box::new(Deployment {
            metadata: meta,
            spec: Some(DeploymentSpec {
                template,
                ..Default::default()
            }),
            status: None,
        })),
        WorkloadKind::StatefulSet => Workload::StatefulSet(Box::new(StatefulSet {
            metadata: meta,
            spec: Some(StatefulSetSpec {
                template,
                ..Default::default()
            }),
            status: None,
        })),
    }
}

impl Manifests {
    /// Makes the Secret owned by `owner` (garbage-collected with it).
    pub fn set_owner(&mut self, owner: OwnerReference) {
        self.secret.metadata.owner_references = Some(vec![owner]);
    }

    /// The same manifests with every Secret value replaced by `[redacted]`
    /// (for snapshots and `--dry-run` output).
    pub fn redacted(&self) -> Manifests {
        let mut m = self.clone();
        if let Some(data) = &mut m.secret.data {
            for v in data.values_mut() {
                *v = ByteString(b"[redacted]".to_vec());
            }
        }
        m
    }

    /// Both documents as a YAML stream (`---` separated), for `kubectl apply -f -`.
    pub fn to_yaml(&self) -> Result<String> {
        let enc = |e: serde_saphyr::SerializeError| {
            Error::Other(format!("could not encode the manifests as YAML: {e}"))
        };
        let secret = serde_saphyr::to_string(&self.secret).map_err(enc)?;
        let workload = serde_saphyr::to_string(&self.workload_doc()?).map_err(enc)?;
        Ok(format!("---\n{secret}---\n{workload}"))
    }

    /// The workload document as JSON. A patch leaves out the fields the
    /// typed structs always carry but airlock does not set (an empty
    /// `selector`, which server-side apply would otherwise try to own).
    pub fn workload_doc(&self) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(&self.workload)
            .map_err(|e| Error::Other(format!("could not encode the workload: {e}")))?;
        if !matches!(self.workload, Workload::Pod(_))
            && let Some(spec) = v.get_mut("spec").and_then(|s| s.as_object_mut())
        {
            spec.retain(|k, v| {
                !(matches!(k.as_str(), "selector" | "serviceName")
                    && (v.as_object().is_some_and(|o| o.is_empty()) || v.as_str() == Some("")))
            });
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_to_the_proxy_needs_a_name_its_ca_signs() {
        for ok in [
            "http://10.8.0.1:8787",
            "http://host.docker.internal:41000",
            "http://100.100.1.2:80",
            "http://[fd00::1]:8787",
        ] {
            assert!(proxy_tls_possible(ok), "{ok}");
        }
        for no in [
            "http://proxy.tools.svc:8787",
            "http://203.0.113.7:8787",
            "https://10.8.0.1:8787",
            "http://[2001:db8::1]:80",
        ] {
            assert!(!proxy_tls_possible(no), "{no}");
        }
    }

    #[test]
    fn session_registrations_fit_the_registry() {
        let h = "0123456789abcdef";
        assert_eq!(
            session_registration("k8s-team-dev", h),
            "k8s-team-dev-01234567"
        );
        let long = sandbox_id(Some(&"n".repeat(63)), &"p".repeat(63), None);
        assert_eq!(session_registration(&long, h), "k8s-01234567");
        for id in ["k8s-default-dev", &long, &"x".repeat(49), &"x".repeat(50)] {
            for agent in ["claude", "codex"] {
                let name = format!("{}-{agent}", session_registration(id, h));
                assert!(
                    crate::vault::validate_name("sandbox", &name).is_ok(),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn grant_ttls_are_checked() {
        assert_eq!(parse_grant_ttl("90m").unwrap().as_secs(), 5400);
        assert_eq!(parse_grant_ttl("24h").unwrap().as_secs(), 86_400);
        assert_eq!(parse_grant_ttl("30d").unwrap().as_secs(), 30 * 86_400);
        assert!(parse_grant_ttl(DEFAULT_GRANT_TTL).is_ok());
        for bad in [
            "",
            "0s",
            "31d",
            "h",
            "1w",
            "-1h",
            "1.5h",
            "99999999999999999d",
        ] {
            let e = parse_grant_ttl(bad).unwrap_err().to_string();
            assert!(e.contains("24h"), "{bad}: {e}");
        }
    }

    #[test]
    fn proxy_urls_are_checked() {
        assert_eq!(
            check_proxy_url("http://10.0.0.5:8787/").unwrap(),
            "http://10.0.0.5:8787"
        );
        assert!(check_proxy_url("https://proxy.tools.svc").is_ok());
        assert!(check_proxy_url("http://[fd00::1]:80").is_ok());
        for bad in [
            "10.0.0.5:8787",
            "http://",
            "http://h:80/v1",
            "http://u@h:80",
            "http://h:port",
            "ftp://h",
        ] {
            assert!(check_proxy_url(bad).is_err(), "{bad}");
        }
    }

    use super::*;
    use crate::secret::Secret as S;

    fn plan() -> SandboxPlan {
        let mut p = SandboxPlan::default();
        p.set_env(
            "CLAUDE_CODE_OAUTH_TOKEN",
            Value::Secret(S::from("CANARY-1")),
        );
        p.set_env(
            "CLAUDE_CONFIG_DIR",
            Value::Plain("/run/airlock/claude".into()),
        );
        p.add_file(
            "/run/airlock/claude/.claude.json",
            Value::Secret(S::from("CANARY-2")),
            0o600,
        );
        p
    }

    fn spec(target: Target) -> Spec {
        Spec {
            name: "agent".into(),
            namespace: Some("dev".into()),
            image: "img:1".into(),
            container: "agent".into(),
            command: vec![],
            uid: 1000,
            gid: 1000,
            target,
        }
    }

    #[test]
    fn secrets_are_only_in_the_secret_data() {
        let m = build(&plan(), &spec(Target::Pod)).unwrap();
        let w = serde_json::to_string(&m.workload).unwrap();
        assert!(!w.contains("CANARY"), "{w}");
        assert!(!format!("{m:?}").contains("CANARY"));
        let data = m.secret.data.as_ref().unwrap();
        assert_eq!(data["env-0"].0, b"CANARY-1");
        assert_eq!(data["files-0"].0, b"CANARY-2");
        let shim = String::from_utf8(data[SHIM_KEY].0.clone()).unwrap();
        assert!(!shim.contains("CANARY"));
        assert!(shim.contains("CLAUDE_CODE_OAUTH_TOKEN=$(cat \"$in\"/'env/0')"));
        let red = m.redacted().to_yaml().unwrap();
        assert!(!red.contains(&base64_of("CANARY-1")));
    }

    fn base64_of(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn patch_keeps_the_command_and_refers_to_the_secret() {
        let t = Target::parse_patch("deployment/web").unwrap();
        let m = build(&plan(), &spec(t)).unwrap();
        let Workload::Deployment(d) = &m.workload else {
            panic!("not a deployment")
        };
        let ps = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert!(ps.containers[0].command.is_none());
        let env = ps.containers[0].env.as_ref().unwrap();
        let tok = env
            .iter()
            .find(|e| e.name == "CLAUDE_CODE_OAUTH_TOKEN")
            .unwrap();
        assert!(tok.value.is_none());
        let r = tok.value_from.as_ref().unwrap().secret_key_ref.as_ref();
        assert_eq!(r.unwrap().key, "env-0");
        assert_eq!(ps.init_containers.as_ref().unwrap()[0].name, INIT_CONTAINER);
    }

    #[test]
    fn bad_names_are_refused() {
        let mut s = spec(Target::Pod);
        s.name = "Bad_Name".into();
        assert!(build(&plan(), &s).is_err());
        assert!(Target::parse_patch("cronjob/x").is_err());
        assert!(Target::parse_patch("web").is_err());
        assert_eq!(
            Target::parse_patch("sts/db").unwrap(),
            Target::Patch {
                kind: WorkloadKind::StatefulSet,
                name: "db".into()
            }
        );
    }
}
