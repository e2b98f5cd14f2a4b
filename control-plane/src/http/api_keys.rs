//! `/api/v1/orgs/{org_id}/api-keys`, `/api/v1/api-keys/{id}`

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::domain::{ApiKeyId, OrgId};
use crate::error::ApiResult;
use crate::http::extract::{Caller, JsonBody};
use crate::service::api_keys::{self, ApiKey, CreateApiKey};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/api-keys", tag = "api-keys", params(("org_id" = String, Path)), responses((status = 200, body = Vec<ApiKey>)))]
pub async fn list(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Json<Vec<ApiKey>>> {
    let id = OrgId::parse("org_id", &org_id)?;
    api_keys::list(&st, &c.principal, &id).await.map(Json)
}

#[utoipa::path(post, path = "/api/v1/orgs/{org_id}/api-keys", tag = "api-keys", params(("org_id" = String, Path)), request_body = CreateApiKey,
    responses((status = 201, body = ApiKey, description = "The key is in `key`, shown only this once")))]
pub async fn create(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<ApiKey>)> {
    let id = OrgId::parse("org_id", &org_id)?;
    api_keys::create(&st, &c.principal, &id, body)
        .await
        .map(|k| (StatusCode::CREATED, Json(k)))
}

#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)), responses((status = 204), (status = 404, body = crate::http::openapi::ErrorBody)))]
pub async fn revoke(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = ApiKeyId::parse("id", &id)?;
    api_keys::revoke(&st, &c.principal, &id)
        .await
        .map(|_| StatusCode::NO_CONTENT)
}
