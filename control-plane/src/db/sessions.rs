//! Web sessions (the cookie holds a random token; only its hash is stored).

use sqlx::{Any, Executor};

use super::{DbResult, i, s};

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id_hash: String,
    pub user_id: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub async fn insert<'e, E: Executor<'e, Database = Any>>(e: E, r: &SessionRow) -> DbResult<()> {
    sqlx::query("INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(r.id_hash.clone())
        .bind(r.user_id.clone())
        .bind(r.csrf_token.clone())
        .bind(r.created_at)
        .bind(r.expires_at)
        .execute(e)
        .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    id_hash: &str,
) -> DbResult<Option<SessionRow>> {
    let r = sqlx::query("SELECT id_hash, user_id, csrf_token, created_at, expires_at FROM sessions WHERE id_hash = $1").bind(id_hash.to_string()).fetch_optional(e).await?;
    r.map(|r| {
        Ok(SessionRow {
            id_hash: s(&r, "id_hash")?,
            user_id: s(&r, "user_id")?,
            csrf_token: s(&r, "csrf_token")?,
            created_at: i(&r, "created_at")?,
            expires_at: i(&r, "expires_at")?,
        })
    })
    .transpose()
}

pub async fn delete<'e, E: Executor<'e, Database = Any>>(e: E, id_hash: &str) -> DbResult<()> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(id_hash.to_string())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn delete_expired<'e, E: Executor<'e, Database = Any>>(e: E, now: i64) -> DbResult<u64> {
    Ok(sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
        .bind(now)
        .execute(e)
        .await?
        .rows_affected())
}
