//! Property-based fuzzing of everything that reads outside input: request translation (OpenAI →
//! Anthropic / Gemini / Bedrock, Anthropic Messages ingress), response translation and every
//! stream translator. Inputs are JSON documents shaped like the real thing — the field names the
//! translators look for, with any type and any value in any place — so the generator reaches past
//! the first `get()` into the translation code. The property: no panic, and every success is the
//! shape the caller relies on (an object, a chat completion, SSE frames).
//!
//! Bounded for CI: `PROPTEST_CASES` (default 256 per property) sets the count.

use bytes::Bytes;
use llm::stream::StreamTranslator;
use llm::translate::{RequestContext, ResponseContext};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Field names the translators read, in requests, responses and stream events.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "image_url",
    "url",
    "detail",
    "input_audio",
    "tools",
    "tool_choice",
    "function",
    "name",
    "description",
    "parameters",
    "arguments",
    "tool_calls",
    "tool_call_id",
    "id",
    "response_format",
    "json_schema",
    "schema",
    "strict",
    "stream",
    "stream_options",
    "include_usage",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
    "system",
    "user",
    "assistant",
    "tool",
    "source",
    "data",
    "media_type",
    "input",
    "tool_use_id",
    "thinking",
    "budget_tokens",
    "stop_sequences",
    "candidates",
    "parts",
    "functionCall",
    "finishReason",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "promptFeedback",
    "blockReason",
    "output",
    "message",
    "stopReason",
    "usage",
    "inputTokens",
    "outputTokens",
    "input_tokens",
    "output_tokens",
    "stop_reason",
    "delta",
    "index",
    "content_block",
    "contentBlockIndex",
    "toolUse",
    "toolUseId",
    "cache_read_input_tokens",
    "error",
    "properties",
    "required",
    "items",
    "anyOf",
    "$ref",
    "additionalProperties",
    "format",
    "enum",
];

/// Strings the translators branch on.
const WORDS: &[&str] = &[
    "",
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "function",
    "text",
    "image_url",
    "image",
    "input_audio",
    "json_object",
    "json_schema",
    "auto",
    "none",
    "required",
    "object",
    "string",
    "array",
    "high",
    "low",
    "medium",
    "minimal",
    "end_turn",
    "max_tokens",
    "tool_use",
    "stop_sequence",
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "tool_calls",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "text_delta",
    "input_json_delta",
    "thinking_delta",
    "error",
    "ping",
    "data:image/png;base64,iVBORw0KGgo=",
    "data:;base64,",
    "data:image/png,%%%",
    "https://x/y.png",
    "{\"a\":1}",
    "{",
    "[DONE]",
    "null",
    "\u{0}",
    "ü🙂",
    "json_response",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ]
}

/// JSON documents shaped like wire messages: mostly the translators' own keys, any value.
fn doc() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        9 => prop::sample::select(KEYS).prop_map(str::to_string),
                        1 => "[a-z_]{1,8}",
                    ],
                    inner
                ),
                0..7
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A chat request: an object with `model` and a `messages` array of message-like objects, plus
/// any other fields.
fn chat_request() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(
            (
                prop::sample::select(
                    &["system", "user", "assistant", "tool", "developer", "x"][..],
                ),
                doc(),
                doc(),
            ),
            0..6,
        ),
        doc(),
        any::<bool>(),
    )
        .prop_map(|(msgs, extra, stream)| {
            let mut req = match extra {
                Value::Object(m) => m,
                other => Map::from_iter([("extra".to_string(), other)]),
            };
            req.insert("model".into(), "m".into());
            req.insert("stream".into(), stream.into());
            let messages = msgs
                .into_iter()
                .map(|(role, content, more)| {
                    let mut m = match more {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    m.insert("role".into(), role.into());
                    m.insert("content".into(), content);
                    Value::Object(m)
                })
                .collect();
            req.insert("messages".into(), Value::Array(messages));
            Value::Object(req)
        })
}

