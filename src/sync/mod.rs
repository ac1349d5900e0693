//! Rotation-safe sessions (issue 5): refreshed OAuth credentials flow back
//! to their source of truth and on to every sandbox of the same account.
//!
//! Design (full text: `docs/rotation.md`): all sandboxes of one account
//! share **one** host directory, bind-mounted as a directory at the agent's
//! config directory, so the agents' own refresh locks and re-reads
//! coordinate them; a host-side watcher (`airlock sync`, inotify) keeps that
//! directory and the source of truth (a vault record or the host agent's
//! file) in step, newest expiry wins, never ping-ponging.
//!
//! | module | what |
//! |---|---|
//! | [`credential`] | parsing, validation, expiry, merge keeping unknown keys (each agent's rules live in its `agents::<agent>::capture::SESSION`) |
//! | [`write`](mod@write) | atomic writes keeping mode/owner, the agents' own write locks |
//! | [`truth`] | the source of truth and compare-and-set writes to it |
//! | [`link`] | vault records that share the host login's token family |
//! | [`engine`] | [`Syncer`]: one account's two-way sync, no watcher |
//! | [`registry`] | registered sandboxes, status files, daemon start |
//! | [`watch`] | the inotify watcher behind `airlock sync` |
//! | [`broker`] | broker mode: the sandboxes get the access token only |
//! | [`demand`] | refresh on demand: the proxy asks the watcher after an upstream 401 |
//!
//! ## For `airlock run`
//!
//! ```text
//! let layout = sync::Layout::new(&paths);
//! let dir = sync::register_sandbox(&layout, Some(vault.backend()), Registration { .. })?;
//! let guard = sync::Guard::new(&layout, Some(vault.backend()), &sandbox_id);
//! // mount `dir` read-write, as a directory, at the agent's config dir
//! sync::ensure_daemon(&layout, &std::env::current_exe()?, &vault.hand_over())?;
//! // … the container runs …
//! guard.finish()?;   // hand-back; removes the dir after the last sandbox (also on drop)
//! ```
//!
//! `sync::report(&layout)` is what `airlock status` shows; `sync::kick`
//! tells the watcher that a vault record changed. Details: `docs/rotation.md` §9.

pub mod broker;
pub mod credential;
pub mod demand;
pub mod engine;
pub mod link;
pub mod refresh;
pub mod registry;
pub mod truth;
pub mod watch;
pub mod write;

pub use credential::{AgentKind, Parsed, Rejection};
pub use engine::{AccountSpec, Outcome, SyncStatus, Syncer};
pub use registry::{
    Freshness, Guard, LOCK_SIGNAL, Layout, Registration, Report, SandboxEntry, await_fresh,
    daemon_running, ensure_daemon, kick, list_sandboxes, register_sandbox, register_sandbox_mode,
    report, set_pid, signal_lock, unregister,
};
pub use truth::Truth;
