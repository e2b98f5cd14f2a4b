//! Fake Anthropic, Gemini and Bedrock servers, each speaking its provider's real wire format
//! (provider-wire-formats.md sections 3–5 and Appendix B): paths, auth, validation rules that
//! real backends enforce, error shapes, and stream framing (Anthropic SSE with `ping`s, Gemini
//! `alt=sse` with CRLF separators, Bedrock binary event-stream). They record what they received
//! and play scripted replies.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::Recorded;

/// What the fake does with the next request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A text answer (streamed in several pieces when asked).
    Text(String),
    /// Tool calls: (name, input object). Gemini sends each complete in one chunk.
    Tools(Vec<(String, Value)>),
    /// An error with this HTTP status, in the provider's own shape.
    Error(u16),
    /// A 200 stream that sends some text, then the provider's in-band error.
    StreamError,
    /// Gemini only: the prompt is blocked (200, no candidates, `promptFeedback`).
    Blocked,
    /// A 200 whose body is not JSON (a broken provider or middlebox).
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Anthropic,
    Gemini,
    Bedrock,
}

struct FakeState {
    kind: Kind,
    queue: VecDeque<Reply>,
    default: Reply,
    requests: Vec<Recorded>,
    /// The API key (Anthropic, Gemini, Bedrock bearer) or the IAM secret (Bedrock SigV4).
    key: String,
    access_key_id: String,
}

#[derive(Clone)]
pub struct FakeProvider {
    pub addr: std::net::SocketAddr,
    state: Arc<Mutex<FakeState>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

const TEXT: &str = "Hello from the fake!";

impl FakeProvider {
    /// A fake Anthropic accepting `x-api-key: key` (or `Authorization: Bearer key`).
    pub async fn anthropic(key: &str) -> FakeProvider {
        Self::start(Kind::Anthropic, key, "").await
    }

    /// A fake Gemini accepting `x-goog-api-key: key` or `?key=key`.
    pub async fn gemini(key: &str) -> FakeProvider {
        Self::start(Kind::Gemini, key, "").await
    }

    /// A fake Bedrock accepting SigV4 with (`access_key_id`, `secret`) for service `bedrock`,
    /// or `Authorization: Bearer secret` (a Bedrock API key).
    pub async fn bedrock(access_key_id: &str, secret: &str) -> FakeProvider {
        Self::start(Kind::Bedrock, secret, access_key_id).await
    }