/// `doc()` forced to an object with `extra` fields set (the rest random).
fn with(doc: Value, extra: Vec<(&'static str, Value)>) -> Value {
    let mut m = match doc {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in extra {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

/// A content block of Anthropic's kinds (or Bedrock's, keyed by kind), other fields random.
fn block() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(
            &[
                "text",
                "image",
                "tool_use",
                "tool_result",
                "thinking",
                "redacted_thinking",
                "document",
                "x",
            ][..],
        ),
        doc(),
        prop_oneof![".{0,16}".prop_map(Value::from), doc()],
    )
        .prop_map(|(kind, d, text)| with(d, vec![("type", kind.into()), ("text", text)]))
}

fn bedrock_block() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(&["text", "toolUse", "reasoningContent", "image", "x"][..]),
        doc(),
    )
        .prop_map(|(kind, d)| {
            let inner = match kind {
                "text" => d.get("text").cloned().unwrap_or_else(|| "hi".into()),
                _ => d,
            };
            with(Value::Null, vec![(kind, inner)])
        })
}

fn anthropic_response() -> impl Strategy<Value = Value> {
    (prop::collection::vec(block(), 0..5), scalar(), doc(), doc()).prop_map(
        |(content, stop, usage, d)| {
            with(
                d,
                vec![
                    ("type", "message".into()),
                    ("role", "assistant".into()),
                    ("content", Value::Array(content)),
                    ("stop_reason", stop),
                    ("usage", usage),
                ],
            )
        },
    )
}

fn bedrock_response() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(bedrock_block(), 0..5),
        scalar(),
        doc(),
    )
        .prop_map(|(content, stop, usage)| {
            serde_json::json!({
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": usage,
            })
        })
}

/// An Anthropic Messages request (the ingress route's input).
fn messages_request() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(
            (
                prop::sample::select(&["user", "assistant", "x"][..]),
                prop_oneof![
                    ".{0,16}".prop_map(Value::from),
                    prop::collection::vec(block(), 0..4).prop_map(Value::Array),
                ],
            ),
            0..5,
        ),
        0u64..10_000,
        doc(),
    )
        .prop_map(|(msgs, max, d)| {
            let messages = msgs
                .into_iter()
                .map(|(role, content)| serde_json::json!({"role": role, "content": content}))
                .collect();
            with(
                d,
                vec![
                    ("model", "m".into()),
                    ("max_tokens", max.into()),
                    ("messages", Value::Array(messages)),
                ],
            )
        })
}

fn rctx(stream: bool) -> RequestContext<'static> {
    RequestContext {
        upstream_model: "upstream-model",
        max_output_tokens: Some(4096),
        stream,
    }
}

