//! The audit log: who changed what, when (never a secret value).

use sqlx::{Any, Executor};

use super::{DbResult, i, os, s};

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: String,
    pub org_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub details: String,
    pub created_at: i64,
}

pub async fn insert<'e, E: Executor<'e, Database = Any>>(e: E, a: &AuditRow) -> DbResult<()> {
    sqlx::query("INSERT INTO audit_log (id, org_id, actor, action, target_type, target_id, details, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(a.id.clone())
        .bind(a.org_id.clone())
        .bind(a.actor.clone())
        .bind(a.action.clone())
        .bind(a.target_type.clone())
        .bind(a.target_id.clone())
        .bind(a.details.clone())
        .bind(a.created_at)
        .execute(e)
        .await?;
    Ok(())
}

/// Newest first; `before` (an audit id) pages backwards.
pub async fn list<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
    before: Option<&str>,
    limit: i64,
) -> DbResult<Vec<AuditRow>> {
    let rows = match before {
        Some(b) => {
            sqlx::query("SELECT id, org_id, actor, action, target_type, target_id, details, created_at FROM audit_log WHERE org_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3")
                .bind(org_id.to_string())
                .bind(b.to_string())
                .bind(limit)
                .fetch_all(e)
                .await?
        }
        None => {
            sqlx::query("SELECT id, org_id, actor, action, target_type, target_id, details, created_at FROM audit_log WHERE org_id = $1 ORDER BY id DESC LIMIT $2")
                .bind(org_id.to_string())
                .bind(limit)
                .fetch_all(e)
                .await?
        }
    };
    rows.iter()
        .map(|r| {
            Ok(AuditRow {
                id: s(r, "id")?,
                org_id: os(r, "org_id")?,
                actor: s(r, "actor")?,
                action: s(r, "action")?,
                target_type: s(r, "target_type")?,
                target_id: s(r, "target_id")?,
                details: s(r, "details")?,
                created_at: i(r, "created_at")?,
            })
        })
        .collect()
}
