//! Answering the client from a successful upstream response: whole bodies (same format: the
//! bytes untouched), providers that cannot stream (one chunk plus `[DONE]`), or streams.

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;

use super::{Answer, Call};
use crate::balance::InFlight;
use crate::error::ProxyError;
use crate::routing::Candidate;
use crate::snapshot::Snapshot;
use crate::upstream::{self, CallShape, ClientFormat, Mode};
use llm::Format;
use llm::stream::{Chain, StreamTranslator};
use llm::translate::ResponseContext;

fn now_secs() -> i64 {
    crate::record::now_ms() / 1000
}

/// The stream translators for this answer (see `stream::Translators`).
fn translators(shape: &CallShape, answer: &Answer) -> super::stream::Translators {
    let ctx = ResponseContext {
        model: &shape.requested_model,
        created: now_secs(),
        forced_json_tool: answer.forced.as_deref(),
    };
    let to_chat = |include_usage: bool| -> Option<Box<dyn StreamTranslator>> {
        match answer.format {
            Format::Openai => None,
            Format::Anthropic => Some(Box::new(llm::anthropic::ChatStream::new(
                &ctx,
                include_usage,
            ))),
            Format::Google => Some(Box::new(llm::gemini::ChatStream::new(&ctx, include_usage))),
            Format::Bedrock => Some(Box::new(llm::bedrock::ChatStream::new(&ctx, include_usage))),
        }
    };
    match shape.client {
        ClientFormat::OpenAi => super::stream::Translators {
            main: to_chat(shape.include_usage),
            side: None,
        },
        ClientFormat::Anthropic => {
            let id = llm::translate::stable_id("", &format!("{}{}", ctx.model, ctx.created));
            let ingress = || -> Box<dyn StreamTranslator> {
                Box::new(llm::anthropic::IngressStream::new(
                    &shape.requested_model,
                    &format!("msg_{id}"),
                ))
            };
            let main: Option<Box<dyn StreamTranslator>> = match answer.format {
                // The client's own format: bytes pass through.
                Format::Anthropic => None,
                Format::Openai => Some(ingress()),
                _ => to_chat(true).map(|first| -> Box<dyn StreamTranslator> {
                    Box::new(Chain::new(first, ingress()))
                }),
            };
            super::stream::Translators {
                main,
                side: Some(Box::new(llm::anthropic::ChatStream::new(&ctx, true))),
            }
        }
    }
}

/// A whole (non-stream) answer: the client's bytes, and the OpenAI-form answer for usage and
/// logs.
fn translate_whole(
    shape: &CallShape,
    answer_format: Format,
    forced: Option<&str>,
    body: Bytes,
    need_value: bool,
) -> Result<(Bytes, Option<Value>, llm::Usage, bool), llm::TranslateError> {
    let ctx = ResponseContext {
        model: &shape.requested_model,
        created: now_secs(),
        forced_json_tool: forced,
    };
    let (chat, usage) = match answer_format {
        Format::Openai if shape.client == ClientFormat::OpenAi && !need_value => {
            // Same format, nothing needs the document (no payload log, no fake stream): read
            // only the counts in `usage` (serde skips the other fields, and `usage` itself,
            // without building them); the bytes go to the client as they are.
            #[derive(serde::Deserialize)]
            struct UsageOnly {
                usage: Option<llm::usage::OpenAiUsage>,
            }
            // Reading it also checks that the whole answer is well-formed JSON.
            let read = serde_json::from_slice::<UsageOnly>(&body).ok();
            let well_formed = read.is_some();
            let usage = read
                .and_then(|u| u.usage)
                .and_then(|u| u.0)
                .unwrap_or_default();
            return Ok((body, None, usage, well_formed));
        }
        Format::Openai => {
            let parsed: Option<Value> = serde_json::from_slice(&body).ok();
            let usage = parsed
                .as_ref()
                .and_then(|v| v.get("usage"))
                .and_then(llm::Usage::from_openai_json)
                .unwrap_or_default();
            if shape.client == ClientFormat::OpenAi {
                let well_formed = parsed.is_some();
                return Ok((body, parsed, usage, well_formed));
            }
            match parsed {
                Some(p) => (p, usage),
                None => {
                    return Err(llm::TranslateError::bad_upstream(
                        "The provider's response was not valid JSON.",
                    ));
                }
            }
        }
        Format::Anthropic => {
            let (chat, usage) = llm::anthropic::response_to_chat(&body, &ctx)?;
            if shape.client == ClientFormat::Anthropic {
                // Native: the provider's bytes go to the client untouched.
                return Ok((body, Some(chat), usage, true));
            }
            (chat, usage)
        }
        Format::Google => llm::gemini::response_to_chat(&body, &ctx)?,
        Format::Bedrock => llm::bedrock::response_to_chat(&body, &ctx)?,
    };
    let out = match shape.client {
        ClientFormat::OpenAi => serde_json::to_vec(&chat).unwrap_or_default(),
        ClientFormat::Anthropic => serde_json::to_vec(&llm::anthropic::ingress_response_from_chat(
            &chat,
            &shape.requested_model,
        ))
        .unwrap_or_default(),
    };
    Ok((Bytes::from(out), Some(chat), usage, true))
}

