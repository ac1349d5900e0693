//! Gemini CLI's token refresh: Google's OAuth token endpoint, a
//! form-encoded `POST` (`grant_type=refresh_token`) with the CLI's
//! installed-app client. Google answers with a new `access_token`,
//! `expires_in` (seconds, about an hour) and usually an `id_token`; it does
//! not rotate refresh tokens, so the stored one is kept (a new one, should
//! Google ever send it, replaces it). The document is the bare
//! `oauth_creds.json` (`expiry_date` in epoch ms); unknown keys are kept.

use jiff::Timestamp;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::agents::refresh::{BadResponse, FORM, TokenEndpoint, form_body, str_field};

/// Gemini CLI's OAuth client id: the published "installed application"
/// client of Gemini CLI (`OAUTH_CLIENT_ID` in `@google/gemini-cli`'s bundle,
/// 0.61, `bundle/chunk-*.js`, and in its source, `packages/core/src/code_assist/oauth2.ts`).
/// Not a secret: Google's installed-app flow publishes it with every copy.
pub const CLIENT_ID: &str =
    "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com";

/// Gemini CLI's OAuth client "secret" (`OAUTH_CLIENT_SECRET`, same place).
/// Installed-app clients cannot keep a secret; Google documents this value
/// as not confidential, and the CLI ships it in the clear. It identifies the
/// client at the token endpoint; it grants nothing without a refresh token.
pub const CLIENT_SECRET: &str = "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";

/// Google's token endpoint (what Gemini CLI's `google-auth-library` uses).
pub static ENDPOINT: TokenEndpoint = TokenEndpoint {
    agent: "gemini",
    url: "https://oauth2.googleapis.com/token",
    url_env: &["AIRLOCK_GEMINI_TOKEN_URL"],
    content_type: FORM,
    body,
    apply,
};

fn body(doc: &Map<String, Value>) -> Option<Zeroizing<String>> {
    let rt = str_field(doc, "refresh_token")?;
    Some(form_body(&[
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
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
    out.insert("access_token".into(), Value::String(access.to_owned()));
    let expiry = now
        .as_millisecond()
        .saturating_add(secs.saturating_mul(1000));
    out.insert("expiry_date".into(), Value::from(expiry));
    for k in ["refresh_token", "id_token", "scope", "token_type"] {
        if let Some(v) = str_field(resp, k) {
            out.insert(k.into(), Value::String(v.to_owned()));
        }
    }
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
    fn body_is_a_form_with_the_installed_app_client() {
        let doc =
            obj(json!({"access_token": "ya29.a", "refresh_token": "1//r+x/y=", "expiry_date": 1}));
        let b = body(&doc).unwrap();
        assert_eq!(
            b.as_str(),
            format!(
                "client_id={}&client_secret={}&grant_type=refresh_token&refresh_token=1%2F%2Fr%2Bx%2Fy%3D",
                CLIENT_ID, CLIENT_SECRET
            )
        );
        assert_eq!(ENDPOINT.content_type, FORM);
        assert!(body(&obj(json!({"access_token": "a", "refresh_token": ""}))).is_none());
    }

    #[test]
    fn apply_renews_the_access_token_and_keeps_the_rest() {
        let doc = obj(json!({"access_token": "ya29.old", "refresh_token": "1//rt",
            "scope": "openid", "token_type": "Bearer", "id_token": "old.id.t",
            "expiry_date": 1, "extra": {"x": 1}}));
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let resp = obj(json!({"access_token": "ya29.new", "expires_in": 3599,
            "id_token": "new.id.t", "token_type": "Bearer"}));
        let out = apply(&doc, &resp, now).unwrap();
        assert_eq!(out["access_token"], "ya29.new");
        assert_eq!(out["expiry_date"], 1_800_000_000_000i64 + 3_599_000);
        assert_eq!(out["id_token"], "new.id.t");
        assert_eq!(
            out["refresh_token"], "1//rt",
            "Google does not rotate: kept"
        );
        assert_eq!(out["scope"], "openid");
        assert_eq!(out["extra"], json!({"x": 1}));
        // a refresh token in the answer replaces the old one
        let resp = obj(json!({"access_token": "a", "expires_in": 60, "refresh_token": "1//rt2"}));
        assert_eq!(apply(&doc, &resp, now).unwrap()["refresh_token"], "1//rt2");
        // the result is a session sync accepts
        let bytes = serde_json::to_vec(&Value::Object(out)).unwrap();
        let p = crate::sync::credential::parse(crate::sync::AgentKind::Gemini, &bytes).unwrap();
        assert_eq!(p.expiry.as_millisecond(), 1_800_000_000_000i64 + 3_599_000);
        // unusable answers say which field
        assert_eq!(
            apply(&doc, &obj(json!({"expires_in": 60})), now).unwrap_err(),
            BadResponse("no access_token")
        );
        assert_eq!(
            apply(&doc, &obj(json!({"access_token": "a"})), now).unwrap_err(),
            BadResponse("no expires_in")
        );
    }
}
