//! A fake OpenAI (and Azure OpenAI) server: `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `/v1/responses`, `/v1/models`, and Azure's
//! `/openai/deployments/{dep}/…?api-version=` with the `api-key` header.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

use super::Recorded;

/// What the fake does with the next request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A plain answer (streamed when asked).
    Text {
        content: String,
        prompt_tokens: u64,
        completion_tokens: u64,
    },
    /// Parallel tool calls: (name, arguments JSON).
    ToolCalls(Vec<(String, String)>),
    /// An error status with an OpenAI-shaped body and extra headers.
    Status {
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
    },
    /// Never answers (not even headers).
    Hang,
    /// Streams this many content chunks, then drops the connection.
    StreamCut { after_chunks: usize },
    /// Streams `chunks` chunks with `gap` between them.
    Slow { chunks: usize, gap: Duration },
    /// Sends a 200 stream response, then aborts before any byte of the body.
    AbortAfterHeaders,
    /// Waits, then plays the inner reply.
    Delayed(Duration, Box<Reply>),
    /// A 200 JSON answer whose body is these bytes as they are, encoded once by the test (a
    /// 64 MiB answer re-encoded per request would take seconds under load).
    Raw(Bytes),
}

impl Reply {
    pub fn text(s: &str) -> Reply {
        Reply::Text {
            content: s.into(),
            prompt_tokens: 11,
            completion_tokens: 7,
        }
    }

    pub fn status(status: u16, message: &str) -> Reply {
        let (t, code) = match status {
            429 => ("requests", Some("rate_limit_exceeded")),
            400 => ("invalid_request_error", None),
            401 => ("invalid_request_error", Some("invalid_api_key")),
            _ => ("server_error", None),
        };
        Reply::Status {
            status,
            body: json!({"error": {"message": message, "type": t, "param": null, "code": code}}),
            headers: vec![],
        }
    }

    pub fn rate_limited(retry_after_s: u64) -> Reply {
        match Reply::status(429, "Rate limit reached for requests") {
            Reply::Status { status, body, .. } => Reply::Status {
                status,
                body,
                headers: vec![("retry-after".into(), retry_after_s.to_string())],
            },
            r => r,
        }
    }
}

pub struct FakeState {
    pub queue: VecDeque<Reply>,
    pub default: Reply,
    pub requests: Vec<Recorded>,
    pub key: String,
}

#[derive(Clone)]
pub struct FakeOpenAi {
    pub addr: std::net::SocketAddr,
    pub state: Arc<Mutex<FakeState>>,
    /// Streams whose client went away before the end.
    pub cancelled_streams: Arc<AtomicUsize>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<FakeState>>,
    cancelled: Arc<AtomicUsize>,
}

impl FakeOpenAi {
    /// Starts a fake that accepts `key` (Bearer, or Azure's `api-key`).
    pub async fn start(key: &str) -> FakeOpenAi {
        let state = Arc::new(Mutex::new(FakeState {
            queue: VecDeque::new(),
            default: Reply::text("Hello from the fake!"),
            requests: Vec::new(),
            key: key.into(),
        }));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let shared = Shared {
            state: state.clone(),
            cancelled: cancelled.clone(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/completions", post(completions))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/responses", post(responses))
            .route("/v1/models", get(models))
            .route("/openai/deployments/{dep}/chat/completions", post(azure_chat))
            .route("/openai/deployments/{dep}/embeddings", post(azure_embeddings))
            .fallback(|req: Request| async move { (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"message": format!("Invalid URL ({} {})", req.method(), req.uri().path()), "type": "invalid_request_error", "param": null, "code": null}}))) })
            .with_state(shared);
        let (l, addr) = super::listener().await;
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        FakeOpenAi {
            addr,
            state,
            cancelled_streams: cancelled,
            task: Arc::new(task),
        }
    }

    /// The `api_base` to configure for this fake (OpenAI style, with `/v1`).
    pub fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The Azure resource endpoint for this fake.
    pub fn azure_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push(&self, r: Reply) {
        self.state.lock().unwrap().queue.push_back(r);
    }

    pub fn set_default(&self, r: Reply) {
        self.state.lock().unwrap().default = r;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    pub fn last(&self) -> Option<Recorded> {
        self.state.lock().unwrap().requests.last().cloned()
    }
}

