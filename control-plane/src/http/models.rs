//! `/api/v1/orgs/{org_id}/models`

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use crate::domain::{OrgId, ProjectId};
use crate::error::ApiResult;
use crate::http::extract::Caller;
use crate::service::models::{self, ModelEntry};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ModelsQuery {
    /// Show the effective set of this project (its credentials override the org's).
    pub project_id: Option<String>,
    /// Only models some credential can serve.
    #[serde(default)]
    pub available: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/models", tag = "models", params(("org_id" = String, Path), ModelsQuery), responses((status = 200, body = Vec<ModelEntry>)))]
pub async fn list(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
    q: Result<Query<ModelsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<ModelEntry>>> {
    let Query(q) = q.map_err(|e| crate::error::ApiError::bad_request(e.body_text()))?;
    let id = OrgId::parse("org_id", &org_id)?;
    let project = q
        .project_id
        .as_deref()
        .map(|p| ProjectId::parse("project_id", p))
        .transpose()?;
    models::list(
        &st,
        &c.principal,
        &id,
        project.as_ref(),
        q.available.unwrap_or(false),
    )
    .await
    .map(Json)
}
