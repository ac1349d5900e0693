//! Where airlock keeps its files.
//!
//! | what | env override | Linux default | macOS default | Windows default |
//! |---|---|---|---|---|
//! | config (`config.toml`) | `AIRLOCK_CONFIG_DIR` | `$XDG_CONFIG_HOME/airlock` (`~/.config/airlock`) | `~/Library/Application Support/airlock` | `%APPDATA%\airlock` |
//! | data (the vault file) | `AIRLOCK_DATA_DIR` | `$XDG_DATA_HOME/airlock` (`~/.local/share/airlock`) | `~/Library/Application Support/airlock` | `%LOCALAPPDATA%\airlock` |
//! | state (sync state, logs) | `AIRLOCK_STATE_DIR` | `$XDG_STATE_HOME/airlock` (`~/.local/state/airlock`) | `~/Library/Application Support/airlock/state` | `%LOCALAPPDATA%\airlock\state` |
//! | runtime (per-sandbox secrets, tmpfs) | `AIRLOCK_RUNTIME_DIR` | `$XDG_RUNTIME_DIR/airlock`, else `/dev/shm/airlock-<uid>` | `$TMPDIR/airlock-<uid>` | `%TEMP%\airlock` |
//!
//! Tests point every one of these at a temporary directory.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The resolved locations of airlock's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Holds `config.toml`.
    pub config_dir: PathBuf,
    /// Holds the encrypted vault file.
    pub data_dir: PathBuf,
    /// Holds state that is not configuration (sync status, logs, sandboxes).
    pub state_dir: PathBuf,
    /// Holds per-sandbox secret directories; should be a tmpfs.
    pub runtime_dir: PathBuf,
    /// The user's home directory (where agents keep their own files).
    pub home: PathBuf,
}

impl Paths {
    /// Resolves paths from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var_os(k))
    }

    /// Resolves paths with a custom environment lookup (used by tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Result<Self> {
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = nonempty("HOME")
            .or_else(|| nonempty("USERPROFILE"))
            .ok_or_else(|| {
                Error::Other(
                    "cannot find your home directory: set HOME (or the AIRLOCK_*_DIR variables)"
                        .into(),
                )
            })?;
        let (config, data, state, runtime) = platform_defaults(&home, &nonempty);
        Ok(Paths {
            config_dir: nonempty("AIRLOCK_CONFIG_DIR").unwrap_or(config),
            data_dir: nonempty("AIRLOCK_DATA_DIR").unwrap_or(data),
            state_dir: nonempty("AIRLOCK_STATE_DIR").unwrap_or(state),
            runtime_dir: nonempty("AIRLOCK_RUNTIME_DIR").unwrap_or(runtime),
            home,
        })
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// The encrypted vault file.
    pub fn vault_file(&self) -> PathBuf {
        self.data_dir.join("vault.airlock")
    }
}

#[cfg(not(any(target_os = "macos", windows)))]
fn platform_defaults(
    home: &std::path::Path,
    get: &dyn Fn(&str) -> Option<PathBuf>,
) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    // XDG says relative paths in these variables are invalid and must be ignored.
    let xdg = |k: &str, fallback: &str| {
        get(k)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(fallback))
            .join("airlock")
    };
    let runtime = get("XDG_RUNTIME_DIR")
        .filter(|p| p.is_absolute())
        .map(|p| p.join("airlock"))
        .unwrap_or_else(|| PathBuf::from(format!("/dev/shm/airlock-{}", crate::fsutil::euid())));
    (
        xdg("XDG_CONFIG_HOME", ".config"),
        xdg("XDG_DATA_HOME", ".local/share"),
        xdg("XDG_STATE_HOME", ".local/state"),
        runtime,
    )
}

#[cfg(target_os = "macos")]
fn platform_defaults(
    home: &std::path::Path,
    get: &dyn Fn(&str) -> Option<PathBuf>,
) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let base = home.join("Library/Application Support/airlock");
    let tmp = get("TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp"));
    (
        base.clone(),
        base.clone(),
        base.join("state"),
        tmp.join(format!("airlock-{}", crate::fsutil::euid())),
    )
}

#[cfg(windows)]
fn platform_defaults(
    home: &std::path::Path,
    get: &dyn Fn(&str) -> Option<PathBuf>,
) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let roaming = get("APPDATA").unwrap_or_else(|| home.join("AppData/Roaming"));
    let local = get("LOCALAPPDATA").unwrap_or_else(|| home.join("AppData/Local"));
    let tmp = get("TEMP").unwrap_or_else(|| local.join("Temp"));
    (
        roaming.join("airlock"),
        local.join("airlock"),
        local.join("airlock").join("state"),
        tmp.join("airlock"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let m: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn overrides_win() {
        let p = Paths::from_lookup(lookup(&[
            ("HOME", "/home/u"),
            ("AIRLOCK_CONFIG_DIR", "/c"),
            ("AIRLOCK_DATA_DIR", "/d"),
            ("AIRLOCK_STATE_DIR", "/s"),
            ("AIRLOCK_RUNTIME_DIR", "/r"),
        ]))
        .unwrap();
        assert_eq!(p.config_file(), PathBuf::from("/c/config.toml"));
        assert_eq!(p.vault_file(), PathBuf::from("/d/vault.airlock"));
        assert_eq!(p.state_dir, PathBuf::from("/s"));
        assert_eq!(p.runtime_dir, PathBuf::from("/r"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn xdg_defaults_and_relative_values_ignored() {
        let p = Paths::from_lookup(lookup(&[
            ("HOME", "/home/u"),
            ("XDG_CONFIG_HOME", "relative/ignored"),
            ("XDG_DATA_HOME", "/xd"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]))
        .unwrap();
        assert_eq!(p.config_dir, PathBuf::from("/home/u/.config/airlock"));
        assert_eq!(p.data_dir, PathBuf::from("/xd/airlock"));
        assert_eq!(p.state_dir, PathBuf::from("/home/u/.local/state/airlock"));
        assert_eq!(p.runtime_dir, PathBuf::from("/run/user/1000/airlock"));
    }

    #[test]
    fn missing_home_is_a_clear_error() {
        let e = Paths::from_lookup(lookup(&[])).unwrap_err();
        assert!(e.to_string().contains("set HOME"));
    }
}
