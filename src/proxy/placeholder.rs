//! Placeholder credentials for proxy mode (`--rotation proxy`,
//! docs/proxy.md): what a sandbox holds instead of the real credential.
//!
//! A placeholder is random (192 bits from the OS), shaped like the real
//! credential so the genuine CLI accepts it (`sk-ant-oat01-…` for a Claude
//! OAuth token, `sk-ant-api03-…` for an Anthropic key, `sk-proj-…` for an
//! OpenAI key, `AIza…` for a Gemini key, `ya29.…` for the access token of
//! a Gemini Google login, JWT-shaped tokens in a Codex ChatGPT `auth.json`), and worthless anywhere but at airlock's proxy,
//! which keeps only its SHA-256 ([`hash`]) and refuses it once the sandbox
//! is gone or revoked.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::vault::{Method, Record};

/// Marks every placeholder, so a leaked one is recognisable as airlock's.
pub const MARK: &str = "airlock";

/// A freshly minted placeholder for one sandbox and one credential.
#[derive(Debug)]
pub struct Minted {
    /// What the agent sends in its requests (and the proxy looks up).
    pub token: Secret,
    /// The record the sandbox's injection is planned from: the real
    /// record's id and settings, with the placeholder as its secret.
    pub record: Record,
}

/// The proxy's key for a placeholder: lowercase hex SHA-256.
pub fn hash(placeholder: &str) -> String {
    hash_hex(placeholder)
        .iter()
        .map(|&b| char::from(b))
        .collect()
}

