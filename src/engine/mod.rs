//! Container engines, one module per engine behind the small [`Engine`] trait.
//!
//! airlock talks to engines through their command-line clients
//! (`std::process::Command`), never their sockets: users need the CLI flags
//! anyway, and the CLIs already honour `DOCKER_HOST`, Docker contexts,
//! `CONTAINERS_CONF` and Podman machines. airlock passes its environment
//! through untouched for that reason.
//!
//! Which engine: `--engine`, else `AIRLOCK_ENGINE`, else Docker if its daemon
//! answers, else Podman ([`detect`]). The "does it answer" probe is the image
//! inspection airlock needs anyway, so detection costs no extra call when
//! Docker is up.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::process::{Command, Output, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod docker;
pub mod podman;
#[cfg(target_os = "linux")]
pub mod podman_store;
pub mod run_flags;
pub mod service_flags;

/// The engines airlock knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// Docker (or anything answering as `docker`).
    Docker,
    /// Podman.
    Podman,
}

impl EngineKind {
    /// The engine's name, which is also its CLI's name.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        }
    }

    /// Parses `docker` / `podman` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "docker" => Ok(EngineKind::Docker),
            "podman" => Ok(EngineKind::Podman),
            other => Err(Error::Usage(format!(
                "unknown container engine '{other}': use docker or podman"
            ))),
        }
    }

    /// The engine object for this kind.
    pub fn engine(self) -> Box<dyn Engine> {
        match self {
            EngineKind::Docker => Box::new(docker::Docker::new()),
            EngineKind::Podman => Box::new(podman::Podman::new()),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of an image's configuration a sandbox needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// `ENTRYPOINT` (exec form; the shell form is stored as `["/bin/sh","-c",…]`).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub entrypoint: Vec<String>,
    /// `CMD`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub cmd: Vec<String>,
    /// `USER` (`""` means root).
    #[serde(default, deserialize_with = "null_as_default")]
    pub user: String,
    /// `WORKDIR`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub working_dir: String,
    /// `ENV`, as `NAME=value`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub env: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn null_as_default<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

impl ImageConfig {
    /// Parses the JSON of `<engine> image inspect --format '{{json .Config}}'`.
    pub fn from_json(json: &str) -> Result<Self> {
        let json = json.trim();
        if json.is_empty() || json == "null" {
            return Ok(ImageConfig::default());
        }
        serde_json::from_str(json)
            .map_err(|e| Error::Engine(format!("could not read the image configuration: {e}")))
    }
}

/// Why an image inspection failed.
#[derive(Debug)]
pub enum InspectError {
    /// The engine answered, but the image is not present locally.
    NoSuchImage(String),
    /// The engine did not answer (daemon down, CLI missing).
    Unreachable(String),
}

/// A container engine, driven through its CLI.
pub trait Engine: fmt::Debug + Send + Sync {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;

    /// The CLI program (`docker`, `podman`).
    fn program(&self) -> &OsStr;

    /// A command for the engine's CLI, environment inherited.
    fn command(&self) -> Command {
        Command::new(self.program())
    }

    /// Whether this engine needs `--userns=keep-id` style flags for the
    /// container user `uid` to read files owned by the (non-root) host user.
    /// Returns the flags to add, or `None` when the engine cannot map users.
    fn map_host_user(&self, uid: u32, gid: u32) -> Option<Vec<String>>;

    /// Mount options for the in-container tmpfs at
    /// [`crate::plan::STATE_DIR`], owned by the container user and private.
    /// `exec` because the command wrappers live there.
    fn tmpfs_options(&self, uid: u32, gid: Option<u32>) -> String {
        let mut o = format!("rw,exec,nosuid,nodev,mode=0700,uid={uid}");
        if let Some(g) = gid {
            o.push_str(&format!(",gid={g}"));
        }
        o
    }

    /// Reads an image's configuration, without pulling.
    fn inspect_image(&self, image: &str) -> std::result::Result<ImageConfig, InspectError> {
        let out = self
            .command()
            .args(["image", "inspect", "--format", "{{json .Config}}", "--"])
            .arg(image)
            .stdin(Stdio::null())
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                return Err(InspectError::Unreachable(format!(
                    "could not start {}: {e}",
                    self.kind()
                )));
            }
        };
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            return ImageConfig::from_json(&text)
                .map_err(|e| InspectError::Unreachable(e.to_string()));
        }
        let err = stderr_text(&out);
        let lower = err.to_ascii_lowercase();
        if lower.contains("no such image")
            || lower.contains("image not known")
            || lower.contains("no such object")
        {
            Err(InspectError::NoSuchImage(err))
        } else {
            Err(InspectError::Unreachable(err))
        }
    }

    /// Reads an image's configuration, pulling the image first if it is not
    /// present (progress goes to stderr).
    fn image_config(&self, image: &str) -> Result<ImageConfig> {
        match self.inspect_image(image) {
            Ok(c) => Ok(c),
            Err(InspectError::Unreachable(e)) => Err(Error::Engine(format!(
                "{} did not answer: {e}; start it, or choose the other engine with --engine",
                self.kind()
            ))),
            Err(InspectError::NoSuchImage(_)) => {
                tracing::info!(image, engine = %self.kind(), "image not present, pulling");
                let st = self
                    .command()
                    .args(["pull", "--"])
                    .arg(image)
                    .stdin(Stdio::null())
                    .stdout(Stdio::from(std::io::stderr()))
                    .status()
                    .map_err(|e| {
                        Error::Engine(format!("could not run {} pull: {e}", self.kind()))
                    })?;
                if !st.success() {
                    return Err(Error::Engine(format!(
                        "the image {image} is not present and `{} pull {image}` failed",
                        self.kind()
                    )));
                }
                self.inspect_image(image).map_err(|e| {
                    Error::Engine(format!("could not inspect {image} after pulling it: {e:?}"))
                })
            }
        }
    }

    /// Resolves a user name (`--user agent`, `USER agent:staff`) to numeric ids
    /// by asking the image itself (`id -u`, `id -g` in a throwaway container
    /// without network). Only needed when the user is not numeric.
    fn resolve_user(&self, image: &str, spec: &str) -> Result<(u32, u32)> {
        let out = self
            .command()
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "/bin/sh",
            ])
            .args(["--user", spec, "--", image, "-c", "id -u; id -g"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Engine(format!("could not run {}: {e}", self.kind())))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut nums = text.lines().filter_map(|l| l.trim().parse::<u32>().ok());
        match (out.status.success(), nums.next(), nums.next()) {
            (true, Some(u), Some(g)) => Ok((u, g)),
            _ => Err(Error::Engine(format!(
                "could not find the numeric ids of user '{spec}' in {image} ({}); pass a numeric --user UID:GID",
                stderr_text(&out)
            ))),
        }
    }

    /// Sandbox ids of running containers labelled `airlock.sandbox`.
    fn running_sandboxes(&self) -> Result<HashSet<String>> {
        let out = self
            .command()
            .args(["ps", "--filter", "label=airlock.sandbox", "--format"])
            .arg("{{.Label \"airlock.sandbox\"}}")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Engine(format!("could not run {}: {e}", self.kind())))?;
        if !out.status.success() {
            return Err(Error::Engine(format!(
                "{} ps failed: {}",
                self.kind(),
                stderr_text(&out)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// The arguments that list the events since `since` (Unix seconds) of
    /// containers carrying `label` and exit, one `STATUS ID` line each
    /// (Docker: `--until` now; Podman: `--stream=false`).
    fn past_events_args(&self, label: &str, since: i64) -> Vec<String> {
        let until = jiff::Timestamp::now().as_second() + 1;
        vec![
            "events".into(),
            "--since".into(),
            since.to_string(),
            "--until".into(),
            until.to_string(),
            "--filter".into(),
            label.into(),
            "--format".into(),
            "{{.Status}} {{.ID}}".into(),
        ]
    }

    /// The events of containers carrying `label` since `since` (Unix
    /// seconds), as `(status, container id)`; `None` if the engine could not
    /// be asked. A `--rm` container that started and exited between two
    /// looks still shows up here, unlike in `ps`.
    fn past_events(&self, label: &str, since: i64) -> Option<Vec<(String, String)>> {
        let o = self
            .command()
            .args(self.past_events_args(label, since))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().split_once(' '))
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect(),
        )
    }

    /// Blocks until the container exits (`<engine> wait`).
    fn wait(&self, container: &str) -> Result<()> {
        let st = self
            .command()
            .args(["wait", "--", container])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| Error::Engine(format!("could not run {} wait: {e}", self.kind())))?;
        if st.success() {
            Ok(())
        } else {
            Err(Error::Engine(format!(
                "{} wait {container} failed",
                self.kind()
            )))
        }
    }
}

