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

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, String, u16), u64>,
    duration: BTreeMap<(String, String, String), Histogram>,
    ttft: BTreeMap<(String, String), Histogram>,
    upstream: BTreeMap<String, Histogram>,
    tokens: BTreeMap<(String, String, &'static str), u64>,
    cost: BTreeMap<(String, String), f64>,
    errors: BTreeMap<String, u64>,
    attempts: BTreeMap<(String, &'static str), u64>,
    dropped: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    pub config_version: AtomicU64,
    pub log_queue_depth: AtomicI64,
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
        let Ok(mut m) = self.inner.lock() else { return };
        let provider = if r.provider_type.is_empty() {
            "none".to_string()
        } else {
            r.provider_type.clone()
        };
        *m.requests
            .entry((
                r.route.to_string(),
                r.model.clone(),
                provider.clone(),
                r.status,
            ))
            .or_default() += 1;
        m.duration
            .entry((r.route.to_string(), r.model.clone(), provider.clone()))
            .or_default()
            .observe(r.latency_ms as f64 / 1000.0);
        if r.ttft_ms > 0 {
            m.ttft
                .entry((r.model.clone(), provider.clone()))
                .or_default()
                .observe(r.ttft_ms as f64 / 1000.0);
        }
        for a in &r.attempts {
            m.upstream
                .entry(a.provider.clone())
                .or_default()
                .observe(a.latency_ms as f64 / 1000.0);
            let outcome = if a.error.is_empty() && a.status < 400 {
                "success"
            } else {
                "failure"
            };
            *m.attempts.entry((a.provider.clone(), outcome)).or_default() += 1;
        }
        if r.usage.prompt_tokens > 0 || r.usage.completion_tokens > 0 {
            *m.tokens
                .entry((r.model.clone(), provider.clone(), "input"))
                .or_default() += r.usage.prompt_tokens;
            *m.tokens
                .entry((r.model.clone(), provider.clone(), "output"))
                .or_default() += r.usage.completion_tokens;
        }
        if r.cost_usd > 0.0 {
            *m.cost.entry((r.model.clone(), provider)).or_default() += r.cost_usd;
        }
        if !r.error_type.is_empty() {
            *m.errors.entry(r.error_type.clone()).or_default() += 1;
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
        for ((route, model, provider, status), n) in &m.requests {
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
        for ((route, model, provider), h) in &m.duration {
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
        for ((model, provider), h) in &m.ttft {
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
        for ((model, provider, t), n) in &m.tokens {
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
        for ((model, provider), c) in &m.cost {
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
        for ((p, o), n) in &m.attempts {
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
    }
}