pub(crate) async fn respond(
    mut call: Call,
    snap: &Arc<Snapshot>,
    cand: &Candidate,
    shape: CallShape,
    answer: Answer,
    guard: InFlight,
) -> Response {
    let ids = call.ids(Some(&cand.cred.name));
    let mut out_headers = HeaderMap::new();
    upstream::copy_response_headers(&answer.parts.headers, &mut out_headers);
    let spec = cand
        .served
        .spec
        .clone()
        .or_else(|| snap.catalog.get(&shape.requested_model).cloned());
    if shape.stream && answer.mode != Mode::FakeStream {
        let tr = translators(&shape, &answer);
        let mut r = super::stream::stream_response(call, answer, spec, guard, tr);
        r.headers_mut().extend(out_headers);
        return ids.apply(r);
    }
    let body = match upstream::read_body(
        answer.body,
        call.node.cfg.max_response_bytes,
        call.node.cfg.timeouts.total,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            guard.fail(&e);
            let err = ProxyError::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!(
                    "The provider's response could not be read: {}",
                    e.describe()
                ),
                true,
            );
            return call.fail(err, Some(&cand.cred.name));
        }
    };
    // A same-format answer logged as it is needs no parsed document: reading its usage checks
    // that it is well-formed JSON, and its bytes are the text to log.
    let log_as_is = call.log_payload
        && shape.client == ClientFormat::OpenAi
        && answer.format == Format::Openai
        && crate::payload::loggable_as_is(&body);
    let (body, parsed, usage, well_formed) = match translate_whole(
        &shape,
        answer.format,
        answer.forced.as_deref(),
        body,
        answer.mode == Mode::FakeStream || (call.log_payload && !log_as_is),
    ) {
        Ok(t) => t,
        Err(e) => {
            let err = match e {
                llm::TranslateError::InvalidRequest { message, param } => {
                    guard.succeed();
                    match param {
                        Some(p) => ProxyError::invalid_param(&p, message),
                        None => ProxyError::bad_request("invalid_request", message),
                    }
                }
                llm::TranslateError::BadUpstream(m) => {
                    let err = ProxyError::upstream(
                        StatusCode::BAD_GATEWAY,
                        "upstream_bad_response",
                        format!("The provider's answer could not be understood: {m}"),
                        true,
                    );
                    guard.fail(&upstream::AttemptError::Connect(m));
                    err
                }
            };
            return call.fail(err, Some(&cand.cred.name));
        }
    };
    guard.succeed();
    call.record.usage = usage;
    call.record.cost_usd = spec.as_ref().map(|s| s.cost_usd(&usage)).unwrap_or(0.0);
    call.record.ttft_ms = call.started.elapsed().as_millis() as u64;
    if call.log_payload {
        // For OpenAI-format clients `body` is exactly the chat JSON of `parsed`.
        let raw = (shape.client == ClientFormat::OpenAi).then_some(&body[..]);
        call.record.output = match &parsed {
            Some(p) => Some(crate::payload::log_text(raw, p)),
            // Only the usage was read, and `log_as_is` already checked the bytes' markers and
            // size. An answer that is valid JSON but not an object (the usage read fails on it)
            // is still logged as it is; a malformed one logs no output. The second check runs
            // only on that rare path.
            None if log_as_is
                && (well_formed
                    || serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok()) =>
            {
                std::str::from_utf8(&body).ok().map(str::to_owned)
            }
            None => None,
        };
    }
    let resp = if answer.mode == Mode::FakeStream {
        let mut frames = fake_stream(parsed.as_ref(), &shape);
        if shape.client == ClientFormat::Anthropic {
            let mut ingress = llm::anthropic::IngressStream::new(
                &shape.requested_model,
                &format!("msg_{}", uuid::Uuid::new_v4().simple()),
            );
            let mut parts = Vec::new();
            ingress.push(&frames, &mut parts);
            ingress.finish(&mut parts);
            frames = Bytes::from(parts.concat());
        }
        call.store("text/event-stream; charset=utf-8", true, &frames[..]);
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/event-stream; charset=utf-8")
            .header("cache-control", "no-cache")
            .body(Body::from(frames))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    } else {
        call.store("application/json", false, &body[..]);
        let mut r = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        r.headers_mut().extend(out_headers);
        r
    };
    call.finish(200, "", "");
    ids.apply(resp)
}

