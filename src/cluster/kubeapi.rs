//! A small Kubernetes API client for `airlock k8s --apply` / `--dry-run`:
//! the current kubeconfig context, `GET` and server-side apply (`PATCH`
//! with `application/apply-patch+yaml`, field manager `airlock`), over the
//! HTTP client already in the tree (ureq with rustls) rather than the kube
//! crate (an async stack too heavy to build for a few requests).
//!
//! Supported kubeconfig parts: `current-context`, the context's cluster,
//! user and namespace; the cluster's `server`, `certificate-authority(-data)`
//! and `insecure-skip-tls-verify`; the user's `token`, `tokenFile`,
//! `client-certificate(-data)` and `client-key(-data)`. Exec and
//! auth-provider plugins are not (a clear error says so).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// The field manager airlock applies as.
pub const FIELD_MANAGER: &str = "airlock";

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    value: T,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ContextDef {
    cluster: String,
    #[serde(default)]
    user: String,
    namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterDef {
    server: String,
    certificate_authority_data: Option<String>,
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserDef {
    #[serde(default, deserialize_with = "opt_secret")]
    token: Option<Secret>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_certificate: Option<PathBuf>,
    #[serde(default, deserialize_with = "opt_secret")]
    client_key_data: Option<Secret>,
    client_key: Option<PathBuf>,
    exec: Option<serde_json::Value>,
    auth_provider: Option<serde_json::Value>,
}

impl std::fmt::Debug for UserDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserDef([redacted])")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct KubeconfigFile {
    #[serde(default)]
    current_context: String,
    #[serde(default)]
    contexts: Vec<Named<ContextDef>>,
    #[serde(default)]
    clusters: Vec<Named<ClusterDef>>,
    #[serde(default)]
    users: Vec<Named<UserDef>>,
}

/// A client for the current context's API server.
pub struct Client {
    agent: ureq::Agent,
    server: String,
    token: Option<Secret>,
    /// The context's namespace (else `default`).
    pub namespace: String,
    /// The context's name.
    pub context: String,
}

/// The kubeconfig kubectl would use: the first file of `$KUBECONFIG`, else
/// `~/.kube/config`.
pub fn kubeconfig_path(home: &Path) -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty())
    {
        return Some(first);
    }
    let p = home.join(".kube/config");
    p.is_file().then_some(p)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("read", path, e))
}

fn opt_secret<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| Error::Usage(format!("kubeconfig: {what} is not base64")))
}

