//! Prometheus metrics of a node (`/metrics`), named after Prometheus conventions and the
//! OpenTelemetry GenAI semantic conventions where one exists (`gen_ai_client_token_usage`,
//! `gen_ai_client_operation_duration_seconds`, `gen_ai_server_time_to_first_token_seconds`).
//! Recording takes one short lock per request, never held across an await.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::record::RequestRecord;

const BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Series are keyed by their label values joined with NUL into one string, the model last (it
/// is the only label a client chooses, so it alone may hold a NUL): looking one up borrows a
/// reused buffer, and only a series' first observation allocates its key.
#[derive(Default)]
struct Inner {
    /// Key buffer, reused by every observation.
    scratch: String,
    /// route, provider, status, model
    requests: BTreeMap<String, u64>,
    /// route, provider, model
    duration: BTreeMap<String, Histogram>,
    /// provider, model
    ttft: BTreeMap<String, Histogram>,
    /// provider
    upstream: BTreeMap<String, Histogram>,
    /// token type, provider, model
    tokens: BTreeMap<String, u64>,
    /// provider, model
    cost: BTreeMap<String, f64>,
    errors: BTreeMap<String, u64>,
    /// outcome, provider
    attempts: BTreeMap<String, u64>,
    dropped: BTreeMap<&'static str, u64>,
}

/// Applies `f` to the series under `key`, created (and its key allocated) on first use.
fn with<V: Default>(map: &mut BTreeMap<String, V>, key: &str, f: impl FnOnce(&mut V)) {
    if let Some(v) = map.get_mut(key) {
        f(v);
        return;
    }
    let mut v = V::default();
    f(&mut v);
    map.insert(key.to_owned(), v);
}

/// `parts` joined with NUL into `buf` (cleared first).
fn key<'b>(buf: &'b mut String, parts: &[&str]) -> &'b str {
    buf.clear();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            buf.push('\0');
        }
        buf.push_str(p);
    }
    buf
}