/// A non-streaming chat answer as one chunk plus `[DONE]` (providers that cannot stream).
fn fake_stream(parsed: Option<&Value>, shape: &CallShape) -> Bytes {
    let Some(v) = parsed else {
        return ProxyError::upstream(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "The provider's response was not valid JSON.",
            false,
        )
        .sse_event();
    };
    let mut choices = Vec::new();
    for ch in v
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut delta = ch
            .get("message")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"role": "assistant"}));
        if let Some(tcs) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
            for (i, tc) in tcs.iter_mut().enumerate() {
                tc["index"] = i.into();
            }
        }
        if let Some(text) = ch.get("text") {
            choices.push(serde_json::json!({"index": ch.get("index").cloned().unwrap_or(0.into()), "text": text, "finish_reason": ch.get("finish_reason")}));
        } else {
            choices.push(serde_json::json!({"index": ch.get("index").cloned().unwrap_or(0.into()), "delta": delta, "finish_reason": ch.get("finish_reason")}));
        }
    }
    let mut chunk = serde_json::json!({"id": v.get("id"), "object": "chat.completion.chunk", "created": v.get("created"), "model": shape.requested_model, "choices": choices});
    if let Some(fp) = v.get("system_fingerprint") {
        chunk["system_fingerprint"] = fp.clone();
    }
    let mut out = format!("data: {chunk}\n\n");
    if shape.include_usage
        && let Some(u) = v.get("usage")
    {
        let uc = serde_json::json!({"id": v.get("id"), "object": "chat.completion.chunk", "created": v.get("created"), "model": shape.requested_model, "choices": [], "usage": u});
        out.push_str(&format!("data: {uc}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    Bytes::from(out)
}

/// Answers from the cache: the stored bytes (a stream replayed event by event), `x-bt-cached:
/// HIT`, `Age`; recorded as a cache hit with no cost.
pub(crate) fn from_cache(mut call: Call, entry: crate::cache::Entry) -> Response {
    let age = ((crate::record::now_ms() - entry.created_ms).max(0) / 1000) as u64;
    call.record.cache_hit = true;
    call.record.usage = entry.usage;
    call.record.cost_usd = 0.0;
    call.record.provider_type = entry.provider.clone();
    call.record.credential_name = entry.used_endpoint.clone();
    call.record.ttft_ms = call.started.elapsed().as_millis() as u64;
    if call.log_payload {
        call.record.output = if entry.stream {
            Some(serde_json::json!({"cached_stream_bytes": entry.body.len()}).to_string())
        } else {
            serde_json::from_slice(&entry.body)
                .ok()
                .map(|v: Value| crate::payload::log_text(Some(&entry.body), &v))
        };
    }
    call.cache = None;
    let mut ids = call.ids(Some(&entry.used_endpoint));
    ids.cached = Some("HIT");
    ids.extra.push((http::header::AGE, HeaderValue::from(age)));
    if let Ok(v) = HeaderValue::from_str(&format!("max-age={}", entry.ttl_secs)) {
        ids.extra.push((http::header::CACHE_CONTROL, v));
    }
    let body = if entry.stream {
        let events = crate::cache::replay_events(&entry.body);
        Body::from_stream(futures_util::stream::iter(
            events.into_iter().map(Ok::<Bytes, std::io::Error>),
        ))
    } else {
        Body::from(entry.body)
    };
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", entry.content_type)
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    call.finish(200, "", "");
    ids.apply(resp)
}
