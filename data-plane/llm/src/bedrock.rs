//! OpenAI Chat ⇄ AWS Bedrock Converse / ConverseStream (§5). Signing (SigV4, IO-adjacent and
//! built on the `aws-sigv4` crate) lives in the data plane; this module is pure.

mod request;
mod response;
mod stream;

pub use request::request_from_chat;
pub use response::response_to_chat;
pub use stream::ChatStream;

use serde_json::Value;

/// `/model/{modelId}/converse[-stream]` with the model id as ONE percent-encoded segment
/// (`:` → `%3A`, `/` → `%2F`; edge 14).
pub fn path(model_id: &str, stream: bool) -> String {
    let mut enc = String::with_capacity(model_id.len() + 8);
    for b in model_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!(
        "/model/{enc}/{}",
        if stream {
            "converse-stream"
        } else {
            "converse"
        }
    )
}

/// Maps a Bedrock error (status, `x-amzn-ErrorType`, body) to the OpenAI shape.
pub fn error_to_openai(status: u16, error_type: Option<&str>, body: &[u8]) -> (u16, Value) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    let etype = error_type
        .map(|t| t.split(':').next().unwrap_or(t).to_string())
        .or_else(|| {
            v.get("__type")
                .and_then(Value::as_str)
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
        })
        .unwrap_or_default();
    let status = match etype.as_str() {
        "UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException" => {
            401
        }
        "ThrottlingException" | "ModelNotReadyException" => 429,
        _ => status,
    };
    (
        status,
        crate::openai::error_body(
            &message,
            crate::openai::error_type_for(status),
            (!etype.is_empty()).then_some(etype.as_str()),
            None,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_14_model_ids_are_one_segment() {
        assert_eq!(
            path("anthropic.claude-3-haiku-20240307-v1:0", false),
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        assert_eq!(
            path(
                "arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.x-v1:0",
                true
            ),
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.anthropic.x-v1%3A0/converse-stream"
        );
        let (s, b) = error_to_openai(
            400,
            Some("ValidationException:http://internal.amazon.com/coral"),
            br#"{"message":"A conversation must alternate"}"#,
        );
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (400, Some("ValidationException"))
        );
        let (s, _) = error_to_openai(403, Some("InvalidSignatureException"), b"{}");
        assert_eq!(s, 401);
    }
}
