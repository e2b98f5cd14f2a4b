//! Audit log: every change is recorded in the same transaction as the change itself — who,
//! what, when, and a description that never includes a secret value.

use serde::Serialize;

use crate::db::{self, Tx, audit::AuditRow};
use crate::domain::OrgId;
use crate::error::ApiResult;
use crate::service::Principal;
use crate::state::AppState;

pub async fn record(
    tx: &mut Tx,
    st: &AppState,
    who: &Principal,
    org_id: Option<&str>,
    action: &str,
    target: (&str, &str),
    details: serde_json::Value,
) -> ApiResult<()> {
    db::audit::insert(
        &mut **tx,
        &AuditRow {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org_id.map(str::to_string),
            actor: who.actor(),
            action: action.to_string(),
            target_type: target.0.to_string(),
            target_id: target.1.to_string(),
            details: details.to_string(),
            created_at: st.now_ms(),
        },
    )
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` to get older entries; absent on the last page.
    pub next_cursor: Option<String>,
}

pub async fn list(
    st: &AppState,
    who: &Principal,
    org_id: &OrgId,
    before: Option<&str>,
    limit: Option<u32>,
) -> ApiResult<AuditPage> {
    let access = crate::service::auth::org_access(st, who, org_id).await?;
    access.require_manage()?;
    let limit = i64::from(limit.unwrap_or(100).clamp(1, 500));
    let rows = db::audit::list(st.db().pool(), org_id.as_str(), before, limit).await?;
    let next_cursor = if rows.len() as i64 == limit {
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    let entries = rows
        .into_iter()
        .map(|r| AuditEntry {
            details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
            id: r.id,
            actor: r.actor,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            created_at: r.created_at,
        })
        .collect();
    Ok(AuditPage {
        entries,
        next_cursor,
    })
}
