//! Proxy mode (`--rotation proxy`, docs/proxy.md): the sandbox holds only a
//! revocable placeholder, and `airlock proxy` on the host swaps it for the
//! real credential on the way to the agent's API.
//!
//! * [`placeholder`]: minting placeholders shaped like the real credential.
//! * [`sandbox`]: what a proxy-mode sandbox gets (the plan side).
//! * [`registry`]: the grants (placeholder hashes → account, sandbox).
//! * [`server`]: the proxy; [`audit`]: its log.

pub mod attach;
pub mod audit;
pub mod daemon;
pub mod placeholder;
pub mod registry;
pub mod sandbox;
pub mod server;
