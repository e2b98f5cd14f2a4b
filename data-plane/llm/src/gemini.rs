//! OpenAI Chat ⇄ Google Gemini `generateContent` / `streamGenerateContent?alt=sse` (§4).
//!
//! Tool-call ids: Gemini's own `functionCall.id` is kept when it sends one; otherwise an id is
//! derived from the response id, the call's position and name (stable, unique). Thought
//! signatures (which Gemini requires back on the next turn, edge 7) ride inside the OpenAI id as
//! `<id>~ts~<base64url(signature)>`: clients echo ids verbatim, so the signature comes back.

mod request;
mod response;
mod schema;
mod stream;

pub use request::request_from_chat;
pub use response::response_to_chat;
pub use schema::sanitize_schema;
pub use stream::ChatStream;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

const SIG_MARK: &str = "~ts~";
/// Prefix of ids the proxy made up (never sent back to Gemini as `functionCall.id`).
pub const SYNTH_PREFIX: &str = "call_g";

/// The request path for a model.
pub fn path(model: &str, stream: bool) -> String {
    let m = model.strip_prefix("models/").unwrap_or(model);
    if stream {
        format!("/v1beta/models/{m}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{m}:generateContent")
    }
}

pub fn encode_id(base: &str, signature: Option<&str>) -> String {
    match signature {
        Some(s) => format!("{base}{SIG_MARK}{}", URL_SAFE_NO_PAD.encode(s.as_bytes())),
        None => base.to_string(),
    }
}

/// (Gemini id to send back, thought signature).
pub fn decode_id(id: &str) -> (Option<String>, Option<String>) {
    let (base, sig) = match id.split_once(SIG_MARK) {
        Some((b, s)) => (
            b,
            URL_SAFE_NO_PAD
                .decode(s)
                .ok()
                .and_then(|v| String::from_utf8(v).ok()),
        ),
        None => (id, None),
    };
    let gemini_id = (!base.starts_with(SYNTH_PREFIX) && !base.is_empty()).then(|| base.to_string());
    (gemini_id, sig)
}

/// Maps a Gemini error to the OpenAI shape; an invalid key (400 `API_KEY_INVALID`) is a 401.
pub fn error_to_openai(status: u16, body: &[u8]) -> (u16, Value) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    let gstatus = v
        .pointer("/error/status")
        .and_then(Value::as_str)
        .unwrap_or("");
    let invalid_key = v
        .pointer("/error/details")
        .and_then(Value::as_array)
        .is_some_and(|d| {
            d.iter()
                .any(|x| x.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        });
    let status = if status == 400 && invalid_key {
        401
    } else {
        status
    };
    let code = if invalid_key {
        "invalid_api_key"
    } else {
        gstatus
    };
    (
        status,
        crate::openai::error_body(
            &message,
            crate::openai::error_type_for(status),
            (!code.is_empty()).then_some(code),
            None,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_signatures() {
        let id = encode_id("fc_1", Some("CiQB+/sig=="));
        assert_eq!(
            decode_id(&id),
            (Some("fc_1".into()), Some("CiQB+/sig==".into()))
        );
        assert_eq!(decode_id("call_gabc"), (None, None));
        assert_eq!(
            path("models/gemini-2.5-flash", true),
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        let (s, b) = error_to_openai(400, br#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}"#);
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (401, Some("invalid_api_key"))
        );
    }
}
