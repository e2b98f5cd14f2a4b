//! Periodic housekeeping: expired sessions, configuration change records older than a day
//! (`service::snapshot::CHANGES_KEPT_MS`), and request logs older than the retention period
//! (`AIPROXY_LOG_RETENTION_DAYS`, default 30; 0 keeps logs forever), deleted in chunks per org,
//! with their hourly usage rollups.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db;
use crate::state::AppState;

const FIRST_PASS_DELAY: Duration = Duration::from_secs(30);

pub fn spawn(st: AppState, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The first pass waits a little: a replica that just started serves first.
        tokio::select! {
            _ = tokio::time::sleep(FIRST_PASS_DELAY) => {}
            _ = shutdown.cancelled() => return,
        }
        loop {
            if let Err(e) = db::sessions::delete_expired(st.db().pool(), st.now_ms()).await {
                tracing::debug!(error = %e, "session cleanup failed");
            }
            prune_config_changes(&st).await;
            let removed = apply_retention(&st).await;
            if removed > 0 {
                tracing::info!(
                    removed,
                    days = st.config().log_retention_days,
                    "deleted request logs past retention"
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(300)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    })
}

/// Deletes configuration change records older than a day (on SQLite in this process's write
/// turn).
pub async fn prune_config_changes(st: &AppState) {
    let turn = st.db().write_turn().await;
    let result = db::bulk::prune_changes(
        st.db().pool(),
        st.db().backend(),
        crate::service::snapshot::CHANGES_KEPT_MS,
    )
    .await;
    drop(turn);
    match result {
        Ok(0) => {}
        Ok(n) => tracing::debug!(removed = n, "deleted old configuration change records"),
        Err(e) => tracing::warn!(error = %e, "configuration change records cleanup failed"),
    }
}

/// Deletes request logs past retention, org by org, in chunks (10,000 rows per statement on
/// PostgreSQL; 2,000 on SQLite, each in its turn at the write lock and followed by a short
/// pause, so ingest and the admin API keep writing while a backlog is worked off); returns how
/// many went.
pub async fn apply_retention(st: &AppState) -> u64 {
    let days = st.config().log_retention_days;
    if days == 0 {
        return 0;
    }
    let before = st.now_ms() - i64::from(days) * 86_400_000;
    let sqlite = st.db().backend() == db::Backend::Sqlite;
    let chunk = if sqlite { 2_000 } else { 10_000 };
    let orgs = match db::logs::log_org_ids(st.db().pool()).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "log retention failed");
            return 0;
        }
    };
    let mut total = 0;
    for org in orgs {
        loop {
            let turn = st.db().write_turn().await;
            let deleted = db::logs::delete_older_than(st.db().pool(), &org, before, chunk).await;
            drop(turn);
            match deleted {
                Ok(n) => {
                    total += n;
                    if n < chunk as u64 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "log retention failed");
                    return total;
                }
            }
            if sqlite {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // After the rows: the hour `before` falls in is marked to be rolled up again without them.
    if let Err(e) = db::logs::delete_rollups_older_than(st.db().pool(), before).await {
        tracing::warn!(error = %e, "usage rollup retention failed");
    }
    total
}