/// [`hash`]'s ASCII bytes, without an allocation (per request).
pub fn hash_hex(placeholder: &str) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = Sha256::digest(placeholder.as_bytes());
    // per request: a table, not 32 `format!` calls
    let mut s = [0u8; 64];
    for (i, b) in d.iter().enumerate() {
        s[2 * i] = HEX[usize::from(b >> 4)];
        s[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    s
}

/// `n` random bytes as unpadded base64url.
fn random(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| Error::Other(format!("no randomness from the OS: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(&b))
}

/// Mints a placeholder standing in for `real`.
pub fn mint(real: &Record) -> Result<Minted> {
    let agent = real.id.agent.as_str();
    let unsupported = || {
        Error::Usage(format!(
            "--rotation proxy cannot stand in for {} ({} {}): it serves Claude (OAuth token, session or API key), Codex (API key or ChatGPT session) and Gemini (API key or Google login); use another --rotation for this one",
            real.id,
            agent,
            real.method.as_str()
        ))
    };
    let (token, method, secret) = match (agent, real.method) {
        ("claude", Method::SetupToken | Method::Session) => {
            let t = format!("sk-ant-oat01-{MARK}-{}", random(24)?);
            (t.clone(), Method::SetupToken, t)
        }
        ("claude", Method::ApiKey) => {
            let t = format!("sk-ant-api03-{MARK}-{}", random(24)?);
            (t.clone(), Method::ApiKey, t)
        }
        ("codex", Method::ApiKey) => {
            let t = format!("sk-proj-{MARK}-{}", random(24)?);
            (t.clone(), Method::ApiKey, t)
        }
        ("codex", Method::Session) => {
            let access = jwt(&json!({ "exp": FAR_FUTURE, MARK: random(24)? }));
            let doc = codex_session(real, &access)?;
            (access, Method::Session, doc)
        }
        ("gemini", Method::ApiKey) if !crate::agents::gemini::inject::uses_vertex(real) => {
            // Google API keys: "AIza" and 35 URL-safe characters
            let mut r = random(27)?;
            r.truncate(35);
            let t = format!("AIza{r}");
            (t.clone(), Method::ApiKey, t)
        }
        ("gemini", Method::Session) => {
            // a Google OAuth access token: `ya29.` and URL-safe characters;
            // the CLI sends it as is (GOOGLE_CLOUD_ACCESS_TOKEN)
            let t = format!("ya29.{MARK}-{}", random(24)?);
            (t.clone(), Method::Session, t)
        }
        _ => return Err(unsupported()),
    };
    let mut record = real.clone();
    record.method = method;
    record.secret = Secret::new(secret);
    Ok(Minted {
        token: Secret::new(token),
        record,
    })
}

/// 2100-01-01: a placeholder session never looks due for a refresh.
const FAR_FUTURE: i64 = 4_102_444_800;

/// An unsigned JWT (`alg: none`) with `claims`: the shape Codex parses.
fn jwt(claims: &serde_json::Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let c = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    format!("{h}.{c}.{MARK}")
}

/// A Codex ChatGPT `auth.json` whose tokens are placeholders: the identity
/// claims Codex shows (email, plan, account) are copied from the real
/// session's id token; every token is new and unsigned.
fn codex_session(real: &Record, access: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(real.secret.expose())
        .map_err(|_| Error::Usage(format!("the stored session {} is not JSON", real.id)))?;
    let tokens = &v["tokens"];
    let account = tokens["account_id"].as_str().unwrap_or_default();
    let real_claims = tokens["id_token"]
        .as_str()
        .and_then(|t| t.split('.').nth(1))
        .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_default();
    let auth = &real_claims["https://api.openai.com/auth"];
    let id_claims = json!({
        "email": real_claims["email"],
        "exp": FAR_FUTURE,
        "https://api.openai.com/auth": {
            "chatgpt_plan_type": auth["chatgpt_plan_type"],
            "chatgpt_account_id": if account.is_empty() { auth["chatgpt_account_id"].clone() } else { json!(account) },
            "chatgpt_user_id": auth["chatgpt_user_id"],
        },
    });
    let doc = json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": jwt(&id_claims),
            "access_token": access,
            "refresh_token": format!("rt-{MARK}-{}", random(24)?),
            "account_id": account,
        },
        "last_refresh": jiff::Timestamp::now().to_string(),
    });
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::{CredentialId, Metadata};

    fn rec(agent: &str, method: Method, secret: &str) -> Record {
        Record {
            id: CredentialId::parse(agent).unwrap(),
            method,
            secret: Secret::new(secret.to_owned()),
            meta: Metadata::new("stdin"),
        }
    }

    #[test]
    fn shapes_are_what_the_clis_accept_and_never_repeat() {
        let cases = [
            (
                "claude",
                Method::SetupToken,
                "sk-ant-oat01-REAL",
                "sk-ant-oat01-airlock-",
            ),
            (
                "claude",
                Method::ApiKey,
                "sk-ant-api03-REAL",
                "sk-ant-api03-airlock-",
            ),
            ("codex", Method::ApiKey, "sk-proj-REAL", "sk-proj-airlock-"),
            ("gemini", Method::ApiKey, "AIzaREAL", "AIza"),
            (
                "gemini",
                Method::Session,
                r#"{"oauth_creds":{"access_token":"ya29.REAL","refresh_token":"1//REAL"}}"#,
                "ya29.airlock-",
            ),
        ];
        for (agent, method, real, prefix) in cases {
            let a = mint(&rec(agent, method, real)).unwrap();
            let b = mint(&rec(agent, method, real)).unwrap();
            assert!(a.token.expose().starts_with(prefix), "{agent}");
            assert_ne!(a.token.expose(), b.token.expose());
            assert!(!a.record.secret.expose().contains("REAL"));
            assert!(a.token.expose().len() >= prefix.len() + 32 || agent == "gemini");
        }
        let g = mint(&rec("gemini", Method::ApiKey, "AIzaREAL")).unwrap();
        assert_eq!(g.token.expose().len(), 39);
    }

    #[test]
    fn a_claude_session_becomes_an_oauth_token() {
        let real = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-REAL","refreshToken":"sk-ant-ort01-REAL","expiresAt":1}}"#;
        let m = mint(&rec("claude", Method::Session, real)).unwrap();
        assert_eq!(m.record.method, Method::SetupToken);
        assert!(!m.record.secret.expose().contains("REAL"));
    }

    #[test]
    fn a_codex_session_keeps_identity_and_drops_every_token() {
        let claims = URL_SAFE_NO_PAD.encode(
            br#"{"email":"a@example.com","https://api.openai.com/auth":{"chatgpt_plan_type":"pro","chatgpt_account_id":"acc"}}"#,
        );
        let real = format!(
            r#"{{"auth_mode":"chatgpt","tokens":{{"id_token":"h.{claims}.REALSIG","access_token":"REAL-AT","refresh_token":"REAL-RT","account_id":"acc"}}}}"#
        );
        let m = mint(&rec("codex", Method::Session, &real)).unwrap();
        let doc = m.record.secret.expose();
        assert!(!doc.contains("REAL"), "{}", doc.len());
        let v: serde_json::Value = serde_json::from_str(doc).unwrap();
        assert_eq!(v["tokens"]["access_token"], m.token.expose());
        assert_eq!(v["tokens"]["account_id"], "acc");
        let id = v["tokens"]["id_token"].as_str().unwrap();
        let c: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(id.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(c["email"], "a@example.com");
        assert_eq!(c["https://api.openai.com/auth"]["chatgpt_plan_type"], "pro");
    }

    #[test]
    fn unsupported_credentials_are_refused() {
        let mut vertex = rec("gemini", Method::ApiKey, "AIzaREAL");
        vertex.meta.settings.insert("vertex".into(), "true".into());
        let e = mint(&vertex).unwrap_err();
        assert!(e.to_string().contains("--rotation proxy cannot stand in"));
        let e = mint(&rec("codex", Method::SetupToken, "x")).unwrap_err();
        assert!(e.to_string().contains("codex setup-token"), "{e}");
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
