//! headjack: keyring entries of the service `com.headjack.cli`.

use super::{Found, Scan, Tool};
use crate::error::Result;

/// headjack's keyring service name.
pub const SERVICE: &str = "com.headjack.cli";

/// Reads headjack's keyring entries.
pub fn scan(_s: &Scan<'_>) -> Result<Found> {
    Ok(Found::new(Tool::Headjack, SERVICE.into()))
}
