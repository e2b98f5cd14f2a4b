//! The usage rollup job. Ingest marks the periods it writes (`usage_dirty`: each hour for the
//! per-hour-and-project level, each day for the per-day-and-everything level); this job
//! aggregates each ended, marked period from `request_logs` into `usage_rollup`
//! (`db::logs::roll_up`), so the usage query reads periods instead of rows. Every replica runs
//! it; one mark is taken by one replica at a time (its row lock on PostgreSQL, the write lock on
//! SQLite).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::db::{self, DbResult};
use crate::state::AppState;

const CHUNK: i64 = 200;
/// Periods aggregated per pass at most (a backlog is worked off over several passes).
const MAX_PER_PASS: usize = 10_000;

pub fn spawn(st: AppState, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let t = Instant::now();
            match run_pass(&st).await {
                Ok(0) => {}
                Ok(periods) => tracing::debug!(
                    periods,
                    elapsed_ms = t.elapsed().as_millis() as u64,
                    "usage rolled up"
                ),
                Err(e) => tracing::warn!(error = %e, "usage rollup failed"),
            }
            // Busy at most half the time, and every 5 s at most.
            let pause = Duration::from_secs(5).max(t.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    })
}

/// Aggregates the ended periods marked so far; returns how many it aggregated. Publishes the
/// periods still waiting (`aiproxy_usage_rollup_pending`) and counts the pass.
pub async fn run_pass(st: &AppState) -> DbResult<usize> {
    let now = st.now_ms();
    let mut done = 0;
    while done < MAX_PER_PASS {
        let marked = db::logs::dirty_periods(st.db(), now, CHUNK).await?;
        let n = marked.len();
        for (org, level, period) in marked {
            if db::logs::roll_up(st.db(), &org, level, period).await? {
                done += 1;
            }
        }
        if (n as i64) < CHUNK {
            break;
        }
    }
    let pending = db::logs::count_dirty(st.db(), now).await?;
    let m = &st.0.metrics;
    m.usage_rollup_pending
        .store(pending.max(0) as u64, Ordering::Relaxed);
    m.usage_rollup_passes.fetch_add(1, Ordering::Relaxed);
    Ok(done)
}
