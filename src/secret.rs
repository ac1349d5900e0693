//! The one type that carries secret values through airlock.
//!
//! [`Secret`] holds a UTF-8 secret (a token, an API key, or a whole credential
//! JSON document). It never prints its value: `Debug` and `Display` show
//! `[redacted]`, and it deliberately does **not** implement `serde::Serialize`,
//! so a secret cannot end up in `--json` output or a log line by accident.
//! Code that must write the value (the vault codecs, the sandbox file writer)
//! calls [`Secret::expose`] or uses [`serde_expose`] explicitly, which makes
//! every such place easy to find with grep. The memory is zeroized on drop.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A secret string. Redacted in `Debug`/`Display`, zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value. The `String` is moved, not copied, so no unzeroized copy
    /// is left behind by this call.
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    /// Builds a secret from bytes, which must be UTF-8. The input is zeroized
    /// whether or not it is valid.
    pub fn from_utf8(bytes: Vec<u8>) -> Result<Self, NotUtf8> {
        match String::from_utf8(bytes) {
            Ok(s) => Ok(Secret::new(s)),
            Err(e) => {
                let mut b = e.into_bytes();
                b.zeroize();
                Err(NotUtf8)
            }
        }
    }

    /// The secret value. Every call site is a place where the secret leaves
    /// this type: keep them few and obvious.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy of the value with surrounding whitespace (a trailing newline
    /// from a file or `echo`) removed.
    pub fn trimmed(&self) -> Secret {
        Secret::new(self.0.trim().to_owned())
    }

    /// A short, non-secret hint for humans: the first characters that name the
    /// kind of token (`sk-ant-oat01-`), never more than 12 characters, and
    /// never more than a third of the value.
    pub fn hint(&self) -> String {
        let v: &str = &self.0;
        let n = (v.len() / 3).min(12);
        let mut end = n;
        while end > 0 && !v.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &v[..end])
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value.to_owned())
    }
}

/// True when `s` looks like a credential (a known token prefix, or long
/// without spaces): an error message about a misplaced value then names the
/// field, never the value.
pub fn looks_like_secret(s: &str) -> bool {
    const PREFIXES: [&str; 9] = [
        "sk-", "sk_", "ya29.", "1//", "rt_", "eyJ", "gho_", "ghp_", "AIza",
    ];
    let t = s.trim();
    PREFIXES.iter().any(|p| t.starts_with(p)) || (t.len() > 64 && !t.contains(' '))
}

/// `s` quoted for an error message, or a placeholder when it, or a word of
/// it (`{sk-ant-…`, `x=AIza…`), [looks like a credential](looks_like_secret).
pub fn shown(s: &str) -> String {
    let word = |c: char| c.is_ascii_alphanumeric() || "._/-+=".contains(c);
    if looks_like_secret(s) || s.split(|c: char| !word(c)).any(looks_like_secret) {
        "(not shown: it looks like a credential)".to_owned()
    } else {
        format!("{s:?}")
    }
}

/// The bytes were not valid UTF-8 (the message does not include them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the secret is not valid UTF-8 text")]
pub struct NotUtf8;

/// Explicit serde support for the few places that must store a secret
/// (`#[serde(with = "airlock::secret::serde_expose")]`). Deserialization
/// errors never include the value.
pub mod serde_expose {
    use super::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes the secret's value.
    pub fn serialize<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(secret.expose())
    }

    /// Deserializes a secret string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Secret::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::from("sk-ant-oat01-CANARY-VALUE");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{:?}", Some(&s)).contains("CANARY"));
    }

    #[test]
    fn hint_never_reveals_much() {
        let s = Secret::from("sk-ant-oat01-ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        assert_eq!(s.hint(), "sk-ant-oat01…");
        assert_eq!(Secret::from("abc").hint(), "a…");
        assert_eq!(Secret::from("").hint(), "…");
        // multi-byte characters never split
        assert_eq!(Secret::from("ééééééé").hint(), "éé…");
    }

    #[test]
    fn non_utf8_is_rejected_without_value() {
        let e = Secret::from_utf8(vec![0xff, 0xfe, b'x']).unwrap_err();
        assert_eq!(e.to_string(), "the secret is not valid UTF-8 text");
    }
}
