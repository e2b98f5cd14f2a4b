//! The log pipeline: `submit` puts a record on a bounded in-memory queue without ever waiting
//! (a full queue drops and counts; the queue is bounded in records and in bytes, since a logged
//! call's payloads can reach 512 KiB); the shipper batches records (2,000, 16 MiB encoded, or
//! every second) and sends them over `LogService.Ingest`, one acknowledgement per batch. While
//! the control plane is unreachable batches go to the encrypted on-disk spool, which is drained
//! first, oldest first, once it is back — so records arrive in order; the control plane ignores
//! records it already has, so a resend after a lost acknowledgement stores nothing twice.
//!
//! A batch is encoded once, record by record as it is gathered: those bytes go on the wire as
//! they are (a codec that writes pre-encoded messages) and, if the send fails, into the spool —
//! the shipper keeps no copy of the records for the case of a failure.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use prost::Message;
use proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::record::{RecordSink, RequestRecord};
use crate::spool::Spool;

pub const QUEUE_CAPACITY: usize = 50_000;
const BATCH_MAX: usize = 2_000;
/// A batch is closed once its encoding reaches this many bytes. A record carries at most
/// 2 × `payload::MAX_PAYLOAD_BYTES` of payloads plus a few KiB, so a batch stays far below what
/// the control plane accepts in one message (64 MiB); 2,000 records of large payloads would be
/// ≈1 GiB, refused every time it was sent, and would hold up every batch spooled behind it.
pub const BATCH_MAX_BYTES: usize = 16 * 1024 * 1024;
const BATCH_WAIT: Duration = Duration::from_secs(1);
/// How often a batch being gathered takes what has queued.
const GATHER_TICK: Duration = Duration::from_millis(50);
const ACK_TIMEOUT: Duration = Duration::from_secs(15);

pub struct LogPipeline {
    tx: mpsc::Sender<RequestRecord>,
    metrics: Arc<Metrics>,
    max_bytes: u64,
}

impl RecordSink for LogPipeline {
    fn submit(&self, record: RequestRecord) {
        let n = record.approx_bytes() as i64;
        let queued = &self.metrics.log_queue_bytes;
        // Reserved before sending, released when the shipper takes the record (or here when it
        // cannot go in): concurrent submits never overshoot the bound together.
        if queued.fetch_add(n, Ordering::Relaxed) + n > self.max_bytes as i64 {
            queued.fetch_sub(n, Ordering::Relaxed);
            self.metrics.dropped("queue_full", 1);
            return;
        }
        match self.tx.try_send(record) {
            Ok(()) => {
                self.metrics.log_queue_depth.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                queued.fetch_sub(n, Ordering::Relaxed);
                self.metrics.dropped("queue_full", 1);
            }
        }
    }
}

/// One attempt as the control plane stores it in `attempts_json`.
#[derive(serde::Serialize)]
struct AttemptJson<'a> {
    credential: &'a str,
    provider: &'a str,
    status: u16,
    error: &'a str,
    latency_ms: u64,
}

pub fn to_proto(r: RequestRecord, node_id: &str) -> pb::UsageRecord {
    let attempts: Vec<AttemptJson> = r
        .attempts
        .iter()
        .map(|a| AttemptJson {
            credential: &a.credential,
            provider: &a.provider,
            status: a.status,
            error: &a.error,
            latency_ms: a.latency_ms,
        })
        .collect();
    // Serialising plain strings and numbers cannot fail.
    let attempts_json = serde_json::to_string(&attempts).unwrap_or_else(|_| "[]".into());
    pb::UsageRecord {
        id: r.id,
        org_id: r.org_id,
        project_id: r.project_id.unwrap_or_default(),
        api_key_id: r.api_key_id,
        model: r.model,
        provider_type: r.provider_type,
        credential_name: r.credential_name,
        route: r.route.to_string(),
        status: u32::from(r.status),
        error_type: r.error_type,
        prompt_tokens: r.usage.prompt_tokens,
        completion_tokens: r.usage.completion_tokens,
        cached_tokens: r.usage.cached_tokens,
        cache_write_tokens: r.usage.cache_write_tokens,
        reasoning_tokens: r.usage.reasoning_tokens,
        cost_usd: r.cost_usd,
        latency_ms: r.latency_ms,
        ttft_ms: r.ttft_ms,
        attempts: r.attempts.len() as u32,
        cache_hit: r.cache_hit,
        started_at_ms: r.started_at_ms,
        finished_at_ms: r.finished_at_ms,
        node_id: node_id.to_string(),
        stream: r.stream,
        input_json: r.input.unwrap_or_default(),
        output_json: r.output.unwrap_or_default(),
        attempts_json,
        request_id: r.request_id,
        error_message: r.error_message,
    }
}