fn resp_ctx(forced: Option<&'static str>) -> ResponseContext<'static> {
    ResponseContext {
        model: "m",
        created: 1_700_000_000,
        forced_json_tool: forced,
    }
}

fn assert_completion(v: &Value) -> Result<(), TestCaseError> {
    prop_assert_eq!(v["object"].as_str(), Some("chat.completion"), "{}", v);
    prop_assert!(v["choices"].is_array(), "{}", v);
    Ok(())
}

/// Feeds `input` in pieces of the given sizes, then finishes: the output must be SSE frames
/// (`data:` / `event:` lines) and the outcome settled.
fn drive(t: &mut dyn StreamTranslator, input: &[u8], cuts: &[usize]) -> Result<(), TestCaseError> {
    let mut out: Vec<Bytes> = Vec::new();
    let mut pos = 0;
    for c in cuts {
        let end = (pos + c).min(input.len());
        t.push(&input[pos..end], &mut out);
        pos = end;
    }
    t.push(&input[pos..], &mut out);
    t.finish(&mut out);
    prop_assert!(t.outcome() != llm::StreamOutcome::Open);
    for frame in &out {
        let text = String::from_utf8_lossy(frame);
        prop_assert!(
            text.starts_with("data: ") || text.starts_with("event: ") || text.starts_with(':'),
            "not an SSE frame: {text:?}"
        );
    }
    Ok(())
}

fn sse_of(events: &[(Option<&str>, Value)]) -> Vec<u8> {
    let mut all = Vec::new();
    for (name, v) in events {
        let frame = match name {
            Some(n) => llm::sse::encode_event(n, &v.to_string()),
            None => llm::sse::encode_data(&v.to_string()),
        };
        all.extend_from_slice(&frame);
    }
    all
}

const ANTHROPIC_EVENTS: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
    "ping",
];

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn openai_to_anthropic_request(req in chat_request()) {
        if let Ok((body, _forced)) = llm::anthropic::request_from_chat(&req, &rctx(false)) {
            prop_assert!(body.is_object());
            prop_assert!(body["messages"].is_array(), "{}", body);
            prop_assert!(body["max_tokens"].as_u64().is_some(), "{}", body);
        }
    }

    #[test]
    fn openai_to_gemini_request(req in chat_request()) {
        if let Ok(body) = llm::gemini::request_from_chat(&req, &rctx(true)) {
            prop_assert!(body["contents"].is_array(), "{}", body);
        }
    }

    #[test]
    fn openai_to_bedrock_request(req in chat_request()) {
        if let Ok((body, _forced)) = llm::bedrock::request_from_chat(&req, &rctx(false)) {
            prop_assert!(body["messages"].is_array(), "{}", body);
        }
    }

    #[test]
    fn anthropic_ingress_request(req in doc()) {
        if let Ok(chat) = llm::anthropic::ingress_request_to_chat(&req) {
            prop_assert!(chat["messages"].is_array(), "{}", chat);
        }
    }

    #[test]
    fn anthropic_shaped_ingress_request(req in messages_request()) {
        if let Ok(chat) = llm::anthropic::ingress_request_to_chat(&req) {
            prop_assert!(chat["messages"].is_array(), "{}", chat);
        }
    }

    #[test]
    fn shaped_provider_responses_to_chat(a in anthropic_response(), b in bedrock_response(), forced in any::<bool>()) {
        let ctx = resp_ctx(forced.then_some("json_response"));
        if let Ok((v, _)) = llm::anthropic::response_to_chat(a.to_string().as_bytes(), &ctx) {
            assert_completion(&v)?;
            prop_assert!(llm::anthropic::ingress_response_from_chat(&v, "m")["content"].is_array());
        }
        if let Ok((v, _)) = llm::bedrock::response_to_chat(b.to_string().as_bytes(), &ctx) {
            assert_completion(&v)?;
        }
    }

    #[test]
    fn provider_responses_to_chat(body in doc(), forced in any::<bool>()) {
        let ctx = resp_ctx(forced.then_some("json_response"));
        let bytes = body.to_string();
        if let Ok((v, _)) = llm::anthropic::response_to_chat(bytes.as_bytes(), &ctx) {
            assert_completion(&v)?;
            // What Anthropic-format clients get back from any chat completion.
            let back = llm::anthropic::ingress_response_from_chat(&v, "m");
            prop_assert!(back.is_object());
        }
        if let Ok((v, _)) = llm::gemini::response_to_chat(bytes.as_bytes(), &ctx) {
            assert_completion(&v)?;
        }
        if let Ok((v, _)) = llm::bedrock::response_to_chat(bytes.as_bytes(), &ctx) {
            assert_completion(&v)?;
        }
        let _ = llm::anthropic::ingress_response_from_chat(&body, "m");
    }

    #[test]
    fn provider_error_bodies(status in 100u16..600, body in doc(), raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let (s, v) = llm::anthropic::error_to_openai(status, body.to_string().as_bytes());
        prop_assert!(v["error"].is_object() && (100..600).contains(&s));
        let (s, v) = llm::anthropic::error_to_openai(status, &raw);
        prop_assert!(v["error"].is_object() && (100..600).contains(&s));
    }

    #[test]
    fn anthropic_stream(
        events in prop::collection::vec((prop::sample::select(ANTHROPIC_EVENTS), doc()), 0..12),
        cuts in prop::collection::vec(1usize..64, 0..16),
        usage in any::<bool>(),
    ) {
        let events: Vec<_> = events.into_iter().map(|(n, mut v)| {
            if let Value::Object(m) = &mut v { m.insert("type".into(), n.into()); }
            (Some(n), v)
        }).collect();
        let mut t = llm::anthropic::ChatStream::new(&resp_ctx(None), usage);
        drive(&mut t, &sse_of(&events), &cuts)?;
    }

    #[test]
    fn gemini_stream(
        events in prop::collection::vec(doc(), 0..10),
        cuts in prop::collection::vec(1usize..64, 0..16),
        usage in any::<bool>(),
    ) {
        let events: Vec<_> = events.into_iter().map(|v| (None, v)).collect();
        let mut t = llm::gemini::ChatStream::new(&resp_ctx(Some("json_response")), usage);
        drive(&mut t, &sse_of(&events), &cuts)?;
    }

    #[test]
    fn bedrock_stream(
        events in prop::collection::vec((prop::sample::select(&["messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata", "throttlingException"][..]), doc()), 0..10),
        cuts in prop::collection::vec(1usize..64, 0..16),
        usage in any::<bool>(),
    ) {
        let mut input = Vec::new();
        for (name, v) in &events {
            let frame = if name.ends_with("Exception") {
                llm::eventstream::exception(name, &v.to_string())
            } else {
                llm::eventstream::event(name, &v.to_string())
            };
            input.extend_from_slice(&frame);
        }
        let mut t = llm::bedrock::ChatStream::new(&resp_ctx(None), usage);
        drive(&mut t, &input, &cuts)?;
    }

    #[test]
    fn anthropic_ingress_stream(
        chunks in prop::collection::vec(doc(), 0..10),
        done in any::<bool>(),
        cuts in prop::collection::vec(1usize..64, 0..16),
    ) {
        // OpenAI chunks (from any upstream) re-rendered for an Anthropic-format client.
        let mut input = sse_of(&chunks.into_iter().map(|v| (None, v)).collect::<Vec<_>>());
        if done {
            input.extend_from_slice(b"data: [DONE]\n\n");
        }
        let mut t = llm::anthropic::IngressStream::new("m", "msg_1");
        drive(&mut t, &input, &cuts)?;
    }

    #[test]
    fn translated_streams_take_raw_garbage(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(1usize..64, 0..16),
    ) {
        drive(&mut llm::anthropic::ChatStream::new(&resp_ctx(None), true), &bytes, &cuts)?;
        drive(&mut llm::gemini::ChatStream::new(&resp_ctx(None), true), &bytes, &cuts)?;
        drive(&mut llm::bedrock::ChatStream::new(&resp_ctx(None), true), &bytes, &cuts)?;
        drive(&mut llm::anthropic::IngressStream::new("m", "msg_1"), &bytes, &cuts)?;
    }
}

