//! Claude Code's token refresh (reference `agent-formats.md` §1.8): a JSON
//! `POST` to the token URL with the CLI's public client id; the response's
//! `expires_in` (seconds) sets `expiresAt`, and a missing `refresh_token`
//! keeps the old one, as Claude itself does.

use jiff::Timestamp;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::agents::refresh::{BadResponse, JSON, TokenEndpoint, json_body, str_field};

/// Claude Code's public OAuth client id.
pub const CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";

/// The scopes Claude Code asks for when it refreshes.
pub const SCOPE: &str =
    "user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload";

/// Claude's token endpoint.
pub static ENDPOINT: TokenEndpoint = TokenEndpoint {
    agent: "claude",
    url: "https://platform.claude.com/v1/oauth/token",
    url_env: &["AIRLOCK_CLAUDE_TOKEN_URL"],
    content_type: JSON,
    body,
    apply,
};

fn body(doc: &Map<String, Value>) -> Option<Zeroizing<String>> {
    let o = doc.get("claudeAiOauth")?.as_object()?;
    let rt = str_field(o, "refreshToken")?;
    Some(json_body(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("client_id", CLIENT_ID),
        ("scope", SCOPE),
    ]))
}

fn apply(
    doc: &Map<String, Value>,
    resp: &Map<String, Value>,
    now: Timestamp,
) -> Result<Map<String, Value>, BadResponse> {
    let access = str_field(resp, "access_token").ok_or(BadResponse("no access_token"))?;
    let secs = resp
        .get("expires_in")
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
        .filter(|s| *s > 0)
        .ok_or(BadResponse("no expires_in"))?;
    let mut out = doc.clone();
    let mut o = out
        .get("claudeAiOauth")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    o.insert("accessToken".into(), Value::String(access.to_owned()));
    if let Some(rt) = str_field(resp, "refresh_token") {
        o.insert("refreshToken".into(), Value::String(rt.to_owned()));
    }
    let expires_at = now
        .as_millisecond()
        .saturating_add(secs.saturating_mul(1000));
    o.insert("expiresAt".into(), Value::from(expires_at));
    if let Some(scope) = str_field(resp, "scope") {
        let scopes: Vec<Value> = scope
            .split_whitespace()
            .map(|s| Value::String(s.to_owned()))
            .collect();
        o.insert("scopes".into(), Value::Array(scopes));
    }
    out.insert("claudeAiOauth".into(), Value::Object(o));
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
    fn body_carries_the_refresh_token_and_client_id() {
        let doc = obj(
            json!({"claudeAiOauth": {"accessToken": "a", "refreshToken": "r1", "expiresAt": 1}}),
        );
        let b: Value = serde_json::from_str(&body(&doc).unwrap()).unwrap();
        assert_eq!(b["grant_type"], "refresh_token");
        assert_eq!(b["refresh_token"], "r1");
        assert_eq!(b["client_id"], CLIENT_ID);
        assert!(b["scope"].as_str().unwrap().contains("user:inference"));
        let none = obj(json!({"claudeAiOauth": {"accessToken": "a", "refreshToken": ""}}));
        assert!(body(&none).is_none());
    }

    #[test]
    fn apply_replaces_tokens_and_keeps_the_rest() {
        let doc = obj(
            json!({"claudeAiOauth": {"accessToken": "a", "refreshToken": "r1", "expiresAt": 1,
            "scopes": ["user:inference"], "subscriptionType": "max"}, "mcpOAuth": {"x": 1}}),
        );
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let resp = obj(
            json!({"access_token": "a2", "refresh_token": "r2", "expires_in": 28800,
            "scope": "user:inference user:profile"}),
        );
        let out = apply(&doc, &resp, now).unwrap();
        let o = &out["claudeAiOauth"];
        assert_eq!(o["accessToken"], "a2");
        assert_eq!(o["refreshToken"], "r2");
        assert_eq!(o["expiresAt"], 1_800_000_000_000i64 + 28_800_000);
        assert_eq!(o["subscriptionType"], "max");
        assert_eq!(o["scopes"], json!(["user:inference", "user:profile"]));
        assert_eq!(out["mcpOAuth"], json!({"x": 1}));
        // no refresh_token in the response: the old one stays
        let resp = obj(json!({"access_token": "a3", "expires_in": 60}));
        assert_eq!(
            apply(&doc, &resp, now).unwrap()["claudeAiOauth"]["refreshToken"],
            "r1"
        );
        // unusable responses say which field
        let bad = obj(json!({"expires_in": 60}));
        assert_eq!(
            apply(&doc, &bad, now).unwrap_err(),
            BadResponse("no access_token")
        );
        let bad = obj(json!({"access_token": "a", "expires_in": 0}));
        assert_eq!(
            apply(&doc, &bad, now).unwrap_err(),
            BadResponse("no expires_in")
        );
    }
}
