//! OpenTelemetry trace export (`AIPROXY_OTLP_ENDPOINT`): spans are handed to a bounded queue
//! without waiting (a full queue drops and counts), and a background task posts them in batches
//! to the collector's OTLP/HTTP endpoint (`<endpoint>/v1/traces`, JSON encoding — every
//! OpenTelemetry Collector and most tracing back ends accept it). Used by both services: the
//! data plane exports one server span per proxied call (GenAI semantic-convention attributes)
//! with a client span per upstream attempt; the control plane one span per API request.
//! An incoming W3C `traceparent` header makes our spans children of the caller's.
//!
//! Spans carry ids, names, timings, models, token counts and statuses — never payloads,
//! headers or secrets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::httpclient::HttpClient;
use crate::record::RequestRecord;

const QUEUE_CAPACITY: usize = 8192;
const BATCH_MAX: usize = 512;
const BATCH_WAIT: Duration = Duration::from_secs(2);
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// OTLP span kinds.
pub const KIND_SERVER: u8 = 2;
pub const KIND_CLIENT: u8 = 3;

#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
}

#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: u8,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// Set when the operation failed (status ERROR with this message).
    pub error: Option<String>,
}

/// A parsed W3C `traceparent` (version 00): the caller's trace and span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl TraceParent {
    /// `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids are invalid (W3C Trace Context §3.2).
    pub fn parse(v: &str) -> Option<TraceParent> {
        let mut parts = v.trim().split('-');
        let (ver, tid, sid, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if ver.len() != 2 || ver == "ff" || flags.len() != 2 || hex::decode(flags).is_err() {
            return None;
        }
        if ver == "00" && parts.next().is_some() {
            return None;
        }
        let lower = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !lower(tid) || !lower(sid) || !lower(ver) {
            return None;
        }
        let trace_id: [u8; 16] = hex::decode(tid).ok()?.try_into().ok()?;
        let span_id: [u8; 8] = hex::decode(sid).ok()?.try_into().ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent { trace_id, span_id })
    }
}

pub fn new_trace_id() -> [u8; 16] {
    loop {
        let id: [u8; 16] = rand::random();
        if id != [0; 16] {
            return id;
        }
    }
}

pub fn new_span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

pub fn unix_nano_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The collector URL for traces: `<endpoint>/v1/traces`, unless the endpoint already names it.
pub fn traces_url(endpoint: &str) -> Result<http::Uri, String> {
    let e = endpoint.trim().trim_end_matches('/');
    if !(e.starts_with("http://") || e.starts_with("https://")) {
        return Err("must be an http:// or https:// URL (the collector's OTLP/HTTP endpoint, e.g. http://otel-collector:4318)".into());
    }
    let url = if e.ends_with("/v1/traces") {
        e.to_string()
    } else {
        format!("{e}/v1/traces")
    };
    url.parse::<http::Uri>()
        .map_err(|err| format!("is not a valid URL: {err}"))
}

pub struct Exporter {
    tx: mpsc::Sender<Span>,
    exported: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    failed_batches: Arc<AtomicU64>,
}

impl Exporter {
    /// Starts the background sender; it flushes what is queued when `shutdown` fires.
    pub fn start(
        url: http::Uri,
        service_name: &'static str,
        client: HttpClient,
        shutdown: CancellationToken,
    ) -> Arc<Exporter> {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let ex = Arc::new(Exporter {
            tx,
            exported: Arc::default(),
            dropped: Arc::default(),
            failed_batches: Arc::default(),
        });
        let sender = Sender {
            url,
            service_name,
            client,
            rx,
            exported: ex.exported.clone(),
            dropped: ex.dropped.clone(),
            failed_batches: ex.failed_batches.clone(),
        };
        tokio::spawn(sender.run(shutdown));
        ex
    }