/// Token counts at the top of `u64` (a broken upstream; the property above found it) saturate
/// instead of overflowing: a panic in a debug build, a wrapped-around total in a release build.
#[test]
fn huge_usage_counts_saturate() {
    let max = u64::MAX;
    let ctx = resp_ctx(None);
    let anthropic = serde_json::json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": max, "output_tokens": max, "cache_read_input_tokens": max, "cache_creation_input_tokens": max}});
    let bedrock = serde_json::json!({"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": max, "outputTokens": max, "totalTokens": max, "cacheReadInputTokens": max, "cacheWriteInputTokens": max}});
    let gemini = serde_json::json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": max, "toolUsePromptTokenCount": max, "candidatesTokenCount": max, "thoughtsTokenCount": max}});
    let results = [
        llm::anthropic::response_to_chat(anthropic.to_string().as_bytes(), &ctx),
        llm::bedrock::response_to_chat(bedrock.to_string().as_bytes(), &ctx),
        llm::gemini::response_to_chat(gemini.to_string().as_bytes(), &ctx),
    ];
    for r in results {
        let (v, u) = r.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (max, max), "{v}");
        assert_eq!(v["usage"]["total_tokens"].as_u64(), Some(max), "{v}");
        let back = llm::anthropic::ingress_response_from_chat(&v, "m");
        assert_eq!(back["usage"]["output_tokens"].as_u64(), Some(max), "{back}");
    }
}
