//! `/api/v1/orgs`

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::domain::OrgId;
use crate::error::ApiResult;
use crate::http::extract::{Caller, JsonBody};
use crate::service::orgs::{self, CreateOrg, Org, UpdateOrg};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/orgs", tag = "orgs", responses((status = 200, body = Vec<Org>)))]
pub async fn list(State(st): State<AppState>, c: Caller) -> ApiResult<Json<Vec<Org>>> {
    orgs::list(&st, &c.principal).await.map(Json)
}

#[utoipa::path(post, path = "/api/v1/orgs", tag = "orgs", request_body = CreateOrg, responses((status = 201, body = Org), (status = 403, body = crate::http::openapi::ErrorBody), (status = 409, body = crate::http::openapi::ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    c: Caller,
    JsonBody(body): JsonBody<CreateOrg>,
) -> ApiResult<(StatusCode, Json<Org>)> {
    orgs::create(&st, &c.principal, body)
        .await
        .map(|o| (StatusCode::CREATED, Json(o)))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path)), responses((status = 200, body = Org), (status = 404, body = crate::http::openapi::ErrorBody)))]
pub async fn get(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Json<Org>> {
    let id = OrgId::parse("org_id", &org_id)?;
    orgs::get(&st, &c.principal, &id).await.map(Json)
}

#[utoipa::path(patch, path = "/api/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path)), request_body = UpdateOrg, responses((status = 200, body = Org)))]
pub async fn update(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<UpdateOrg>,
) -> ApiResult<Json<Org>> {
    let id = OrgId::parse("org_id", &org_id)?;
    orgs::update(&st, &c.principal, &id, body).await.map(Json)
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path)), responses((status = 204)))]
pub async fn delete(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = OrgId::parse("org_id", &org_id)?;
    orgs::delete(&st, &c.principal, &id)
        .await
        .map(|_| StatusCode::NO_CONTENT)
}
