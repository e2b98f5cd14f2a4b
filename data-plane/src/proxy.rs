//! One proxied call, end to end: authenticate, find the project context and the candidate
//! credentials, try them in the balancer's order until one answers (failing over only on errors
//! that mean the upstream did not process the request, and waiting out rate limits within the
//! request's budget), then answer the client — streamed as it arrives — and record usage.

mod respond;
mod stream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use llm::catalog::Format;
use serde_json::Value;

use crate::balance::Unavailable;
use crate::error::ProxyError;
use crate::node::Node;
use crate::record::{Attempt, RequestRecord, now_ms};
use crate::reqbody::{Fields, RequestBody};
use crate::routing::{self, Candidate, RouteKind};
use crate::snapshot::Snapshot;
use crate::upstream::{self, AttemptError, CallShape, ClientFormat, Mode};

/// The longest the proxy waits for a rate-limited credential's reset before answering 429.
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);

/// Everything about the call that outlives the attempt loop.
pub(crate) struct Call {
    node: Node,
    record: RequestRecord,
    started: Instant,
    /// The `x-request-id` answered.
    request_id: HeaderValue,
    log_payload: bool,
    /// The wire format the client speaks (its answers and errors are rendered in it).
    client: ClientFormat,
    /// Where to store a successful answer, when caching applies.
    cache: Option<CacheWrite>,
}

#[derive(Clone)]
pub(crate) struct CacheWrite {
    key: crate::cache::Key,
    ttl_secs: u64,
    write: bool,
}

impl Call {
    fn finish(mut self, status: u16, error_type: &str, message: &str) {
        self.record.status = status;
        self.record.error_type = error_type.to_string();
        self.record.error_message = message.chars().take(2000).collect();
        self.record.latency_ms = self.started.elapsed().as_millis() as u64;
        self.record.finished_at_ms = now_ms();
        self.node.metrics.observe(&self.record);
        self.node.submit(self.record);
    }

    /// Records a failure and renders it with the call's headers.
    fn fail(self, err: ProxyError, used: Option<&str>) -> Response {
        let ids = self.ids(used);
        self.finish(
            err.status.as_u16(),
            err.code.as_deref().unwrap_or("error"),
            &err.message,
        );
        ids.apply(err.into_response())
    }

    /// The call's own response headers as they stand now.
    fn ids(&self, used: Option<&str>) -> Ids {
        let attempts = self.record.attempts.len();
        Ids {
            request_id: self.request_id.clone(),
            attempts: match SMALL_COUNTS.get(attempts) {
                Some(n) => HeaderValue::from_static(n),
                None => HeaderValue::from(attempts),
            },
            log_id: HeaderValue::from_str(&self.record.id).ok(),
            used: used.and_then(|u| HeaderValue::from_str(u).ok()),
            cached: self.cache.is_some().then_some("MISS"),
            extra: Vec::new(),
        }
    }

    /// Stores the answer in the response cache when this call writes to it, in the background
    /// (never delays the client); `body` is only copied then.
    fn store(&self, content_type: &str, stream: bool, body: impl Into<Vec<u8>>) {
        let Some(c) = self.cache.clone().filter(|c| c.write) else {
            return;
        };
        let body = body.into();
        let entry = Arc::new(crate::cache::Entry {
            created_ms: now_ms(),
            ttl_secs: c.ttl_secs,
            content_type: content_type.to_string(),
            used_endpoint: self.record.credential_name.clone(),
            provider: self.record.provider_type.clone(),
            stream,
            usage: self.record.usage,
            body,
        });
        // Held in memory until written: a repeat right after this answer hits on this node.
        self.node.cache.hold(&c.key, &entry);
        let node = self.node.clone();
        tokio::spawn(async move { node.cache.put(&c.key, &entry).await });
    }
}

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
// Names built once: inserting by `&str` parses the name on every response.
const X_BT_ATTEMPTS: HeaderName = HeaderName::from_static("x-bt-attempts");
const X_BT_LOG_ID: HeaderName = HeaderName::from_static("x-bt-log-id");
const X_BT_USED_ENDPOINT: HeaderName = HeaderName::from_static("x-bt-used-endpoint");
pub(crate) const X_BT_CACHED: HeaderName = HeaderName::from_static("x-bt-cached");

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Attempt counts as header values without formatting them (a call makes a few attempts).
const SMALL_COUNTS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// A call's own response headers: `x-request-id`, `x-bt-attempts`, `x-bt-log-id`, and
/// `x-bt-used-endpoint`, `x-bt-cached` and others when they apply (values that would not be
/// valid header values are left out).
pub(crate) struct Ids {
    request_id: HeaderValue,
    attempts: HeaderValue,
    log_id: Option<HeaderValue>,
    used: Option<HeaderValue>,
    cached: Option<&'static str>,
    extra: Vec<(HeaderName, HeaderValue)>,
}

