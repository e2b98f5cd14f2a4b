//! Organization settings (deployment URLs).

use sqlx::{Any, Executor};

use super::{DbResult, i, s};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SettingsRow {
    pub org_id: String,
    pub api_url: String,
    pub proxy_url: String,
    pub realtime_url: String,
    pub updated_at: i64,
    pub updated_by: String,
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
) -> DbResult<Option<SettingsRow>> {
    let r = sqlx::query("SELECT org_id, api_url, proxy_url, realtime_url, updated_at, updated_by FROM org_settings WHERE org_id = $1")
        .bind(org_id.to_string())
        .fetch_optional(e)
        .await?;
    r.map(|r| {
        Ok(SettingsRow {
            org_id: s(&r, "org_id")?,
            api_url: s(&r, "api_url")?,
            proxy_url: s(&r, "proxy_url")?,
            realtime_url: s(&r, "realtime_url")?,
            updated_at: i(&r, "updated_at")?,
            updated_by: s(&r, "updated_by")?,
        })
    })
    .transpose()
}

/// Insert or replace (portable upsert: both backends support ON CONFLICT … DO UPDATE).
pub async fn put<'e, E: Executor<'e, Database = Any>>(e: E, r: &SettingsRow) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO org_settings (org_id, api_url, proxy_url, realtime_url, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (org_id) DO UPDATE SET api_url = excluded.api_url, proxy_url = excluded.proxy_url, realtime_url = excluded.realtime_url, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(r.org_id.clone())
    .bind(r.api_url.clone())
    .bind(r.proxy_url.clone())
    .bind(r.realtime_url.clone())
    .bind(r.updated_at)
    .bind(r.updated_by.clone())
    .execute(e)
    .await?;
    Ok(())
}
