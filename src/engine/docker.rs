//! Docker, through the `docker` CLI (any daemon it points at: `DOCKER_HOST`,
//! the current context).

use std::ffi::OsStr;

use super::{Engine, EngineKind};

/// The Docker engine.
#[derive(Debug, Clone, Default)]
pub struct Docker {
    _private: (),
}

impl Docker {
    /// Uses the `docker` on `PATH`.
    pub fn new() -> Self {
        Docker::default()
    }
}

impl Engine for Docker {
    fn kind(&self) -> EngineKind {
        EngineKind::Docker
    }

    fn program(&self) -> &OsStr {
        OsStr::new("docker")
    }

    /// Docker cannot map the host user onto a container user per container
    /// (user-namespace remapping is daemon-wide), so airlock falls back to
    /// group access (`--group-add`); see `docs/sandbox.md`.
    fn map_host_user(&self, _uid: u32, _gid: u32) -> Option<Vec<String>> {
        None
    }
}

/// Whether the Docker daemon runs rootless (`docker info` lists the
/// `rootless` security option): then the container's root is the calling
/// host user, as under rootless Podman. `false` when Docker does not answer.
pub fn is_rootless() -> bool {
    Docker::new()
        .command()
        .args(["info", "--format", "{{json .SecurityOptions}}"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("name=rootless")
        })
}
