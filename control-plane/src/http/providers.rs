//! `/api/v1/orgs/{org_id}/providers`, `/api/v1/projects/{project_id}/providers`,
//! `/api/v1/providers/{id}`

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::domain::{CredentialId, OrgId, ProjectId};
use crate::error::ApiResult;
use crate::http::extract::{Caller, JsonBody};
use crate::service::providers::{self, CreateProvider, Provider, Scope, UpdateProvider};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/providers", tag = "providers", params(("org_id" = String, Path)), responses((status = 200, body = Vec<Provider>)))]
pub async fn list_org(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Json<Vec<Provider>>> {
    let id = OrgId::parse("org_id", &org_id)?;
    providers::list_org(&st, &c.principal, &id).await.map(Json)
}

#[utoipa::path(post, path = "/api/v1/orgs/{org_id}/providers", tag = "providers", params(("org_id" = String, Path)), request_body = CreateProvider, responses((status = 201, body = Provider), (status = 409, body = crate::http::openapi::ErrorBody)))]
pub async fn create_org(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<CreateProvider>,
) -> ApiResult<(StatusCode, Json<Provider>)> {
    let id = OrgId::parse("org_id", &org_id)?;
    providers::create(&st, &c.principal, Scope::Org(id), body)
        .await
        .map(|p| (StatusCode::CREATED, Json(p)))
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/providers", tag = "providers", params(("project_id" = String, Path)),
    responses((status = 200, body = Vec<Provider>, description = "The effective set: project credentials, then org credentials marked `overridden` where shadowed")))]
pub async fn list_project(
    State(st): State<AppState>,
    c: Caller,
    Path(project_id): Path<String>,
) -> ApiResult<Json<Vec<Provider>>> {
    let id = ProjectId::parse("project_id", &project_id)?;
    providers::list_project(&st, &c.principal, &id)
        .await
        .map(Json)
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/providers", tag = "providers", params(("project_id" = String, Path)), request_body = CreateProvider, responses((status = 201, body = Provider)))]
pub async fn create_project(
    State(st): State<AppState>,
    c: Caller,
    Path(project_id): Path<String>,
    JsonBody(body): JsonBody<CreateProvider>,
) -> ApiResult<(StatusCode, Json<Provider>)> {
    let id = ProjectId::parse("project_id", &project_id)?;
    providers::create(&st, &c.principal, Scope::Project(id), body)
        .await
        .map(|p| (StatusCode::CREATED, Json(p)))
}

#[utoipa::path(get, path = "/api/v1/providers/{id}", tag = "providers", params(("id" = String, Path)), responses((status = 200, body = Provider), (status = 404, body = crate::http::openapi::ErrorBody)))]
pub async fn get(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Provider>> {
    let id = CredentialId::parse("id", &id)?;
    providers::get(&st, &c.principal, &id).await.map(Json)
}

#[utoipa::path(patch, path = "/api/v1/providers/{id}", tag = "providers", params(("id" = String, Path)), request_body = UpdateProvider, responses((status = 200, body = Provider)))]
pub async fn update(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateProvider>,
) -> ApiResult<Json<Provider>> {
    let id = CredentialId::parse("id", &id)?;
    providers::update(&st, &c.principal, &id, body)
        .await
        .map(Json)
}

#[utoipa::path(delete, path = "/api/v1/providers/{id}", tag = "providers", params(("id" = String, Path)), responses((status = 204)))]
pub async fn delete(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = CredentialId::parse("id", &id)?;
    providers::delete(&st, &c.principal, &id)
        .await
        .map(|_| StatusCode::NO_CONTENT)
}
