//! Whole-table reads for the configuration snapshot. Fetching tens of thousands of rows one by
//! one through sqlx costs ≈13 µs a row (each row crosses a channel from SQLite's worker thread
//! and is converted to the Any driver's row type): 430 ms of a 460 ms build at 4,000 projects.
//! Here the database aggregates each table into one JSON array instead (`json_group_array` on
//! SQLite, `json_agg` on PostgreSQL) — one row per table — which serde decodes straight into
//! tuples.
//!
//! A build can also read only the rows that changed since an earlier one (`Since`): triggers
//! record every inserted, updated or deleted row of these tables in `config_changes`
//! (migrations/*/0004_config_changes.sql), and `Cursor` is where the earlier read stood.

use serde::de::DeserializeOwned;
use sqlx::{Any, Executor};

use super::{Backend, DbError, DbResult, s};

/// Where a snapshot build's read stood, so the next build can read what changed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// SQLite: the configuration version the read saw. Every change's trigger bumps the version
    /// and stamps the change with it, and SQLite has one writer at a time, so the read saw
    /// every change stamped at or below it and none above.
    Sqlite(i64),
    /// PostgreSQL: the read's snapshot (`pg_current_snapshot()` as text) and its `xmin`.
    /// Changes are stamped with their transaction's id; the ones the read did not see are those
    /// not visible in that snapshot (every transaction below `xmin` had ended before it).
    Postgres { snapshot: String, xmin: i64 },
}

impl Cursor {
    /// Is `self` (a newer read) at or after `earlier`? A database restored under a running
    /// control plane can go back; the builder then reads everything again.
    pub fn not_before(&self, earlier: &Cursor) -> bool {
        match (self, earlier) {
            (Cursor::Sqlite(a), Cursor::Sqlite(b)) => a >= b,
            (Cursor::Postgres { xmin: a, .. }, Cursor::Postgres { xmin: b, .. }) => a >= b,
            _ => false,
        }
    }

    /// The condition on `config_changes` that selects the changes this cursor's read did not
    /// see, with its bind values.
    fn unseen(&self) -> (&'static str, Vec<Bind>) {
        match self {
            Cursor::Sqlite(v) => ("stamp > $1", vec![Bind::I(*v)]),
            Cursor::Postgres { snapshot, xmin } => (
                "stamp >= $1 AND NOT pg_visible_in_snapshot(CAST(CAST(stamp AS TEXT) AS xid8), CAST($2 AS pg_snapshot))",
                vec![Bind::I(*xmin), Bind::S(snapshot.clone())],
            ),
        }
    }
}

enum Bind {
    I(i64),
    S(String),
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    for b in binds {
        q = match b {
            Bind::I(v) => q.bind(v),
            Bind::S(v) => q.bind(v),
        };
    }
    q
}

/// The cursor for the read transaction `e` is in; `version` is what it read from
/// `config_state`.
pub async fn cursor<'e, E: Executor<'e, Database = Any>>(
    e: E,
    b: Backend,
    version: i64,
) -> DbResult<Cursor> {
    match b {
        Backend::Sqlite => Ok(Cursor::Sqlite(version)),
        Backend::Postgres => {
            let row = sqlx::query("SELECT CAST(pg_current_snapshot() AS TEXT) AS snap")
                .fetch_one(e)
                .await?;
            let snapshot = s(&row, "snap")?;
            let xmin = snapshot
                .split(':')
                .next()
                .and_then(|x| x.parse().ok())
                .ok_or_else(|| DbError::Other(format!("unexpected snapshot {snapshot:?}")))?;
            Ok(Cursor::Postgres { snapshot, xmin })
        }
    }
}

/// (table, row id) of every change the read at `since` did not see. A row changed several
/// times appears as often.
pub async fn changes<'e, E: Executor<'e, Database = Any>>(
    e: E,
    since: &Cursor,
) -> DbResult<Vec<(String, String)>> {
    let (cond, binds) = since.unseen();
    let q = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT tbl, row_id FROM config_changes WHERE {cond}"
    )));
    let rows = bind_all(q, binds).fetch_all(e).await?;
    rows.iter()
        .map(|r| Ok((s(r, "tbl")?, s(r, "row_id")?)))
        .collect()
}

