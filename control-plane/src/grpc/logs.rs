//! LogService.Ingest: nodes stream batches of usage records; each batch is written in one
//! transaction (records already stored — a resend after a lost ack — are skipped) and
//! acknowledged with how many were stored and how many were duplicates.

use std::pin::Pin;
use std::sync::atomic::Ordering;

use proto::v1 as pb;
use proto::v1::log_service_server::LogService;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::db::{self, logs::LogRow};
use crate::state::AppState;

pub struct LogSvc {
    pub st: AppState,
}

/// Limits on what one record may carry (a node never sends more; anything larger is cut).
const MAX_PAYLOAD: usize = 1024 * 1024;
const MAX_BATCH: usize = 5_000;

/// `s` cut to at most `max` bytes on a character boundary, with NUL characters replaced by
/// U+FFFD: PostgreSQL's text cannot hold them, and one would fail its whole batch there (and
/// the node would resend it forever).
fn clip(s: String, max: usize) -> String {
    let s = if has_nul(&s) {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    };
    if s.len() <= max {
        return s;
    }
    let cut = s
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|i| *i <= max)
        .last()
        .unwrap_or(0);
    s[..cut].to_string()
}

/// Whether `s` holds a NUL. Every byte is looked at, with no early exit, so the compiler turns
/// the loop into vector compares: `clip` took 2.1k instructions per chat record with
/// `str::contains` (a search that stops at the first match), 1.2k with this.
fn has_nul(s: &str) -> bool {
    s.bytes().fold(false, |seen, b| seen | (b == 0))
}