    /// Never waits: a full queue drops the span and counts it.
    pub fn submit(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus lines for the exporter's counters.
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP aiproxy_otlp_spans_exported_total Spans accepted by the OTLP collector.\n# TYPE aiproxy_otlp_spans_exported_total counter\naiproxy_otlp_spans_exported_total {}\n\
             # HELP aiproxy_otlp_spans_dropped_total Spans dropped (queue full or the collector refused or was unreachable).\n# TYPE aiproxy_otlp_spans_dropped_total counter\naiproxy_otlp_spans_dropped_total {}\n\
             # HELP aiproxy_otlp_export_failures_total Batches the collector did not accept.\n# TYPE aiproxy_otlp_export_failures_total counter\naiproxy_otlp_export_failures_total {}\n",
            self.exported.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.failed_batches.load(Ordering::Relaxed),
        )
    }

    /// The spans of one proxied call: a server span for the whole call and a client span per
    /// upstream attempt. Built here, off the hot path's critical section (the caller has already
    /// answered the client).
    pub fn submit_record(&self, r: &RequestRecord) {
        for s in spans_for_record(r) {
            self.submit(s);
        }
    }
}

fn operation(route: &str) -> &'static str {
    match route {
        "embeddings" => "embeddings",
        "completions" => "text_completion",
        "realtime" => "realtime",
        _ => "chat",
    }
}

/// GenAI semantic conventions (`gen_ai.*`) where they apply, `aiproxy.*` for the rest.
pub fn spans_for_record(r: &RequestRecord) -> Vec<Span> {
    let parent = r.trace_parent.as_deref().and_then(TraceParent::parse);
    let trace_id = parent.map(|p| p.trace_id).unwrap_or_else(new_trace_id);
    let server_id = new_span_id();
    let ms = |t: i64| (t.max(0) as u64).saturating_mul(1_000_000);
    let op = operation(r.route);
    let mut attrs: Vec<(&'static str, AttrValue)> = vec![
        ("gen_ai.operation.name", AttrValue::Str(op.into())),
        ("gen_ai.request.model", AttrValue::Str(r.model.clone())),
        (
            "http.response.status_code",
            AttrValue::Int(i64::from(r.status)),
        ),
        ("aiproxy.route", AttrValue::Str(r.route.into())),
        ("aiproxy.request_id", AttrValue::Str(r.request_id.clone())),
        ("aiproxy.log_id", AttrValue::Str(r.id.clone())),
        ("aiproxy.org_id", AttrValue::Str(r.org_id.clone())),
        ("aiproxy.api_key_id", AttrValue::Str(r.api_key_id.clone())),
        ("aiproxy.stream", AttrValue::Bool(r.stream)),
        ("aiproxy.attempts", AttrValue::Int(r.attempts.len() as i64)),
        ("aiproxy.cache_hit", AttrValue::Bool(r.cache_hit)),
    ];
    if let Some(p) = &r.project_id {
        attrs.push(("aiproxy.project_id", AttrValue::Str(p.clone())));
    }
    if !r.provider_type.is_empty() {
        attrs.push((
            "gen_ai.provider.name",
            AttrValue::Str(r.provider_type.clone()),
        ));
        attrs.push((
            "aiproxy.credential",
            AttrValue::Str(r.credential_name.clone()),
        ));
    }
    if r.status < 400 {
        attrs.push((
            "gen_ai.usage.input_tokens",
            AttrValue::Int(r.usage.prompt_tokens as i64),
        ));
        attrs.push((
            "gen_ai.usage.output_tokens",
            AttrValue::Int(r.usage.completion_tokens as i64),
        ));
        attrs.push(("aiproxy.cost_usd", AttrValue::Double(r.cost_usd)));
        if r.stream {
            attrs.push(("aiproxy.ttft_ms", AttrValue::Int(r.ttft_ms as i64)));
        }
    }
    let error = (r.status >= 400).then(|| {
        attrs.push(("error.type", AttrValue::Str(r.error_type.clone())));
        r.error_type.clone()
    });
    let mut spans = Vec::with_capacity(1 + r.attempts.len());
    spans.push(Span {
        trace_id,
        span_id: server_id,
        parent_span_id: parent.map(|p| p.span_id),
        name: format!("{op} {}", r.model),
        kind: KIND_SERVER,
        start_unix_nano: ms(r.started_at_ms),
        end_unix_nano: ms(r.finished_at_ms.max(r.started_at_ms)),
        attributes: attrs,
        error,
    });
    for a in &r.attempts {
        let failed = a.status >= 400 || a.status == 0;
        let mut attrs = vec![
            ("gen_ai.operation.name", AttrValue::Str(op.into())),
            ("gen_ai.request.model", AttrValue::Str(r.model.clone())),
            ("gen_ai.provider.name", AttrValue::Str(a.provider.clone())),
            ("aiproxy.credential", AttrValue::Str(a.credential.clone())),
            (
                "http.response.status_code",
                AttrValue::Int(i64::from(a.status)),
            ),
        ];
        if failed && !a.error.is_empty() {
            attrs.push(("error.type", AttrValue::Str(a.error.clone())));
        }
        spans.push(Span {
            trace_id,
            span_id: new_span_id(),
            parent_span_id: Some(server_id),
            name: format!("{op} {}", r.model),
            kind: KIND_CLIENT,
            start_unix_nano: ms(a.started_at_ms),
            end_unix_nano: ms(a.started_at_ms) + a.latency_ms.saturating_mul(1_000_000),
            attributes: attrs,
            error: failed.then(|| {
                if a.error.is_empty() {
                    format!("HTTP {}", a.status)
                } else {
                    a.error.clone()
                }
            }),
        });
    }
    spans
}

