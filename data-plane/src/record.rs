//! The usage record every proxied request yields (no payloads unless `x-bt-parent` asked for
//! them), and where records go. The node's log pipeline implements `RecordSink`.

use std::sync::Arc;

use llm::Usage;

#[derive(Debug, Clone, Default)]
pub struct Attempt {
    pub credential: String,
    pub provider: String,
    pub status: u16,
    pub error: String,
    pub latency_ms: u64,
    /// When the attempt began (ms since the epoch).
    pub started_at_ms: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RequestRecord {
    pub id: String,
    pub request_id: String,
    pub org_id: String,
    pub project_id: Option<String>,
    pub api_key_id: String,
    pub model: String,
    pub provider_type: String,
    pub credential_name: String,
    pub route: &'static str,
    pub stream: bool,
    pub status: u16,
    pub error_type: String,
    pub error_message: String,
    pub usage: Usage,
    pub cost_usd: f64,
    pub latency_ms: u64,
    pub ttft_ms: u64,
    pub attempts: Vec<Attempt>,
    pub cache_hit: bool,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// Payloads as JSON text (`payload::log_text`), when logging was requested.
    pub input: Option<String>,
    pub output: Option<String>,
    /// The caller's W3C `traceparent`, when it sent one (trace export only; never stored).
    pub trace_parent: Option<String>,
}

impl RequestRecord {
    /// About what the record holds in memory: its payloads and texts plus a fixed allowance for
    /// the rest (what the log queue's byte bound counts).
    pub fn approx_bytes(&self) -> u64 {
        let texts = self.input.as_ref().map_or(0, String::len)
            + self.output.as_ref().map_or(0, String::len)
            + self.error_message.len()
            + self.model.len()
            + self
                .attempts
                .iter()
                .map(|a| a.error.len() + 128)
                .sum::<usize>();
        (texts + 512) as u64
    }
}

pub trait RecordSink: Send + Sync {
    /// Must never block or slow the request path.
    fn submit(&self, record: RequestRecord);
}

/// Drops records (a node without a log pipeline).
pub struct NoopSink;

impl RecordSink for NoopSink {
    fn submit(&self, _record: RequestRecord) {}
}

pub type Sink = Arc<dyn RecordSink>;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