/// A `LogBatch`, encoded: what goes on the wire and into the spool.
#[derive(Clone, Debug)]
pub struct EncodedBatch {
    pub batch_id: String,
    pub records: u64,
    pub bytes: Bytes,
}

impl EncodedBatch {
    /// A batch encoded whole, for tests that need a chosen batch id (the shipper builds its
    /// batches with `BatchBuilder`).
    #[cfg(test)]
    pub(crate) fn new(batch: &pb::LogBatch) -> EncodedBatch {
        EncodedBatch {
            batch_id: batch.batch_id.clone(),
            records: batch.records.len() as u64,
            bytes: Bytes::from(batch.encode_to_vec()),
        }
    }

    /// Reads an encoded `LogBatch` (from the spool); `None` if it is not one.
    pub fn decode(bytes: Vec<u8>) -> Option<EncodedBatch> {
        let b = pb::LogBatch::decode(bytes.as_slice()).ok()?;
        Some(EncodedBatch {
            batch_id: b.batch_id,
            records: b.records.len() as u64,
            bytes: Bytes::from(bytes),
        })
    }
}

/// A `LogBatch` encoded as its records are taken, so the encoding is spread over the gathering
/// (rather than one burst of ≈2 ms on a runtime worker for 2,000 records when the batch is
/// sent): the batch's id and node (fields 1 and 2) first, then each record as field 3
/// (`records`). Nothing is appended when the batch closes, so closing never grows the buffer
/// (a copy of the whole batch).
struct BatchBuilder {
    buf: bytes::BytesMut,
    batch_id: String,
    records: usize,
}

impl BatchBuilder {
    /// An empty batch encoded into `buf`, whose contents are dropped and whose allocation is
    /// kept (see `Shipper::spare`).
    fn new(mut buf: bytes::BytesMut, node_id: &str) -> BatchBuilder {
        buf.clear();
        let batch_id = uuid::Uuid::new_v4().to_string();
        prost::encoding::string::encode(1, &batch_id, &mut buf);
        prost::encoding::string::encode(2, &node_id.to_string(), &mut buf);
        BatchBuilder {
            buf,
            batch_id,
            records: 0,
        }
    }

    fn push(&mut self, record: &pb::UsageRecord) {
        prost::encoding::message::encode(3, record, &mut self.buf);
        self.records += 1;
    }

    /// Whether the batch takes no more records.
    fn full(&self) -> bool {
        self.records >= BATCH_MAX || self.buf.len() >= BATCH_MAX_BYTES
    }

    /// The batch, and what is left of its buffer: empty, sharing the batch's allocation, which
    /// it takes back (`BytesMut::reserve`) once the batch's bytes are dropped.
    fn finish(mut self) -> (EncodedBatch, bytes::BytesMut) {
        let bytes = self.buf.split().freeze();
        let batch = EncodedBatch {
            batch_id: self.batch_id,
            records: self.records as u64,
            bytes,
        };
        (batch, self.buf)
    }
}

/// The Ingest call's codec on the node's side: writes batches already encoded as `LogBatch`
/// (the wire is the same as the generated client's), reads acknowledgements with prost.
#[derive(Default)]
struct PreEncodedCodec;

struct PreEncoded;

impl tonic::codec::Encoder for PreEncoded {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        buf.put(item);
        Ok(())
    }
}

impl tonic::codec::Codec for PreEncodedCodec {
    type Encode = Bytes;
    type Decode = pb::IngestAck;
    type Encoder = PreEncoded;
    type Decoder = tonic_prost::ProstDecoder<pb::IngestAck>;

