//! OpenAI Chat ⇄ Anthropic Messages (wire-format sheet §3): request and response translation,
//! the streaming state machine, error mapping, and the Anthropic-format ingress (Messages API in,
//! any chat model out).

mod ingress;
mod request;
mod response;
mod stream;

pub use ingress::{
    IngressStream, ingress_error_body, ingress_request_to_chat, ingress_response_from_chat,
};
pub use request::request_from_chat;
pub use response::response_to_chat;
pub use stream::ChatStream;

use serde_json::Value;

pub const VERSION: &str = "2023-06-01";

/// Maps an Anthropic error response to the OpenAI shape; 529 (overloaded) becomes 503 so every
/// OpenAI client sees a retryable server error.
pub fn error_to_openai(status: u16, body: &[u8]) -> (u16, Value) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let atype = v
        .pointer("/error/type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    let message = v
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    let status = if status == 529 { 503 } else { status };
    let kind = match atype {
        "invalid_request_error" | "request_too_large" => "invalid_request_error",
        "authentication_error" => "authentication_error",
        "permission_error" => "permission_error",
        "not_found_error" => "not_found_error",
        "rate_limit_error" => "rate_limit_error",
        _ => crate::openai::error_type_for(status),
    };
    (
        status,
        crate::openai::error_body(&message, kind, Some(atype), None),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overloaded_becomes_503() {
        let (s, b) = error_to_openai(
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(s, 503);
        assert_eq!(b["error"]["code"], "overloaded_error");
        assert_eq!(b["error"]["type"], "server_error");
        let (s, b) = error_to_openai(400, br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#);
        assert_eq!(
            (s, b["error"]["message"].as_str()),
            (400, Some("max_tokens: Field required"))
        );
    }
}