    async fn start(kind: Kind, key: &str, access_key_id: &str) -> FakeProvider {
        let state = Arc::new(Mutex::new(FakeState {
            kind,
            queue: VecDeque::new(),
            default: Reply::Text(TEXT.into()),
            requests: Vec::new(),
            key: key.into(),
            access_key_id: access_key_id.into(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (l, addr) = super::listener().await;
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        FakeProvider {
            addr,
            state,
            task: Arc::new(task),
        }
    }

    /// The `api_base` to configure.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push(&self, r: Reply) {
        self.state.lock().unwrap().queue.push_back(r);
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

async fn handle(State(state): State<Arc<Mutex<FakeState>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let raw = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let (kind, reply, key, akid) = {
        let mut st = state.lock().unwrap();
        st.requests.push(Recorded {
            method: parts.method.to_string(),
            path: path.clone(),
            query: query.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
            raw: raw.clone(),
        });
        let r = st.queue.pop_front().unwrap_or_else(|| st.default.clone());
        (st.kind, r, st.key.clone(), st.access_key_id.clone())
    };
    match kind {
        Kind::Anthropic => anthropic(&path, &parts.headers, &body, &key, reply),
        Kind::Gemini => gemini(&path, &query, &parts.headers, &body, &key, reply),
        Kind::Bedrock => bedrock(&parts, &path, &raw, &body, &key, &akid, reply),
    }
}

fn json_response(status: u16, body: Value, headers: &[(&str, &str)]) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

/// A streamed body: the pieces with a short pause between them (so clients see real chunking).
fn streamed(content_type: &str, pieces: Vec<Bytes>) -> Response {
    let s = futures_util::stream::unfold(pieces.into_iter(), |mut it| async move {
        let next = it.next()?;
        tokio::time::sleep(Duration::from_millis(2)).await;
        Some((Ok::<Bytes, std::io::Error>(next), it))
    });
    Response::builder()
        .status(200)
        .header("content-type", content_type)
        .body(Body::from_stream(s))
        .unwrap()
}

fn halves(s: &str) -> Vec<String> {
    let mid = s
        .char_indices()
        .nth(s.chars().count() / 2)
        .map(|(i, _)| i)
        .unwrap_or(0);
    vec![s[..mid].to_string(), s[mid..].to_string()]
}

// ---------------------------------------------------------------------------------------------
// Anthropic

/// A 200 answer cut off in the middle of its JSON.
fn malformed() -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"id": "cut-off", "content": [{"type": "#))
        .unwrap()
}

fn anthropic_error(status: u16, message: &str) -> Response {
    let t = match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500 => "api_error",
        529 => "overloaded_error",
        _ => "invalid_request_error",
    };
    let retry = [("retry-after", "1")];
    json_response(
        status,
        json!({"type": "error", "error": {"type": t, "message": message}, "request_id": "req_fake"}),
        if matches!(status, 429 | 529) {
            &retry
        } else {
            &[]
        },
    )
}

/// The Messages API's validation rules that break gateways (section 3.2).
fn anthropic_validate(body: &Value) -> Result<(), String> {
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return Err("max_tokens: Field required".into());
    }
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    let mut pending_tool_uses: Vec<String> = Vec::new();
    let mut previous = "";
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(role, "user" | "assistant") {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        // The real API merges consecutive same-role turns, but Anthropic-shaped backends
        // (Bedrock, older gateways) reject them; the fake is strict so merging is tested.
        if role == previous {
            return Err(format!(
                "messages.{i}: roles must alternate between \"user\" and \"assistant\""
            ));
        }
        previous = role;
        let blocks: Vec<Value> = match m.get("content") {
            Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
            Some(Value::Array(a)) => a.clone(),
            _ => return Err(format!("messages.{i}.content: Field required")),
        };
        if role == "user" {
            let results: Vec<&str> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .filter_map(|b| b["tool_use_id"].as_str())
                .collect();
            for id in &pending_tool_uses {
                if !results.contains(&id.as_str()) {
                    return Err(format!(
                        "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {id}"
                    ));
                }
            }
            pending_tool_uses.clear();
        } else {
            pending_tool_uses = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .filter_map(|b| b["id"].as_str().map(str::to_string))
                .collect();
            for b in &blocks {
                if b["type"] == "tool_use" && !b["input"].is_object() {
                    return Err(format!(
                        "messages.{i}: tool_use.input: Input should be a valid dictionary"
                    ));
                }
            }
        }
        for b in &blocks {
            if b["type"] == "text" && b["text"].as_str().unwrap_or("").is_empty() {
                return Err(format!(
                    "messages.{i}: text content blocks must be non-empty"
                ));
            }
        }
    }
    Ok(())
}

fn anthropic(path: &str, headers: &HeaderMap, body: &Value, key: &str, reply: Reply) -> Response {
    if path != "/v1/messages" {
        return anthropic_error(404, &format!("Not found: {path}"));
    }
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string)
        });
    if given.as_deref() != Some(key) {
        return anthropic_error(401, "invalid x-api-key");
    }
    if headers.get("anthropic-version").is_none() {
        return anthropic_error(400, "anthropic-version: header is required");
    }
    if let Err(m) = anthropic_validate(body) {
        return anthropic_error(400, &m);
    }
    let model = body["model"].as_str().unwrap_or("claude").to_string();
    let stream = body["stream"].as_bool().unwrap_or(false);
    let (content, stop) = match &reply {
        Reply::Error(s) => return anthropic_error(*s, "scripted error"),
        Reply::Malformed => return malformed(),
        Reply::Text(t) => (vec![json!({"type": "text", "text": t})], "end_turn"),
        Reply::StreamError | Reply::Blocked => (vec![json!({"type": "text", "text": TEXT})], "end_turn"),
        Reply::Tools(calls) => (
            calls
                .iter()
                .enumerate()
                .map(|(i, (n, input))| json!({"type": "tool_use", "id": format!("toolu_fake{i}"), "name": n, "input": input}))
                .collect(),
            "tool_use",
        ),
    };
    let usage = json!({"input_tokens": 21, "output_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0});
    if !stream {
        return json_response(
            200,
            json!({"id": "msg_fake01", "type": "message", "role": "assistant", "model": model, "content": content,
                   "stop_reason": stop, "stop_sequence": null, "usage": usage}),
            &[("request-id", "req_fake")],
        );
    }
    let ev = |name: &str, v: Value| Bytes::from(format!("event: {name}\ndata: {v}\n\n"));
    let mut out = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_fake01", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 21, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    )];
    for (i, block) in content.iter().enumerate() {
        if block["type"] == "text" {
            out.push(ev("content_block_start", json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})));
            out.push(ev("ping", json!({"type": "ping"})));
            let text = block["text"].as_str().unwrap_or("");
            for (k, piece) in halves(text).into_iter().enumerate() {
                out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}})));
                if k == 0 && matches!(reply, Reply::StreamError) {
                    out.push(ev("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
                    return streamed("text/event-stream; charset=utf-8", out);
                }
            }
        } else {
            out.push(ev("content_block_start", json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})));
            let args = block["input"].to_string();
            for piece in halves(&args) {
                out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": piece}})));
            }
        }
        out.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    out.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 9}})));
    out.push(ev("message_stop", json!({"type": "message_stop"})));
    streamed("text/event-stream; charset=utf-8", out)
}

