//! API keys (only their SHA-256 is stored).

use sqlx::{Any, Executor};

use super::{DbResult, i, oi, os, s};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRow {
    pub id: String,
    pub org_id: String,
    pub project_id: Option<String>,
    pub name: String,
    pub role: String,
    pub key_hash: String,
    pub preview: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

const COLS: &str =
    "id, org_id, project_id, name, role, key_hash, preview, created_by, created_at, revoked_at";

fn row(r: &sqlx::any::AnyRow) -> DbResult<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: s(r, "id")?,
        org_id: s(r, "org_id")?,
        project_id: os(r, "project_id")?,
        name: s(r, "name")?,
        role: s(r, "role")?,
        key_hash: s(r, "key_hash")?,
        preview: s(r, "preview")?,
        created_by: os(r, "created_by")?,
        created_at: i(r, "created_at")?,
        revoked_at: oi(r, "revoked_at")?,
    })
}

pub async fn insert<'e, E: Executor<'e, Database = Any>>(e: E, k: &ApiKeyRow) -> DbResult<()> {
    sqlx::query("INSERT INTO api_keys (id, org_id, project_id, name, role, key_hash, preview, created_by, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)")
        .bind(k.id.clone())
        .bind(k.org_id.clone())
        .bind(k.project_id.clone())
        .bind(k.name.clone())
        .bind(k.role.clone())
        .bind(k.key_hash.clone())
        .bind(k.preview.clone())
        .bind(k.created_by.clone())
        .bind(k.created_at)
        .execute(e)
        .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    id: &str,
) -> DbResult<Option<ApiKeyRow>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM api_keys WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(e)
    .await?;
    r.as_ref().map(row).transpose()
}

pub async fn get_by_hash<'e, E: Executor<'e, Database = Any>>(
    e: E,
    hash: &str,
) -> DbResult<Option<ApiKeyRow>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM api_keys WHERE key_hash = $1"
    )))
    .bind(hash.to_string())
    .fetch_optional(e)
    .await?;
    r.as_ref().map(row).transpose()
}

pub async fn list<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
) -> DbResult<Vec<ApiKeyRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM api_keys WHERE org_id = $1 ORDER BY created_at DESC, id"
    )))
    .bind(org_id.to_string())
    .fetch_all(e)
    .await?;
    rows.iter().map(row).collect()
}

/// Active (not revoked) keys of every org: what snapshots carry.
pub async fn list_active<'e, E: Executor<'e, Database = Any>>(e: E) -> DbResult<Vec<ApiKeyRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM api_keys WHERE revoked_at IS NULL"
    )))
    .fetch_all(e)
    .await?;
    rows.iter().map(row).collect()
}

pub async fn revoke<'e, E: Executor<'e, Database = Any>>(e: E, id: &str, now: i64) -> DbResult<()> {
    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(id.to_string())
        .execute(e)
        .await?;
    Ok(())
}
