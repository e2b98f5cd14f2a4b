//! The OpenAI dialect the proxy emits for translated answers: chunk frames with one stable id,
//! `created` and model, and error bodies with all four keys.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::usage::Usage;

pub fn error_body(message: &str, kind: &str, code: Option<&str>, param: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "code": code, "param": param}})
}

/// The OpenAI error `type` for an HTTP status.
pub fn error_type_for(status: u16) -> &'static str {
    match status {
        400 | 404 | 409 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "server_error",
    }
}

/// Builds `chat.completion.chunk` frames for one response.
#[derive(Debug, Clone)]
pub struct ChunkBuilder {
    pub id: String,
    pub created: i64,
    pub model: String,
    /// `"usage": null` on every chunk when the client asked for usage (as OpenAI does).
    pub include_usage: bool,
}

impl ChunkBuilder {
    pub fn delta(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        crate::sse::encode_data(&c.to_string())
    }

    pub fn usage(&self, u: &Usage) -> Bytes {
        let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model, "choices": [], "usage": u.to_openai_json()});
        crate::sse::encode_data(&c.to_string())
    }

    pub fn done() -> Bytes {
        Bytes::from_static(b"data: [DONE]\n\n")
    }

    pub fn error(message: &str, kind: &str, code: Option<&str>) -> Bytes {
        crate::sse::encode_data(&error_body(message, kind, code, None).to_string())
    }
}

/// Usage from a non-streaming OpenAI response body.
pub fn usage_from_response(body: &Value) -> Option<Usage> {
    body.get("usage").and_then(Usage::from_openai_json)
}
