//! A fake OpenTelemetry Collector: accepts OTLP/HTTP JSON on `POST /v1/traces` (as the
//! Collector's `otlphttp` receiver does: 200 with an empty `ExportTraceServiceResponse`),
//! keeps every span it received, and can be told to refuse (503) to exercise drops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Shared {
    spans: Arc<Mutex<Vec<Value>>>,
    resources: Arc<Mutex<Vec<Value>>>,
    refuse: Arc<AtomicBool>,
}

pub struct FakeCollector {
    pub addr: std::net::SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn traces(State(s): State<Shared>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    if s.refuse.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "{}".into());
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}".into());
    }
    let Ok(v) = serde_json::from_str::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            json!({"message": "invalid JSON"}).to_string(),
        );
    };
    for rs in v["resourceSpans"].as_array().into_iter().flatten() {
        s.resources.lock().unwrap().push(rs["resource"].clone());
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for span in ss["spans"].as_array().into_iter().flatten() {
                s.spans.lock().unwrap().push(span.clone());
            }
        }
    }
    (StatusCode::OK, "{}".into())
}

impl FakeCollector {
    pub async fn start() -> FakeCollector {
        let shared = Shared::default();
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .with_state(shared.clone());
        let (l, addr) = super::listener().await;
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        FakeCollector { addr, shared, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<Value> {
        self.shared.spans.lock().unwrap().clone()
    }

    /// The `service.name` of every resource that exported.
    pub fn services(&self) -> Vec<String> {
        self.shared
            .resources
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r["attributes"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["key"] == "service.name")
            .filter_map(|a| a["value"]["stringValue"].as_str().map(str::to_string))
            .collect()
    }

    pub fn refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::Relaxed);
    }

    /// Waits until a span matching `f` has arrived (export batches every 2 s).
    pub async fn wait_for(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| f(s)) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no span {what} arrived; got {:#?}",
                self.spans()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// A span attribute's value (`stringValue`, `intValue`, …), if present.
pub fn attr(span: &Value, key: &str) -> Option<Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"].as_object()?.values().next().cloned())
}
