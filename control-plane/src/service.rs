//! Business rules, one module per aggregate: the only layer that decides who may do what and
//! what is valid. REST handlers, gRPC AdminService and web-admin views all call these.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod housekeeping;
pub mod listen;
pub mod logs;
pub mod members;
pub mod models;
pub mod nodes;
pub mod orgs;
pub mod projects;
pub mod providers;
pub mod rollup;
pub mod rotate;
pub mod settings;
pub mod snapshot;
pub mod usage;

pub use auth::Principal;

/// Serialises a unix-ms timestamp as RFC 3339 in API responses.
pub fn ser_time<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::domain::time::rfc3339(*ms))
}

pub fn ser_opt_time<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&crate::domain::time::rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

/// Commits a change. When it alters what nodes serve, the configuration version is bumped in
/// the same transaction, other replicas are told (Postgres NOTIFY, delivered on commit), and the
/// local snapshot hub rebuilds.
pub(crate) async fn commit(
    st: &crate::state::AppState,
    tx: crate::db::Tx,
    affects_config: bool,
) -> crate::error::ApiResult<()> {
    commit_with(st, tx, affects_config, false).await
}

/// Commits a change that wrote rows of the tables a snapshot is built from (orgs, projects,
/// api_keys, provider_credentials), as `commit(.., true)`. On SQLite those tables' triggers
/// (migration 0004) bumped the version with each row they recorded, so the explicit bump is
/// left out there: one statement fewer, a round trip to SQLite's worker thread, under the
/// write turn every other write waits for. A change that wrote no such row (none matched)
/// changed nothing a node serves.
pub(crate) async fn commit_config_rows(
    st: &crate::state::AppState,
    tx: crate::db::Tx,
) -> crate::error::ApiResult<()> {
    commit_with(st, tx, true, true).await
}

async fn commit_with(
    st: &crate::state::AppState,
    mut tx: crate::db::Tx,
    affects_config: bool,
    rows_bumped_on_sqlite: bool,
) -> crate::error::ApiResult<()> {
    use crate::db::Backend;
    if affects_config {
        match st.db().backend() {
            // The bump and the NOTIFY in one statement (one round trip to the server): a
            // data-modifying CTE runs exactly once, whatever the query around it reads.
            Backend::Postgres => {
                sqlx::query(
                    "WITH bumped AS (UPDATE config_state SET version = version + 1 WHERE id = 1 RETURNING 1) \
                     SELECT pg_notify('aiproxy_config', 'changed') FROM bumped",
                )
                .execute(&mut *tx)
                .await
                .map_err(crate::db::DbError::from)?;
            }
            Backend::Sqlite if rows_bumped_on_sqlite => {}
            Backend::Sqlite => crate::db::bump_config_version(&mut tx).await?,
        }
    }
    tx.commit().await.map_err(crate::db::DbError::from)?;
    if affects_config {
        st.config_changed();
    }
    Ok(())
}