fn error(status: StatusCode, message: &str, code: Option<&str>) -> Response {
    (status, axum::Json(json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}}))).into_response()
}

/// Records the request, checks auth; returns the reply to play.
fn admit(
    s: &Shared,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    raw: &Bytes,
    azure: bool,
) -> Result<(Reply, Value), Response> {
    let body: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    let mut st = s.state.lock().unwrap();
    st.requests.push(Recorded {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: headers.clone(),
        body: body.clone(),
        raw: raw.clone(),
    });
    let presented = if azure {
        headers
            .get("api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    } else {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
    };
    if presented.as_deref() != Some(st.key.as_str()) {
        if azure {
            return Err((StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}}))).into_response());
        }
        let shown = presented.unwrap_or_default();
        return Err(error(
            StatusCode::UNAUTHORIZED,
            &format!(
                "Incorrect API key provided: {shown}. You can find your API key at https://platform.openai.com/account/api-keys."
            ),
            Some("invalid_api_key"),
        ));
    }
    if body.is_null() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
            None,
        ));
    }
    let reply = st.queue.pop_front().unwrap_or_else(|| st.default.clone());
    Ok((reply, body))
}

async fn chat(State(s): State<Shared>, headers: HeaderMap, raw: Bytes) -> Response {
    serve_chat(s, "/v1/chat/completions", "", headers, raw, false).await
}

async fn azure_chat(
    State(s): State<Shared>,
    Path(dep): Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let q = q.unwrap_or_default();
    if !q.contains("api-version=") {
        return error(StatusCode::NOT_FOUND, "Resource not found", Some("404"));
    }
    serve_chat(
        s,
        &format!("/openai/deployments/{dep}/chat/completions"),
        &q,
        headers,
        raw,
        true,
    )
    .await
}

async fn serve_chat(
    s: Shared,
    path: &str,
    query: &str,
    headers: HeaderMap,
    raw: Bytes,
    azure: bool,
) -> Response {
    let (reply, body) = match admit(&s, "POST", path, query, &headers, &raw, azure) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if body.get("model").and_then(Value::as_str).is_none() && !azure {
        return error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            None,
        );
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("azure-deployment")
        .to_string();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let resp = play(s, reply, model, stream, usage).await;
    if azure && stream && resp.status().is_success() {
        // Azure's first chunk carries content-filter results and an empty `choices` array
        // (edge case 19).
        let first = Bytes::from(format!(
            "data: {}\n\n",
            json!({"id": "", "object": "", "created": 0, "model": "", "choices": [],
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": false, "severity": "safe"}}}]})
        ));
        let (parts, body) = resp.into_parts();
        let rest = futures_util::StreamExt::chain(
            futures_util::stream::once(async move { Ok::<Bytes, axum::Error>(first) }),
            body.into_data_stream(),
        );
        return Response::from_parts(parts, Body::from_stream(rest));
    }
    resp
}

fn usage_json(p: u64, c: u64) -> Value {
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}})
}