/// Deletes the change records older than `keep_ms` by the database's clock (which stamped
/// them); returns how many went. Builders read everything again long before
/// (`service::snapshot::FULL_READ_EVERY`).
pub async fn prune_changes<'e, E: Executor<'e, Database = Any>>(
    e: E,
    b: Backend,
    keep_ms: i64,
) -> DbResult<u64> {
    let sql = match b {
        Backend::Sqlite => {
            "DELETE FROM config_changes WHERE at < CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) - $1"
        }
        Backend::Postgres => {
            "DELETE FROM config_changes WHERE at < CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT) - $1"
        }
    };
    Ok(sqlx::query(sql)
        .bind(keep_ms)
        .execute(e)
        .await?
        .rows_affected())
}

/// Which rows of a table to read: all of them, or those changed since a cursor.
#[derive(Clone, Copy)]
pub enum Since<'a> {
    All,
    Changed(&'a Cursor),
}

async fn json_rows<'e, E, T>(
    e: E,
    backend: Backend,
    cols: &str,
    table: &str,
    filter: Option<&str>,
    since: Since<'_>,
) -> DbResult<Vec<T>>
where
    E: Executor<'e, Database = Any>,
    T: DeserializeOwned,
{
    let (changed, binds) = match since {
        Since::All => (String::new(), Vec::new()),
        Since::Changed(c) => {
            let (cond, binds) = c.unseen();
            (
                format!(
                    "id IN (SELECT row_id FROM config_changes WHERE tbl = '{table}' AND {cond})"
                ),
                binds,
            )
        }
    };
    let wh = match (filter, changed.is_empty()) {
        (None, true) => String::new(),
        (Some(f), true) => format!(" WHERE {f}"),
        (None, false) => format!(" WHERE {changed}"),
        (Some(f), false) => format!(" WHERE {f} AND {changed}"),
    };
    let sql = match backend {
        Backend::Sqlite => format!(
            "SELECT COALESCE(json_group_array(json_array({cols})), '[]') AS j FROM {table}{wh}"
        ),
        Backend::Postgres => format!(
            "SELECT CAST(COALESCE(json_agg(json_build_array({cols})), '[]') AS TEXT) AS j FROM {table}{wh}"
        ),
    };
    let row = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), binds)
        .fetch_one(e)
        .await?;
    let text = s(&row, "j")?;
    serde_json::from_str(&text)
        .map_err(|err| DbError::Other(format!("bulk read of {table}: {err}")))
}

/// (id, name)
pub async fn orgs<'e, E: Executor<'e, Database = Any>>(
    e: E,
    b: Backend,
    since: Since<'_>,
) -> DbResult<Vec<(String, String)>> {
    json_rows(e, b, "id, name", "orgs", None, since).await
}

/// (id, org_id, name)
pub async fn projects<'e, E: Executor<'e, Database = Any>>(
    e: E,
    b: Backend,
    since: Since<'_>,
) -> DbResult<Vec<(String, String, String)>> {
    json_rows(e, b, "id, org_id, name", "projects", None, since).await
}

/// Active keys: (id, org_id, project_id, role, key_hash hex, name)
pub type KeyTuple = (String, String, Option<String>, String, String, String);

pub async fn active_api_keys<'e, E: Executor<'e, Database = Any>>(
    e: E,
    b: Backend,
    since: Since<'_>,
) -> DbResult<Vec<KeyTuple>> {
    json_rows(
        e,
        b,
        "id, org_id, project_id, role, key_hash, name",
        "api_keys",
        Some("revoked_at IS NULL"),
        since,
    )
    .await
}

/// (id, org_id, project_id, name, type, metadata JSON text, sealed_secret, updated_at)
pub type CredentialTuple = (
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    i64,
);

pub async fn credentials<'e, E: Executor<'e, Database = Any>>(
    e: E,
    b: Backend,
    since: Since<'_>,
) -> DbResult<Vec<CredentialTuple>> {
    json_rows(
        e,
        b,
        "id, org_id, project_id, name, type, metadata, sealed_secret, updated_at",
        "provider_credentials",
        None,
        since,
    )
    .await
}
