//! `GET /realtime?model=…`: a WebSocket proxy to the OpenAI Realtime API of an eligible `openai`
//! or `azure` credential (balanced, failing over on connect errors, `api_base` honoured).
//! Browsers authenticate with the `openai-insecure-api-key.<key>` subprotocol; servers with the
//! usual headers. Frames are relayed both ways as they come (no buffering). An upstream failure
//! reaches the client as an OpenAI `error` event followed by a clean close. The session is
//! recorded (duration, events, usage from `response.done`), with its summary logged when
//! `x-bt-parent` (or the temporary credential's logging grant) asks for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::error::ProxyError;
use crate::node::Node;
use crate::record::{Attempt, RequestRecord, now_ms};
use crate::routing::{self, Candidate, RouteKind};
use crate::snapshot::Credential;
use crate::upstream;

pub const DEFAULT_MODEL: &str = "gpt-realtime";
const SUBPROTOCOL_KEY: &str = "openai-insecure-api-key.";

#[derive(Debug, Deserialize)]
pub struct Params {
    pub model: Option<String>,
}

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn key_from_subprotocols(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix(SUBPROTOCOL_KEY))
        .map(str::to_string)
}

pub async fn handle(
    State(node): State<Node>,
    headers: HeaderMap,
    Query(params): Query<Params>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return ProxyError {
            status: StatusCode::UPGRADE_REQUIRED,
            ..ProxyError::bad_request("upgrade_required", "Expected Upgrade: websocket.")
        }
        .into_response();
    };
    match prepare(&node, &headers, params).await {
        Ok((session, upstream)) => {
            let wanted: Vec<String> = headers
                .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|s| s.trim().to_string())
                .collect();
            let ws = if wanted.iter().any(|p| p == "realtime") {
                ws.protocols(["realtime"])
            } else {
                ws
            };
            ws.on_upgrade(move |client| relay(session, client, upstream))
        }
        Err(e) => e.into_response(),
    }
}

/// What the session remembers for its usage record.
struct Session {
    node: Node,
    record: RequestRecord,
    log: bool,
    started: Instant,
    spec: Option<std::sync::Arc<llm::ModelSpec>>,
}

async fn prepare(
    node: &Node,
    headers: &HeaderMap,
    params: Params,
) -> Result<(Session, Upstream), ProxyError> {
    let snap = node.store.load().ok_or_else(ProxyError::not_ready)?;
    let caller = match key_from_subprotocols(headers) {
        Some(k) if crate::auth::presented_key(headers).is_none() => {
            crate::auth::authenticate_token(&snap, &k)?
        }
        _ => crate::auth::authenticate(&snap, headers)?,
    };
    let ctx = routing::resolve_context(
        &snap,
        &caller.key,
        headers,
        caller.temp.as_ref().and_then(|t| t.log.as_deref()),
    )?;
    let model = params
        .model
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_MODEL.to_string());
    caller.check_model(&model)?;
    let endpoint = headers
        .get("x-bt-endpoint-name")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty());
    let cands: Vec<Candidate> =
        routing::candidates(&snap, &ctx, &model, RouteKind::Realtime, endpoint)?
            .into_iter()
            .filter(|c| matches!(c.cred.provider_type.as_str(), "openai" | "azure" | "custom"))
            .collect();
    if cands.is_empty() {
        return Err(ProxyError::bad_request(
            "no_credential",
            format!("No OpenAI or Azure credential can serve the realtime model `{model}` here."),
        ));
    }
    let mut record = RequestRecord {
        id: uuid::Uuid::now_v7().to_string(),
        request_id: uuid::Uuid::new_v4().to_string(),
        org_id: ctx.org.id.clone(),
        project_id: ctx.project.map(|p| p.id.clone()),
        api_key_id: ctx.key.id.clone(),
        model: model.clone(),
        route: RouteKind::Realtime.name(),
        stream: true,
        started_at_ms: now_ms(),
        ..Default::default()
    };
    let (usable, _) = node.balancer.order(cands);
    let mut last = String::from("every realtime credential is cooling down");
    for cand in usable.into_iter().take(node.cfg.max_attempts as usize) {
        let t0 = Instant::now();
        let t0_ms = now_ms();
        let guard = node.balancer.begin(&cand.cred);
        match connect(node, &cand.cred, &cand.served.upstream_model).await {
            Ok(up) => {
                guard.succeed();
                record.attempts.push(Attempt {
                    credential: cand.cred.name.clone(),
                    provider: cand.cred.provider_type.clone(),
                    status: 101,
                    error: String::new(),
                    latency_ms: t0.elapsed().as_millis() as u64,
                    started_at_ms: t0_ms,
                });
                record.provider_type = cand.cred.provider_type.clone();
                record.credential_name = cand.cred.name.clone();
                let spec = cand.served.spec.clone();
                return Ok((
                    Session {
                        node: node.clone(),
                        record,
                        log: ctx.log_project.is_some(),
                        started: Instant::now(),
                        spec,
                    },
                    up,
                ));
            }
            Err(e) => {
                guard.fail(&upstream::AttemptError::Connect(e.clone()));
                record.attempts.push(Attempt {
                    credential: cand.cred.name.clone(),
                    provider: cand.cred.provider_type.clone(),
                    status: 502,
                    error: e.clone(),
                    latency_ms: t0.elapsed().as_millis() as u64,
                    started_at_ms: t0_ms,
                });
                last = format!("credential `{}`: {e}", cand.cred.name);
            }
        }
    }
    let err = ProxyError::upstream(
        StatusCode::BAD_GATEWAY,
        "upstream_unavailable",
        format!("Could not connect to the realtime API ({last})."),
        true,
    );
    record.status = 502;
    record.error_type = "upstream_unavailable".into();
    record.error_message = err.message.clone();
    record.finished_at_ms = now_ms();
    node.metrics.observe(&record);
    node.submit(record);
    Err(err)
}

