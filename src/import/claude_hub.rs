//! claude-hub: a captured `~/.claude-hub` directory (a copy of a container's
//! `~/.claude` after an interactive login). Only `.credentials.json` (the
//! `claudeAiOauth` login) is taken, as a Claude session; settings, project
//! history and the rest stay where they are.

use super::{Found, Scan, Tool, prepare_value, read_file};
use crate::error::Result;
use crate::vault::Method;

/// The credential file inside the captured directory.
pub const CREDENTIALS: &str = ".credentials.json";

/// Reads `<dir>/.credentials.json`; the directory is `--from`, else
/// `$CLAUDE_HUB_DIR`, else `~/.claude-hub`.
pub fn scan(s: &Scan<'_>) -> Result<Found> {
    let dir = match (&s.from, std::env::var_os("CLAUDE_HUB_DIR")) {
        (Some(p), _) => p.clone(),
        (None, Some(d)) if !d.is_empty() => d.into(),
        _ => s.env.home.join(".claude-hub"),
    };
    let mut found = Found::new(Tool::ClaudeHub, s.show(&dir));
    let file = dir.join(CREDENTIALS);
    let shown = s.show(&file);
    let fix = format!(
        "re-run claude-hub's setup container and finish the login (an interrupted one leaves {CREDENTIALS} empty), or point --from at the captured directory"
    );
    super::require(
        &file,
        &shown,
        "a captured claude-hub login",
        "point --from (or CLAUDE_HUB_DIR) at the directory claude-hub's setup container captured",
    )?;
    let input = read_file(&file, &fix)?;
    let mut item = prepare_value(
        s,
        Tool::ClaudeHub,
        "claude",
        Some(Method::Session),
        input.text,
        &shown,
    )?;
    item.prepared.warnings.extend(input.warnings);
    found.items.push(item);
    let others: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != CREDENTIALS)
                .collect()
        })
        .unwrap_or_default();
    if !others.is_empty() {
        let mut others = others;
        others.sort();
        found.skip(
            others.join(", "),
            s.show(&dir),
            "settings, project history and caches are not credentials: airlock takes only .credentials.json",
        );
    }
    Ok(found)
}
