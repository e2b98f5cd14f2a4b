//! Prometheus metrics of a control-plane replica (`/metrics`): API requests, connected nodes,
//! log ingest, database pool.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub api_requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    pub ingest_records: AtomicU64,
    pub ingest_batches: AtomicU64,
    pub connected_nodes: AtomicU64,
    /// The last snapshot build: duration (µs), version and size (encoded, bytes).
    pub snapshot_build_us: AtomicU64,
    pub snapshot_version: AtomicU64,
    pub snapshot_bytes: AtomicU64,
    /// Ended periods (hours, days) of usage not rolled up yet (after the last pass), and passes so far.
    pub usage_rollup_pending: AtomicU64,
    pub usage_rollup_passes: AtomicU64,
}

/// One unlabelled series with its HELP and TYPE lines.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

impl Metrics {
    pub fn api_request(&self, method: &str, route: &str, status: u16) {
        if let Ok(mut m) = self.api_requests.lock() {
            *m.entry((method.to_string(), route.to_string(), status))
                .or_default() += 1;
        }
    }

    pub fn render(&self, pool_size: u32, pool_idle: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP aiproxy_api_requests_total Admin API requests.\n# TYPE aiproxy_api_requests_total counter"
        );
        if let Ok(m) = self.api_requests.lock() {
            for ((method, route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "aiproxy_api_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        scalar(
            &mut out,
            "aiproxy_connected_nodes",
            "gauge",
            "Data-plane nodes connected to this replica.",
            self.connected_nodes.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "aiproxy_ingest_records_total",
            "counter",
            "Usage records received from nodes.",
            self.ingest_records.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "aiproxy_ingest_batches_total",
            "counter",
            "Log batches stored.",
            self.ingest_batches.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "aiproxy_snapshot_build_seconds",
            "gauge",
            "Time the last configuration snapshot took to build.",
            self.snapshot_build_us.load(Ordering::Relaxed) as f64 / 1e6,
        );
        scalar(
            &mut out,
            "aiproxy_snapshot_version",
            "gauge",
            "Version of the last configuration snapshot built.",
            self.snapshot_version.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "aiproxy_snapshot_bytes",
            "gauge",
            "Encoded size of the last configuration snapshot.",
            self.snapshot_bytes.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "aiproxy_usage_rollup_pending",
            "gauge",
            "Ended periods (hours, days) of usage not yet rolled up (read from the logs meanwhile).",
            self.usage_rollup_pending.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "aiproxy_usage_rollup_passes_total",
            "counter",
            "Passes of the usage rollup job.",
            self.usage_rollup_passes.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP aiproxy_db_pool_connections Database pool connections.\n# TYPE aiproxy_db_pool_connections gauge"
        );
        let _ = writeln!(
            out,
            "aiproxy_db_pool_connections{{state=\"idle\"}} {pool_idle}"
        );
        let _ = writeln!(
            out,
            "aiproxy_db_pool_connections{{state=\"in_use\"}} {}",
            (pool_size as usize).saturating_sub(pool_idle)
        );
        out
    }
}
