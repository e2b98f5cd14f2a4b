//! The usage rollup job. Ingest marks the periods it writes (`usage_dirty`: each hour for the
//! per-hour-and-project level, each day for the per-day-and-everything level); this job
//! aggregates each ended, marked period from `request_logs` into `usage_rollup`
//! (`db::logs::aggregate`, outside any lock, then `db::logs::store_rollup`, which writes only if
//! the period was not marked again meanwhile), so the usage query reads periods instead of rows.
//! Every replica runs it; one mark is taken by one replica at a time (its row lock on
//! PostgreSQL, the write lock on SQLite).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::db::logs::Level;
use crate::db::{self, DbResult};
use crate::state::AppState;

const CHUNK: i64 = 200;
/// Periods looked at per pass at most (a backlog is worked off over several passes).
const MAX_PER_PASS: usize = 10_000;
/// Passes in a row in which a period was marked again while it was aggregated, after which the
/// job aggregates it inside the write transaction (`db::logs::roll_up_locked`): a period that
/// keeps receiving records (late ones, a spool replaying) is still rolled up.
const OPTIMISTIC_PASSES: u32 = 3;

pub fn spawn(st: AppState, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut job = Rollup::default();
        loop {
            let t = Instant::now();
            let (r, waited) = db::counting_turn_waits(job.pass(&st)).await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "usage rollup failed");
            }
            let took = t.elapsed();
            // Busy at most half the time, and every 5 s at most. Busy is the pass's reading and
            // writing, not its waits for this process's write turn (SQLite): behind a stream of
            // ingest batches those were a third of a long pass (6.1 of 19.7 s in the bench's
            // million-record load), and pausing for them too only put off the rest of a backlog.
            let pause = Duration::from_secs(5).max(took.saturating_sub(waited));
            if !waited.is_zero() {
                tracing::debug!(
                    elapsed_ms = took.as_millis() as u64,
                    waited_for_turns_ms = waited.as_millis() as u64,
                    pause_ms = pause.as_millis() as u64,
                    "usage rollup pass ended"
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    })
}

/// One pass of a job with no history (`Rollup::pass`).
pub async fn run_pass(st: &AppState) -> DbResult<usize> {
    Rollup::default().pass(st).await
}

/// The job's memory between passes.
#[derive(Default)]
pub struct Rollup {
    /// Periods whose aggregation was dropped in the last pass (marked again meanwhile), with how
    /// many passes in a row that happened.
    refused: HashMap<(String, Level, i64), u32>,
}

impl Rollup {
    /// Aggregates the ended periods marked so far; returns how many it stored. Publishes the
    /// periods still waiting (`aiproxy_usage_rollup_pending`) and counts the pass.
    pub async fn pass(&mut self, st: &AppState) -> DbResult<usize> {
        let t0 = Instant::now();
        let now = st.now_ms();
        let mut done = 0;
        let mut seen = 0;
        let mut refused = HashMap::new();
        // The longest read and write of one period (ingest waits for the write only, on
        // SQLite; for both when a period is aggregated inside the write transaction).
        let (mut longest_aggregate, mut longest_store) = (Duration::ZERO, Duration::ZERO);
        // Through the marks once, in key order: a period marked again while it was aggregated
        // keeps its mark and waits for the next pass.
        let mut after = None;
        while seen < MAX_PER_PASS {
            let marked = db::logs::dirty_periods(st.db(), now, after.as_ref(), CHUNK).await?;
            let n = marked.len();
            for (org, level, period) in marked.iter().cloned() {
                let key = (org, level, period);
                let before = self.refused.get(&key).copied().unwrap_or(0);
                if before >= OPTIMISTIC_PASSES {
                    let t = Instant::now();
                    if db::logs::roll_up_locked(st.db(), &key.0, level, period).await? {
                        done += 1;
                    }
                    longest_store = longest_store.max(t.elapsed());
                    continue;
                }
                let t = Instant::now();
                let Some(r) = db::logs::aggregate(st.db(), &key.0, level, period).await? else {
                    continue;
                };
                longest_aggregate = longest_aggregate.max(t.elapsed());
                let t = Instant::now();
                if db::logs::store_rollup(st.db(), &r).await? {
                    done += 1;
                } else {
                    refused.insert(key, before + 1);
                }
                longest_store = longest_store.max(t.elapsed());
            }
            seen += n;
            after = marked.into_iter().next_back();
            if (n as i64) < CHUNK {
                break;
            }
        }
        self.refused = refused;
        let pending = db::logs::count_dirty(st.db(), now).await?;
        let m = &st.0.metrics;
        m.usage_rollup_pending
            .store(pending.max(0) as u64, Ordering::Relaxed);
        m.usage_rollup_passes.fetch_add(1, Ordering::Relaxed);
        if done > 0 || !self.refused.is_empty() {
            tracing::debug!(
                periods = done,
                marked_again = self.refused.len(),
                elapsed_ms = t0.elapsed().as_millis() as u64,
                longest_aggregate_ms = longest_aggregate.as_millis() as u64,
                longest_store_ms = longest_store.as_millis() as u64,
                "usage rolled up"
            );
        }
        Ok(done)
    }
}