/// The first lines of a command's stderr, for error messages.
pub fn stderr_text(out: &Output) -> String {
    let s = String::from_utf8_lossy(&out.stderr);
    let s = s.trim();
    let mut t: String = s.chars().take(500).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}

/// Whether `program` is found on `PATH`.
pub fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|d| {
        let p = d.join(program);
        p.is_file()
    })
}

/// An engine chosen for an image, with the image's configuration already read.
#[derive(Debug)]
pub struct Detected {
    /// The engine.
    pub engine: Box<dyn Engine>,
    /// The image's configuration.
    pub image: ImageConfig,
}

/// Chooses the engine: `choice` (from `--engine`), else `AIRLOCK_ENGINE`,
/// else Docker if it answers, else Podman; then reads `image`'s configuration
/// with it (pulling the image if needed).
pub fn detect(choice: Option<EngineKind>, image: &str) -> Result<Detected> {
    detect_with(choice, image, None)
}

/// Podman's image configuration without a Podman call when its store index
/// allows it (see [`podman_store`]); `None`: ask Podman.
#[allow(unused_variables)]
fn podman_fast(
    engine: &dyn Engine,
    image: &str,
    cache_dir: Option<&std::path::Path>,
) -> Option<ImageConfig> {
    #[cfg(target_os = "linux")]
    if engine.kind() == EngineKind::Podman
        && std::env::var("AIRLOCK_IMAGE_CACHE_SECS").ok().as_deref() != Some("0")
        && let Some(dir) = cache_dir
    {
        return podman_store::image_config(engine, image, dir);
    }
    None
}