fn attr_json(k: &str, v: &AttrValue) -> Value {
    let value = match v {
        AttrValue::Str(s) => json!({"stringValue": s}),
        // int64 is a string in the protobuf JSON mapping.
        AttrValue::Int(i) => json!({"intValue": i.to_string()}),
        AttrValue::Double(d) => json!({"doubleValue": d}),
        AttrValue::Bool(b) => json!({"boolValue": b}),
    };
    json!({"key": k, "value": value})
}

/// One `ExportTraceServiceRequest` in OTLP's JSON encoding (ids as hex, times as strings).
pub fn encode(service_name: &str, spans: &[Span]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut v = json!({
                "traceId": hex::encode(s.trace_id),
                "spanId": hex::encode(s.span_id),
                "name": s.name,
                "kind": s.kind,
                "startTimeUnixNano": s.start_unix_nano.to_string(),
                "endTimeUnixNano": s.end_unix_nano.to_string(),
                "attributes": s.attributes.iter().map(|(k, v)| attr_json(k, v)).collect::<Vec<_>>(),
                "status": match &s.error {
                    Some(m) => json!({"code": 2, "message": m}),
                    None => json!({"code": 0}),
                },
            });
            if let Some(p) = s.parent_span_id {
                v["parentSpanId"] = json!(hex::encode(p));
            }
            v
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            attr_json("service.name", &AttrValue::Str(service_name.into())),
            attr_json("service.version", &AttrValue::Str(env!("CARGO_PKG_VERSION").into())),
        ]},
        "scopeSpans": [{
            "scope": {"name": "aiproxy", "version": env!("CARGO_PKG_VERSION")},
            "spans": spans,
        }],
    }]})
}

struct Sender {
    url: http::Uri,
    service_name: &'static str,
    client: HttpClient,
    rx: mpsc::Receiver<Span>,
    exported: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    failed_batches: Arc<AtomicU64>,
}