impl Ids {
    fn apply(self, mut resp: Response) -> Response {
        let h = resp.headers_mut();
        h.insert(X_REQUEST_ID, self.request_id);
        h.insert(X_BT_ATTEMPTS, self.attempts);
        if let Some(v) = self.log_id {
            h.insert(X_BT_LOG_ID, v);
        }
        if let Some(v) = self.used {
            h.insert(X_BT_USED_ENDPOINT, v);
        }
        if let Some(v) = self.cached {
            h.insert(X_BT_CACHED, HeaderValue::from_static(v));
        }
        for (k, v) in self.extra {
            h.insert(k, v);
        }
        resp
    }
}

/// The `x-request-id` header for an answer given before the call is set up (`request_id`
/// already checked the client's value; a generated one is a UUID).
fn with_request_id(mut resp: Response, request_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    resp
}

pub fn model_of(v: &(impl Fields + ?Sized)) -> Result<String, ProxyError> {
    match v.field("model") {
        Some(Value::String(m)) if !m.trim().is_empty() && m.len() <= 512 => Ok(m.clone()),
        Some(Value::String(_)) | None => Err(ProxyError::invalid_param(
            "model",
            "`model` is required: the model to call, e.g. \"gpt-4o\".",
        )),
        Some(_) => Err(ProxyError::invalid_param(
            "model",
            "`model` must be a string.",
        )),
    }
}

pub async fn read_body(node: &Node, body: Body) -> Result<Bytes, ProxyError> {
    let read = axum::body::to_bytes(body, node.cfg.max_body_bytes);
    let Ok(result) = tokio::time::timeout(node.cfg.body_read_timeout, read).await else {
        return Err(ProxyError {
            status: StatusCode::REQUEST_TIMEOUT,
            ..ProxyError::bad_request(
                "request_timeout",
                format!(
                    "The request body did not arrive within {} s.",
                    node.cfg.body_read_timeout.as_secs()
                ),
            )
        });
    };
    result.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit")
        {
            ProxyError::too_large(node.cfg.max_body_bytes)
        } else {
            ProxyError::bad_request(
                "invalid_body",
                format!("Could not read the request body: {e}"),
            )
        }
    })
}

pub async fn handle(node: Node, kind: RouteKind, headers: HeaderMap, body: Body) -> Response {
    let rid = request_id(&headers);
    let resp = match run(node, kind, &headers, body, &rid).await {
        Ok(resp) => resp,
        Err(e) => with_request_id(e.into_response(), &rid),
    };
    if kind == RouteKind::Messages && !resp.status().is_success() {
        return anthropic_error(resp).await;
    }
    resp
}

/// Re-renders an error response (OpenAI shape) in Anthropic's error envelope, keeping the
/// status and headers, for clients of the Anthropic Messages route.
async fn anthropic_error(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1024 * 1024)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    let out = llm::anthropic::ingress_error_body(parts.status.as_u16(), &message).to_string();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(out))
}