impl Client {
    /// Reads the kubeconfig at `path` and connects to its current context.
    pub fn from_kubeconfig(path: &Path) -> Result<Client> {
        let bad = |m: String| Error::Usage(format!("kubeconfig {}: {m}", path.display()));
        let text = String::from_utf8(read(path)?).map_err(|_| bad("not UTF-8 text".into()))?;
        let cfg: KubeconfigFile = serde_saphyr::from_str(&text).map_err(|_| {
            bad("not a kubeconfig file (YAML with contexts, clusters and users)".into())
        })?;
        let ctx = cfg
            .contexts
            .iter()
            .find(|c| c.name == cfg.current_context)
            .ok_or_else(|| {
                bad(format!(
                    "no context named '{}' (current-context)",
                    cfg.current_context
                ))
            })?;
        let cluster = cfg
            .clusters
            .iter()
            .find(|c| c.name == ctx.value.cluster)
            .ok_or_else(|| bad(format!("no cluster named '{}'", ctx.value.cluster)))?;
        let empty = UserDef::default();
        let user = cfg
            .users
            .iter()
            .find(|u| u.name == ctx.value.user)
            .map(|u| &u.value)
            .unwrap_or(&empty);
        if user.exec.is_some() || user.auth_provider.is_some() {
            return Err(bad(format!(
                "user '{}' authenticates through an exec or auth-provider plugin, which airlock does not run: print the manifests and pipe them to `kubectl apply --server-side --field-manager airlock -f -`",
                ctx.value.user
            )));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let file = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        let mut tls = ureq::tls::TlsConfig::builder();
        let ca = match (
            &cluster.value.certificate_authority_data,
            &cluster.value.certificate_authority,
        ) {
            (Some(d), _) => Some(b64(d, "certificate-authority-data")?),
            (None, Some(p)) => Some(read(&file(p))?),
            _ => None,
        };
        if let Some(pem) = ca {
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(bad(
                    "the cluster's certificate authority holds no PEM certificate".into(),
                ));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        if cluster.value.insecure_skip_tls_verify {
            tls = tls.disable_verification(true);
        }
        let cert = match (&user.client_certificate_data, &user.client_certificate) {
            (Some(d), _) => Some(b64(d, "client-certificate-data")?),
            (None, Some(p)) => Some(read(&file(p))?),
            _ => None,
        };
        let key: Option<zeroize::Zeroizing<Vec<u8>>> =
            match (&user.client_key_data, &user.client_key) {
                (Some(d), _) => Some(zeroize::Zeroizing::new(b64(d.expose(), "client-key-data")?)),
                (None, Some(p)) => Some(zeroize::Zeroizing::new(read(&file(p))?)),
                _ => None,
            };
        if let (Some(cert), Some(key)) = (cert, key) {
            let chain: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&cert)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            let key = ureq::tls::PrivateKey::from_pem(&key)
                .map_err(|_| bad("the client key is not a PEM private key".into()))?;
            tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
        }
        let token = match (&user.token, &user.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(p)) => Some(
                Secret::from_utf8(read(&file(p))?)
                    .map_err(|_| bad("the token file is not UTF-8".into()))?
                    .trimmed(),
            ),
            _ => None,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .max_redirects(0)
            .tls_config(tls.build())
            .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            agent,
            server: cluster.value.server.trim_end_matches('/').to_owned(),
            token,
            namespace: ctx
                .value
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            context: cfg.current_context.clone(),
        })
    }

    fn auth(&self) -> Option<String> {
        self.token
            .as_ref()
            .map(|t| format!("Bearer {}", t.expose()))
    }

    fn answer(
        &self,
        what: &str,
        resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Option<Json>> {
        let mut resp = resp.map_err(|e| {
            Error::Other(format!(
                "{what}: the API server at {} did not answer ({e})",
                self.server
            ))
        })?;
        let status = resp.status().as_u16();
        let body = zeroize::Zeroizing::new(
            resp.body_mut()
                .with_config()
                .limit(8 * 1024 * 1024)
                .read_to_vec()
                .map_err(|e| Error::Other(format!("{what}: reading the answer failed ({e})")))?,
        );
        let json: Option<Json> = serde_json::from_slice(&body).ok();
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            let msg = json
                .as_ref()
                .and_then(|j| j.get("message"))
                .and_then(Json::as_str)
                .unwrap_or("")
                .chars()
                .take(400)
                .collect::<String>();
            return Err(Error::Other(format!(
                "{what}: the API server answered HTTP {status} {msg}"
            )));
        }
        json.map(Some)
            .ok_or_else(|| Error::Other(format!("{what}: the API server's answer is not JSON")))
    }

    /// `GET path`; `None` on 404.
    pub fn get(&self, path: &str) -> Result<Option<Json>> {
        let mut req = self
            .agent
            .get(format!("{}{path}", self.server))
            .header("Accept", "application/json");
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        self.answer(&format!("GET {path}"), req.call())
    }

    /// Server-side apply of `body` at `path` (force: airlock owns its
    /// fields), with `dryRun=All` when `dry_run`.
    pub fn apply(&self, path: &str, body: &Json, dry_run: bool) -> Result<Json> {
        let mut url = format!(
            "{}{path}?fieldManager={FIELD_MANAGER}&force=true",
            self.server
        );
        if dry_run {
            url.push_str("&dryRun=All");
        }
        let bytes = zeroize::Zeroizing::new(
            serde_json::to_vec(body)
                .map_err(|e| Error::Other(format!("could not encode {path}: {e}")))?,
        );
        let mut req = self
            .agent
            .patch(url)
            .header("Content-Type", "application/apply-patch+yaml")
            .header("Accept", "application/json");
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        self.answer(&format!("apply {path}"), req.send(&bytes[..]))?
            .ok_or_else(|| {
                Error::Other(format!(
                    "apply {path}: the API server answered 404 (no such namespace or resource)"
                ))
            })
    }
}

