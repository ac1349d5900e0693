//! Codex CLI's token refresh (reference `agent-formats.md` §2.4): a JSON
//! `POST` with the CLI's public client id; each token in the response
//! replaces the stored one and `last_refresh` becomes now. Codex itself
//! honours `CODEX_REFRESH_TOKEN_URL_OVERRIDE`; so does airlock.

use jiff::Timestamp;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::agents::refresh::{BadResponse, JSON, TokenEndpoint, json_body, str_field};

/// Codex CLI's public OAuth client id.
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// The `refresh_reason` Codex sends when it refreshes because the access
/// token expires (rather than after a 401).
pub const REFRESH_REASON: &str = "proactive_expiry";

/// Codex's token endpoint.
pub static ENDPOINT: TokenEndpoint = TokenEndpoint {
    agent: "codex",
    url: "https://auth.openai.com/oauth/token",
    url_env: &[
        "AIRLOCK_CODEX_TOKEN_URL",
        "CODEX_REFRESH_TOKEN_URL_OVERRIDE",
    ],
    content_type: JSON,
    body,
    apply,
};

fn body(doc: &Map<String, Value>) -> Option<Zeroizing<String>> {
    let t = doc.get("tokens")?.as_object()?;
    let rt = str_field(t, "refresh_token")?;
    Some(json_body(&[
        ("client_id", CLIENT_ID),
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        // what Codex 0.169 itself sends for a refresh before expiry
        // (observed against the mock server, tests/sync_refresh.rs)
        ("refresh_reason", REFRESH_REASON),
    ]))
}

fn apply(
    doc: &Map<String, Value>,
    resp: &Map<String, Value>,
    now: Timestamp,
) -> Result<Map<String, Value>, BadResponse> {
    if str_field(resp, "access_token").is_none() {
        return Err(BadResponse("no access_token"));
    }
    let mut out = doc.clone();
    let mut t = out
        .get("tokens")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for k in ["id_token", "access_token", "refresh_token"] {
        if let Some(v) = str_field(resp, k) {
            t.insert(k.into(), Value::String(v.to_owned()));
        }
    }
    out.insert("tokens".into(), Value::Object(t));
    out.insert("last_refresh".into(), Value::String(now.to_string()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn body_and_apply() {
        let doc = obj(json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
            "tokens": {"id_token": "i", "access_token": "a", "refresh_token": "r1", "account_id": "acc"},
            "last_refresh": "2026-01-01T00:00:00Z", "extra": true}));
        let b: Value = serde_json::from_str(&body(&doc).unwrap()).unwrap();
        assert_eq!(
            b,
            json!({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": "r1",
                "refresh_reason": "proactive_expiry"})
        );
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let resp = obj(json!({"access_token": "a2", "refresh_token": "r2"}));
        let out = apply(&doc, &resp, now).unwrap();
        assert_eq!(out["tokens"]["access_token"], "a2");
        assert_eq!(out["tokens"]["refresh_token"], "r2");
        assert_eq!(out["tokens"]["id_token"], "i", "absent fields are kept");
        assert_eq!(out["tokens"]["account_id"], "acc");
        assert_eq!(out["last_refresh"], now.to_string());
        assert_eq!(out["extra"], true);
        assert_eq!(
            apply(&doc, &obj(json!({"refresh_token": "r"})), now).unwrap_err(),
            BadResponse("no access_token")
        );
    }
}
