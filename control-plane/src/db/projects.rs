//! Projects.

use sqlx::{Any, Executor};

use super::{DbResult, i, s};

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRow {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLS: &str = "id, org_id, name, created_at, updated_at";

fn row(r: &sqlx::any::AnyRow) -> DbResult<ProjectRow> {
    Ok(ProjectRow {
        id: s(r, "id")?,
        org_id: s(r, "org_id")?,
        name: s(r, "name")?,
        created_at: i(r, "created_at")?,
        updated_at: i(r, "updated_at")?,
    })
}

pub async fn insert<'e, E: Executor<'e, Database = Any>>(e: E, p: &ProjectRow) -> DbResult<()> {
    sqlx::query("INSERT INTO projects (id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(p.id.clone())
        .bind(p.org_id.clone())
        .bind(p.name.clone())
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(e)
        .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    id: &str,
) -> DbResult<Option<ProjectRow>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM projects WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(e)
    .await?;
    r.as_ref().map(row).transpose()
}

pub async fn get_by_name<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
    name: &str,
) -> DbResult<Option<ProjectRow>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM projects WHERE org_id = $1 AND name = $2"
    )))
    .bind(org_id.to_string())
    .bind(name.to_string())
    .fetch_optional(e)
    .await?;
    r.as_ref().map(row).transpose()
}

pub async fn list<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
) -> DbResult<Vec<ProjectRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM projects WHERE org_id = $1 ORDER BY name"
    )))
    .bind(org_id.to_string())
    .fetch_all(e)
    .await?;
    rows.iter().map(row).collect()
}

pub async fn list_all<'e, E: Executor<'e, Database = Any>>(e: E) -> DbResult<Vec<ProjectRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM projects")))
        .fetch_all(e)
        .await?;
    rows.iter().map(row).collect()
}

pub async fn rename<'e, E: Executor<'e, Database = Any>>(
    e: E,
    id: &str,
    name: &str,
    now: i64,
) -> DbResult<()> {
    sqlx::query("UPDATE projects SET name = $1, updated_at = $2 WHERE id = $3")
        .bind(name.to_string())
        .bind(now)
        .bind(id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn delete<'e, E: Executor<'e, Database = Any>>(e: E, id: &str) -> DbResult<()> {
    sqlx::query("DELETE FROM projects WHERE id = $1")
        .bind(id.to_string())
        .execute(e)
        .await?;
    Ok(())
}
