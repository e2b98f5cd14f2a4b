//! `/api/v1/orgs/{org_id}/projects`, `/api/v1/projects/{project_id}`

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::domain::{OrgId, ProjectId};
use crate::error::ApiResult;
use crate::http::extract::{Caller, JsonBody};
use crate::service::projects::{self, CreateProject, Project, UpdateProject};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/projects", tag = "projects", params(("org_id" = String, Path)), responses((status = 200, body = Vec<Project>)))]
pub async fn list(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Json<Vec<Project>>> {
    let id = OrgId::parse("org_id", &org_id)?;
    projects::list(&st, &c.principal, &id).await.map(Json)
}

#[utoipa::path(post, path = "/api/v1/orgs/{org_id}/projects", tag = "projects", params(("org_id" = String, Path)), request_body = CreateProject, responses((status = 201, body = Project), (status = 409, body = crate::http::openapi::ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<CreateProject>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    let id = OrgId::parse("org_id", &org_id)?;
    projects::create(&st, &c.principal, &id, body)
        .await
        .map(|p| (StatusCode::CREATED, Json(p)))
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}", tag = "projects", params(("project_id" = String, Path)), responses((status = 200, body = Project), (status = 404, body = crate::http::openapi::ErrorBody)))]
pub async fn get(
    State(st): State<AppState>,
    c: Caller,
    Path(project_id): Path<String>,
) -> ApiResult<Json<Project>> {
    let id = ProjectId::parse("project_id", &project_id)?;
    projects::get(&st, &c.principal, &id).await.map(Json)
}

#[utoipa::path(patch, path = "/api/v1/projects/{project_id}", tag = "projects", params(("project_id" = String, Path)), request_body = UpdateProject, responses((status = 200, body = Project)))]
pub async fn update(
    State(st): State<AppState>,
    c: Caller,
    Path(project_id): Path<String>,
    JsonBody(body): JsonBody<UpdateProject>,
) -> ApiResult<Json<Project>> {
    let id = ProjectId::parse("project_id", &project_id)?;
    projects::update(&st, &c.principal, &id, body)
        .await
        .map(Json)
}

#[utoipa::path(delete, path = "/api/v1/projects/{project_id}", tag = "projects", params(("project_id" = String, Path)), responses((status = 204)))]
pub async fn delete(
    State(st): State<AppState>,
    c: Caller,
    Path(project_id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = ProjectId::parse("project_id", &project_id)?;
    projects::delete(&st, &c.principal, &id)
        .await
        .map(|_| StatusCode::NO_CONTENT)
}
