//! Podman image configurations without `podman image inspect` (≈ 40–90 ms
//! of Podman start-up) on every `airlock run`.
//!
//! Correctness rests on one fact: in Podman's store (containers/storage) an
//! image's ID is the digest of its configuration blob, so an ID names one
//! configuration forever. airlock therefore caches configurations **by image
//! ID**, and on every run maps the image reference to an ID by reading the
//! store's own index, `<graph root>/<driver>-images/images.json` (one small
//! JSON file, replaced whole on every change of names or images). A re-tag,
//! `rmi`, `import`, `build` or `pull` changes that mapping at once, so the
//! next run finds the new ID and inspects it; nothing is trusted by time.
//!
//! Only references Podman resolves by exact name are looked up: fully
//! qualified names (`localhost/x/y:tag`, `quay.io/x:tag`; no tag means
//! `:latest`) and full 64-hex IDs. Short names (`busybox`, resolved through
//! registries.conf), digests (`@sha256:`) and anything not found in the index
//! fall back to asking Podman.
//!
//! Where the store is comes from `podman info` (≈ 250 ms), cached in the same
//! directory and keyed by everything that decides it: the user, the podman
//! program found on `PATH`, the `CONTAINERS_*`/`CONTAINER_*`/`XDG_*`/`HOME`
//! variables and the state (device, inode, size, mtime, ctime) of every
//! storage.conf / containers.conf / drop-in / connections file Podman reads.
//! It is re-asked at least every [`STORE_INFO_SECS`]. A remote Podman
//! (machine, `CONTAINER_HOST`, `--remote` connections) has no local store:
//! remembered as such (as is a failed `podman info`), and every run asks
//! Podman. `AIRLOCK_IMAGE_CACHE_SECS=0` turns all of this off.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use super::{Engine, ImageConfig};

/// How long a cached `podman info` answer (where the store is) is trusted
/// at most, even when nothing it depends on changed (seconds).
pub const STORE_INFO_SECS: u64 = 3600;

/// A reference Podman resolves without registries.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A fully qualified `domain/path:tag` (tag defaulted to `latest`).
    Name(String),
    /// A full image ID (64 lowercase hex digits).
    Id(String),
}

/// Normalises `image` the way Podman does for an exact store lookup, or
/// `None` when Podman would need more than the store to resolve it.
pub fn normalize(image: &str) -> Option<Reference> {
    let id = image.strip_prefix("sha256:").unwrap_or(image);
    if id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Some(Reference::Id(id.to_owned()));
    }
    if image.contains('@') || image.is_empty() || image.len() > 4096 {
        return None;
    }
    let (domain, rest) = image.split_once('/')?;
    if !(domain.contains('.') || domain.contains(':') || domain == "localhost") {
        return None; // a short name: registries.conf decides
    }
    let ok_domain = domain
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    let (path, tag) = match rest.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, Some(t)),
        _ => (rest, None),
    };
    let ok_path = !path.is_empty()
        && path.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    let ok_tag = tag.is_none_or(|t| {
        !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    if !(ok_domain && ok_path && ok_tag) {
        return None;
    }
    Some(Reference::Name(format!(
        "{domain}/{path}:{}",
        tag.unwrap_or("latest")
    )))
}

#[derive(Deserialize)]
struct StoreImage {
    id: String,
    #[serde(default)]
    names: Option<Vec<String>>,
}

/// The ID of the image `reference` names in an `images.json` index.
pub fn image_id(index: &[u8], reference: &Reference) -> Option<String> {
    let images: Vec<StoreImage> = serde_json::from_slice(index).ok()?;
    let found = images.into_iter().find(|i| match reference {
        Reference::Id(id) => &i.id == id,
        Reference::Name(n) => i.names.as_ref().is_some_and(|ns| ns.iter().any(|x| x == n)),
    })?;
    let valid = found.id.len() == 64 && found.id.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some(found.id)
}

/// Where the store's image index is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    /// `GraphRoot`.
    pub graph_root: PathBuf,
    /// `GraphDriverName` (the index lives in `<driver>-images`).
    pub driver: String,
}

