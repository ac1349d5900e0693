//! Just enough JSON Web Token handling to check a token's shape and read its
//! expiry. Signatures are **not** verified: airlock only needs the claims the
//! agents themselves read (`exp`, an e-mail for display), and a token that
//! is not JWT-shaped is rejected before it is stored because the agent would
//! refuse it too (Codex fails to load an `id_token` that is not a JWT).

use base64::Engine as _;
use jiff::Timestamp;
use serde_json::{Map, Value};

/// Why a string is not a usable JWT. The messages never include the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three non-empty parts separated by dots.
    #[error("is not a JWT (expected three non-empty parts separated by dots)")]
    Shape,
    /// The middle part is not base64url.
    #[error("is not a JWT (its payload is not base64url)")]
    Base64,
    /// The payload is not a JSON object.
    #[error("is not a JWT (its payload is not a JSON object)")]
    Json,
}

/// The decoded payload (claims) of a JWT-shaped string.
pub fn claims(token: &str) -> Result<Map<String, Value>, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(JwtError::Shape);
    }
    // Padding is optional in JWTs; accept both forms.
    let payload = parts[1].trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Base64)?;
    let zeroizing = zeroize::Zeroizing::new(bytes);
    match serde_json::from_slice::<Value>(&zeroizing) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwtError::Json),
    }
}

/// The `exp` claim (seconds since the epoch), if present and sane.
pub fn expiry(claims: &Map<String, Value>) -> Option<Timestamp> {
    let secs = claims.get("exp")?.as_i64()?;
    Timestamp::from_second(secs).ok()
}

/// The `email` claim, falling back to OpenAI's profile namespace.
pub fn email(claims: &Map<String, Value>) -> Option<String> {
    claims
        .get("email")
        .or_else(|| {
            claims
                .get("https://api.openai.com/profile")
                .and_then(|p| p.get("email"))
        })
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The ChatGPT account (workspace) id in OpenAI's auth namespace
/// (`https://api.openai.com/auth` → `chatgpt_account_id`), which Codex
/// sends as `chatgpt-account-id`.
pub fn chatgpt_account(claims: &Map<String, Value>) -> Option<String> {
    claims
        .get("https://api.openai.com/auth")?
        .get("chatgpt_account_id")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Builds an unsigned JWT-shaped string from claims (tests and fixtures).
pub fn fake(claims: &Value) -> String {
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        enc.encode(br#"{"alg":"none","typ":"JWT"}"#),
        enc.encode(claims.to_string()),
        enc.encode(b"fake-signature")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp_and_email() {
        let t = fake(&serde_json::json!({"exp": 1_800_000_000, "email": "a@example.com"}));
        let c = claims(&t).unwrap();
        assert_eq!(expiry(&c).unwrap().as_second(), 1_800_000_000);
        assert_eq!(email(&c).as_deref(), Some("a@example.com"));
    }

    #[test]
    fn shapes_are_checked() {
        assert_eq!(claims("notajwt"), Err(JwtError::Shape));
        assert_eq!(claims("a..c"), Err(JwtError::Shape));
        assert_eq!(claims("a.b.c.d"), Err(JwtError::Shape));
        assert_eq!(claims("a.!!!.c"), Err(JwtError::Base64));
        // "e30" is "{}": Codex accepts "a.e30.c", so do we.
        assert!(claims("a.e30.c").unwrap().is_empty());
        // "WzFd" is "[1]": valid base64 and JSON, but not an object.
        assert_eq!(claims("a.WzFd.c"), Err(JwtError::Json));
    }
}
