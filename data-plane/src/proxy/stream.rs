//! Streaming answers. Same-format upstream chunks go to the client as they arrive, byte for
//! byte (except the held-back usage chunk when the proxy asked for usage the client did not);
//! other formats go through a translator. Either way an observer reads the OpenAI-form chunks
//! on the side (usage, errors, the terminator, the assembled output for logs). A stream that
//! breaks or ends early gets an error event; a client that leaves cancels the upstream request.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use llm::stream::{StreamOutcome, StreamTranslator};

use super::{Answer, Call};
use crate::balance::InFlight;
use crate::error::ProxyError;
use crate::observe::{self, Observer};
use crate::upstream::{AttemptError, ClientFormat, Mode};

/// Translators for one stream: `main` turns upstream bytes into the client's format (None:
/// pass-through); `side` turns the client-format output into OpenAI chunks for the observer
/// when the client speaks Anthropic.
pub(crate) struct Translators {
    pub main: Option<Box<dyn StreamTranslator>>,
    pub side: Option<Box<dyn StreamTranslator>>,
}

struct StreamState {
    body: Incoming,
    /// The first chunk, read before the response was committed.
    pending: Option<Bytes>,
    /// What the client received, kept for the cache (None: not caching, or too large).
    transcript: Option<Vec<u8>>,
    obs: Observer,
    tr: Translators,
    mode: Mode,
    idle: std::time::Duration,
    call: Option<Call>,
    spec: Option<std::sync::Arc<llm::ModelSpec>>,
    guard: Option<InFlight>,
    ended: bool,
}

fn concat(parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => Bytes::from(parts.concat()),
    }
}

impl StreamState {
    /// Feeds what goes to the client to the observer (through the side translator if any).
    fn observe(&mut self, client_bytes: &[u8]) -> Vec<observe::Event> {
        match &mut self.tr.side {
            Some(side) => {
                let mut chat = Vec::new();
                side.push(client_bytes, &mut chat);
                for c in chat {
                    self.obs.push(&c);
                }
                Vec::new()
            }
            None => self.obs.push(client_bytes),
        }
        .into_iter()
        .collect()
    }

    /// Transforms one upstream chunk into what the client gets.
    fn process(&mut self, data: Bytes) -> Bytes {
        let out = match &mut self.tr.main {
            Some(t) => {
                let mut parts = Vec::new();
                t.push(&data, &mut parts);
                concat(parts)
            }
            None => data,
        };
        let events = self.observe(&out);
        let out = if self.mode == Mode::PassThroughStripUsage {
            let mut buf = Vec::with_capacity(out.len());
            for e in events.into_iter().filter(|e| !e.usage_only) {
                buf.extend_from_slice(&e.raw);
            }
            Bytes::from(buf)
        } else {
            out
        };
        if let Some(c) = &mut self.call
            && c.record.ttft_ms == 0
            && self.obs.saw_content
        {
            c.record.ttft_ms = c.started.elapsed().as_millis() as u64;
        }
        if let Some(t) = self.transcript.as_mut() {
            if t.len() + out.len() > crate::cache::MAX_ENTRY_BYTES {
                self.transcript = None;
            } else {
                t.extend_from_slice(&out);
            }
        }
        out
    }

    /// The upstream is done: trailing bytes and the outcome (status, error type, message).
    fn end(&mut self) -> (Bytes, u16, String, String) {
        let mut tail = Vec::new();
        if let Some(t) = &mut self.tr.main {
            let mut parts = Vec::new();
            t.finish(&mut parts);
            tail = concat(parts).to_vec();
            self.observe(&tail.clone());
        } else if self.tr.side.is_none()
            && let Some(ev) = self.obs.finish()
            && !(self.mode == Mode::PassThroughStripUsage && ev.usage_only)
        {
            tail.extend_from_slice(&ev.raw);
        }
        if let Some(side) = &mut self.tr.side {
            let mut chat = Vec::new();
            side.finish(&mut chat);
            for c in chat {
                self.obs.push(&c);
            }
        }
        let outcome = match (&self.tr.main, &self.tr.side) {
            (Some(t), _) => Some(t.outcome()),
            (None, Some(s)) => Some(s.outcome()),
            (None, None) => None,
        };
        let (status, kind, message) = match outcome {
            Some(StreamOutcome::Completed) => (200, String::new(), String::new()),
            Some(StreamOutcome::Failed { kind, message }) => (502, kind, message),
            Some(StreamOutcome::Open) => (
                502,
                "upstream_stream_truncated".into(),
                "the stream did not finish".into(),
            ),
            None => match self.obs.error.clone() {
                Some(msg) => (502, "upstream_stream_error".into(), msg),
                None if self.obs.done => (200, String::new(), String::new()),
                None => {
                    let err = ProxyError::upstream(
                        StatusCode::BAD_GATEWAY,
                        "upstream_stream_truncated",
                        "The provider's stream ended before it was complete.",
                        true,
                    );
                    tail.extend_from_slice(&err.sse_event());
                    (502, "upstream_stream_truncated".into(), err.message)
                }
            },
        };
        if let Some(t) = self.transcript.as_mut() {
            t.extend_from_slice(&tail);
        }
        (Bytes::from(tail), status, kind, message)
    }