impl Store {
    /// The image index file.
    pub fn index(&self) -> PathBuf {
        self.graph_root
            .join(format!("{}-images", self.driver))
            .join("images.json")
    }
}

#[derive(Serialize, Deserialize)]
struct InfoEntry {
    fingerprint: String,
    created: u64,
    /// `None`: a remote Podman, no local store.
    store: Option<Store>,
}

#[derive(Serialize, Deserialize)]
struct ConfigEntry {
    id: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    user: String,
    working_dir: String,
    env: Vec<String>,
}

fn stat_line(p: &Path) -> String {
    match std::fs::metadata(p) {
        Ok(m) => format!(
            "{} {}:{}:{}:{}.{}:{}.{}\n",
            p.display(),
            m.dev(),
            m.ino(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        ),
        Err(_) => format!("{} -\n", p.display()),
    }
}

/// Everything `podman info`'s store answer depends on, as one string: the
/// user, the environment Podman reads and the state of its config files.
pub fn fingerprint() -> String {
    fingerprint_with(|k| std::env::var_os(k))
}

/// [`fingerprint`] with the environment read through `env`.
pub fn fingerprint_with(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> String {
    let mut s = format!("euid {}\n", crate::fsutil::euid());
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    for k in [
        "PATH",
        "HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_RUNTIME_DIR",
        "CONTAINERS_CONF",
        "CONTAINERS_CONF_OVERRIDE",
        "CONTAINERS_STORAGE_CONF",
        "CONTAINER_HOST",
        "CONTAINER_CONNECTION",
        "CONTAINER_SSHKEY",
        "STORAGE_DRIVER",
        "STORAGE_OPTS",
    ] {
        s.push_str(&format!("{k}={:?}\n", var(k)));
    }
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(path) = var("PATH")
        && let Some(p) = std::env::split_paths(&path)
            .map(|d| d.join("podman"))
            .find(|p| p.is_file())
    {
        files.push(p);
    }
    let user_conf = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")));
    let mut dirs = vec![
        PathBuf::from("/usr/share/containers"),
        PathBuf::from("/etc/containers"),
    ];
    dirs.extend(user_conf.map(|c| c.join("containers")));
    for d in &dirs {
        for f in [
            "storage.conf",
            "containers.conf",
            "containers.rootless.conf",
            "podman-connections.json",
        ] {
            files.push(d.join(f));
        }
        for sub in ["containers.conf.d", "containers.rootless.conf.d"] {
            let dd = d.join(sub);
            files.push(dd.clone());
            if let Ok(rd) = std::fs::read_dir(&dd) {
                let mut es: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                es.sort();
                files.extend(es);
            }
        }
    }
    for k in [
        "CONTAINERS_CONF",
        "CONTAINERS_CONF_OVERRIDE",
        "CONTAINERS_STORAGE_CONF",
    ] {
        files.extend(var(k).map(PathBuf::from));
    }
    for f in &files {
        s.push_str(&stat_line(f));
    }
    s
}

fn hash_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads `podman info`'s store answer: graph root, driver, whether remote.
fn ask_store(engine: &dyn Engine) -> Option<Option<Store>> {
    let out = engine
        .command()
        .args([
            "info",
            "--format",
            "{{json .Host.ServiceIsRemote}}\n{{json .Store.GraphRoot}}\n{{json .Store.GraphDriverName}}",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let remote: bool = serde_json::from_str(lines.next()?).ok()?;
    if remote {
        return Some(None);
    }
    let root: String = serde_json::from_str(lines.next()?).ok()?;
    let driver: String = serde_json::from_str(lines.next()?).ok()?;
    let driver_ok = !driver.is_empty() && driver.bytes().all(|b| b.is_ascii_alphanumeric());
    if !root.starts_with('/') || !driver_ok {
        return None;
    }
    Some(Some(Store {
        graph_root: PathBuf::from(root),
        driver,
    }))
}

/// Where Podman's local store is, from the cache in `dir` when its
/// fingerprint still matches, else from `podman info` (then cached).
/// `None`: unknown, or a remote Podman.
pub fn store(engine: &dyn Engine, dir: &Path) -> Option<Store> {
    let fp = hash_hex(&fingerprint());
    let path = dir.join("podman-store.json");
    let now = now_secs();
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(e) = serde_json::from_str::<InfoEntry>(&text)
        && e.fingerprint == fp
        && now.saturating_sub(e.created) < STORE_INFO_SECS
        && e.created <= now
    {
        return e.store;
    }
    // A failed `podman info` is remembered like a remote one: airlock then
    // asks Podman by name, as it would anyway, without paying for another
    // `podman info` on every run until the entry expires.
    let store = ask_store(engine).unwrap_or(None);
    let e = InfoEntry {
        fingerprint: fp,
        created: now,
        store: store.clone(),
    };
    if crate::fsutil::ensure_private_dir(dir).is_ok()
        && let Ok(json) = serde_json::to_vec(&e)
    {
        let _ = crate::fsutil::write_atomic(&path, &json, 0o600);
    }
    store
}

fn config_path(dir: &Path, store: &Store, id: &str) -> PathBuf {
    let root = hash_hex(&format!("{}\0{}", store.graph_root.display(), store.driver));
    dir.join(format!("podman-{root}-{id}.json"))
}

/// The cached configuration of image `id` in `store`, if any.
pub fn cached(dir: &Path, store: &Store, id: &str) -> Option<ImageConfig> {
    let text = std::fs::read_to_string(config_path(dir, store, id)).ok()?;
    let e: ConfigEntry = serde_json::from_str(&text).ok()?;
    (e.id == id).then_some(ImageConfig {
        entrypoint: e.entrypoint,
        cmd: e.cmd,
        user: e.user,
        working_dir: e.working_dir,
        env: e.env,
    })
}

/// Remembers the configuration of image `id` (best effort).
pub fn remember(dir: &Path, store: &Store, id: &str, c: &ImageConfig) {
    let e = ConfigEntry {
        id: id.to_owned(),
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        user: c.user.clone(),
        working_dir: c.working_dir.clone(),
        env: c.env.clone(),
    };
    if crate::fsutil::ensure_private_dir(dir).is_ok()
        && let Ok(json) = serde_json::to_vec(&e)
    {
        let _ = crate::fsutil::write_atomic(&config_path(dir, store, id), &json, 0o600);
    }
}

/// `image`'s configuration through the store index and the per-ID cache in
/// `dir`: no Podman call when the image's current ID was seen before, one
/// `podman image inspect <ID>` when not. `None` when the store cannot be
/// read or the reference is not one the index answers (the caller asks
/// Podman by name, pulling if needed).
pub fn image_config(engine: &dyn Engine, image: &str, dir: &Path) -> Option<ImageConfig> {
    let reference = normalize(image)?;
    let store = store(engine, dir)?;
    let index = std::fs::read(store.index()).ok()?;
    let id = image_id(&index, &reference)?;
    if let Some(c) = cached(dir, &store, &id) {
        tracing::debug!(image, id, "image configuration from the per-ID cache");
        return Some(c);
    }
    let c = engine.inspect_image(&id).ok()?;
    remember(dir, &store, &id, &c);
    tracing::debug!(image, id, "image configuration inspected by ID and cached");
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn name(s: &str) -> Option<Reference> {
        Some(Reference::Name(s.into()))
    }

    #[test]
    fn normalize_accepts_only_exact_references() {
        assert_eq!(normalize("localhost/a/b"), name("localhost/a/b:latest"));
        assert_eq!(normalize("localhost/a/b:v1"), name("localhost/a/b:v1"));
        assert_eq!(
            normalize("registry.example:5000/x"),
            name("registry.example:5000/x:latest")
        );
        assert_eq!(normalize("quay.io/x/y:1.2"), name("quay.io/x/y:1.2"));
        assert_eq!(normalize(A), Some(Reference::Id(A.into())));
        assert_eq!(
            normalize(&format!("sha256:{A}")),
            Some(Reference::Id(A.into()))
        );
        // Short names go through registries.conf; digests, IDs prefixes and
        // invalid names are Podman's to resolve.
        for r in [
            "busybox",
            "busybox:latest",
            "library/busybox",
            "localhost/a@sha256:00",
            "aaaa",
            "localhost/A",
            "localhost/",
            "localhost/a:",
            "localhost/a:b/c",
            "",
        ] {
            assert_eq!(normalize(r), None, "{r}");
        }
    }

    fn index(pairs: &[(&str, &[&str])]) -> Vec<u8> {
        let v: Vec<serde_json::Value> = pairs
            .iter()
            .map(|(id, names)| serde_json::json!({"id": id, "names": names, "layer": "x"}))
            .collect();
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn the_index_maps_a_name_to_its_current_id() {
        let r = name("localhost/t/p:latest").unwrap();
        let before = index(&[
            (A, &["localhost/t/p:latest"]),
            (B, &["localhost/t/q:latest"]),
        ]);
        assert_eq!(image_id(&before, &r).as_deref(), Some(A));
        // Re-tagged: the name moved to B.
        let after = index(&[
            (A, &[]),
            (B, &["localhost/t/q:latest", "localhost/t/p:latest"]),
        ]);
        assert_eq!(image_id(&after, &r).as_deref(), Some(B));
        // Removed: not found, the caller asks Podman (and pulls).
        let gone = index(&[(B, &["localhost/t/q:latest"])]);
        assert_eq!(image_id(&gone, &r), None);
        // No prefix matches, no other tag.
        let other = index(&[(A, &["localhost/t/p:v2", "localhost/t/pp:latest"])]);
        assert_eq!(image_id(&other, &r), None);
        assert_eq!(image_id(b"{not json", &r), None);
        assert_eq!(
            image_id(&before, &Reference::Id(B.into())).as_deref(),
            Some(B)
        );
        let nulls = br#"[{"id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","names":null}]"#;
        assert_eq!(image_id(nulls, &r), None);
    }

    #[test]
    fn configs_are_cached_per_store_and_id() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("images");
        let dir = dir.as_path();
        let s1 = Store {
            graph_root: "/var/lib/containers/storage".into(),
            driver: "overlay".into(),
        };
        let s2 = Store {
            graph_root: "/home/u/.local/share/containers/storage".into(),
            driver: "overlay".into(),
        };
        let c = ImageConfig {
            cmd: vec!["echo".into(), "one".into()],
            user: "1000".into(),
            ..Default::default()
        };
        assert_eq!(cached(dir, &s1, A), None);
        remember(dir, &s1, A, &c);
        assert_eq!(cached(dir, &s1, A), Some(c));
        assert_eq!(cached(dir, &s1, B), None);
        assert_eq!(cached(dir, &s2, A), None);
        assert_eq!(
            s1.index(),
            Path::new("/var/lib/containers/storage/overlay-images/images.json")
        );
    }

    #[test]
    fn the_fingerprint_follows_the_environment_and_config_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("storage.conf");
        let base = |k: &str| std::env::var_os(k).filter(|_| k != "CONTAINERS_STORAGE_CONF");
        let with = |k: &str| {
            if k == "CONTAINERS_STORAGE_CONF" {
                Some(f.clone().into_os_string())
            } else {
                base(k)
            }
        };
        let remote = |k: &str| {
            if k == "CONTAINER_HOST" {
                Some("ssh://u@h/run/podman.sock".into())
            } else {
                base(k)
            }
        };
        let a = fingerprint_with(base);
        let b = fingerprint_with(with);
        std::fs::write(&f, "[storage]\ngraphroot = \"/a\"\n").unwrap();
        let c = fingerprint_with(with);
        std::fs::write(&f, "[storage]\ngraphroot = \"/bb\"\n").unwrap();
        let d = fingerprint_with(with);
        assert_ne!(a, b);
        assert_ne!(b, c);
        assert_ne!(c, d);
        assert_ne!(a, fingerprint_with(remote));
        assert_eq!(a, fingerprint_with(base));
    }
}