/// A key's `N` label values (the last takes the rest).
fn labels<const N: usize>(k: &str) -> [&str; N] {
    let mut out = [""; N];
    for (slot, part) in out.iter_mut().zip(k.splitn(N, '\0')) {
        *slot = part;
    }
    out
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    pub config_version: AtomicU64,
    pub log_queue_depth: AtomicI64,
    /// `RequestRecord::approx_bytes` of the records in the queue (bounded by
    /// `AIPROXY_LOG_QUEUE_MAX_BYTES`).
    pub log_queue_bytes: AtomicI64,
    pub spool_bytes: AtomicU64,
    pub spool_records: AtomicU64,
    pub shipped_records: AtomicU64,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn observe(&self, r: &RequestRecord) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let m = &mut *guard;
        let b = &mut m.scratch;
        let provider = if r.provider_type.is_empty() {
            "none"
        } else {
            r.provider_type.as_str()
        };
        let model = r.model.as_str();
        let mut digits = itoa::Buffer::new();
        let status = digits.format(r.status);
        with(
            &mut m.requests,
            key(b, &[r.route, provider, status, model]),
            |n| *n += 1,
        );
        with(&mut m.duration, key(b, &[r.route, provider, model]), |h| {
            h.observe(r.latency_ms as f64 / 1000.0)
        });
        if r.ttft_ms > 0 {
            with(&mut m.ttft, key(b, &[provider, model]), |h| {
                h.observe(r.ttft_ms as f64 / 1000.0)
            });
        }
        for a in &r.attempts {
            with(&mut m.upstream, &a.provider, |h| {
                h.observe(a.latency_ms as f64 / 1000.0)
            });
            let outcome = if a.error.is_empty() && a.status < 400 {
                "success"
            } else {
                "failure"
            };
            with(&mut m.attempts, key(b, &[outcome, &a.provider]), |n| {
                *n += 1
            });
        }
        if r.usage.prompt_tokens > 0 || r.usage.completion_tokens > 0 {
            with(&mut m.tokens, key(b, &["input", provider, model]), |n| {
                *n = n.saturating_add(r.usage.prompt_tokens)
            });
            with(&mut m.tokens, key(b, &["output", provider, model]), |n| {
                *n = n.saturating_add(r.usage.completion_tokens)
            });
        }
        if r.cost_usd > 0.0 {
            with(&mut m.cost, key(b, &[provider, model]), |c| {
                *c += r.cost_usd
            });
        }
        if !r.error_type.is_empty() {
            with(&mut m.errors, &r.error_type, |n| *n += 1);
        }
    }

    pub fn dropped(&self, reason: &'static str, n: u64) {
        if let Ok(mut m) = self.inner.lock() {
            *m.dropped.entry(reason).or_default() += n;
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.inner
            .lock()
            .map(|m| m.dropped.values().sum())
            .unwrap_or(0)
    }

    /// The exposition text; `extra` adds gauges owned elsewhere (credential health).
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::with_capacity(8192);
        let Ok(m) = self.inner.lock() else { return out };
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "aiproxy_requests_total",
            "counter",
            "Proxied requests by route, model, provider and status.",
        );
        for (k, n) in &m.requests {
            let [route, provider, status, model] = labels(k);
            let _ = writeln!(
                out,
                "aiproxy_requests_total{{route=\"{route}\",model=\"{}\",provider=\"{provider}\",status=\"{status}\"}} {n}",
                esc(model)
            );
        }
        head(
            &mut out,
            "gen_ai_client_operation_duration_seconds",
            "histogram",
            "End-to-end duration of proxied requests.",
        );
        for (k, h) in &m.duration {
            let [route, provider, model] = labels(k);
            h.render(
                &mut out,
                "gen_ai_client_operation_duration_seconds",
                &format!(
                    "route=\"{route}\",gen_ai_request_model=\"{}\",gen_ai_system=\"{provider}\"",
                    esc(model)
                ),
            );
        }
        head(
            &mut out,
            "gen_ai_server_time_to_first_token_seconds",
            "histogram",
            "Time to the first content token.",
        );
        for (k, h) in &m.ttft {
            let [provider, model] = labels(k);
            h.render(
                &mut out,
                "gen_ai_server_time_to_first_token_seconds",
                &format!(
                    "gen_ai_request_model=\"{}\",gen_ai_system=\"{provider}\"",
                    esc(model)
                ),
            );
        }
        head(
            &mut out,
            "aiproxy_upstream_attempt_duration_seconds",
            "histogram",
            "Duration of each upstream attempt until its response headers.",
        );
        for (provider, h) in &m.upstream {
            h.render(
                &mut out,
                "aiproxy_upstream_attempt_duration_seconds",
                &format!("gen_ai_system=\"{provider}\""),
            );
        }
        head(
            &mut out,
            "gen_ai_client_token_usage",
            "counter",
            "Tokens by model, provider and type (input, output).",
        );
        for (k, n) in &m.tokens {
            let [t, provider, model] = labels(k);
            let _ = writeln!(
                out,
                "gen_ai_client_token_usage{{gen_ai_request_model=\"{}\",gen_ai_system=\"{provider}\",gen_ai_token_type=\"{t}\"}} {n}",
                esc(model)
            );
        }
        head(
            &mut out,
            "aiproxy_cost_usd_total",
            "counter",
            "Cost in USD from the catalog's prices.",
        );
        for (k, c) in &m.cost {
            let [provider, model] = labels(k);
            let _ = writeln!(
                out,
                "aiproxy_cost_usd_total{{model=\"{}\",provider=\"{provider}\"}} {c}",
                esc(model)
            );
        }
        head(
            &mut out,
            "aiproxy_errors_total",
            "counter",
            "Failed requests by error type.",
        );
        for (t, n) in &m.errors {
            let _ = writeln!(out, "aiproxy_errors_total{{type=\"{}\"}} {n}", esc(t));
        }
        head(
            &mut out,
            "aiproxy_upstream_attempts_total",
            "counter",
            "Upstream attempts by provider and outcome.",
        );
        for (k, n) in &m.attempts {
            let [o, p] = labels(k);
            let _ = writeln!(
                out,
                "aiproxy_upstream_attempts_total{{provider=\"{p}\",outcome=\"{o}\"}} {n}"
            );
        }
        head(
            &mut out,
            "aiproxy_log_records_dropped_total",
            "counter",
            "Usage records dropped (queue or spool full).",
        );
        for reason in ["queue_full", "spool_full"] {
            let _ = writeln!(
                out,
                "aiproxy_log_records_dropped_total{{reason=\"{reason}\"}} {}",
                m.dropped.get(reason).copied().unwrap_or(0)
            );
        }
        drop(m);
        for (name, help, v) in [
            (
                "aiproxy_config_version",
                "Configuration snapshot version served.",
                self.config_version.load(Ordering::Relaxed) as i64,
            ),
            (
                "aiproxy_log_queue_depth",
                "Usage records waiting in memory.",
                self.log_queue_depth.load(Ordering::Relaxed),
            ),
            (
                "aiproxy_log_queue_bytes",
                "Approximate bytes of usage records (payloads included) waiting in memory.",
                self.log_queue_bytes.load(Ordering::Relaxed),
            ),
            (
                "aiproxy_log_spool_bytes",
                "Bytes of usage records spooled on disk.",
                self.spool_bytes.load(Ordering::Relaxed) as i64,
            ),
            (
                "aiproxy_log_spool_records",
                "Usage records spooled on disk.",
                self.spool_records.load(Ordering::Relaxed) as i64,
            ),
        ] {
            head(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
        head(
            &mut out,
            "aiproxy_log_records_shipped_total",
            "counter",
            "Usage records acknowledged by the control plane.",
        );
        let _ = writeln!(
            out,
            "aiproxy_log_records_shipped_total {}",
            self.shipped_records.load(Ordering::Relaxed)
        );
        out.push_str(extra);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        let r = RequestRecord {
            route: "chat_completions",
            model: "gpt-4o".into(),
            provider_type: "openai".into(),
            status: 200,
            latency_ms: 120,
            ttft_ms: 40,
            usage: llm::Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                ..Default::default()
            },
            cost_usd: 0.001,
            ..Default::default()
        };
        m.observe(&r);
        m.dropped("queue_full", 2);
        let t = m.render("");
        assert!(t.contains("aiproxy_requests_total{route=\"chat_completions\",model=\"gpt-4o\",provider=\"openai\",status=\"200\"} 1"), "{t}");
        assert!(t.contains("gen_ai_client_token_usage{gen_ai_request_model=\"gpt-4o\",gen_ai_system=\"openai\",gen_ai_token_type=\"input\"} 10"));
        assert!(t.contains("gen_ai_client_operation_duration_seconds_bucket{route=\"chat_completions\",gen_ai_request_model=\"gpt-4o\",gen_ai_system=\"openai\",le=\"0.25\"} 1"));
        assert!(t.contains("aiproxy_log_records_dropped_total{reason=\"queue_full\"} 2"));
        assert!(t.contains("gen_ai_server_time_to_first_token_seconds_count{gen_ai_request_model=\"gpt-4o\",gen_ai_system=\"openai\"} 1"), "{t}");
        assert!(
            t.contains("aiproxy_cost_usd_total{model=\"gpt-4o\",provider=\"openai\"} 0.001"),
            "{t}"
        );
    }

    /// Series keep their labels apart whatever the model name holds (the NUL that joins a key's
    /// labels included), and count into the same series on every observation.
    #[test]
    fn series_keep_their_labels_apart() {
        let m = Metrics::default();
        let attempt = |provider: &str, status: u16, error: &str| crate::record::Attempt {
            provider: provider.into(),
            status,
            error: error.into(),
            latency_ms: 30,
            ..Default::default()
        };
        let ok = RequestRecord {
            route: "chat_completions",
            model: "gpt-4o".into(),
            provider_type: "openai".into(),
            status: 200,
            latency_ms: 50,
            attempts: vec![
                attempt("openai", 503, "upstream 503"),
                attempt("openai", 200, ""),
            ],
            ..Default::default()
        };
        for _ in 0..3 {
            m.observe(&ok);
        }
        let odd = RequestRecord {
            route: "chat_completions",
            model: "we\"ird\0openai\0model".into(),
            status: 404,
            latency_ms: 5,
            error_type: "model_not_found".into(),
            ..Default::default()
        };
        m.observe(&odd);
        let t = m.render("");
        for line in [
            "aiproxy_requests_total{route=\"chat_completions\",model=\"gpt-4o\",provider=\"openai\",status=\"200\"} 3",
            "aiproxy_requests_total{route=\"chat_completions\",model=\"we\\\"ird\0openai\0model\",provider=\"none\",status=\"404\"} 1",
            "gen_ai_client_operation_duration_seconds_count{route=\"chat_completions\",gen_ai_request_model=\"gpt-4o\",gen_ai_system=\"openai\"} 3",
            "aiproxy_upstream_attempts_total{provider=\"openai\",outcome=\"success\"} 3",
            "aiproxy_upstream_attempts_total{provider=\"openai\",outcome=\"failure\"} 3",
            "aiproxy_upstream_attempt_duration_seconds_count{gen_ai_system=\"openai\"} 6",
            "aiproxy_errors_total{type=\"model_not_found\"} 1",
        ] {
            assert!(t.contains(line), "{line} missing from\n{t}");
        }
        assert_eq!(t.matches("aiproxy_requests_total{").count(), 2, "{t}");
    }
}
