//! The data plane's one error type: what went wrong, whose fault it is (client, upstream,
//! gateway) and whether another attempt could succeed. Rendered once, as OpenAI-shaped JSON:
//! `{"error": {"message", "type", "code", "param"}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Upstream,
    Gateway,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    pub status: StatusCode,
    /// OpenAI `type`: invalid_request_error, authentication_error, permission_error, not_found_error, rate_limit_error, server_error…
    pub kind: &'static str,
    /// OpenAI `code`, machine-readable.
    pub code: Option<String>,
    pub message: String,
    pub param: Option<String>,
    pub fault: Fault,
    /// Another attempt (elsewhere, or later) could succeed.
    pub retryable: bool,
    pub retry_after: Option<u64>,
}

impl ProxyError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: &str,
        message: impl Into<String>,
        fault: Fault,
    ) -> ProxyError {
        ProxyError {
            status,
            kind,
            code: Some(code.to_string()),
            message: message.into(),
            param: None,
            fault,
            retryable: false,
            retry_after: None,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> ProxyError {
        ProxyError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
            Fault::Client,
        )
    }

    pub fn invalid_param(param: &str, message: impl Into<String>) -> ProxyError {
        ProxyError {
            param: Some(param.to_string()),
            ..ProxyError::bad_request("invalid_value", message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ProxyError {
        ProxyError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            message,
            Fault::Client,
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ProxyError {
        ProxyError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "permission_denied",
            message,
            Fault::Client,
        )
    }

    pub fn model_not_found(model: &str) -> ProxyError {
        ProxyError {
            param: Some("model".into()),
            ..ProxyError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!(
                    "The model `{model}` does not exist or no configured provider can serve it."
                ),
                Fault::Client,
            )
        }
    }

    pub fn too_large(limit: usize) -> ProxyError {
        ProxyError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("Request body exceeds the limit of {limit} bytes."),
            Fault::Client,
        )
    }

    pub fn not_ready() -> ProxyError {
        ProxyError {
            retryable: true,
            retry_after: Some(1),
            ..ProxyError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "not_ready",
                "This proxy node has no configuration yet; retry shortly.",
                Fault::Gateway,
            )
        }
    }

    pub fn upstream(
        status: StatusCode,
        code: &str,
        message: impl Into<String>,
        retryable: bool,
    ) -> ProxyError {
        ProxyError {
            retryable,
            ..ProxyError::new(status, "server_error", code, message, Fault::Upstream)
        }
    }

    pub fn gateway(message: impl Into<String>) -> ProxyError {
        ProxyError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            message,
            Fault::Gateway,
        )
    }

    pub fn body_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"message": self.message, "type": self.kind, "code": self.code, "param": self.param}})
    }

    pub fn body_bytes(&self) -> Bytes {
        Bytes::from(self.body_json().to_string())
    }

    /// The same error as an in-stream SSE event (after a 200 went out).
    pub fn sse_event(&self) -> Bytes {
        Bytes::from(format!("data: {}\n\n", self.body_json()))
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.body_bytes(),
        )
            .into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert("retry-after", v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape_has_all_four_keys() {
        let e = ProxyError::model_not_found("gpt-9");
        let j = e.body_json();
        assert_eq!(j["error"]["code"], "model_not_found");
        assert_eq!(j["error"]["param"], "model");
        assert_eq!(j["error"]["type"], "invalid_request_error");
        let j = ProxyError::unauthorized("x").body_json();
        assert!(j["error"].as_object().unwrap().contains_key("param"));
        assert!(ProxyError::not_ready().sse_event().starts_with(b"data: {"));
    }
}
