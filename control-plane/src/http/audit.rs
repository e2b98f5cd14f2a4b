//! `/api/v1/orgs/{org_id}/audit-log`

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use crate::domain::OrgId;
use crate::error::ApiResult;
use crate::http::extract::Caller;
use crate::service::audit::{self, AuditPage};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Cursor from a previous page's `next_cursor`.
    pub before: Option<String>,
    /// 1..=500, default 100.
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/audit-log", tag = "audit", params(("org_id" = String, Path), AuditQuery), responses((status = 200, body = AuditPage)))]
pub async fn list(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    let Query(q) = q.map_err(|e| crate::error::ApiError::bad_request(e.body_text()))?;
    let id = OrgId::parse("org_id", &org_id)?;
    audit::list(&st, &c.principal, &id, q.before.as_deref(), q.limit)
        .await
        .map(Json)
}