    fn encoder(&mut self) -> PreEncoded {
        PreEncoded
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// An open Ingest stream: batches go out on `out`, acknowledgements come back on `acks`.
struct Conn {
    out: mpsc::Sender<Bytes>,
    acks: tonic::Streaming<pb::IngestAck>,
}

pub struct Shipper {
    cfg: NodeConfig,
    rx: mpsc::Receiver<RequestRecord>,
    spool: Spool,
    metrics: Arc<Metrics>,
    conn: Option<Conn>,
    /// The last gathered batch's encoded size: the next batch's buffer starts at it, so a
    /// steady load's batch (megabytes at thousands of requests per second) is not copied at
    /// each doubling of its buffer as it grows.
    last_batch_bytes: usize,
    /// The buffer batches are encoded into, kept from one batch to the next (up to
    /// `SPARE_MAX_BYTES`). A new multi-megabyte buffer per batch was memory the kernel had to
    /// hand over and zero at first touch, in the shipper, on a runtime worker: 8–12 ms stalls
    /// at every batch (perf, 2,000 logged requests/s), behind the node's p99 in the bench's
    /// open-loop point.
    spare: bytes::BytesMut,
}

/// The largest batch buffer the shipper keeps for the next batch: a batch of 2,000 logged chat
/// calls is ≈1–2 MiB; batches of large payloads (up to `BATCH_MAX_BYTES`) get a buffer of their
/// own, freed once sent, rather than holding that much memory while idle.
const SPARE_MAX_BYTES: usize = 8 * 1024 * 1024;

pub fn pipeline(cfg: &NodeConfig, metrics: Arc<Metrics>) -> (Arc<LogPipeline>, Shipper) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let spool = Spool::open(
        cfg.cache_dir.join("spool"),
        cfg.node_token.expose(),
        cfg.spool_max_bytes,
        metrics.clone(),
    );
    (
        Arc::new(LogPipeline {
            tx,
            metrics: metrics.clone(),
            max_bytes: cfg.log_queue_max_bytes,
        }),
        Shipper {
            cfg: cfg.clone(),
            rx,
            spool,
            metrics,
            conn: None,
            last_batch_bytes: 0,
            spare: bytes::BytesMut::new(),
        },
    )
}

impl Shipper {
    async fn connect(&mut self) -> Result<(), String> {
        let channel = crate::sync::channel(&self.cfg).await?;
        // What the generated `LogServiceClient::ingest` does, with the pre-encoded codec.
        let mut client = tonic::client::Grpc::new(channel);
        client
            .ready()
            .await
            .map_err(|e| format!("ingest not ready: {e}"))?;
        let (out, out_rx) = mpsc::channel::<Bytes>(2);
        let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(out_rx));
        if let Ok(v) = format!("Bearer {}", self.cfg.node_token.expose()).parse() {
            req.metadata_mut().insert("authorization", v);
        }
        req.extensions_mut()
            .insert(tonic::GrpcMethod::new("aiproxy.v1.LogService", "Ingest"));
        let acks = client
            .streaming(
                req,
                http::uri::PathAndQuery::from_static("/aiproxy.v1.LogService/Ingest"),
                PreEncodedCodec,
            )
            .await
            .map_err(|s| format!("ingest refused: {}", s.message()))?
            .into_inner();
        self.conn = Some(Conn { out, acks });
        Ok(())
    }