async fn run(
    node: Node,
    kind: RouteKind,
    headers: &HeaderMap,
    body: Body,
    rid: &str,
) -> Result<Response, ProxyError> {
    let started = Instant::now();
    let raw = read_body(&node, body).await?;
    let snap = node.store.load().ok_or_else(ProxyError::not_ready)?;
    let key = crate::auth::authenticate(&snap, headers)?;
    let caller = key;
    let ctx = routing::resolve_context(
        &snap,
        &caller.key,
        headers,
        caller.temp.as_ref().and_then(|t| t.log.as_deref()),
    )?;
    // The document itself is built only if something needs it (see `reqbody`).
    let body = RequestBody::parse(raw)?;
    let model = model_of(&body)?;
    // The Anthropic Messages route: the request is read as Anthropic's format and carried as
    // an OpenAI chat request (sent natively when the provider is Anthropic).
    let (client, body, native) = if kind == RouteKind::Messages {
        let chat = llm::anthropic::ingress_request_to_chat(body.doc()?).map_err(|e| match e {
            llm::TranslateError::InvalidRequest {
                message,
                param: Some(p),
            } => ProxyError::invalid_param(&p, message),
            other => ProxyError::bad_request("invalid_request", other.to_string()),
        })?;
        let raw = Bytes::from(serde_json::to_vec(&chat).unwrap_or_default());
        (
            ClientFormat::Anthropic,
            RequestBody::from_doc(raw, chat),
            Some(body),
        )
    } else {
        (ClientFormat::OpenAi, body, None)
    };
    let client_body = native.as_ref().unwrap_or(&body);
    caller.check_model(&model)?;
    let stream = body
        .field("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // Anthropic-format clients always get usage (message_start / message_delta).
    let include_usage = client == ClientFormat::Anthropic
        || body
            .field("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let log_payload = ctx.log_project.is_some();
    // From here on, every outcome is recorded.
    let mut call = Call {
        node: node.clone(),
        record: RequestRecord {
            id: uuid::Uuid::now_v7().to_string(),
            request_id: rid.to_string(),
            org_id: ctx.org.id.clone(),
            project_id: ctx.project.map(|p| p.id.clone()),
            api_key_id: ctx.key.id.clone(),
            model: model.clone(),
            route: kind.name(),
            stream,
            started_at_ms: now_ms(),
            input: log_payload.then(|| client_body.log_text()),
            trace_parent: node
                .tracer
                .as_ref()
                .and_then(|_| headers.get("traceparent"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            ..Default::default()
        },
        started,
        request_id: HeaderValue::from_str(rid).unwrap_or(HeaderValue::from_static("")),
        log_payload,
        client,
        cache: None,
    };
    if stream && matches!(kind, RouteKind::Embeddings) {
        return Ok(call.fail(
            ProxyError::invalid_param("stream", "Embeddings cannot be streamed."),
            None,
        ));
    }
    let endpoint = headers
        .get("x-bt-endpoint-name")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let cands = match routing::candidates(&snap, &ctx, &model, kind, endpoint) {
        Ok(c) => c,
        Err(e) => return Ok(call.fail(e, None)),
    };
    match crate::cache::plan(kind, headers, client_body) {
        Err(e) => return Ok(call.fail(e, None)),
        Ok(None) => {}
        Ok(Some(plan)) => {
            let doc = match client_body.doc() {
                Ok(doc) => doc,
                Err(e) => return Ok(call.fail(e, None)),
            };
            let key = crate::cache::key(
                kind,
                &ctx.org.id,
                ctx.project.map(|p| p.id.as_str()),
                endpoint,
                headers,
                doc,
            );
            if plan.read
                && let Some(entry) = node.cache.get(&key, now_ms(), plan.max_age_secs).await
            {
                return Ok(respond::from_cache(call, entry));
            }
            call.cache = Some(CacheWrite {
                key,
                ttl_secs: plan.ttl_secs,
                write: plan.write,
            });
        }
    }
    let shape = CallShape {
        kind,
        requested_model: model,
        stream,
        include_usage,
        client,
    };
    let bodies = Bodies { chat: body, native };
    Ok(attempt_loop(call, &snap, cands, shape, bodies, headers).await)
}

/// The request in the forms attempts need: the OpenAI chat body (its bytes are forwarded as
/// they are to OpenAI-format providers), and the client's Anthropic body for the Messages route.
struct Bodies {
    chat: RequestBody,
    native: Option<RequestBody>,
}

/// A successful upstream answer, with the first stream chunk already read (so a stream that
/// breaks before its first byte still fails over).
pub(crate) struct Answer {
    pub parts: http::response::Parts,
    pub body: Incoming,
    pub first: Option<Bytes>,
    pub mode: Mode,
    /// The upstream's wire format.
    pub format: Format,
    /// The synthetic tool that forces structured output, when the translation added one.
    pub forced: Option<String>,
}

async fn attempt_loop(
    mut call: Call,
    snap: &Arc<Snapshot>,
    cands: Vec<Candidate>,
    shape: CallShape,
    bodies: Bodies,
    headers: &HeaderMap,
) -> Response {
    let node = call.node.clone();
    let deadline = Instant::now() + node.cfg.timeouts.request_budget;
    let max = node.cfg.max_attempts as usize;
    // Credentials already tried (a handful at most: a list, no hashing).
    let mut tried: Vec<Arc<crate::snapshot::Credential>> = Vec::new();
    let mut last: Option<(&Candidate, AttemptError)> = None;
    let mut blocked_last: Vec<(&Candidate, Unavailable)> = Vec::new();
    while call.record.attempts.len() < max && Instant::now() < deadline {
        let (usable, blocked) = node.balancer.order(&cands);
        blocked_last = blocked;
        let Some(cand) = usable
            .into_iter()
            .find(|c| !tried.iter().any(|t| t.id == c.cred.id))
        else {
            // Nothing usable left this round: wait for the soonest rate-limit reset, if it is
            // close enough and within the request's budget.
            let now = node.balancer.now_ms();
            let soonest = blocked_last
                .iter()
                .filter(|(_, u)| matches!(u, Unavailable::RateLimited { .. }))
                .map(|(_, u)| u.until_ms())
                .min();
            match soonest {
                Some(t)
                    if Duration::from_millis((t - now).max(0) as u64) <= MAX_RATE_LIMIT_WAIT
                        && Instant::now() + Duration::from_millis((t - now).max(0) as u64)
                            < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis((t - now).max(0) as u64 + 5)).await;
                    tried.clear();
                    continue;
                }
                _ => break,
            }
        };
        tried.push(Arc::clone(&cand.cred));
        let t0 = Instant::now();
        let t0_ms = now_ms();
        let guard = node.balancer.begin(&cand.cred);
        let result = attempt(&node, cand, &shape, &bodies, headers).await;
        let latency_ms = t0.elapsed().as_millis() as u64;
        let status = match &result {
            Ok(a) => a.parts.status.as_u16(),
            Err(e) => e.status_code(),
        };
        let error = result
            .as_ref()
            .err()
            .map(AttemptError::describe)
            .unwrap_or_default();
        call.record.attempts.push(Attempt {
            credential: cand.cred.name.clone(),
            provider: cand.cred.provider_type.clone(),
            status,
            error,
            latency_ms,
            started_at_ms: t0_ms,
        });
        call.record.provider_type = cand.cred.provider_type.clone();
        call.record.credential_name = cand.cred.name.clone();
        match result {
            Ok(answer) => return respond::respond(call, snap, cand, shape, answer, guard).await,
            Err(e) => {
                tracing::info!(credential = %cand.cred.name, provider = %cand.cred.provider_type, error = %e.describe(), "upstream attempt failed");
                if !e.retryable() {
                    guard.fail(&e);
                    let err = match &e {
                        AttemptError::Status { status, body, .. } => {
                            upstream::final_upstream_error(&cand.cred, *status, body)
                        }
                        other => ProxyError::upstream(
                            StatusCode::BAD_GATEWAY,
                            "upstream_error",
                            other.describe(),
                            false,
                        ),
                    };
                    return call.fail(err, Some(&cand.cred.name));
                }
                guard.fail(&e);
                last = Some((cand, e));
            }
        }
    }
    let now = node.balancer.now_ms();
    let err = exhausted(last, &blocked_last, call.record.attempts.len(), now);
    call.fail(err, None)
}

/// The error when no attempt succeeded: which kind of failure, never a provider's secret.
fn exhausted(
    last: Option<(&Candidate, AttemptError)>,
    blocked: &[(&Candidate, Unavailable)],
    attempts: usize,
    now_ms: i64,
) -> ProxyError {
    let wait = |until: i64| (((until - now_ms).max(0) as f64) / 1000.0).ceil().max(1.0) as u64;
    let all_limited = !blocked.is_empty()
        && blocked
            .iter()
            .all(|(_, u)| matches!(u, Unavailable::RateLimited { .. }));
    let rate_limited = |retry: u64, name: &str| ProxyError {
        status: StatusCode::TOO_MANY_REQUESTS,
        kind: "rate_limit_error",
        retry_after: Some(retry),
        ..ProxyError::upstream(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            format!(
                "Every provider credential for this model is rate limited (last: `{name}`). Retry after {retry} s."
            ),
            true,
        )
    };
    match last {
        Some((cand, AttemptError::Status { status, .. })) if status.as_u16() == 429 => {
            let retry = blocked
                .iter()
                .map(|(_, u)| u.until_ms())
                .min()
                .map(wait)
                .unwrap_or(1);
            rate_limited(retry, &cand.cred.name)
        }
        Some((cand, AttemptError::Timeout(which))) => ProxyError::upstream(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            format!(
                "The provider did not answer in time ({which} timeout, credential `{}`, {attempts} attempt(s)).",
                cand.cred.name
            ),
            true,
        ),
        Some((cand, e)) => {
            let status = match &e {
                AttemptError::Status { status, .. } if matches!(status.as_u16(), 503 | 529) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::BAD_GATEWAY,
            };
            ProxyError::upstream(
                status,
                "upstream_unavailable",
                format!(
                    "All {attempts} upstream attempt(s) failed; last: credential `{}`: {}.",
                    cand.cred.name,
                    e.describe()
                ),
                true,
            )
        }
        None if all_limited => {
            let until = blocked
                .iter()
                .map(|(_, u)| u.until_ms())
                .min()
                .unwrap_or(now_ms);
            rate_limited(wait(until), &blocked[0].0.cred.name)
        }
        None => {
            let until = blocked
                .iter()
                .map(|(_, u)| u.until_ms())
                .min()
                .unwrap_or(now_ms + 1000);
            ProxyError {
                retry_after: Some(wait(until)),
                ..ProxyError::upstream(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_healthy_credential",
                    "Every provider credential for this model is cooling down after repeated failures; retry shortly.",
                    true,
                )
            }
        }
    }
}

/// One attempt: build the request for this credential's format, send it, and — for a stream —
/// read the first chunk before committing to it.
async fn attempt(
    node: &Node,
    cand: &Candidate,
    shape: &CallShape,
    bodies: &Bodies,
    headers: &HeaderMap,
) -> Result<Answer, AttemptError> {
    let format = cand.served.format;
    let doc = upstream::body_doc;
    let prepared = match format {
        Format::Openai => upstream::prepare_openai(cand, shape, &bodies.chat, headers)?,
        Format::Anthropic if shape.client == ClientFormat::Anthropic => {
            let native = bodies.native.as_ref().map(doc).transpose()?;
            upstream::prepare_translated(cand, shape, doc(&bodies.chat)?, native, headers)?
        }
        _ => upstream::prepare_translated(cand, shape, doc(&bodies.chat)?, None, headers)?,
    };
    let resp = upstream::send(
        &node.client,
        &node.cfg.upstream_policy,
        prepared.request,
        node.cfg.timeouts.first_byte,
    )
    .await?;
    let (parts, mut body) = resp.into_parts();
    if !parts.status.is_success() {
        let text = upstream::read_body(body, 1024 * 1024, node.cfg.timeouts.first_byte)
            .await
            .unwrap_or_default();
        // Provider error bodies are carried in OpenAI shape from here on.
        let (status, text) = upstream::error_to_openai(format, parts.status, &parts.headers, &text);
        return Err(AttemptError::Status {
            status,
            headers: Box::new(parts.headers),
            body: text,
        });
    }
    let mut first = None;
    if shape.stream && prepared.mode != Mode::FakeStream {
        loop {
            match tokio::time::timeout(node.cfg.timeouts.first_byte, body.frame()).await {
                Err(_) => return Err(AttemptError::Timeout("first-byte")),
                Ok(None) => {
                    return Err(AttemptError::Connect(
                        "the stream ended before its first chunk".into(),
                    ));
                }
                Ok(Some(Err(e))) => {
                    return Err(AttemptError::Connect(format!(
                        "the stream broke before its first chunk: {e}"
                    )));
                }
                Ok(Some(Ok(f))) => {
                    if let Ok(d) = f.into_data()
                        && !d.is_empty()
                    {
                        first = Some(d);
                        break;
                    }
                }
            }
        }
    }
    Ok(Answer {
        parts,
        body,
        first,
        mode: prepared.mode,
        format,
        forced: prepared.forced,
    })
}
