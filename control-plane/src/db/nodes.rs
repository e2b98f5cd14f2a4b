//! Data-plane nodes as the control-plane replicas last saw them (shared by all replicas through
//! the database, so `GET /api/v1/nodes` answers the same on each).

use sqlx::{Any, Executor};

use super::{DbResult, i, s};

#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    pub node_id: String,
    pub hostname: String,
    pub build: String,
    pub replica: String,
    pub applied_version: i64,
    pub last_error: String,
    pub details: String,
    pub connected: bool,
    pub connected_at: i64,
    pub last_seen_at: i64,
}

pub async fn upsert_connected<'e, E: Executor<'e, Database = Any>>(
    e: E,
    n: &NodeRow,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO nodes (node_id, hostname, build, replica, applied_version, last_error, details, connected, connected_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (node_id) DO UPDATE SET hostname = excluded.hostname, build = excluded.build, replica = excluded.replica, applied_version = excluded.applied_version, \
         connected = excluded.connected, connected_at = excluded.connected_at, last_seen_at = excluded.last_seen_at",
    )
    .bind(n.node_id.clone())
    .bind(n.hostname.clone())
    .bind(n.build.clone())
    .bind(n.replica.clone())
    .bind(n.applied_version)
    .bind(n.last_error.clone())
    .bind(n.details.clone())
    .bind(i64::from(n.connected))
    .bind(n.connected_at)
    .bind(n.last_seen_at)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn ack<'e, E: Executor<'e, Database = Any>>(
    e: E,
    node_id: &str,
    version: i64,
    error: &str,
    details: &str,
    now: i64,
) -> DbResult<()> {
    sqlx::query("UPDATE nodes SET applied_version = CASE WHEN $1 = '' THEN $2 ELSE applied_version END, last_error = $1, details = $3, last_seen_at = $4 WHERE node_id = $5")
        .bind(error.to_string())
        .bind(version)
        .bind(details.to_string())
        .bind(now)
        .bind(node_id.to_string())
        .execute(e)
        .await?;
    Ok(())
}

pub async fn disconnected<'e, E: Executor<'e, Database = Any>>(
    e: E,
    node_id: &str,
    replica: &str,
    now: i64,
) -> DbResult<()> {
    sqlx::query(
        "UPDATE nodes SET connected = 0, last_seen_at = $1 WHERE node_id = $2 AND replica = $3",
    )
    .bind(now)
    .bind(node_id.to_string())
    .bind(replica.to_string())
    .execute(e)
    .await?;
    Ok(())
}

pub async fn list<'e, E: Executor<'e, Database = Any>>(e: E) -> DbResult<Vec<NodeRow>> {
    let rows = sqlx::query("SELECT node_id, hostname, build, replica, applied_version, last_error, details, connected, connected_at, last_seen_at FROM nodes ORDER BY node_id").fetch_all(e).await?;
    rows.iter()
        .map(|r| {
            Ok(NodeRow {
                node_id: s(r, "node_id")?,
                hostname: s(r, "hostname")?,
                build: s(r, "build")?,
                replica: s(r, "replica")?,
                applied_version: i(r, "applied_version")?,
                last_error: s(r, "last_error")?,
                details: s(r, "details")?,
                connected: i(r, "connected")? != 0,
                connected_at: i(r, "connected_at")?,
                last_seen_at: i(r, "last_seen_at")?,
            })
        })
        .collect()
}
