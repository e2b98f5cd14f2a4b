//! Organizations.

use sqlx::{Any, Executor};

use super::{DbResult, i, s};

#[derive(Debug, Clone, PartialEq)]
pub struct OrgRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

fn row(r: &sqlx::any::AnyRow) -> DbResult<OrgRow> {
    Ok(OrgRow {
        id: s(r, "id")?,
        name: s(r, "name")?,
        created_at: i(r, "created_at")?,
        updated_at: i(r, "updated_at")?,
    })
}

pub async fn insert<'e, E: Executor<'e, Database = Any>>(e: E, o: &OrgRow) -> DbResult<()> {
    sqlx::query("INSERT INTO orgs (id, name, created_at, updated_at) VALUES ($1, $2, $3, $4)")
        .bind(o.id.clone())
        .bind(o.name.clone())
        .bind(o.created_at)
        .bind(o.updated_at)
        .execute(e)
        .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(e: E, id: &str) -> DbResult<Option<OrgRow>> {
    let r = sqlx::query("SELECT id, name, created_at, updated_at FROM orgs WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(e)
        .await?;
    r.as_ref().map(row).transpose()
}

pub async fn get_by_name<'e, E: Executor<'e, Database = Any>>(
    e: E,
    name: &str,
) -> DbResult<Option<OrgRow>> {
    let r = sqlx::query("SELECT id, name, created_at, updated_at FROM orgs WHERE name = $1")
        .bind(name.to_string())
        .fetch_optional(e)
        .await?;
    r.as_ref().map(row).transpose()
}

pub async fn list_all<'e, E: Executor<'e, Database = Any>>(e: E) -> DbResult<Vec<OrgRow>> {
    let rows = sqlx::query("SELECT id, name, created_at, updated_at FROM orgs ORDER BY name")
        .fetch_all(e)
        .await?;
    rows.iter().map(row).collect()
}

/// Orgs a user is a member of.
pub async fn list_for_user<'e, E: Executor<'e, Database = Any>>(
    e: E,
    user_id: &str,
) -> DbResult<Vec<OrgRow>> {
    let rows = sqlx::query("SELECT o.id, o.name, o.created_at, o.updated_at FROM orgs o JOIN members m ON m.org_id = o.id WHERE m.user_id = $1 ORDER BY o.name")
        .bind(user_id.to_string())
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
    sqlx::query("UPDATE orgs SET name = $1, updated_at = $2 WHERE id = $3")
        .bind(name.to_string())
        .bind(now)
        .bind(id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn delete<'e, E: Executor<'e, Database = Any>>(e: E, id: &str) -> DbResult<()> {
    sqlx::query("DELETE FROM orgs WHERE id = $1")
        .bind(id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn count<'e, E: Executor<'e, Database = Any>>(e: E) -> DbResult<i64> {
    let r = sqlx::query("SELECT COUNT(*) AS n FROM orgs")
        .fetch_one(e)
        .await?;
    i(&r, "n")
}
