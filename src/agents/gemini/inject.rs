//! What a sandbox receives for a gemini credential. WORK IN PROGRESS.