impl Sender {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        loop {
            let deadline = tokio::time::sleep(BATCH_WAIT);
            tokio::pin!(deadline);
            let stop = loop {
                tokio::select! {
                    s = self.rx.recv() => match s {
                        Some(s) => {
                            batch.push(s);
                            if batch.len() >= BATCH_MAX {
                                break false;
                            }
                        }
                        None => break true,
                    },
                    _ = &mut deadline => break false,
                    _ = shutdown.cancelled() => break true,
                }
            };
            if stop {
                while let Ok(s) = self.rx.try_recv() {
                    batch.push(s);
                }
            }
            for chunk in batch.chunks(BATCH_MAX) {
                self.post(chunk).await;
            }
            batch.clear();
            if stop {
                return;
            }
        }
    }

    async fn post(&self, spans: &[Span]) {
        if spans.is_empty() {
            return;
        }
        let body = Bytes::from(encode(self.service_name, spans).to_string());
        let req = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body));
        let ok = match req {
            Ok(req) => matches!(
                tokio::time::timeout(POST_TIMEOUT, async {
                    let resp = self.client.request(req).await.ok()?;
                    let ok = resp.status().is_success();
                    // Drain the (small) answer so the connection can be reused.
                    let _ = resp.into_body().collect().await;
                    Some(ok)
                })
                .await,
                Ok(Some(true))
            ),
            Err(_) => false,
        };
        if ok {
            self.exported
                .fetch_add(spans.len() as u64, Ordering::Relaxed);
        } else {
            // Traces are best-effort: a batch the collector did not take is counted, not retried.
            self.failed_batches.fetch_add(1, Ordering::Relaxed);
            self.dropped
                .fetch_add(spans.len() as u64, Ordering::Relaxed);
            tracing::warn!(spans = spans.len(), url = %self.url, "OTLP export failed; spans dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Attempt;

    #[test]
    fn traceparent_parsing_follows_w3c() {
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            tp.map(|t| (hex::encode(t.trace_id), hex::encode(t.span_id))),
            Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
                "00f067aa0ba902b7".to_string()
            ))
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn record_becomes_server_and_attempt_spans() {
        let r = RequestRecord {
            id: "log1".into(),
            model: "gpt-4o".into(),
            route: "chat",
            status: 200,
            provider_type: "openai".into(),
            credential_name: "b".into(),
            started_at_ms: 1_000,
            finished_at_ms: 1_250,
            trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            usage: llm::Usage {
                prompt_tokens: 12,
                completion_tokens: 5,
                ..Default::default()
            },
            attempts: vec![
                Attempt {
                    credential: "a".into(),
                    provider: "openai".into(),
                    status: 503,
                    error: "upstream_status_503".into(),
                    latency_ms: 40,
                    started_at_ms: 1_005,
                },
                Attempt {
                    credential: "b".into(),
                    provider: "openai".into(),
                    status: 200,
                    error: String::new(),
                    latency_ms: 200,
                    started_at_ms: 1_046,
                },
            ],
            ..Default::default()
        };
        let spans = spans_for_record(&r);
        assert_eq!(spans.len(), 3);
        let v = encode("aiproxy-data-plane", &spans);
        let out = &v["resourceSpans"][0]["scopeSpans"][0]["spans"];
        let server = &out[0];
        assert_eq!(server["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(server["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(server["name"], "chat gpt-4o");
        assert_eq!(server["kind"], 2);
        assert_eq!(server["startTimeUnixNano"], "1000000000");
        assert_eq!(server["endTimeUnixNano"], "1250000000");
        let attr = |s: &Value, k: &str| {
            s["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["key"] == k))
                .map(|x| x["value"].clone())
        };
        assert_eq!(
            attr(server, "gen_ai.usage.input_tokens"),
            Some(json!({"intValue": "12"}))
        );
        assert_eq!(
            attr(server, "gen_ai.provider.name"),
            Some(json!({"stringValue": "openai"}))
        );
        assert_eq!(server["status"]["code"], 0);
        let failed = &out[1];
        assert_eq!(failed["parentSpanId"], server["spanId"]);
        assert_eq!(failed["traceId"], server["traceId"]);
        assert_eq!(failed["kind"], 3);
        assert_eq!(failed["status"]["code"], 2);
        assert_eq!(failed["endTimeUnixNano"], "1045000000");
        assert_eq!(out[2]["status"]["code"], 0);
        assert_eq!(
            attr(&out[2], "aiproxy.credential"),
            Some(json!({"stringValue": "b"}))
        );
        assert_eq!(
            v["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "aiproxy-data-plane"
        );
    }

    #[test]
    fn endpoint_gets_the_traces_path_once() {
        assert_eq!(
            traces_url("http://collector:4318").map(|u| u.to_string()),
            Ok("http://collector:4318/v1/traces".to_string())
        );
        assert_eq!(
            traces_url("https://c.example/v1/traces/").map(|u| u.to_string()),
            Ok("https://c.example/v1/traces".to_string())
        );
        assert!(traces_url("collector:4317").is_err());
    }
}
