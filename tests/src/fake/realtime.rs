//! A fake OpenAI Realtime server (`GET /v1/realtime?model=` WebSocket): checks the Bearer key
//! and the `OpenAI-Beta: realtime=v1` header, sends `session.created`, echoes text and binary
//! frames back, answers `response.create` with `response.done` (with usage), and can drop the
//! connection abruptly on demand (`{"type":"test.die"}`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

#[derive(Clone, Default)]
struct Shared {
    key: String,
    models: Arc<Mutex<Vec<String>>>,
    closed_by_client: Arc<AtomicUsize>,
}

pub struct FakeRealtime {
    pub addr: std::net::SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRealtime {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRealtime {
    pub async fn start(key: &str) -> FakeRealtime {
        let shared = Shared {
            key: key.into(),
            ..Default::default()
        };
        let app = Router::new()
            .route("/v1/realtime", get(upgrade))
            .with_state(shared.clone());
        let (l, addr) = super::listener().await;
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        FakeRealtime { addr, shared, task }
    }

    pub fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn models(&self) -> Vec<String> {
        self.shared.models.lock().unwrap().clone()
    }

    /// Sessions the client closed with a close frame.
    pub fn closed_by_client(&self) -> usize {
        self.shared.closed_by_client.load(Ordering::SeqCst)
    }
}

async fn upgrade(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {}", s.key) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key", "param": null}}))).into_response();
    }
    if headers.get("openai-beta").and_then(|v| v.to_str().ok()) != Some("realtime=v1") {
        return (StatusCode::BAD_REQUEST, "missing OpenAI-Beta: realtime=v1").into_response();
    }
    s.models
        .lock()
        .unwrap()
        .push(q.get("model").cloned().unwrap_or_default());
    ws.on_upgrade(move |socket| session(s, socket))
}

async fn session(s: Shared, mut socket: WebSocket) {
    let created =
        json!({"type": "session.created", "event_id": "ev_0", "session": {"id": "sess_1"}});
    if socket
        .send(Message::Text(created.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    while let Some(Ok(m)) = socket.recv().await {
        match m {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                match v["type"].as_str() {
                    Some("test.die") => return,
                    Some("response.create") => {
                        let done = json!({"type": "response.done", "event_id": "ev_9", "response": {"id": "resp_1", "status": "completed",
                            "usage": {"total_tokens": 30, "input_tokens": 20, "output_tokens": 10, "input_token_details": {"cached_tokens": 4}}}});
                        let _ = socket.send(Message::Text(done.to_string().into())).await;
                    }
                    _ => {
                        let _ = socket.send(Message::Text(t)).await;
                    }
                }
            }
            Message::Binary(b) => {
                let _ = socket.send(Message::Binary(b)).await;
            }
            Message::Close(_) => {
                s.closed_by_client.fetch_add(1, Ordering::SeqCst);
                return;
            }
            _ => {}
        }
    }
}