/// The upstream WebSocket URL for a credential.
pub fn realtime_url(cred: &Credential, model: &str) -> Result<String, String> {
    let base = upstream::base_url(cred).map_err(|e| e.describe())?;
    let ws_base = if let Some(r) = base.strip_prefix("https://") {
        format!("wss://{r}")
    } else if let Some(r) = base.strip_prefix("http://") {
        format!("ws://{r}")
    } else {
        return Err("api_base must be http(s)".into());
    };
    if cred.provider_type == "azure" {
        let dep = cred.deployment.as_deref().unwrap_or(model);
        let v = cred.api_version.as_deref().unwrap_or("2024-10-01-preview");
        return Ok(format!(
            "{ws_base}/openai/realtime?api-version={v}&deployment={}",
            upstream::encode_segment(dep)
        ));
    }
    Ok(format!(
        "{ws_base}/realtime?model={}",
        upstream::encode_segment(model)
    ))
}

async fn connect(node: &Node, cred: &Arc<Credential>, model: &str) -> Result<Upstream, String> {
    let url = realtime_url(cred, model)?;
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("invalid realtime URL: {e}"))?;
    let uri = req.uri().clone();
    let host = uri
        .host()
        .ok_or("the realtime URL has no host")?
        .to_string();
    let tls = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    // The destination policy, on the resolved address the connection will use.
    let http_uri: http::Uri = format!("{}://{host}:{port}/", if tls { "https" } else { "http" })
        .parse()
        .map_err(|_| "invalid host")?;
    crate::netguard::check_uri_host(&node.cfg.upstream_policy, &http_uri)?;
    let addrs = tokio::net::lookup_host((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let addr = addrs
        .into_iter()
        .find(|a| node.cfg.upstream_policy.check(a.ip()).is_ok())
        .ok_or_else(|| format!("{host}: destination not allowed by the upstream policy"))?;
    let tcp = tokio::time::timeout(
        node.cfg.timeouts.connect,
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| "connect timeout".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut h = http::HeaderMap::new();
    upstream::apply_auth(cred, &mut h).map_err(|e| e.describe())?;
    let rh = req.headers_mut();
    for (k, v) in h.iter() {
        rh.insert(k, v.clone());
    }
    rh.insert("openai-beta", http::HeaderValue::from_static("realtime=v1"));
    let connector =
        tokio_tungstenite::Connector::Rustls(Arc::new(crate::httpclient::tls_config_http1()));
    let (stream, _) = tokio::time::timeout(
        node.cfg.timeouts.first_byte,
        tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(connector)),
    )
    .await
    .map_err(|_| "handshake timeout".to_string())?
    .map_err(|e| match e {
        tungstenite::Error::Http(r) => format!("upstream answered HTTP {}", r.status().as_u16()),
        other => other.to_string(),
    })?;
    Ok(stream)
}

fn to_upstream(m: ws::Message) -> Option<tungstenite::Message> {
    Some(match m {
        ws::Message::Text(t) => tungstenite::Message::text(t.as_str()),
        ws::Message::Binary(b) => tungstenite::Message::Binary(b),
        ws::Message::Ping(b) => tungstenite::Message::Ping(b),
        ws::Message::Pong(b) => tungstenite::Message::Pong(b),
        ws::Message::Close(c) => {
            tungstenite::Message::Close(c.map(|c| tungstenite::protocol::CloseFrame {
                code: c.code.into(),
                reason: c.reason.as_str().into(),
            }))
        }
    })
}

fn to_client(m: tungstenite::Message) -> Option<ws::Message> {
    Some(match m {
        tungstenite::Message::Text(t) => ws::Message::Text(t.as_str().into()),
        tungstenite::Message::Binary(b) => ws::Message::Binary(b),
        tungstenite::Message::Ping(b) => ws::Message::Ping(b),
        tungstenite::Message::Pong(b) => ws::Message::Pong(b),
        tungstenite::Message::Close(c) => ws::Message::Close(c.map(|c| ws::CloseFrame {
            code: c.code.into(),
            reason: c.reason.as_str().into(),
        })),
        tungstenite::Message::Frame(_) => return None,
    })
}

/// Usage from a `response.done` event.
fn usage_of(event: &str) -> Option<llm::Usage> {
    if !event.contains("response.done") {
        return None;
    }
    let v: Value = serde_json::from_str(event).ok()?;
    if v.get("type")? != "response.done" {
        return None;
    }
    let u = v.get("response")?.get("usage")?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(llm::Usage {
        prompt_tokens: n("input_tokens"),
        completion_tokens: n("output_tokens"),
        cached_tokens: u
            .get("input_token_details")
            .and_then(|d| d.get("cached_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
        ..Default::default()
    })
}

async fn relay(mut s: Session, client: WebSocket, upstream: Upstream) {
    let (mut up_tx, mut up_rx) = upstream.split();
    let (mut cl_tx, mut cl_rx) = client.split();
    let mut from_client = 0u64;
    let mut from_upstream = 0u64;
    let mut usage = llm::Usage::default();
    let mut failure: Option<String> = None;
    loop {
        tokio::select! {
            m = cl_rx.next() => match m {
                Some(Ok(m)) => {
                    let closing = matches!(m, ws::Message::Close(_));
                    from_client += 1;
                    if let Some(m) = to_upstream(m)
                        && up_tx.send(m).await.is_err() {
                            failure = Some("the realtime upstream closed the connection".into());
                            break;
                        }
                    if closing {
                        break;
                    }
                }
                // The client went away: close upstream too.
                _ => {
                    let _ = up_tx.send(tungstenite::Message::Close(None)).await;
                    break;
                }
            },
            m = up_rx.next() => match m {
                Some(Ok(m)) => {
                    from_upstream += 1;
                    if let tungstenite::Message::Text(t) = &m
                        && let Some(u) = usage_of(t.as_str()) {
                            usage.prompt_tokens = usage.prompt_tokens.saturating_add(u.prompt_tokens);
                            usage.completion_tokens = usage.completion_tokens.saturating_add(u.completion_tokens);
                            usage.cached_tokens = usage.cached_tokens.saturating_add(u.cached_tokens);
                        }
                    let closing = matches!(m, tungstenite::Message::Close(_));
                    if let Some(m) = to_client(m)
                        && cl_tx.send(m).await.is_err() {
                            break;
                        }
                    if closing {
                        break;
                    }
                }
                Some(Err(e)) => {
                    failure = Some(format!("the realtime upstream failed: {e}"));
                    break;
                }
                None => {
                    failure = Some("the realtime upstream closed the connection without a close frame".into());
                    break;
                }
            },
        }
    }
    if let Some(msg) = &failure {
        let ev = json!({"type": "error", "event_id": format!("event_{}", uuid::Uuid::new_v4().simple()), "error": {"type": "server_error", "code": "upstream_error", "message": msg, "param": null}});
        let _ = cl_tx.send(ws::Message::Text(ev.to_string().into())).await;
        let _ = cl_tx
            .send(ws::Message::Close(Some(ws::CloseFrame {
                code: 1011,
                reason: "upstream error".into(),
            })))
            .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), cl_tx.close()).await;
    let r = &mut s.record;
    r.usage = usage;
    r.cost_usd = s.spec.as_ref().map(|sp| sp.cost_usd(&usage)).unwrap_or(0.0);
    r.latency_ms = s.started.elapsed().as_millis() as u64;
    r.finished_at_ms = now_ms();
    r.status = if failure.is_some() { 502 } else { 200 };
    if let Some(m) = &failure {
        r.error_type = "upstream_error".into();
        r.error_message = m.clone();
    }
    if s.log {
        r.output = Some(
            json!({"realtime_session": {"events_from_client": from_client, "events_from_upstream": from_upstream, "duration_ms": r.latency_ms, "usage": usage.to_openai_json()}}).to_string(),
        );
    }
    s.node.metrics.observe(r);
    s.node.submit(std::mem::take(r));
}
