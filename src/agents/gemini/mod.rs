//! gemini: capture and injection knowledge.

pub mod capture;
pub mod inject;
pub mod refresh;