fn opt(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

/// A record's token counts are stored up to this. No call uses four billion tokens, and the usage
/// sums (64-bit, in SQL) then hold for billions of rows: one broken or hostile upstream reporting
/// `u64::MAX` tokens would otherwise overflow every sum over its rows, failing the usage query
/// and the rollups of that period.
pub const MAX_RECORD_TOKENS: u64 = u32::MAX as u64;

pub fn to_row(r: pb::UsageRecord) -> Option<LogRow> {
    uuid::Uuid::parse_str(&r.id).ok()?;
    if r.org_id.is_empty() {
        return None;
    }
    let n = |v: u64| v.min(i64::MAX as u64) as i64;
    let tokens = |v: u64| v.min(MAX_RECORD_TOKENS) as i64;
    Some(LogRow {
        id: r.id,
        org_id: clip(r.org_id, 64),
        project_id: opt(clip(r.project_id, 64)),
        api_key_id: opt(clip(r.api_key_id, 64)),
        model: clip(r.model, 512),
        provider_type: clip(r.provider_type, 32),
        credential_name: clip(r.credential_name, 128),
        route: clip(r.route, 64),
        status: i64::from(r.status),
        error_type: clip(r.error_type, 64),
        error_message: clip(r.error_message, 2000),
        prompt_tokens: tokens(r.prompt_tokens),
        completion_tokens: tokens(r.completion_tokens),
        cached_tokens: tokens(r.cached_tokens),
        cache_write_tokens: tokens(r.cache_write_tokens),
        reasoning_tokens: tokens(r.reasoning_tokens),
        cost_usd: if r.cost_usd.is_finite() && r.cost_usd >= 0.0 {
            r.cost_usd
        } else {
            0.0
        },
        latency_ms: n(r.latency_ms),
        ttft_ms: n(r.ttft_ms),
        attempts: i64::from(r.attempts),
        cache_hit: r.cache_hit,
        stream: r.stream,
        started_at: r.started_at_ms,
        finished_at: r.finished_at_ms,
        node_id: clip(r.node_id, 128),
        request_id: clip(r.request_id, 128),
        attempts_json: clip(r.attempts_json, 16 * 1024),
        input: opt(clip(r.input_json, MAX_PAYLOAD)),
        output: opt(clip(r.output_json, MAX_PAYLOAD)),
    })
}

/// Stores one batch in one transaction; returns (stored, duplicates).
pub async fn store(
    st: &AppState,
    records: Vec<pb::UsageRecord>,
) -> Result<(u32, u32), db::DbError> {
    let total = records.len() as u32;
    // Not `collect()`: that would reuse the records' buffer and then reallocate it to fit the
    // rows, copying all of them once more.
    let mut rows: Vec<LogRow> = Vec::with_capacity(records.len());
    rows.extend(records.into_iter().filter_map(to_row));
    let invalid = total - rows.len() as u32;
    let marks = db::logs::period_marks(&rows);
    let stored = match st.db().backend() {
        db::Backend::Postgres => {
            let mut tx = st.db().begin().await?;
            let stored = db::logs::insert_json_pg(&mut tx, &rows).await?;
            if stored > 0 {
                db::logs::mark_periods::<sqlx::Any>(&mut tx, &marks).await?;
            }
            tx.commit().await?;
            stored
        }
        db::Backend::Sqlite => {
            let mut ingest = st.db().sqlite_ingest().await?;
            let mut tx = ingest.begin().await?;
            let stored = db::logs::insert_sqlite(&mut tx, rows).await?;
            if stored > 0 {
                db::logs::mark_periods::<sqlx::Sqlite>(&mut tx, &marks).await?;
            }
            tx.commit().await?;
            ingest.finish();
            stored
        }
    };
    if invalid > 0 {
        tracing::warn!(invalid, "dropped malformed usage records");
    }
    Ok((stored as u32, total - invalid - stored as u32))
}

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::IngestAck, Status>> + Send>>;

#[tonic::async_trait]
impl LogService for LogSvc {
    type IngestStream = AckStream;

    async fn ingest(
        &self,
        req: Request<Streaming<pb::LogBatch>>,
    ) -> Result<Response<AckStream>, Status> {
        super::node_auth(&self.st, &req)?;
        let mut batches = req.into_inner();
        let st = self.st.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(b) = batches.next().await {
                let b = match b {
                    Ok(b) => b,
                    Err(_) => break,
                };
                if b.records.len() > MAX_BATCH {
                    let _ = tx
                        .send(Err(Status::invalid_argument(format!(
                            "a batch may hold at most {MAX_BATCH} records"
                        ))))
                        .await;
                    break;
                }
                let n = b.records.len() as u64;
                match store(&st, b.records).await {
                    Ok((stored, duplicates)) => {
                        st.0.metrics.ingest_records.fetch_add(n, Ordering::Relaxed);
                        st.0.metrics.ingest_batches.fetch_add(1, Ordering::Relaxed);
                        if tx
                            .send(Ok(pb::IngestAck {
                                batch_id: b.batch_id,
                                stored,
                                duplicates,
                            }))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot store a log batch; the node will resend it");
                        let _ = tx
                            .send(Err(Status::unavailable("cannot store logs right now")))
                            .await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, test_config};

    fn record(i: u32) -> pb::UsageRecord {
        pb::UsageRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: "org-1".into(),
            model: "gpt-4o".into(),
            provider_type: "openai".into(),
            status: 200,
            prompt_tokens: u64::from(i),
            started_at_ms: 1_700_000_000_000 + i64::from(i),
            input_json: format!("{{\"n\":{i}}}"),
            ..Default::default()
        }
    }

    /// NULs anywhere (in a short text, or deep in a long payload) become U+FFFD; a text over
    /// the bound is cut on a character boundary.
    #[test]
    fn clip_replaces_nuls_and_cuts_on_a_character_boundary() {
        assert_eq!(clip("a\0b".into(), 64), "a\u{FFFD}b");
        assert_eq!(clip("plain".into(), 64), "plain");
        let long = format!("{}\0{}", "x".repeat(1000), "y".repeat(1000));
        let clipped = clip(long, 1 << 20);
        assert_eq!(clipped.len(), 2000 + '\u{FFFD}'.len_utf8());
        assert_eq!(&clipped[1000..1003], "\u{FFFD}");
        assert!(!clipped.contains('\0'));
        // A NUL at every position of texts around the vector loop's widths is found.
        for len in [1usize, 15, 16, 17, 31, 32, 33, 64, 100] {
            for at in 0..len {
                let mut b = vec![b'x'; len];
                b[at] = 0;
                let s = String::from_utf8(b).unwrap();
                assert!(has_nul(&s), "{len}/{at}");
            }
            assert!(!has_nul(&"x".repeat(len)), "{len}");
        }
        assert!(!has_nul(""));
        // "é" is two bytes: a bound inside it cuts before it.
        assert_eq!(clip("aé".into(), 2), "a");
        assert_eq!(clip("aéb".into(), 3), "aé");
    }

    /// A batch larger than one SQLite INSERT statement goes in several statements of one
    /// transaction; a resend overlapping what is stored stores only the new records, across
    /// the statements' boundaries.
    #[tokio::test]
    async fn batches_spanning_several_statements_store_each_record_once() {
        let tdb = TestDb::new().await;
        let st = crate::run::open(
            test_config(&tdb, "aip_test_key"),
            std::sync::Arc::new(crate::clock::SystemClock),
        )
        .await
        .unwrap();
        let per = db::logs::SQLITE_ROWS_PER_INSERT as u32;
        let n = 2 * per + per / 2;
        let all: Vec<pb::UsageRecord> = (0..n).map(record).collect();
        assert_eq!(
            store(&st, all[..n as usize - 100].to_vec()).await.unwrap(),
            (n - 100, 0)
        );
        // A resend of the last `per` stored records with the 100 not yet stored.
        let again = all[(n - 100 - per) as usize..].to_vec();
        assert_eq!(store(&st, again).await.unwrap(), (100, per));
        let stored: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, prompt_tokens FROM request_logs ORDER BY prompt_tokens")
                .fetch_all(st.db().pool())
                .await
                .unwrap();
        assert_eq!(stored.len(), n as usize);
        for (i, (id, tokens)) in stored.iter().enumerate() {
            assert_eq!((id, *tokens), (&all[i].id, i as i64));
        }
    }
}