/// [`detect`], with Podman image configurations cached per image ID in
/// `cache_dir` and validated against Podman's store index on every call
/// ([`podman_store`]): never stale, and no Podman call when the image was
/// seen before. `airlock run` uses this.
pub fn detect_with(
    choice: Option<EngineKind>,
    image: &str,
    cache_dir: Option<&std::path::Path>,
) -> Result<Detected> {
    let choice = match choice {
        Some(c) => Some(c),
        None => match std::env::var("AIRLOCK_ENGINE") {
            Ok(v) if !v.is_empty() => Some(EngineKind::parse(&v)?),
            _ => None,
        },
    };
    if let Some(kind) = choice {
        let engine = kind.engine();
        if let Some(cfg) = podman_fast(engine.as_ref(), image, cache_dir) {
            return Ok(Detected { engine, image: cfg });
        }
        let image = engine.image_config(image)?;
        return Ok(Detected { engine, image });
    }
    let mut why = Vec::new();
    for kind in [EngineKind::Docker, EngineKind::Podman] {
        if !on_path(kind.as_str()) {
            why.push(format!("{kind}: not found on PATH"));
            continue;
        }
        let engine = kind.engine();
        if let Some(cfg) = podman_fast(engine.as_ref(), image, cache_dir) {
            return Ok(Detected { engine, image: cfg });
        }
        match engine.inspect_image(image) {
            Ok(cfg) => return Ok(Detected { engine, image: cfg }),
            Err(InspectError::NoSuchImage(_)) => {
                let cfg = engine.image_config(image)?;
                return Ok(Detected { engine, image: cfg });
            }
            Err(InspectError::Unreachable(e)) => why.push(format!("{kind}: {e}")),
        }
    }
    Err(Error::Engine(format!(
        "no container engine answered ({}); start Docker or install Podman, or choose one with --engine",
        why.join("; ")
    )))
}

/// How long [`detect_cached`] trusts a cached image configuration (seconds);
/// `AIRLOCK_IMAGE_CACHE_SECS` overrides it, 0 disables the cache.
pub const IMAGE_CACHE_SECS: u64 = 60;

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    engine: String,
    image: String,
    created: u64,
    config: ImageConfigOwned,
}