// ---------------------------------------------------------------------------------------------
// Gemini

fn gemini_error(status: u16, message: &str, reason: Option<&str>) -> Response {
    let st = match status {
        400 => "INVALID_ARGUMENT",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    let mut details = vec![];
    if let Some(r) = reason {
        details.push(json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": r, "domain": "googleapis.com"}));
    }
    if status == 429 {
        details
            .push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}));
    }
    json_response(
        status,
        json!({"error": {"code": status, "message": message, "status": st, "details": details}}),
        &[],
    )
}

/// Schema keywords the `parameters` subset rejects (section 4.2).
fn gemini_schema_ok(schema: &Value) -> Result<(), String> {
    match schema {
        Value::Object(m) => {
            for (k, v) in m {
                if matches!(
                    k.as_str(),
                    "additionalProperties"
                        | "$schema"
                        | "$defs"
                        | "$ref"
                        | "default"
                        | "examples"
                        | "title"
                ) {
                    return Err(format!(
                        "Invalid JSON payload received. Unknown name \"{k}\""
                    ));
                }
                if k == "properties" {
                    for p in v.as_object().into_iter().flat_map(|o| o.values()) {
                        gemini_schema_ok(p)?;
                    }
                } else {
                    gemini_schema_ok(v)?;
                }
            }
            Ok(())
        }
        Value::Array(a) => a.iter().try_for_each(gemini_schema_ok),
        _ => Ok(()),
    }
}

fn gemini(
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Value,
    key: &str,
    reply: Reply,
) -> Response {
    let given = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix("key=").map(str::to_string))
        });
    if given.as_deref() != Some(key) {
        return gemini_error(
            400,
            "API key not valid. Please pass a valid API key.",
            Some("API_KEY_INVALID"),
        );
    }
    let Some(rest) = path.strip_prefix("/v1beta/models/") else {
        return gemini_error(404, &format!("Not found: {path}"), None);
    };
    let (model, stream) = if let Some(m) = rest.strip_suffix(":streamGenerateContent") {
        if !query.split('&').any(|kv| kv == "alt=sse") {
            return gemini_error(400, "this fake only streams with alt=sse", None);
        }
        (m, true)
    } else if let Some(m) = rest.strip_suffix(":generateContent") {
        (m, false)
    } else {
        return gemini_error(404, &format!("Not found: {path}"), None);
    };
    if model.starts_with("models/") {
        return gemini_error(404, &format!("models/{model} is not found"), None);
    }
    let Some(contents) = body.get("contents").and_then(Value::as_array) else {
        return gemini_error(
            400,
            "* GenerateContentRequest.contents: contents is not specified",
            None,
        );
    };
    for c in contents {
        if !matches!(c["role"].as_str(), Some("user" | "model" | "function")) {
            return gemini_error(400, "Please use a valid role: user, model.", None);
        }
    }
    for t in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for f in t
            .get("functionDeclarations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(p) = f.get("parameters")
                && let Err(m) = gemini_schema_ok(p)
            {
                return gemini_error(400, &m, None);
            }
        }
    }
    let usage = json!({"promptTokenCount": 13, "candidatesTokenCount": 5, "totalTokenCount": 18});
    let chunk = |parts: Value, finish: Option<&str>| {
        let mut cand = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            cand["finishReason"] = f.into();
        }
        json!({"candidates": [cand], "usageMetadata": usage, "modelVersion": model, "responseId": "resp_fake"})
    };
    let pieces: Vec<Value> = match &reply {
        Reply::Error(s) => return gemini_error(*s, "scripted error", None),
        Reply::Malformed => return malformed(),
        Reply::Blocked => vec![
            json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}, "usageMetadata": {"promptTokenCount": 13, "totalTokenCount": 13}, "modelVersion": model}),
        ],
        Reply::Text(t) => {
            let hs = halves(t);
            if stream {
                vec![
                    chunk(json!([{"text": hs[0]}]), None),
                    chunk(json!([{"text": hs[1]}]), Some("STOP")),
                ]
            } else {
                vec![chunk(json!([{"text": t}]), Some("STOP"))]
            }
        }
        Reply::StreamError => vec![chunk(json!([{"text": "Hel"}]), None)],
        Reply::Tools(calls) => {
            let parts: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (n, args))| json!({"functionCall": {"id": format!("fc_{i}"), "name": n, "args": args}, "thoughtSignature": format!("sig{i}")}))
                .collect();
            vec![chunk(Value::Array(parts), Some("STOP"))]
        }
    };
    if !stream {
        let v = pieces.into_iter().next().unwrap_or(Value::Null);
        return json_response(200, v, &[]);
    }
    let mut out: Vec<Bytes> = pieces
        .into_iter()
        .map(|p| Bytes::from(format!("data: {p}\r\n\r\n")))
        .collect();
    if matches!(reply, Reply::StreamError) {
        // Gemini's in-band error: an error object as an event, then the connection closes.
        out.push(Bytes::from(format!(
            "data: {}\r\n\r\n",
            json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
        )));
    }
    streamed("text/event-stream", out)
}

