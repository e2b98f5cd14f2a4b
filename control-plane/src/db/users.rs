//! Users (people who sign in to the web admin or REST API) and org memberships.

use sqlx::{Any, Executor};

use super::{DbResult, i, os, s};

#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password_hash: Option<String>,
    pub instance_admin: bool,
    pub failed_logins: i64,
    pub locked_until: i64,
    pub created_at: i64,
}

const COLS: &str =
    "id, email, password_hash, instance_admin, failed_logins, locked_until, created_at";

fn row(r: &sqlx::any::AnyRow) -> DbResult<UserRow> {
    Ok(UserRow {
        id: s(r, "id")?,
        email: s(r, "email")?,
        password_hash: os(r, "password_hash")?,
        instance_admin: i(r, "instance_admin")? != 0,
        failed_logins: i(r, "failed_logins")?,
        locked_until: i(r, "locked_until")?,
        created_at: i(r, "created_at")?,
    })
}

pub async fn insert<'e, E: Executor<'e, Database = Any>>(
    e: E,
    u: &UserRow,
    invite_token_hash: Option<String>,
) -> DbResult<()> {
    sqlx::query("INSERT INTO users (id, email, password_hash, instance_admin, failed_logins, locked_until, invite_token_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, 0, $5, $6, $6)")
        .bind(u.id.clone())
        .bind(u.email.clone())
        .bind(u.password_hash.clone())
        .bind(i64::from(u.instance_admin))
        .bind(invite_token_hash)
        .bind(u.created_at)
        .execute(e)
        .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(e: E, id: &str) -> DbResult<Option<UserRow>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM users WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(e)
    .await?;
    r.as_ref().map(row).transpose()
}

pub async fn get_by_email<'e, E: Executor<'e, Database = Any>>(
    e: E,
    email: &str,
) -> DbResult<Option<UserRow>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM users WHERE email = $1"
    )))
    .bind(email.to_string())
    .fetch_optional(e)
    .await?;
    r.as_ref().map(row).transpose()
}

pub async fn get_by_invite<'e, E: Executor<'e, Database = Any>>(
    e: E,
    token_hash: &str,
) -> DbResult<Option<UserRow>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM users WHERE invite_token_hash = $1"
    )))
    .bind(token_hash.to_string())
    .fetch_optional(e)
    .await?;
    r.as_ref().map(row).transpose()
}

pub async fn set_password<'e, E: Executor<'e, Database = Any>>(
    e: E,
    id: &str,
    hash: &str,
    now: i64,
) -> DbResult<()> {
    sqlx::query("UPDATE users SET password_hash = $1, invite_token_hash = NULL, failed_logins = 0, locked_until = 0, updated_at = $2 WHERE id = $3")
        .bind(hash.to_string())
        .bind(now)
        .bind(id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn set_instance_admin<'e, E: Executor<'e, Database = Any>>(
    e: E,
    id: &str,
    admin: bool,
    now: i64,
) -> DbResult<()> {
    sqlx::query("UPDATE users SET instance_admin = $1, updated_at = $2 WHERE id = $3")
        .bind(i64::from(admin))
        .bind(now)
        .bind(id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

/// Records a failed login; locks the account until `lock_until` once `max` failures are reached.
pub async fn record_failure<'e, E: Executor<'e, Database = Any>>(
    e: E,
    id: &str,
    max: i64,
    lock_until: i64,
) -> DbResult<()> {
    sqlx::query("UPDATE users SET failed_logins = failed_logins + 1, locked_until = CASE WHEN failed_logins + 1 >= $1 THEN $2 ELSE locked_until END WHERE id = $3")
        .bind(max)
        .bind(lock_until)
        .bind(id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn reset_failures<'e, E: Executor<'e, Database = Any>>(e: E, id: &str) -> DbResult<()> {
    sqlx::query("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = $1")
        .bind(id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn count<'e, E: Executor<'e, Database = Any>>(e: E) -> DbResult<i64> {
    let r = sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(e)
        .await?;
    i(&r, "n")
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    pub org_id: String,
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub created_at: i64,
}

pub async fn add_member<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
    user_id: &str,
    role: &str,
    now: i64,
) -> DbResult<()> {
    sqlx::query("INSERT INTO members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(org_id.to_string())
        .bind(user_id.to_string())
        .bind(role.to_string())
        .bind(now)
        .execute(e)
        .await?;
    Ok(())
}

pub async fn member<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
    user_id: &str,
) -> DbResult<Option<MemberRow>> {
    let r = sqlx::query("SELECT m.org_id, m.user_id, u.email, m.role, m.created_at FROM members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND m.user_id = $2")
        .bind(org_id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(e)
        .await?;
    r.as_ref().map(member_row).transpose()
}

fn member_row(r: &sqlx::any::AnyRow) -> DbResult<MemberRow> {
    Ok(MemberRow {
        org_id: s(r, "org_id")?,
        user_id: s(r, "user_id")?,
        email: s(r, "email")?,
        role: s(r, "role")?,
        created_at: i(r, "created_at")?,
    })
}

pub async fn members<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
) -> DbResult<Vec<MemberRow>> {
    let rows = sqlx::query("SELECT m.org_id, m.user_id, u.email, m.role, m.created_at FROM members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY u.email")
        .bind(org_id.to_string())
        .fetch_all(e)
        .await?;
    rows.iter().map(member_row).collect()
}

pub async fn set_role<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
    user_id: &str,
    role: &str,
) -> DbResult<()> {
    sqlx::query("UPDATE members SET role = $1 WHERE org_id = $2 AND user_id = $3")
        .bind(role.to_string())
        .bind(org_id.to_string())
        .bind(user_id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn remove_member<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
    user_id: &str,
) -> DbResult<()> {
    sqlx::query("DELETE FROM members WHERE org_id = $1 AND user_id = $2")
        .bind(org_id.to_string())
        .bind(user_id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn count_owners<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
) -> DbResult<i64> {
    let r = sqlx::query("SELECT COUNT(*) AS n FROM members WHERE org_id = $1 AND role = 'owner'")
        .bind(org_id.to_string())
        .fetch_one(e)
        .await?;
    i(&r, "n")
}

/// (org id, role) of every membership of a user.
pub async fn members_of_user<'e, E: Executor<'e, Database = Any>>(
    e: E,
    user_id: &str,
) -> DbResult<Vec<(String, String)>> {
    let rows = sqlx::query("SELECT org_id, role FROM members WHERE user_id = $1")
        .bind(user_id.to_string())
        .fetch_all(e)
        .await?;
    rows.iter()
        .map(|r| Ok((s(r, "org_id")?, s(r, "role")?)))
        .collect()
}