#[derive(Serialize, Deserialize)]
struct ImageConfigOwned {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    user: String,
    working_dir: String,
}

/// [`detect`], remembering the answer for a short while in `cache_dir`
/// (`docker-flags` and `compose`, whose whole point is being fast in
/// `$(…)`). A rebuilt image is seen after at most [`IMAGE_CACHE_SECS`],
/// except with Podman chosen (`--engine`, `AIRLOCK_ENGINE`) and a reference
/// its store index answers: then the store-validated per-ID cache of
/// [`detect_with`] is used first, which is never stale.
pub fn detect_cached(
    choice: Option<EngineKind>,
    image: &str,
    cache_dir: &std::path::Path,
) -> Result<Detected> {
    let ttl = std::env::var("AIRLOCK_IMAGE_CACHE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(IMAGE_CACHE_SECS);
    let env_choice = std::env::var("AIRLOCK_ENGINE").unwrap_or_default();
    let wanted = choice.map(|c| c.as_str().to_owned()).unwrap_or(env_choice);
    if ttl > 0
        && wanted.eq_ignore_ascii_case("podman")
        && let Some(cfg) = podman_fast(&podman::Podman::new(), image, Some(cache_dir))
    {
        return Ok(Detected {
            engine: EngineKind::Podman.engine(),
            image: cfg,
        });
    }
    let key = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(format!("{wanted}\0{image}").as_bytes());
        h.iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let path = cache_dir.join(format!("{key}.json"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if ttl > 0
        && let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(e) = serde_json::from_str::<CacheEntry>(&text)
        && e.image == image
        && now.saturating_sub(e.created) < ttl
        && let Ok(kind) = EngineKind::parse(&e.engine)
    {
        tracing::debug!(image, engine = %kind, "image configuration from cache");
        return Ok(Detected {
            engine: kind.engine(),
            image: ImageConfig {
                entrypoint: e.config.entrypoint,
                cmd: e.config.cmd,
                user: e.config.user,
                working_dir: e.config.working_dir,
                env: Vec::new(),
            },
        });
    }
    let d = detect_with(choice, image, (ttl > 0).then_some(cache_dir))?;
    if ttl > 0 && crate::fsutil::ensure_private_dir(cache_dir).is_ok() {
        let e = CacheEntry {
            engine: d.engine.kind().as_str().to_owned(),
            image: image.to_owned(),
            created: now,
            config: ImageConfigOwned {
                entrypoint: d.image.entrypoint.clone(),
                cmd: d.image.cmd.clone(),
                user: d.image.user.clone(),
                working_dir: d.image.working_dir.clone(),
            },
        };
        if let Ok(json) = serde_json::to_vec(&e) {
            let _ = crate::fsutil::write_atomic(&path, &json, 0o600);
        }
    }
    Ok(d)
}

/// Chooses the engine without an image: `choice`, else `AIRLOCK_ENGINE`,
/// else Docker if its CLI is on PATH, else Podman.
pub fn choose_without_probe(choice: Option<EngineKind>) -> Result<Box<dyn Engine>> {
    if let Some(k) = choice {
        return Ok(k.engine());
    }
    if let Ok(v) = std::env::var("AIRLOCK_ENGINE")
        && !v.is_empty()
    {
        return Ok(EngineKind::parse(&v)?.engine());
    }
    if on_path("docker") {
        Ok(EngineKind::Docker.engine())
    } else if on_path("podman") {
        Ok(EngineKind::Podman.engine())
    } else {
        Err(Error::Engine(
            "neither docker nor podman is on PATH: install one, or choose with --engine".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_config_parses_nulls_and_missing_fields() {
        let c = ImageConfig::from_json(
            r#"{"Env":["PATH=/bin"],"Entrypoint":null,"Cmd":["sh"],"User":"1000:1000"}"#,
        )
        .unwrap();
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.cmd, ["sh"]);
        assert_eq!(c.user, "1000:1000");
        assert_eq!(
            ImageConfig::from_json("null").unwrap(),
            ImageConfig::default()
        );
    }

    #[test]
    fn engine_names_parse() {
        assert_eq!(EngineKind::parse("Podman").unwrap(), EngineKind::Podman);
        assert!(EngineKind::parse("lxc").is_err());
    }
}
