//! Provider credentials: readable metadata, the sealed secret, its key id and preview.

use sqlx::{Any, Executor};

use super::{DbResult, i, os, s};

#[derive(Debug, Clone, PartialEq)]
pub struct CredentialRow {
    pub id: String,
    pub org_id: String,
    pub project_id: Option<String>,
    pub name: String,
    pub provider_type: String,
    pub metadata: String,
    pub sealed_secret: String,
    pub key_id: String,
    pub preview_secret: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub updated_by: String,
    pub secret_updated_at: i64,
}

const COLS: &str = "id, org_id, project_id, name, type, metadata, sealed_secret, key_id, preview_secret, created_at, updated_at, updated_by, secret_updated_at";

fn row(r: &sqlx::any::AnyRow) -> DbResult<CredentialRow> {
    Ok(CredentialRow {
        id: s(r, "id")?,
        org_id: s(r, "org_id")?,
        project_id: os(r, "project_id")?,
        name: s(r, "name")?,
        provider_type: s(r, "type")?,
        metadata: s(r, "metadata")?,
        sealed_secret: s(r, "sealed_secret")?,
        key_id: s(r, "key_id")?,
        preview_secret: s(r, "preview_secret")?,
        created_at: i(r, "created_at")?,
        updated_at: i(r, "updated_at")?,
        updated_by: s(r, "updated_by")?,
        secret_updated_at: i(r, "secret_updated_at")?,
    })
}

pub async fn insert<'e, E: Executor<'e, Database = Any>>(e: E, c: &CredentialRow) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO provider_credentials (id, org_id, project_id, scope_key, name, type, metadata, sealed_secret, key_id, preview_secret, created_at, updated_at, updated_by, secret_updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(c.id.clone())
    .bind(c.org_id.clone())
    .bind(c.project_id.clone())
    .bind(c.project_id.clone().unwrap_or_default())
    .bind(c.name.clone())
    .bind(c.provider_type.clone())
    .bind(c.metadata.clone())
    .bind(c.sealed_secret.clone())
    .bind(c.key_id.clone())
    .bind(c.preview_secret.clone())
    .bind(c.created_at)
    .bind(c.updated_at)
    .bind(c.updated_by.clone())
    .bind(c.secret_updated_at)
    .execute(e)
    .await?;
    Ok(())
}

/// Rewrites every mutable column of an existing credential.
pub async fn update<'e, E: Executor<'e, Database = Any>>(e: E, c: &CredentialRow) -> DbResult<()> {
    sqlx::query(
        "UPDATE provider_credentials SET name = $1, metadata = $2, sealed_secret = $3, key_id = $4, preview_secret = $5, updated_at = $6, updated_by = $7, secret_updated_at = $8 WHERE id = $9",
    )
    .bind(c.name.clone())
    .bind(c.metadata.clone())
    .bind(c.sealed_secret.clone())
    .bind(c.key_id.clone())
    .bind(c.preview_secret.clone())
    .bind(c.updated_at)
    .bind(c.updated_by.clone())
    .bind(c.secret_updated_at)
    .bind(c.id.clone())
    .execute(e)
    .await?;
    Ok(())
}

pub async fn set_sealed<'e, E: Executor<'e, Database = Any>>(
    e: E,
    id: &str,
    sealed: &str,
    key_id: &str,
) -> DbResult<()> {
    sqlx::query("UPDATE provider_credentials SET sealed_secret = $1, key_id = $2 WHERE id = $3")
        .bind(sealed.to_string())
        .bind(key_id.to_string())
        .bind(id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    id: &str,
) -> DbResult<Option<CredentialRow>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM provider_credentials WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(e)
    .await?;
    r.as_ref().map(row).transpose()
}

/// Org-level credentials of an org.
pub async fn list_org<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
) -> DbResult<Vec<CredentialRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM provider_credentials WHERE org_id = $1 AND project_id IS NULL ORDER BY type, name")))
        .bind(org_id.to_string())
        .fetch_all(e)
        .await?;
    rows.iter().map(row).collect()
}

pub async fn list_project<'e, E: Executor<'e, Database = Any>>(
    e: E,
    project_id: &str,
) -> DbResult<Vec<CredentialRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM provider_credentials WHERE project_id = $1 ORDER BY type, name"
    )))
    .bind(project_id.to_string())
    .fetch_all(e)
    .await?;
    rows.iter().map(row).collect()
}

pub async fn list_all<'e, E: Executor<'e, Database = Any>>(e: E) -> DbResult<Vec<CredentialRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM provider_credentials"
    )))
    .fetch_all(e)
    .await?;
    rows.iter().map(row).collect()
}

pub async fn delete<'e, E: Executor<'e, Database = Any>>(e: E, id: &str) -> DbResult<()> {
    sqlx::query("DELETE FROM provider_credentials WHERE id = $1")
        .bind(id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

/// Master key ids in use (by credentials and signing keys), to check at startup that the
/// configured keys can decrypt everything.
pub async fn key_ids_in_use<'e, E: Executor<'e, Database = Any>>(e: E) -> DbResult<Vec<String>> {
    let rows = sqlx::query("SELECT DISTINCT key_id FROM provider_credentials UNION SELECT DISTINCT key_id FROM signing_keys").fetch_all(e).await?;
    rows.iter().map(|r| s(r, "key_id")).collect()
}

#[derive(Debug, Clone)]
pub struct SigningKeyRow {
    pub id: String,
    pub sealed_key: String,
    pub key_id: String,
    pub active: bool,
    pub created_at: i64,
}

pub async fn signing_keys<'e, E: Executor<'e, Database = Any>>(
    e: E,
) -> DbResult<Vec<SigningKeyRow>> {
    let rows = sqlx::query("SELECT id, sealed_key, key_id, active, created_at FROM signing_keys ORDER BY created_at DESC").fetch_all(e).await?;
    rows.iter()
        .map(|r| {
            Ok(SigningKeyRow {
                id: s(r, "id")?,
                sealed_key: s(r, "sealed_key")?,
                key_id: s(r, "key_id")?,
                active: i(r, "active")? != 0,
                created_at: i(r, "created_at")?,
            })
        })
        .collect()
}

pub async fn insert_signing_key<'e, E: Executor<'e, Database = Any>>(
    e: E,
    k: &SigningKeyRow,
) -> DbResult<()> {
    sqlx::query("INSERT INTO signing_keys (id, sealed_key, key_id, active, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(k.id.clone())
        .bind(k.sealed_key.clone())
        .bind(k.key_id.clone())
        .bind(i64::from(k.active))
        .bind(k.created_at)
        .execute(e)
        .await?;
    Ok(())
}

pub async fn set_signing_key_sealed<'e, E: Executor<'e, Database = Any>>(
    e: E,
    id: &str,
    sealed: &str,
    key_id: &str,
) -> DbResult<()> {
    sqlx::query("UPDATE signing_keys SET sealed_key = $1, key_id = $2 WHERE id = $3")
        .bind(sealed.to_string())
        .bind(key_id.to_string())
        .bind(id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn deactivate_signing_keys<'e, E: Executor<'e, Database = Any>>(e: E) -> DbResult<()> {
    sqlx::query("UPDATE signing_keys SET active = 0")
        .execute(e)
        .await?;
    Ok(())
}

pub async fn delete_inactive_signing_keys_before<'e, E: Executor<'e, Database = Any>>(
    e: E,
    before: i64,
) -> DbResult<()> {
    sqlx::query("DELETE FROM signing_keys WHERE active = 0 AND created_at < $1")
        .bind(before)
        .execute(e)
        .await?;
    Ok(())
}
