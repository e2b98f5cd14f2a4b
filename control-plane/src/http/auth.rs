//! `/api/v1/auth/*` and `/api/v1/me`: session sign-in for browsers and REST clients.

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::extract::{Caller, JsonBody, SESSION_COOKIE};
use crate::service::{Principal, auth};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    /// `user` or `api_key`.
    pub kind: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub instance_admin: bool,
    pub api_key_id: Option<String>,
    pub org_id: Option<String>,
    pub project_id: Option<String>,
    pub role: Option<String>,
    /// For sessions: the token to send as `x-csrf-token` on state-changing requests.
    pub csrf_token: Option<String>,
}

pub fn me_of(p: &Principal, csrf: Option<String>) -> Me {
    match p {
        Principal::User {
            id,
            email,
            instance_admin,
        } => Me {
            kind: "user".into(),
            user_id: Some(id.0.clone()),
            email: Some(email.clone()),
            instance_admin: *instance_admin,
            api_key_id: None,
            org_id: None,
            project_id: None,
            role: None,
            csrf_token: csrf,
        },
        Principal::ApiKey {
            id,
            org_id,
            project_id,
            role,
            ..
        } => Me {
            kind: "api_key".into(),
            user_id: None,
            email: None,
            instance_admin: false,
            api_key_id: Some(id.0.clone()),
            org_id: Some(org_id.0.clone()),
            project_id: project_id.as_ref().map(|p| p.0.clone()),
            role: Some(role.as_str().into()),
            csrf_token: None,
        },
    }
}

/// Whether cookies get `Secure`: configured, or inferred from TLS in front of us.
pub fn cookie_secure(st: &AppState, headers: &HeaderMap) -> bool {
    st.config().cookie_secure.unwrap_or_else(|| {
        headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            == Some("https")
    })
}

pub fn session_cookie(token: &str, max_age: u64, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The client address a login is counted against.
pub fn client_key(headers: &HeaderMap, peer: Option<std::net::SocketAddr>) -> String {
    peer.map(|p| p.ip().to_string())
        .or_else(|| {
            headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(',').next().unwrap_or("").trim().to_string())
        })
        .unwrap_or_default()
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = Me, description = "Signed in; sets the session cookie"), (status = 401, body = crate::http::openapi::ErrorBody), (status = 429, body = crate::http::openapi::ErrorBody)))]
pub async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Login>,
) -> ApiResult<Response> {
    if headers.get(header::CONTENT_TYPE).is_none() {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "sign-in requires Content-Type: application/json",
        ));
    }
    let key = client_key(&headers, Some(peer));
    if let Err(wait) = st.0.login_limiter.check(&key, st.now_ms()) {
        return Err(ApiError {
            retry_after: Some(wait),
            ..ApiError::new(
                ErrorCode::RateLimited,
                "too many sign-in attempts; try again later",
            )
        });
    }
    let s = auth::login(&st, &body.email, &body.password).await?;
    let cookie = session_cookie(
        &s.cookie_token,
        st.config().session_ttl_secs,
        cookie_secure(&st, &headers),
    );
    let mut resp = Json(me_of(&s.principal, Some(s.csrf_token))).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204, description = "Signed out")))]
pub async fn logout(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(s) = &caller.session {
        auth::logout(&st, &s.id_hash).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie("", 0, cookie_secure(&st, &headers))) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "auth", responses((status = 200, body = Me), (status = 401, body = crate::http::openapi::ErrorBody)))]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(me_of(
        &caller.principal,
        caller.session.map(|s| s.csrf_token),
    ))
}
