//! # airlock
//!
//! Gets AI coding agents' credentials (Claude Code, OpenAI Codex CLI, Google
//! Gemini CLI) from a developer's machine into container sandboxes (Docker,
//! Podman): captured once, stored securely, injected when a sandbox starts,
//! and kept valid while the agent runs, without leaking a secret.
//!
//! The crate follows one pipeline, one module per stage:
//!
//! * [`vault`]: storage backends for credential [`vault::Record`]s.
//! * [`resolve`]: picks one credential per agent (vault, host login, secret
//!   file) and builds the [`plan::SandboxPlan`] from the agents' `inject`
//!   modules; [`project`] reads the per-project `.airlock.toml`.
//! * [`sandbox`]: the plan materialized as a host directory plus an
//!   entrypoint shim; [`render`] turns it into engine flags or a compose
//!   override; [`engine`] drives Docker and Podman through their CLIs.
//!
//! * [`capture`]: validating a credential (from stdin, a file, an env var or
//!   the host's login) into a record, and storing it; [`status`]: the
//!   health of what is stored and of the host's logins.
//! * [`login`]: an agent's own login run in a throwaway container, its
//!   credential file captured; [`verify`]: the genuine CLIs asked, inside a
//!   sandbox with airlock's injection, whether they are logged in.
//!
//! The CLI is a thin layer over these modules: every command maps to one
//! or two calls. `docs/library.md` walks through them, and `examples/`
//! holds programs that run (`cargo run --example setup_credential`,
//! `status`, `docker_flags`).
//!
//! Every secret value travels as a [`secret::Secret`], which never prints and
//! is zeroized on drop. Errors ([`error::Error`]) say what to do next and map
//! to documented exit codes.

#![warn(missing_docs)]

pub mod agents;
pub mod capture;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod import;
pub mod login;
pub mod paths;
pub mod plan;
pub mod project;
pub mod proxy;
pub mod render;
pub mod resolve;
pub mod sandbox;
pub mod secret;
pub mod secretref;
pub mod status;
pub mod sync;
pub mod vault;
pub mod verify;

pub use error::{Error, ExitCode, Result};
pub use secret::Secret;
