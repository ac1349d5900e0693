//! What a sandbox receives for a codex credential. WORK IN PROGRESS.