/// What [`apply`] did: `kind/name` and the server's answer, per object.
pub type Applied = Vec<(String, Json)>;

fn check_ours(obj: &Json, what: &str) -> Result<()> {
    let (k, v) = crate::cluster::k8s::MANAGED_BY;
    if obj["metadata"]["labels"][k].as_str() == Some(v) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{what} already exists and was not made by airlock (no {k}={v} label): refusing to overwrite it; choose another --name"
        )))
    }
}

/// Applies `m` through `client` in namespace `ns` (server-side apply,
/// field manager `airlock`): the Secret is owner-referenced to the Pod
/// (applied first; its volume waits for the Secret) or to the patched
/// workload (which must exist). A Secret or Pod of that name that airlock
/// did not make is never overwritten. With `dry_run` nothing is persisted.
pub fn apply(
    client: &Client,
    ns: &str,
    m: &mut crate::cluster::k8s::Manifests,
    dry_run: bool,
) -> Result<Applied> {
    use crate::cluster::k8s::Workload;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let secret_name = m.secret.metadata.name.clone().unwrap_or_default();
    let secret_path = format!("/api/v1/namespaces/{ns}/secrets/{secret_name}");
    if let Some(s) = client.get(&secret_path)? {
        check_ours(&s, &format!("secret/{secret_name}"))?;
    }
    let (kind, api_version, plural, api) = match &m.workload {
        Workload::Pod(_) => ("Pod", "v1", "pods", "/api/v1"),
        Workload::Deployment(_) => ("Deployment", "apps/v1", "deployments", "/apis/apps/v1"),
        Workload::StatefulSet(_) => ("StatefulSet", "apps/v1", "statefulsets", "/apis/apps/v1"),
    };
    let name = match &m.workload {
        Workload::Pod(p) => p.metadata.name.clone(),
        Workload::Deployment(d) => d.metadata.name.clone(),
        Workload::StatefulSet(s) => s.metadata.name.clone(),
    }
    .unwrap_or_default();
    let path = format!("{api}/namespaces/{ns}/{plural}/{name}");
    let existing = client.get(&path)?;
    let what = format!("{}/{name}", kind.to_ascii_lowercase());
    let mut out = Applied::new();
    let owner_uid = if matches!(m.workload, Workload::Pod(_)) {
        if let Some(p) = &existing {
            check_ours(p, &what)?;
        }
        let answer = client.apply(&path, &m.workload_doc()?, dry_run)?;
        let uid = answer["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        out.push((what.clone(), answer));
        uid
    } else {
        let Some(w) = existing else {
            return Err(Error::Usage(format!(
                "{what} does not exist in namespace {ns} (context {}): --patch changes an existing workload",
                client.context
            )));
        };
        w["metadata"]["uid"].as_str().unwrap_or_default().to_owned()
    };
    if !owner_uid.is_empty() {
        m.set_owner(OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.clone(),
            uid: owner_uid,
            ..Default::default()
        });
    }
    let secret_doc = serde_json::to_value(&m.secret)
        .map_err(|e| Error::Other(format!("could not encode the Secret: {e}")))?;
    let answer = client.apply(&secret_path, &secret_doc, dry_run)?;
    out.push((format!("secret/{secret_name}"), answer));
    if !matches!(m.workload, Workload::Pod(_)) {
        let answer = client.apply(&path, &m.workload_doc()?, dry_run)?;
        out.push((what, answer));
    }
    Ok(out)
}

/// `obj` with a Secret's `data`/`stringData` values replaced by `[redacted]`.
pub fn redact(mut obj: Json) -> Json {
    for key in ["data", "stringData"] {
        if let Some(m) = obj.get_mut(key).and_then(Json::as_object_mut) {
            for v in m.values_mut() {
                *v = Json::String("[redacted]".into());
            }
        }
    }
    obj
}
