//! `/api/v1/orgs/{org_id}/members`

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::domain::{OrgId, UserId};
use crate::error::ApiResult;
use crate::http::extract::{Caller, JsonBody};
use crate::service::members::{self, AddMember, Member, UpdateMember};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/orgs/{org_id}/members", tag = "members", params(("org_id" = String, Path)), responses((status = 200, body = Vec<Member>)))]
pub async fn list(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Json<Vec<Member>>> {
    let id = OrgId::parse("org_id", &org_id)?;
    members::list(&st, &c.principal, &id).await.map(Json)
}

#[utoipa::path(post, path = "/api/v1/orgs/{org_id}/members", tag = "members", params(("org_id" = String, Path)), request_body = AddMember, responses((status = 201, body = Member)))]
pub async fn add(
    State(st): State<AppState>,
    c: Caller,
    Path(org_id): Path<String>,
    JsonBody(body): JsonBody<AddMember>,
) -> ApiResult<(StatusCode, Json<Member>)> {
    let id = OrgId::parse("org_id", &org_id)?;
    members::add(&st, &c.principal, &id, body)
        .await
        .map(|m| (StatusCode::CREATED, Json(m)))
}

#[utoipa::path(patch, path = "/api/v1/orgs/{org_id}/members/{user_id}", tag = "members", params(("org_id" = String, Path), ("user_id" = String, Path)), request_body = UpdateMember, responses((status = 200, body = Member)))]
pub async fn update(
    State(st): State<AppState>,
    c: Caller,
    Path((org_id, user_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateMember>,
) -> ApiResult<Json<Member>> {
    let org = OrgId::parse("org_id", &org_id)?;
    let user = UserId::parse("user_id", &user_id)?;
    members::update(&st, &c.principal, &org, &user, body)
        .await
        .map(Json)
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org_id}/members/{user_id}", tag = "members", params(("org_id" = String, Path), ("user_id" = String, Path)), responses((status = 204)))]
pub async fn remove(
    State(st): State<AppState>,
    c: Caller,
    Path((org_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = OrgId::parse("org_id", &org_id)?;
    let user = UserId::parse("user_id", &user_id)?;
    members::remove(&st, &c.principal, &org, &user)
        .await
        .map(|_| StatusCode::NO_CONTENT)
}