    /// A failure the upstream did not report itself (broken connection, idle timeout).
    fn broken(&mut self, code: &str, message: &str, status: StatusCode) -> Bytes {
        let err = ProxyError::upstream(status, "upstream_stream_error", message, true);
        let client = self
            .call
            .as_ref()
            .map(|c| c.client)
            .unwrap_or(ClientFormat::OpenAi);
        self.close(status.as_u16(), code, message);
        match client {
            ClientFormat::OpenAi => err.sse_event(),
            ClientFormat::Anthropic => llm::sse::encode_event(
                "error",
                &llm::anthropic::ingress_error_body(status.as_u16(), message).to_string(),
            ),
        }
    }

    /// Records the outcome once, when the stream ends (or the client goes away).
    fn close(&mut self, status: u16, error_type: &str, message: &str) {
        if let Some(mut call) = self.call.take() {
            let usage = match (&self.tr.main, &self.tr.side) {
                (_, Some(s)) => s.usage(),
                (Some(t), None) => t.usage(),
                (None, None) => self.obs.usage,
            }
            .or(self.obs.usage)
            .unwrap_or_default();
            call.record.usage = usage;
            call.record.cost_usd = self
                .spec
                .as_ref()
                .map(|s| s.cost_usd(&usage))
                .unwrap_or(0.0);
            if call.log_payload {
                call.record.output = Some(crate::payload::log_text(
                    None,
                    &observe::assemble(&self.obs.chunks),
                ));
            }
            if status == 200
                && let Some(t) = self.transcript.take()
            {
                call.store("text/event-stream; charset=utf-8", true, t);
            }
            call.finish(status, error_type, message);
        }
        if let Some(g) = self.guard.take() {
            match status {
                200 => g.succeed(),
                // The client left: says nothing about the credential.
                499 => drop(g),
                _ => g.fail(&AttemptError::Connect(message.to_string())),
            }
        }
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        // The client disconnected mid-stream: dropping the upstream body cancels the upstream
        // request; the call is recorded as cancelled by the client (499).
        self.close(
            499,
            "client_disconnected",
            "the client closed the connection before the stream ended",
        );
    }
}

pub(crate) fn stream_response(
    call: Call,
    answer: Answer,
    spec: Option<std::sync::Arc<llm::ModelSpec>>,
    guard: InFlight,
    tr: Translators,
) -> Response {
    let idle = call.node.cfg.timeouts.first_byte;
    let keep = call.log_payload;
    let content_type = match call.client {
        ClientFormat::OpenAi => "text/event-stream; charset=utf-8",
        ClientFormat::Anthropic => "text/event-stream; charset=utf-8",
    };
    let st = StreamState {
        body: answer.body,
        pending: answer.first,
        transcript: call.cache.as_ref().filter(|c| c.write).map(|_| Vec::new()),
        obs: Observer::new(keep),
        tr,
        mode: answer.mode,
        idle,
        call: Some(call),
        spec,
        guard: Some(guard),
        ended: false,
    };
    let s = stream::unfold(st, |mut st| async move {
        if st.ended {
            return None;
        }
        loop {
            let next = match st.pending.take() {
                Some(d) => Ok(Some(Ok(hyper::body::Frame::data(d)))),
                None => tokio::time::timeout(st.idle, st.body.frame()).await,
            };
            match next {
                Err(_) => {
                    st.ended = true;
                    let b = st.broken(
                        "upstream_timeout",
                        "The provider stopped sending before the stream ended (idle timeout).",
                        StatusCode::GATEWAY_TIMEOUT,
                    );
                    return Some((Ok::<Bytes, std::io::Error>(b), st));
                }
                Ok(Some(Ok(f))) => {
                    let Ok(data) = f.into_data() else { continue };
                    let out = st.process(data);
                    if out.is_empty() {
                        continue;
                    }
                    return Some((Ok(out), st));
                }
                Ok(Some(Err(e))) => {
                    st.ended = true;
                    let b = st.broken(
                        "upstream_stream_error",
                        &format!("The provider's stream broke: {e}"),
                        StatusCode::BAD_GATEWAY,
                    );
                    return Some((Ok(b), st));
                }
                Ok(None) => {
                    st.ended = true;
                    let (tail, status, kind, message) = st.end();
                    st.close(status, &kind, &message);
                    if tail.is_empty() {
                        return None;
                    }
                    return Some((Ok(tail), st));
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .body(Body::from_stream(s))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