// ---------------------------------------------------------------------------------------------
// Bedrock

fn bedrock_error(status: u16, kind: &str, message: &str) -> Response {
    json_response(
        status,
        json!({"message": message}),
        &[
            (
                "x-amzn-errortype",
                &format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            ),
            ("x-amzn-requestid", "fake-req"),
        ],
    )
}

/// Parses `YYYYMMDDTHHMMSSZ`.
fn amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 {
        return None;
    }
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, m, d) = (n(0, 4)?, n(4, 6)?, n(6, 8)?);
    let (hh, mm, ss) = (n(9, 11)?, n(11, 13)?, n(13, 15)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// Verifies SigV4 by signing the received request again with the known secret (service
/// `bedrock`, region from the credential scope) and comparing signatures.
fn sigv4_ok(
    parts: &http::request::Parts,
    raw: &[u8],
    akid: &str,
    secret: &str,
) -> Result<(), (&'static str, String)> {
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 Credential=") else {
        return Err((
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".into(),
        ));
    };
    let scope: Vec<&str> = rest.split(',').next().unwrap_or("").split('/').collect();
    if scope.len() != 5 || scope[0] != akid {
        return Err((
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".into(),
        ));
    }
    if scope[3] != "bedrock" {
        return Err((
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to correct service: 'bedrock', not '{}'",
                scope[3]
            ),
        ));
    }
    let region = scope[2];
    let date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(time) = amz_date(date) else {
        return Err((
            "InvalidSignatureException",
            "missing or invalid X-Amz-Date".into(),
        ));
    };
    let host = parts
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let url = format!(
        "http://{host}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let ct = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = parts
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    let keys = data_plane::sigv4::Keys {
        access_key_id: akid,
        secret_access_key: secret,
        session_token: token,
    };
    let expected = data_plane::sigv4::sign(&url, ct, raw, region, &keys, time)
        .map_err(|e| ("InvalidSignatureException", e))?;
    let want = expected
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_str());
    if want != Some(auth) {
        return Err((
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.".into(),
        ));
    }
    Ok(())
}

fn bedrock_validate(body: &Value) -> Result<(), String> {
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages is required")?;
    let mut uses_tools = false;
    for (i, m) in msgs.iter().enumerate() {
        let want = if i % 2 == 0 { "user" } else { "assistant" };
        if m["role"].as_str() != Some(want) {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into());
        }
        let content = m["content"]
            .as_array()
            .ok_or(format!("messages.{i}.content is required"))?;
        if content.is_empty() {
            return Err(format!(
                "The content field in the Message object at messages.{i} is empty."
            ));
        }
        for (j, b) in content.iter().enumerate() {
            let obj = b.as_object().ok_or("content block must be an object")?;
            if obj.len() != 1 {
                return Err(format!(
                    "messages.{i}.content.{j}: a ContentBlock must set exactly one member"
                ));
            }
            if let Some(t) = b.get("text")
                && t.as_str().unwrap_or("").trim().is_empty()
            {
                return Err(format!(
                    "The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again."
                ));
            }
            if b.get("toolUse").is_some() || b.get("toolResult").is_some() {
                uses_tools = true;
            }
        }
    }
    if uses_tools && body.get("toolConfig").is_none() {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
    }
    if let Some(tc) = body.get("toolConfig")
        && tc
            .get("tools")
            .and_then(Value::as_array)
            .is_none_or(|t| t.is_empty())
    {
        return Err("toolConfig.tools must contain at least one tool".into());
    }
    Ok(())
}