fn play(
    s: Shared,
    reply: Reply,
    model: String,
    stream: bool,
    include_usage: bool,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>> {
    Box::pin(async move {
        match reply {
            Reply::Delayed(d, inner) => {
                tokio::time::sleep(d).await;
                play(s, *inner, model, stream, include_usage).await
            }
            Reply::Hang => {
                std::future::pending::<()>().await;
                StatusCode::OK.into_response()
            }
            Reply::Status { status, body, headers } => {
                let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response();
                for (k, v) in headers {
                    r.headers_mut().insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
                }
                r
            }
            Reply::Text { content, prompt_tokens, completion_tokens } if !stream => axum::Json(json!({
                "id": "chatcmpl-fake1", "object": "chat.completion", "created": 1735689600, "model": model, "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
                "usage": usage_json(prompt_tokens, completion_tokens)
            }))
            .into_response(),
            Reply::Raw(body) => ([(http::header::CONTENT_TYPE, "application/json")], body).into_response(),
            Reply::ToolCalls(calls) if !stream => {
                let tcs: Vec<Value> = calls.iter().enumerate().map(|(i, (n, a))| json!({"id": format!("call_{i}"), "type": "function", "function": {"name": n, "arguments": a}})).collect();
                axum::Json(json!({"id": "chatcmpl-fake2", "object": "chat.completion", "created": 1735689600, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": tcs}, "logprobs": null, "finish_reason": "tool_calls"}],
                    "usage": usage_json(20, 10)}))
                .into_response()
            }
            other => stream_reply(s, other, model, include_usage),
        }
    })
}

/// Counts a stream as cancelled when its body is dropped before the end.
struct CancelWatch {
    counter: Arc<AtomicUsize>,
    finished: bool,
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        if !self.finished {
            self.counter.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn chunk(model: &str, delta: Value, finish: Option<&str>, include_usage: bool) -> String {
    let mut c = json!({"id": "chatcmpl-fakestream", "object": "chat.completion.chunk", "created": 1735689600, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    if include_usage {
        c["usage"] = Value::Null;
    }
    format!("data: {c}\n\n")
}

fn stream_reply(s: Shared, reply: Reply, model: String, include_usage: bool) -> Response {
    let mut events: Vec<(String, Duration)> = Vec::new();
    let mut cut = false;
    let (prompt, completion) = match &reply {
        Reply::Text {
            prompt_tokens,
            completion_tokens,
            ..
        } => (*prompt_tokens, *completion_tokens),
        _ => (11, 7),
    };
    match reply {
        Reply::Text { content, .. } => {
            events.push((
                chunk(
                    &model,
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                    include_usage,
                ),
                Duration::ZERO,
            ));
            let chars: Vec<char> = content.chars().collect();
            for piece in chars.chunks(3) {
                events.push((
                    chunk(
                        &model,
                        json!({"content": piece.iter().collect::<String>()}),
                        None,
                        include_usage,
                    ),
                    Duration::ZERO,
                ));
            }
            events.push((
                chunk(&model, json!({}), Some("stop"), include_usage),
                Duration::ZERO,
            ));
        }
        Reply::ToolCalls(calls) => {
            events.push((
                chunk(
                    &model,
                    json!({"role": "assistant", "content": null}),
                    None,
                    include_usage,
                ),
                Duration::ZERO,
            ));
            for (i, (n, a)) in calls.iter().enumerate() {
                events.push((chunk(&model, json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function", "function": {"name": n, "arguments": ""}}]}), None, include_usage), Duration::ZERO));
                events.push((
                    chunk(
                        &model,
                        json!({"tool_calls": [{"index": i, "function": {"arguments": a}}]}),
                        None,
                        include_usage,
                    ),
                    Duration::ZERO,
                ));
            }
            events.push((
                chunk(&model, json!({}), Some("tool_calls"), include_usage),
                Duration::ZERO,
            ));
        }
        Reply::StreamCut { after_chunks } => {
            events.push((
                chunk(
                    &model,
                    json!({"role": "assistant", "content": ""}),
                    None,
                    include_usage,
                ),
                Duration::ZERO,
            ));
            for i in 0..after_chunks {
                events.push((
                    chunk(
                        &model,
                        json!({"content": format!("part{i} ")}),
                        None,
                        include_usage,
                    ),
                    Duration::ZERO,
                ));
            }
            cut = true;
        }
        Reply::AbortAfterHeaders => cut = true,
        Reply::Slow { chunks, gap } => {
            events.push((
                chunk(
                    &model,
                    json!({"role": "assistant", "content": ""}),
                    None,
                    include_usage,
                ),
                Duration::ZERO,
            ));
            for i in 0..chunks {
                events.push((
                    chunk(
                        &model,
                        json!({"content": format!("tick{i} ")}),
                        None,
                        include_usage,
                    ),
                    gap,
                ));
            }
            events.push((
                chunk(&model, json!({}), Some("stop"), include_usage),
                Duration::ZERO,
            ));
        }
        _ => {}
    }
    if !cut {
        if include_usage {
            events.push((format!("data: {}\n\n", json!({"id": "chatcmpl-fakestream", "object": "chat.completion.chunk", "created": 1735689600, "model": model, "choices": [], "usage": usage_json(prompt, completion)})), Duration::ZERO));
        }
        events.push(("data: [DONE]\n\n".into(), Duration::ZERO));
    }
    let counter = s.cancelled.clone();
    let body = futures_util::stream::unfold(
        (
            events.into_iter(),
            CancelWatch {
                counter,
                finished: false,
            },
            cut,
            false,
        ),
        |(mut it, mut watch, cut, ended)| async move {
            if ended {
                return None;
            }
            match it.next() {
                Some((e, gap)) => {
                    if !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from(e)),
                        (it, watch, cut, false),
                    ))
                }
                None => {
                    watch.finished = true;
                    if cut {
                        // Let what was sent reach the client, then abort the connection mid-stream.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((Err(std::io::Error::other("cut")), (it, watch, cut, true)))
                    } else {
                        None
                    }
                }
            }
        },
    );
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(Body::from_stream(body))
        .unwrap()
}

async fn completions(State(s): State<Shared>, headers: HeaderMap, raw: Bytes) -> Response {
    let (reply, body) = match admit(&s, "POST", "/v1/completions", "", &headers, &raw, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match reply {
        Reply::Text { content, prompt_tokens, completion_tokens } => axum::Json(json!({"id": "cmpl-fake", "object": "text_completion", "created": 1735689600, "model": body["model"],
            "choices": [{"index": 0, "text": content, "logprobs": null, "finish_reason": "stop"}], "usage": usage_json(prompt_tokens, completion_tokens)}))
        .into_response(),
        other => play(s, other, body["model"].as_str().unwrap_or("").into(), false, false).await,
    }
}

fn embedding_response(body: &Value) -> Response {
    let inputs = match &body["input"] {
        Value::Array(a) => a.len(),
        _ => 1,
    };
    let vector = [0.25f32, -0.5, 0.125];
    let b64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = (0..inputs)
        .map(|i| {
            let emb = if b64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": emb})
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 5 * inputs, "total_tokens": 5 * inputs}})).into_response()
}

async fn embeddings(State(s): State<Shared>, headers: HeaderMap, raw: Bytes) -> Response {
    match admit(&s, "POST", "/v1/embeddings", "", &headers, &raw, false) {
        Ok((Reply::Text { .. }, body)) => embedding_response(&body),
        Ok((other, body)) => {
            play(
                s,
                other,
                body["model"].as_str().unwrap_or("").into(),
                false,
                false,
            )
            .await
        }
        Err(r) => r,
    }
}

async fn azure_embeddings(
    State(s): State<Shared>,
    Path(dep): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    match admit(
        &s,
        "POST",
        &format!("/openai/deployments/{dep}/embeddings"),
        "",
        &headers,
        &raw,
        true,
    ) {
        Ok((Reply::Text { .. }, body)) => embedding_response(&body),
        Ok((other, body)) => {
            play(
                s,
                other,
                body["model"].as_str().unwrap_or("").into(),
                false,
                false,
            )
            .await
        }
        Err(r) => r,
    }
}

async fn responses(State(s): State<Shared>, headers: HeaderMap, raw: Bytes) -> Response {
    let (reply, body) = match admit(&s, "POST", "/v1/responses", "", &headers, &raw, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let model = body["model"].clone();
    let Reply::Text {
        content,
        prompt_tokens,
        completion_tokens,
    } = reply
    else {
        return play(s, reply, model.as_str().unwrap_or("").into(), false, false).await;
    };
    let usage = json!({"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": completion_tokens, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt_tokens + completion_tokens});
    let full = json!({"id": "resp_fake", "object": "response", "created_at": 1735689600, "status": "completed", "model": model, "error": null, "incomplete_details": null,
        "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": content, "annotations": []}]}], "usage": usage});
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return axum::Json(full).into_response();
    }
    let mut out = String::new();
    let ev =
        |out: &mut String, t: &str, v: Value| out.push_str(&format!("event: {t}\ndata: {v}\n\n"));
    ev(
        &mut out,
        "response.created",
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_fake", "status": "in_progress", "output": []}}),
    );
    ev(
        &mut out,
        "response.output_text.delta",
        json!({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": content}),
    );
    ev(
        &mut out,
        "response.completed",
        json!({"type": "response.completed", "sequence_number": 2, "response": full}),
    );
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(Body::from(out))
        .unwrap()
}

async fn models(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = admit(
        &s,
        "GET",
        "/v1/models",
        "",
        &headers,
        &Bytes::from_static(b"{}"),
        false,
    ) {
        return r;
    }
    axum::Json(json!({"object": "list", "data": [{"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"}]})).into_response()
}
