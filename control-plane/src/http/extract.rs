//! Request extraction with the API's error shape: who is calling (API key or session, with CSRF
//! on state-changing session requests), and JSON bodies with precise 400/413/415 errors.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};
use crate::service::auth::{self, Principal, Session};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "aiproxy_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The authenticated caller.
pub struct Caller {
    pub principal: Principal,
    pub session: Option<Session>,
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    header_cookie(&parts.headers, name)
}

/// A cookie's value from the request's `Cookie` headers.
pub fn header_cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Caller, ApiError> {
        if let Some(token) = bearer(parts) {
            let principal = auth::authenticate_api_key(st, token).await?;
            return Ok(Caller {
                principal,
                session: None,
            });
        }
        if parts.headers.contains_key(header::AUTHORIZATION) {
            return Err(ApiError::unauthenticated(
                "the Authorization header must be `Bearer <API key>`",
            ));
        }
        let Some(token) = cookie(parts, SESSION_COOKIE) else {
            return Err(ApiError::unauthenticated(
                "sign in, or send `Authorization: Bearer <admin API key>`",
            ));
        };
        let session = auth::authenticate_session(st, token).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !crate::crypto::tokens::ct_eq(sent, &session.csrf_token) {
                return Err(ApiError::forbidden(
                    "missing or invalid CSRF token (send the x-csrf-token header from the sign-in response)",
                ));
            }
        }
        Ok(Caller {
            principal: session.principal.clone(),
            session: Some(session),
        })
    }
}

/// A JSON body: size-limited, content type checked, every decoding error a clear 400.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!("expected a JSON body (Content-Type: application/json), got {ct:?}"),
                ));
            }
        }
        let limit = st.config().max_body_bytes;
        let bytes = read_limited(req.into_body(), limit).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_big = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_big {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body exceeds {limit} bytes"),
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "the request body is empty; expected a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => {
                ApiError::new(ErrorCode::InvalidJson, format!("malformed JSON: {inner}"))
            }
            serde_json::error::Category::Data => {
                let msg = strip_position(&inner.to_string());
                if path == "." || path.is_empty() {
                    ApiError::new(ErrorCode::ValidationError, msg)
                } else {
                    ApiError {
                        field: Some(path.clone()),
                        ..ApiError::new(ErrorCode::ValidationError, format!("{path}: {msg}"))
                    }
                }
            }
        }
    })
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        name: String,
        n: Option<u32>,
    }

    #[test]
    fn json_errors_are_precise() {
        let e = parse_json::<T>(b"{not json").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        let e = parse_json::<T>(br#"{"name": 1}"#).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::ValidationError, Some("name"))
        );
        let e = parse_json::<T>(br#"{"name": "x", "extra": 1}"#).unwrap_err();
        assert!(e.message.contains("unknown field `extra`"), "{}", e.message);
        let e = parse_json::<T>(br#"{}"#).unwrap_err();
        assert!(e.message.contains("missing field `name`"), "{}", e.message);
        let e = parse_json::<T>(br#"{"name": "x", "n": -1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("n"));
        assert!(parse_json::<T>(b"").is_err());
    }
}
