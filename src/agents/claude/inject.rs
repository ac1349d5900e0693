//! What a sandbox receives for a claude credential. WORK IN PROGRESS.
