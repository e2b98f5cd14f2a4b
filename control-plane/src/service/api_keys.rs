//! API keys. The plaintext (`aip_…`, 256 random bits) is returned once, at creation; only its
//! SHA-256 is stored. Admins manage every key of their org; members create and revoke their
//! own proxy keys and see only those.

use serde::{Deserialize, Serialize};

use crate::crypto::tokens;
use crate::db::{self, api_keys::ApiKeyRow};
use crate::domain::{ApiKeyId, KeyRole, OrgId, ProjectId, names};
use crate::error::{ApiError, ApiResult};
use crate::service::{Principal, audit, auth, commit_config_rows};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub org_id: String,
    pub project_id: Option<String>,
    pub name: String,
    #[schema(value_type = String)]
    pub role: KeyRole,
    /// A recognisable, useless excerpt of the key.
    pub preview: String,
    pub created_by: Option<String>,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "crate::service::ser_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<i64>,
    /// The key itself: only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl ApiKey {
    fn from_row(r: ApiKeyRow, key: Option<String>) -> ApiKey {
        ApiKey {
            role: if r.role == "admin" {
                KeyRole::Admin
            } else {
                KeyRole::Proxy
            },
            id: r.id,
            org_id: r.org_id,
            project_id: r.project_id,
            name: r.name,
            preview: r.preview,
            created_by: r.created_by,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
            key,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    /// `proxy` (data plane only) or `admin` (also the admin API of the org).
    pub role: String,
    /// Restricts the key to one project of the org.
    #[serde(default)]
    pub project_id: Option<String>,
}

pub async fn list(st: &AppState, who: &Principal, org_id: &OrgId) -> ApiResult<Vec<ApiKey>> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_read()?;
    let rows = db::api_keys::list(st.db().pool(), org_id.as_str()).await?;
    let me = who.user_id().map(|u| u.0.clone());
    Ok(rows
        .into_iter()
        .filter(|k| a.role.can_manage() || (k.created_by.is_some() && k.created_by == me))
        .filter(|k| match &a.project_scope {
            Some(p) => k.project_id.as_deref() == Some(p.as_str()),
            None => true,
        })
        .map(|k| ApiKey::from_row(k, None))
        .collect())
}

pub async fn create(
    st: &AppState,
    who: &Principal,
    org_id: &OrgId,
    input: CreateApiKey,
) -> ApiResult<ApiKey> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_read()?;
    let role = KeyRole::parse(&input.role)?;
    if role == KeyRole::Admin && !a.role.can_manage() {
        return Err(ApiError::forbidden("members can only create proxy keys"));
    }
    let name = names::name("name", &input.name, 128)?;
    let project_id = match input.project_id.as_deref().filter(|s| !s.is_empty()) {
        Some(p) => {
            let pid = ProjectId::parse("project_id", p)?;
            let proj = db::projects::get(st.db().pool(), pid.as_str()).await?;
            match proj {
                Some(p) if p.org_id == org_id.0 && a.sees_project(&p.id) => Some(p.id),
                _ => {
                    return Err(ApiError::validation(
                        "project_id",
                        "no such project in this organization",
                    ));
                }
            }
        }
        None => None,
    };
    if let Some(scope) = &a.project_scope
        && project_id.as_deref() != Some(scope.as_str())
    {
        return Err(ApiError::forbidden(
            "a project-restricted key can only create keys restricted to the same project",
        ));
    }
    let key = tokens::new_api_key();
    let now = st.now_ms();
    let row = ApiKeyRow {
        id: ApiKeyId::generate().0,
        org_id: org_id.0.clone(),
        project_id,
        name: name.clone(),
        role: role.as_str().into(),
        key_hash: tokens::hash_token(&key),
        preview: tokens::key_preview(&key),
        created_by: who.user_id().map(|u| u.0.clone()),
        created_at: now,
        revoked_at: None,
    };
    let mut tx = st.db().begin().await?;
    db::api_keys::insert(&mut *tx, &row).await?;
    audit::record(
        &mut tx,
        st,
        who,
        Some(org_id.as_str()),
        "api_key.create",
        ("api_key", &row.id),
        serde_json::json!({"name": name, "role": role.as_str(), "project_id": row.project_id}),
    )
    .await?;
    commit_config_rows(st, tx).await?;
    Ok(ApiKey::from_row(row, Some(key)))
}

pub async fn revoke(st: &AppState, who: &Principal, id: &ApiKeyId) -> ApiResult<()> {
    let row = db::api_keys::get(st.db().pool(), id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    let a = auth::org_access(st, who, &OrgId(row.org_id.clone()))
        .await
        .map_err(|e| {
            if e.code == crate::error::ErrorCode::NotFound {
                ApiError::not_found("API key")
            } else {
                e
            }
        })?;
    a.require_read()?;
    if let Some(scope) = &a.project_scope
        && row.project_id.as_deref() != Some(scope.as_str())
    {
        return Err(ApiError::not_found("API key"));
    }
    let own =
        row.created_by.is_some() && row.created_by.as_deref() == who.user_id().map(|u| u.as_str());
    if !a.role.can_manage() && !own {
        return Err(ApiError::not_found("API key"));
    }
    if row.revoked_at.is_some() {
        return Ok(());
    }
    let mut tx = st.db().begin().await?;
    db::api_keys::revoke(&mut *tx, &row.id, st.now_ms()).await?;
    audit::record(
        &mut tx,
        st,
        who,
        Some(&row.org_id),
        "api_key.revoke",
        ("api_key", &row.id),
        serde_json::json!({"name": row.name}),
    )
    .await?;
    commit_config_rows(st, tx).await
}
