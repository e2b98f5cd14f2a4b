//! `/api/v1/projects/{project_id}/logs`, `/api/v1/orgs/{org_id}/usage`

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};

use crate::domain::{LogId, OrgId, ProjectId};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::Caller;
use crate::service::logs::{self, LogDetail, LogPage, LogQuery};
use crate::service::usage::{self, UsageQuery, UsageReport};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/logs", tag = "logs", params(("project_id" = String, Path), LogQuery), responses((status = 200, body = LogPage)))]
pub async fn list(
    State(st): State<AppState>,
    c: Caller,
    Path(project_id): Path<String>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> ApiResult<Json<LogPage>> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = ProjectId::parse("project_id", &project_id)?;
    logs::list(&st, &c.principal, &id, q).await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/logs/{log_id}", tag = "logs", params(("project_id" = String, Path), ("log_id" = String, Path)), responses((status = 200, body = LogDetail), (status = 404, body = crate::http::openapi::ErrorBody)))]
pub async fn get(
    State(st): State<AppState>,
    c: Caller,
    Path((project_id, log_id)): Path<(String, String)>,
) -> ApiResult<Json<LogDetail>> {
    let pid = ProjectId::parse("project_id", &project_id)?;
    let lid = LogId::parse("log_id", &log_id)?;
    logs::get(&st, &c.principal, &pid, &lid).await.map(Json)
}

#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/usage", tag = "usage", params(("org_id" = String, Path), UsageQuery), responses((status = 200, body = UsageReport)))]
pub async fn usage(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> ApiResult<Json<UsageReport>> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = OrgId::parse("org_id", &org_id)?;
    usage::query(&st, &c.principal, &id, q).await.map(Json)
}
