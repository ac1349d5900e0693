//! Capturing codex credentials. WORK IN PROGRESS.

use crate::agents::HostEnv;
use crate::error::Result;
use crate::vault::Record;

/// The host's codex login, if any (see [`crate::agents::host_login`]).
pub fn host_login(_env: &HostEnv) -> Result<Option<Record>> {
    Ok(None)
}
