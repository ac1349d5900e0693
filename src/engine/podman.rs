//! Podman, through the `podman` CLI (honours `CONTAINERS_CONF`, connections
//! and machines).

use std::ffi::OsStr;

use super::{Engine, EngineKind};

/// The Podman engine.
#[derive(Debug, Clone, Default)]
pub struct Podman {
    _private: (),
}

impl Podman {
    /// Uses the `podman` on `PATH`.
    pub fn new() -> Self {
        Podman::default()
    }
}

impl Engine for Podman {
    fn kind(&self) -> EngineKind {
        EngineKind::Podman
    }

    fn program(&self) -> &OsStr {
        OsStr::new("podman")
    }

    /// Podman's `events --until` keeps streaming; `--stream=false` stops at
    /// the end of the log.
    fn past_events_args(&self, label: &str, since: i64) -> Vec<String> {
        vec![
            "events".into(),
            "--stream=false".into(),
            "--since".into(),
            since.to_string(),
            "--filter".into(),
            label.into(),
            "--format".into(),
            "{{.Status}} {{.ID}}".into(),
        ]
    }

    /// Rootless Podman maps the host user to root in the container; to let a
    /// non-root container user read the sandbox directory, map the host user
    /// onto that user instead (`--userns=keep-id:uid=…,gid=…`, Podman ≥ 4.3).
    fn map_host_user(&self, uid: u32, gid: u32) -> Option<Vec<String>> {
        Some(vec![format!("--userns=keep-id:uid={uid},gid={gid}")])
    }

    /// Podman refuses `uid=`/`gid=` tmpfs options but has `U`: chown the
    /// tmpfs to the container's user, whoever that is.
    fn tmpfs_options(&self, _uid: u32, _gid: Option<u32>) -> String {
        "rw,exec,nosuid,nodev,mode=0700,U".into()
    }
}