    /// Sends one batch and waits for its acknowledgement.
    async fn send(&mut self, batch: &EncodedBatch) -> Result<(), String> {
        if self.conn.is_none() {
            self.connect().await?;
        }
        let n = batch.records;
        let id = &batch.batch_id;
        let result = async {
            let conn = self.conn.as_mut().ok_or("no connection")?;
            conn.out
                .send(batch.bytes.clone())
                .await
                .map_err(|_| "ingest stream closed".to_string())?;
            match tokio::time::timeout(ACK_TIMEOUT, conn.acks.next()).await {
                Ok(Some(Ok(ack))) if ack.batch_id == *id => Ok(()),
                Ok(Some(Ok(ack))) => Err(format!(
                    "acknowledgement for another batch ({})",
                    ack.batch_id
                )),
                Ok(Some(Err(s))) => Err(format!("ingest failed: {}", s.message())),
                Ok(None) => Err("ingest stream ended".to_string()),
                Err(_) => Err("no acknowledgement in time".to_string()),
            }
        }
        .await;
        match result {
            Ok(()) => {
                self.metrics.shipped_records.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    fn take(&mut self, first: RequestRecord, batch: &mut BatchBuilder) {
        self.metrics.log_queue_depth.fetch_sub(1, Ordering::Relaxed);
        self.metrics
            .log_queue_bytes
            .fetch_sub(first.approx_bytes() as i64, Ordering::Relaxed);
        batch.push(&to_proto(first, &self.cfg.node_id));
    }

    /// Gathers up to BATCH_MAX records (or BATCH_MAX_BYTES), waiting at most BATCH_WAIT after
    /// the first.
    async fn gather(&mut self, first: RequestRecord) -> EncodedBatch {
        let mut buf = std::mem::take(&mut self.spare);
        // Takes back the last batch's allocation if its bytes are gone (sent and acknowledged,
        // or spooled), else allocates.
        buf.reserve(self.last_batch_bytes.min(BATCH_MAX_BYTES));
        let mut batch = BatchBuilder::new(buf, &self.cfg.node_id);
        self.take(first, &mut batch);
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        // The queue is polled every GATHER_TICK rather than waited on: a waiting receiver is
        // woken by every record sent, which under load cost a thread wake-up (futex) per request.
        loop {
            while !batch.full() {
                match self.rx.try_recv() {
                    Ok(r) => {
                        self.take(r, &mut batch);
                        // Encoding what a tick gathered (≈1,500 records at 30,000 requests/s)
                        // in one go held its runtime worker for 2–3 ms, stalling the requests
                        // queued on it: the node's p99 at c=16. Give the worker back whenever
                        // this task's cooperative budget (128 steps) is spent.
                        tokio::task::coop::consume_budget().await;
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                        return self.finish(batch);
                    }
                }
            }
            let now = tokio::time::Instant::now();
            if batch.full() || now >= deadline {
                break;
            }
            tokio::time::sleep(GATHER_TICK.min(deadline - now)).await;
        }
        self.finish(batch)
    }

    /// A gathered batch, closed; its size sizes the next one's buffer, and its buffer is kept
    /// for the next one unless it is large.
    fn finish(&mut self, batch: BatchBuilder) -> EncodedBatch {
        let capacity = batch.buf.capacity();
        let (b, rest) = batch.finish();
        self.last_batch_bytes = b.bytes.len();
        if capacity <= SPARE_MAX_BYTES {
            self.spare = rest;
        }
        b
    }

    /// Ships spooled batches, oldest first; stops at the first failure.
    async fn drain_spool(&mut self) -> bool {
        while let Some(b) = self.spool.peek() {
            match self.send(&b).await {
                Ok(()) => self.spool.pop(),
                Err(e) => {
                    tracing::debug!(error = %e, "control plane not taking logs yet");
                    return false;
                }
            }
        }
        true
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            if !self.spool.is_empty() {
                if self.drain_spool().await {
                    backoff = Duration::from_millis(200);
                    tracing::info!("spooled usage records delivered");
                } else {
                    // Keep memory bounded while the control plane is away: spool what arrives.
                    let until = tokio::time::Instant::now() + backoff;
                    loop {
                        tokio::select! {
                            r = self.rx.recv() => match r {
                                Some(r) => { let b = self.gather(r).await; self.spool.push(&b); }
                                None => return,
                            },
                            _ = tokio::time::sleep_until(until) => break,
                            _ = shutdown.cancelled() => { self.flush().await; return; }
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            let first = tokio::select! {
                r = self.rx.recv() => match r { Some(r) => r, None => return },
                _ = shutdown.cancelled() => { self.flush().await; return; }
            };
            let batch = self.gather(first).await;
            if let Err(e) = self.send(&batch).await {
                tracing::warn!(error = %e, records = batch.records, "control plane unreachable for logs; spooling to disk");
                self.spool.push(&batch);
            }
        }
    }

    /// On shutdown: everything still queued is sent, or spooled for the next start.
    async fn flush(&mut self) {
        let mut pending: Vec<EncodedBatch> = Vec::new();
        let node_id = self.cfg.node_id.clone();
        let new = || BatchBuilder::new(bytes::BytesMut::new(), &node_id);
        let mut batch = new();
        while let Ok(r) = self.rx.try_recv() {
            self.take(r, &mut batch);
            if batch.full() {
                pending.push(std::mem::replace(&mut batch, new()).finish().0);
            }
        }
        if batch.records > 0 {
            pending.push(batch.finish().0);
        }
        let reachable = self.spool.is_empty()
            || tokio::time::timeout(Duration::from_secs(5), self.drain_spool())
                .await
                .unwrap_or(false);
        for b in pending.drain(..) {
            let sent = reachable
                && tokio::time::timeout(Duration::from_secs(5), self.send(&b))
                    .await
                    .map(|r| r.is_ok())
                    .unwrap_or(false);
            if !sent {
                self.spool.push(&b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    /// A pipeline with its spool in a temporary directory (kept alive by the caller), for a
    /// control plane that is never reached; `tune` adjusts the node's configuration first.
    fn test_pipeline(
        tune: impl FnOnce(&mut NodeConfig),
    ) -> (tempfile::TempDir, Arc<Metrics>, Arc<LogPipeline>, Shipper) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = NodeConfig::defaults("http://127.0.0.1:9".into(), Secret::new("tok"));
        cfg.cache_dir = dir.path().to_path_buf();
        tune(&mut cfg);
        let metrics = Arc::new(Metrics::default());
        let (sink, shipper) = pipeline(&cfg, metrics.clone());
        (dir, metrics, sink, shipper)
    }

    fn record(payload: usize) -> RequestRecord {
        RequestRecord {
            input: Some("x".repeat(payload)),
            ..Default::default()
        }
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_and_taken_records_free_theirs() {
        let (_dir, metrics, sink, mut shipper) =
            test_pipeline(|cfg| cfg.log_queue_max_bytes = 1_000_000);
        let depth = || metrics.log_queue_depth.load(Ordering::Relaxed);
        let bytes = || metrics.log_queue_bytes.load(Ordering::Relaxed);
        // Three records of ≈300 KB fit under 1 MB; the next two are dropped and counted.
        for _ in 0..5 {
            sink.submit(record(300_000));
        }
        assert_eq!(depth(), 3);
        assert_eq!(metrics.dropped_total(), 2);
        assert_eq!(bytes(), 3 * record(300_000).approx_bytes() as i64);
        // A small one still fits in what is left.
        sink.submit(record(1_000));
        assert_eq!(depth(), 4);
        // What the shipper takes frees its bytes, and large records fit again.
        let mut batch = BatchBuilder::new(bytes::BytesMut::new(), "node-1");
        while let Ok(r) = shipper.rx.try_recv() {
            shipper.take(r, &mut batch);
        }
        assert_eq!(batch.records, 4);
        assert_eq!((depth(), bytes()), (0, 0));
        sink.submit(record(300_000));
        assert_eq!(depth(), 1);
        assert_eq!(metrics.dropped_total(), 2);
    }

    /// A batch encoded record by record is the `LogBatch` prost encodes from the same records.
    #[test]
    fn a_batch_built_record_by_record_is_the_log_batch_of_its_records() {
        let records: Vec<pb::UsageRecord> = (0..3)
            .map(|i| {
                to_proto(
                    RequestRecord {
                        id: format!("id-{i}"),
                        model: "gpt-4o".into(),
                        input: Some(format!("{{\"n\":{i}}}")),
                        ..Default::default()
                    },
                    "node-1",
                )
            })
            .collect();
        let mut b = BatchBuilder::new(bytes::BytesMut::new(), "node-1");
        for r in &records {
            b.push(r);
        }
        let (enc, _) = b.finish();
        assert_eq!(enc.records, 3);
        let decoded = pb::LogBatch::decode(enc.bytes.clone()).unwrap();
        assert_eq!(
            decoded,
            pb::LogBatch {
                batch_id: enc.batch_id.clone(),
                node_id: "node-1".into(),
                records,
            }
        );
        // As the spool reads it back.
        let back = EncodedBatch::decode(enc.bytes.to_vec()).unwrap();
        assert_eq!((back.batch_id, back.records), (enc.batch_id, 3));
    }

    /// Records with large payloads close a batch at BATCH_MAX_BYTES, well before 2,000 records,
    /// and what is left goes in the next batch.
    #[tokio::test]
    async fn large_payloads_close_a_batch_by_its_bytes() {
        let (_dir, metrics, sink, mut shipper) = test_pipeline(|_| {});
        let big = crate::payload::MAX_PAYLOAD_BYTES;
        let n = 2 * BATCH_MAX_BYTES / (2 * big) + 8;
        for _ in 0..n {
            sink.submit(RequestRecord {
                input: Some("i".repeat(big)),
                output: Some("o".repeat(big)),
                ..Default::default()
            });
        }
        assert_eq!(metrics.dropped_total(), 0);
        let mut sent = 0;
        let mut batches = 0;
        while let Ok(first) = shipper.rx.try_recv() {
            let b = shipper.gather(first).await;
            assert!(
                b.bytes.len() < BATCH_MAX_BYTES + 2 * big + 4096,
                "{} bytes",
                b.bytes.len()
            );
            let decoded = pb::LogBatch::decode(b.bytes.clone()).unwrap();
            assert_eq!(decoded.records.len() as u64, b.records);
            sent += b.records;
            batches += 1;
        }
        assert_eq!(sent, n as u64);
        assert_eq!(batches, 3, "{n} records of {} KiB", 2 * big / 1024);
    }
    /// A batch's buffer starts at the previous batch's size: batches larger and smaller than
    /// the one before still hold exactly their records, in order.
    #[tokio::test]
    async fn batches_sized_from_the_previous_one_hold_exactly_their_records() {
        let (_dir, metrics, sink, mut shipper) = test_pipeline(|_| {});
        let mut next = 0;
        // 700 records (closed by BATCH_WAIT), then a full batch (larger than its starting
        // buffer), then 5 (smaller).
        for count in [700, BATCH_MAX, 5] {
            for _ in 0..count {
                sink.submit(RequestRecord {
                    request_id: format!("req-{next}"),
                    input: Some(format!("{{\"n\":{next}}}")),
                    ..Default::default()
                });
                next += 1;
            }
            let first = shipper.rx.try_recv().unwrap();
            let b = shipper.gather(first).await;
            assert_eq!(shipper.last_batch_bytes, b.bytes.len());
            assert_eq!(b.records, count as u64);
            let decoded = pb::LogBatch::decode(b.bytes.clone()).unwrap();
            let ids: Vec<&str> = decoded
                .records
                .iter()
                .map(|r| r.request_id.as_str())
                .collect();
            let want: Vec<String> = (next - count..next).map(|i| format!("req-{i}")).collect();
            assert_eq!(ids, want);
            assert_eq!(decoded.batch_id, b.batch_id);
        }
        assert!(shipper.rx.try_recv().is_err());
        assert_eq!(metrics.dropped_total(), 0);
    }

    /// Each batch is encoded into the last one's buffer once that batch's bytes are gone, and
    /// never over the bytes of a batch still held (being sent, or spooled). Full batches, so
    /// that none waits for `BATCH_WAIT`.
    #[tokio::test]
    async fn batches_reuse_one_buffer_and_never_overwrite_a_batch_still_held() {
        let (_dir, _metrics, sink, mut shipper) = test_pipeline(|_| {});
        let submit = |from: usize| {
            for i in from..from + BATCH_MAX {
                sink.submit(RequestRecord {
                    request_id: format!("req-{i:05}"),
                    input: Some(format!("{{\"n\":{i:05}}}")),
                    ..Default::default()
                });
            }
        };
        let ids = |b: &EncodedBatch| -> Vec<String> {
            pb::LogBatch::decode(b.bytes.clone())
                .unwrap()
                .records
                .into_iter()
                .map(|r| r.request_id)
                .collect()
        };
        let want = |from: usize| -> Vec<String> {
            (from..from + BATCH_MAX)
                .map(|i| format!("req-{i:05}"))
                .collect()
        };
        let gather = async |shipper: &mut Shipper, from: usize| {
            submit(from);
            let first = shipper.rx.try_recv().unwrap();
            let b = shipper.gather(first).await;
            assert_eq!(ids(&b), want(from));
            b
        };
        // The first batch's buffer: the batch and what is left of it.
        let b = gather(&mut shipper, 0).await;
        let start = b.bytes.as_ptr() as usize;
        let end = start + b.bytes.len() + shipper.spare.capacity();
        drop(b);
        // Batches each dropped before the next is gathered (sent and acknowledged) are encoded
        // in that same allocation.
        let mut reused = 0;
        for round in 1..7 {
            let b = gather(&mut shipper, round * BATCH_MAX).await;
            let at = b.bytes.as_ptr() as usize;
            if at >= start && at + b.bytes.len() <= end {
                reused += 1;
            }
        }
        // One gathered while the last is still held leaves that one intact.
        let held = gather(&mut shipper, 7 * BATCH_MAX).await;
        let next = gather(&mut shipper, 8 * BATCH_MAX).await;
        assert_eq!(ids(&held), want(7 * BATCH_MAX));
        assert_eq!(ids(&next), want(8 * BATCH_MAX));
        assert_eq!(reused, 6);
    }

    /// A batch buffer over `SPARE_MAX_BYTES` (large payloads) is not kept once its batch is
    /// sent: an idle node does not hold megabytes for the next batch.
    #[tokio::test]
    async fn a_large_batch_buffer_is_not_kept() {
        let (_dir, _metrics, sink, mut shipper) = test_pipeline(|_| {});
        for _ in 0..40 {
            sink.submit(record(500_000));
        }
        let first = shipper.rx.try_recv().unwrap();
        let b = shipper.gather(first).await;
        assert!(b.bytes.len() >= BATCH_MAX_BYTES, "{}", b.bytes.len());
        assert_eq!(shipper.spare.capacity(), 0);
    }
}
