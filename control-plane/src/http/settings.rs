//! `/api/v1/orgs/{org_id}/settings`

use axum::Json;
use axum::extract::{Path, State};

use crate::domain::OrgId;
use crate::error::ApiResult;
use crate::http::extract::{Caller, JsonBody};
use crate::service::settings::{self, PutSettings, Settings, TestResult};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/settings", tag = "settings", params(("org_id" = String, Path)), responses((status = 200, body = Settings)))]
pub async fn get(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Json<Settings>> {
    let id = OrgId::parse("org_id", &org_id)?;
    settings::get(&st, &c.principal, &id).await.map(Json)
}

#[utoipa::path(put, path = "/api/v1/orgs/{org_id}/settings", tag = "settings", params(("org_id" = String, Path)), request_body = PutSettings, responses((status = 200, body = Settings)))]
pub async fn put(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<PutSettings>,
) -> ApiResult<Json<Settings>> {
    let id = OrgId::parse("org_id", &org_id)?;
    settings::put(&st, &c.principal, &id, body).await.map(Json)
}

#[utoipa::path(post, path = "/api/v1/orgs/{org_id}/settings/test", tag = "settings", params(("org_id" = String, Path)),
    responses((status = 200, body = TestResult, description = "One result per configured URL: reached or not, status, latency, error")))]
pub async fn test(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Json<TestResult>> {
    let id = OrgId::parse("org_id", &org_id)?;
    settings::test(&st, &c.principal, &id).await.map(Json)
}