fn bedrock(
    parts: &http::request::Parts,
    path: &str,
    raw: &[u8],
    body: &Value,
    secret: &str,
    akid: &str,
    reply: Reply,
) -> Response {
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(b) if b == secret => {}
        Some(_) => return bedrock_error(403, "UnrecognizedClientException", "Invalid API key."),
        None => {
            if let Err((kind, m)) = sigv4_ok(parts, raw, akid, secret) {
                return bedrock_error(403, kind, &m);
            }
        }
    }
    let Some(rest) = path.strip_prefix("/model/") else {
        return bedrock_error(404, "UnknownOperationException", "unknown operation");
    };
    let (model, stream) = if let Some(m) = rest.strip_suffix("/converse-stream") {
        (m, true)
    } else if let Some(m) = rest.strip_suffix("/converse") {
        (m, false)
    } else {
        return bedrock_error(404, "UnknownOperationException", "unknown operation");
    };
    if model.contains(':') || model.contains('/') {
        return bedrock_error(
            400,
            "ValidationException",
            "The model id must be one percent-encoded path segment.",
        );
    }
    if let Err(m) = bedrock_validate(body) {
        return bedrock_error(400, "ValidationException", &m);
    }
    let usage = json!({"inputTokens": 17, "outputTokens": 6, "totalTokens": 23});
    let (content, stop) = match &reply {
        Reply::Error(429) => return bedrock_error(429, "ThrottlingException", "Too many requests, please wait before trying again."),
        Reply::Error(s) => return bedrock_error(*s, if *s >= 500 { "InternalServerException" } else { "ValidationException" }, "scripted error"),
        Reply::Malformed => return malformed(),
        Reply::Text(t) => (vec![json!({"text": t})], "end_turn"),
        Reply::StreamError | Reply::Blocked => (vec![json!({"text": TEXT})], "end_turn"),
        Reply::Tools(calls) => (
            calls
                .iter()
                .enumerate()
                .map(|(i, (n, input))| json!({"toolUse": {"toolUseId": format!("tooluse_fake{i}"), "name": n, "input": input}}))
                .collect::<Vec<_>>(),
            "tool_use",
        ),
    };
    if !stream {
        return json_response(
            200,
            json!({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 12}}),
            &[("x-amzn-requestid", "fake-req")],
        );
    }
    let ev = |t: &str, mut v: Value| {
        v["p"] = json!("abcdefgh");
        llm::eventstream::event(t, &v.to_string())
    };
    let mut out = vec![ev("messageStart", json!({"role": "assistant"}))];
    for (i, block) in content.iter().enumerate() {
        if let Some(t) = block["text"].as_str() {
            // No contentBlockStart for text blocks.
            for (k, piece) in halves(t).into_iter().enumerate() {
                out.push(ev(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": i, "delta": {"text": piece}}),
                ));
                if k == 0 && matches!(reply, Reply::StreamError) {
                    out.push(llm::eventstream::exception(
                        "modelStreamErrorException",
                        "The model stream failed.",
                    ));
                    return streamed("application/vnd.amazon.eventstream", out);
                }
            }
        } else {
            let tu = &block["toolUse"];
            out.push(ev("contentBlockStart", json!({"contentBlockIndex": i, "start": {"toolUse": {"toolUseId": tu["toolUseId"], "name": tu["name"]}}})));
            for piece in halves(&tu["input"].to_string()) {
                out.push(ev(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": i, "delta": {"toolUse": {"input": piece}}}),
                ));
            }
        }
        out.push(ev("contentBlockStop", json!({"contentBlockIndex": i})));
    }
    out.push(ev("messageStop", json!({"stopReason": stop})));
    out.push(ev(
        "metadata",
        json!({"usage": usage, "metrics": {"latencyMs": 12}}),
    ));
    // Split frames across writes at arbitrary points, as a real connection does.
    let all: Vec<u8> = out.concat();
    let pieces = all.chunks(37).map(Bytes::copy_from_slice).collect();
    streamed("application/vnd.amazon.eventstream", pieces)
}
