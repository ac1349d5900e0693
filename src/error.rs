//! airlock's error type and the documented exit codes.
//!
//! Every error says what is wrong and what to do next, and never contains a
//! secret value. The exit code of each variant is listed in `docs/cli.md`;
//! keep the two in step (a unit test below pins the numbers).

use std::path::{Path, PathBuf};

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Process exit codes. Stable: scripts depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// An unexpected failure (I/O error and the like).
    Failure = 1,
    /// The command line was wrong.
    Usage = 2,
    /// The vault is locked: no passphrase available, or a wrong one.
    Locked = 3,
    /// The vault file is corrupt, truncated, tampered with, or of an unknown version.
    Corrupt = 4,
    /// A file airlock relies on is unsafe: permissions, owner or a symlink.
    Unsafe = 5,
    /// The credential or account asked for does not exist.
    NotFound = 6,
    /// A credential was rejected by validation; nothing was stored.
    Invalid = 7,
    /// The container engine failed or is missing.
    Engine = 8,
    /// `--require-auth` was given and an agent has no usable credential.
    NoAuth = 9,
    /// The selected storage backend cannot be reached.
    Backend = 10,
    /// A check (`doctor`, `verify`) found problems.
    CheckFailed = 11,
    /// Sync mode cannot work with this sandbox: the container could not
    /// hand a refreshed session back (`airlock run --rotation sync`).
    SyncRefused = 12,
}

impl ExitCode {
    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Everything that can go wrong in airlock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Wrong command-line usage that clap could not catch.
    #[error("{0}")]
    Usage(String),

    /// The vault needs a passphrase and none could be obtained.
    #[error(
        "the vault at {path} is locked and no passphrase is available: set AIRLOCK_KEYRING_PASSWORD or run airlock in a terminal to be prompted"
    )]
    NoPassphrase {
        /// The vault file.
        path: PathBuf,
    },

    /// The passphrase does not open the vault.
    #[error(
        "wrong passphrase for the vault at {path}: the file is intact but this passphrase does not open it; check AIRLOCK_KEYRING_PASSWORD or type it again"
    )]
    WrongPassphrase {
        /// The vault file.
        path: PathBuf,
    },

    /// The vault file is damaged or was modified outside airlock.
    #[error(
        "the vault at {path} is damaged or was tampered with ({detail}); it was left as it is: restore it from a backup, or move it away and store the credentials again"
    )]
    Corrupt {
        /// The vault file.
        path: PathBuf,
        /// What exactly failed (never secret).
        detail: String,
    },

    /// The vault file was written by a newer (or unknown) airlock.
    #[error(
        "the vault at {path} has format version {found}, but this airlock reads version {supported}: upgrade airlock (the file was left as it is)"
    )]
    UnsupportedVersion {
        /// The vault file.
        path: PathBuf,
        /// The version found in the file.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },

    /// A file or directory is not safe to trust with secrets.
    #[error("refusing to use {path}: {problem}; {fix}")]
    Unsafe {
        /// The offending path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },

    /// The thing asked for does not exist.
    #[error("{what} not found; {fix}")]
    NotFound {
        /// What was looked up.
        what: String,
        /// What to do.
        fix: String,
    },

    /// A credential failed validation.
    #[error("{problem}; {fix}")]
    Invalid {
        /// What is wrong (never the value).
        problem: String,
        /// What to do.
        fix: String,
    },

    /// The container engine failed.
    #[error("{0}")]
    Engine(String),

    /// `--require-auth` and an agent without a credential.
    #[error("{0}")]
    NoAuth(String),

    /// The storage backend is unreachable or refused.
    #[error("the {backend} backend is unavailable: {detail}; {fix}")]
    Backend {
        /// Backend name.
        backend: String,
        /// What failed.
        detail: String,
        /// What to do.
        fix: String,
    },

    /// A secret reference (`file:`, `env:`, `cmd:`) could not be resolved:
    /// the source behind it is unreachable (docs/secret-refs.md).
    #[error("the secret reference {reference} could not be resolved: {detail}; {fix}")]
    SecretRef {
        /// The reference (never a value).
        reference: String,
        /// What failed.
        detail: String,
        /// What to do.
        fix: String,
    },

    /// A check found problems (already reported).
    #[error("{0}")]
    CheckFailed(String),

    /// Sync mode refused for a sandbox whose write-back cannot work
    /// (docs/sandbox.md): nothing was started.
    #[error("{problem}; {fix}")]
    SyncRefused {
        /// Why the write-back cannot work.
        problem: String,
        /// What to do.
        fix: String,
    },

    /// An I/O operation failed on a path.
    #[error("could not {op} {path}: {source}")]
    Io {
        /// What we were doing ("read", "write", "create directory", …).
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::NoPassphrase { .. } | Error::WrongPassphrase { .. } => ExitCode::Locked,
            Error::Corrupt { .. } | Error::UnsupportedVersion { .. } => ExitCode::Corrupt,
            Error::Unsafe { .. } => ExitCode::Unsafe,
            Error::NotFound { .. } => ExitCode::NotFound,
            Error::Invalid { .. } => ExitCode::Invalid,
            Error::Engine(_) => ExitCode::Engine,
            Error::NoAuth(_) => ExitCode::NoAuth,
            Error::Backend { .. } | Error::SecretRef { .. } => ExitCode::Backend,
            Error::CheckFailed(_) => ExitCode::CheckFailed,
            Error::SyncRefused { .. } => ExitCode::SyncRefused,
            Error::Io { .. } | Error::Other(_) => ExitCode::Failure,
        }
    }

    /// Shorthand for an I/O error on a path.
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Shorthand for a validation error.
    pub fn invalid(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Invalid {
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// Shorthand for an unsafe-path error.
    pub fn unsafe_path(path: &Path, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Unsafe {
            path: path.to_path_buf(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_stable() {
        // docs/cli.md lists these numbers; scripts depend on them.
        let table = [
            (ExitCode::Ok, 0),
            (ExitCode::Failure, 1),
            (ExitCode::Usage, 2),
            (ExitCode::Locked, 3),
            (ExitCode::Corrupt, 4),
            (ExitCode::Unsafe, 5),
            (ExitCode::NotFound, 6),
            (ExitCode::Invalid, 7),
            (ExitCode::Engine, 8),
            (ExitCode::NoAuth, 9),
            (ExitCode::Backend, 10),
            (ExitCode::CheckFailed, 11),
            (ExitCode::SyncRefused, 12),
        ];
        for (c, n) in table {
            assert_eq!(c.code(), n, "{c:?}");
        }
    }

    #[test]
    fn errors_map_to_codes() {
        let p = PathBuf::from("/x");
        assert_eq!(
            Error::WrongPassphrase { path: p.clone() }.exit_code(),
            ExitCode::Locked
        );
        assert_eq!(
            Error::UnsupportedVersion {
                path: p.clone(),
                found: 9,
                supported: 1
            }
            .exit_code(),
            ExitCode::Corrupt
        );
        assert_eq!(
            Error::unsafe_path(&p, "mode 0644", "chmod 600").exit_code(),
            ExitCode::Unsafe
        );
    }
}
