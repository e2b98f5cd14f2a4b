//! Golden tests: one OpenAI chat request per case, and for each provider (Anthropic, Gemini,
//! Bedrock) the upstream request it becomes, the OpenAI response a provider answer becomes,
//! and the OpenAI chunks its stream becomes — as reviewed insta snapshots
//! (`tests/snapshots/golden__<case>__<provider>.snap`). Provider answers are built from a small
//! description in each provider's real wire format (SSE with pings for Anthropic, CRLF SSE for
//! Gemini, binary event-stream frames split at odd offsets for Bedrock).
//!
//! Review a change with `cargo insta review` (or `INSTA_UPDATE=always cargo test -p llm --test
//! golden` and read the diff).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use llm::StreamTranslator;
use llm::translate::{RequestContext, ResponseContext};
use serde_json::{Value, json};

const CREATED: i64 = 1_700_000_000;
const FORCED: &str = "<forced>";

/// What the provider answers, independent of wire format.
#[derive(Clone, Default)]
struct Answer {
    thinking: Option<&'static str>,
    text: Option<&'static str>,
    /// (name, input); name `<forced>` is the proxy's structured-output tool.
    tools: Vec<(&'static str, Value)>,
    /// `max_tokens` / `stop_sequence` instead of a natural end.
    stop: Option<&'static str>,
}

struct Case {
    name: &'static str,
    model: &'static str,
    request: Value,
    answer: Answer,
}

fn weather() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "title": "Weather", "properties": {"city": {"type": "string", "default": "Paris"}}, "required": ["city"], "additionalProperties": false}}})
}

const PNG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn long_text() -> &'static str {
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. \
     How vexingly quick daft zebras jump! Sphinx of black quartz, judge my vow. \
     The five boxing wizards jump quickly. Jackdaws love my big sphinx of quartz."
}

fn cases() -> Vec<Case> {
    let text = |t: &'static str| Answer {
        text: Some(t),
        ..Default::default()
    };
    vec![
        Case {
            name: "plain",
            model: "claude-sonnet-4-5",
            request: json!({"model": "m", "messages": [{"role": "user", "content": "Say hi"}], "temperature": 0.3, "top_p": 0.9}),
            answer: text("Hi there!"),
        },
        Case {
            name: "multi_system",
            model: "claude-sonnet-4-5",
            request: json!({"model": "m", "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "One"},
                {"role": "developer", "content": "Answer in French."},
                {"role": "user", "content": "Two"},
                {"role": "assistant", "content": "Un."},
                {"role": "assistant", "content": "Deux."},
                {"role": "user", "content": [{"type": "text", "text": "Three"}]}]}),
            answer: text("Trois."),
        },
        Case {
            name: "tools",
            model: "claude-sonnet-4-5",
            request: json!({"model": "m", "tools": [weather()], "tool_choice": "required", "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
            answer: Answer {
                text: Some("Let me check."),
                tools: vec![("get_weather", json!({"city": "Paris"}))],
                ..Default::default()
            },
        },
        Case {
            name: "parallel_tools",
            model: "claude-sonnet-4-5",
            request: json!({"model": "m", "tools": [weather(), {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": true,
                "messages": [{"role": "user", "content": "Weather in Paris and Rome, and the time?"}]}),
            answer: Answer {
                tools: vec![
                    ("get_weather", json!({"city": "Paris"})),
                    ("get_weather", json!({"city": "Rome"})),
                    ("get_time", json!({})),
                ],
                ..Default::default()
            },
        },
        Case {
            name: "tool_result_roundtrip",
            model: "claude-sonnet-4-5",
            request: json!({"model": "m", "tools": [weather()], "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_a1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_b2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
                {"role": "tool", "tool_call_id": "call_a1", "content": "21C"},
                {"role": "tool", "tool_call_id": "call_b2", "content": [{"type": "text", "text": "25C"}]},
                {"role": "user", "content": "Which is warmer?"}]}),
            answer: text("Rome is warmer."),
        },
        Case {
            name: "images",
            model: "claude-sonnet-4-5",
            request: json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": PNG}},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}]}]}),
            answer: text("Two pixels."),
        },
        Case {
            // Anthropic fetches URLs itself; Gemini and Bedrock take inline bytes only, so the
            // proxy refuses with a 400 naming the field instead of dropping the image.
            name: "image_http_url",
            model: "claude-sonnet-4-5",
            request: json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]}),
            answer: text("A cat."),
        },
        Case {
            name: "json_schema",
            model: "claude-sonnet-4-5",
            request: json!({"model": "m", "messages": [{"role": "user", "content": "Give me a city."}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "city", "strict": true,
                    "schema": {"type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"}}, "required": ["name", "population"], "additionalProperties": false}}}}),
            answer: Answer {
                tools: vec![(FORCED, json!({"name": "Paris", "population": 2100000}))],
                text: Some("{\"name\":\"Paris\",\"population\":2100000}"),
                ..Default::default()
            },
        },
        Case {
            name: "reasoning",
            model: "claude-sonnet-4-5",
            request: json!({"model": "m", "reasoning_effort": "medium", "max_completion_tokens": 8000, "messages": [{"role": "user", "content": "What is 17 * 23?"}]}),
            answer: Answer {
                thinking: Some("17 * 23 = 17 * 20 + 17 * 3 = 340 + 51 = 391."),
                text: Some("391"),
                ..Default::default()
            },
        },
        Case {
            name: "stop",
            model: "claude-sonnet-4-5",
            request: json!({"model": "m", "stop": ["END", "STOP"], "max_tokens": 50, "messages": [{"role": "user", "content": "Count"}]}),
            answer: Answer {
                text: Some("1 2 3 "),
                stop: Some("stop_sequence"),
                ..Default::default()
            },
        },
        Case {
            name: "long_stream",
            model: "claude-sonnet-4-5",
            request: json!({"model": "m", "max_tokens": 10, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Pangrams please"}]}),
            answer: Answer {
                text: Some(long_text()),
                stop: Some("max_tokens"),
                ..Default::default()
            },
        },
    ]
}

/// Splits text into pieces of at most `n` characters (streams deliver small deltas).
fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

fn tool_name(name: &str, forced: Option<&str>) -> String {
    if name == FORCED {
        forced.unwrap_or("json").to_string()
    } else {
        name.to_string()
    }
}

// ---- Anthropic -------------------------------------------------------------------------------

fn anthropic_stop(a: &Answer) -> &'static str {
    a.stop.unwrap_or(if a.tools.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    })
}

fn anthropic_blocks(a: &Answer, forced: Option<&str>) -> Vec<Value> {
    let mut blocks = Vec::new();
    if let Some(t) = a.thinking {
        blocks.push(json!({"type": "thinking", "thinking": t, "signature": "EqQBsig=="}));
    }
    if let Some(t) = a
        .text
        .filter(|_| !a.tools.iter().any(|(n, _)| *n == FORCED))
    {
        blocks.push(json!({"type": "text", "text": t}));
    }
    for (i, (n, input)) in a.tools.iter().enumerate() {
        blocks.push(json!({"type": "tool_use", "id": format!("toolu_0{i}"), "name": tool_name(n, forced), "input": input}));
    }
    blocks
}

fn anthropic_response(a: &Answer, forced: Option<&str>) -> Value {
    json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": anthropic_blocks(a, forced), "stop_reason": anthropic_stop(a), "stop_sequence": if a.stop == Some("stop_sequence") { json!("END") } else { Value::Null },
        "usage": {"input_tokens": 25, "output_tokens": 57, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 100}})
}

fn anthropic_stream(a: &Answer, forced: Option<&str>) -> Vec<u8> {
    let mut out = String::new();
    let mut ev = |name: &str, v: Value| out.push_str(&format!("event: {name}\ndata: {v}\n\n"));
    ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 25, "output_tokens": 1, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 100}}}),
    );
    for (i, b) in anthropic_blocks(a, forced).iter().enumerate() {
        match b["type"].as_str().unwrap() {
            "thinking" => {
                ev(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "thinking", "thinking": ""}}),
                );
                for p in pieces(b["thinking"].as_str().unwrap(), 12) {
                    ev(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "thinking_delta", "thinking": p}}),
                    );
                }
                ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": i, "delta": {"type": "signature_delta", "signature": "EqQBsig=="}}),
                );
            }
            "text" => {
                ev(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
                );
                ev("ping", json!({"type": "ping"}));
                for p in pieces(b["text"].as_str().unwrap(), 9) {
                    ev(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": p}}),
                    );
                }
            }
            _ => {
                ev(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}),
                );
                for p in pieces(&b["input"].to_string(), 7) {
                    ev(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": p}}),
                    );
                }
            }
        }
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        );
    }
    ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": anthropic_stop(a), "stop_sequence": null}, "usage": {"output_tokens": 57}}),
    );
    ev("message_stop", json!({"type": "message_stop"}));
    out.into_bytes()
}

// ---- Gemini ----------------------------------------------------------------------------------

fn gemini_finish(a: &Answer) -> &'static str {
    match a.stop {
        Some("max_tokens") => "MAX_TOKENS",
        _ => "STOP",
    }
}

fn gemini_parts(a: &Answer) -> Vec<Value> {
    let mut parts = Vec::new();
    if let Some(t) = a.thinking {
        parts.push(json!({"text": t, "thought": true}));
    }
    if let Some(t) = a.text {
        parts.push(json!({"text": t}));
    }
    for (i, (n, args)) in a.tools.iter().filter(|(n, _)| *n != FORCED).enumerate() {
        parts.push(json!({"functionCall": {"id": format!("fc_{i}"), "name": n, "args": args}, "thoughtSignature": format!("CiQB{i}")}));
    }
    parts
}

fn gemini_usage() -> Value {
    json!({"promptTokenCount": 140, "candidatesTokenCount": 12, "thoughtsTokenCount": 30, "cachedContentTokenCount": 100, "totalTokenCount": 182})
}

fn gemini_response(a: &Answer) -> Value {
    json!({"candidates": [{"content": {"role": "model", "parts": gemini_parts(a)}, "finishReason": gemini_finish(a), "index": 0}],
        "usageMetadata": gemini_usage(), "modelVersion": "gemini-2.5-flash", "responseId": "resp_g1"})
}

fn gemini_stream(a: &Answer) -> Vec<u8> {
    let mut chunks: Vec<Vec<Value>> = Vec::new();
    for p in gemini_parts(a) {
        match p.get("text").and_then(Value::as_str) {
            Some(t) => {
                for piece in pieces(t, 11) {
                    let mut q = p.clone();
                    q["text"] = piece.into();
                    chunks.push(vec![q]);
                }
            }
            // Function calls arrive complete, one per chunk.
            None => chunks.push(vec![p]),
        }
    }
    let n = chunks.len();
    let mut out = String::new();
    for (i, parts) in chunks.into_iter().enumerate() {
        let mut cand = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if i + 1 == n {
            cand["finishReason"] = gemini_finish(a).into();
        }
        let v = json!({"candidates": [cand], "usageMetadata": gemini_usage(), "modelVersion": "gemini-2.5-flash", "responseId": "resp_g1"});
        out.push_str(&format!("data: {v}\r\n\r\n"));
    }
    out.into_bytes()
}

// ---- Bedrock ---------------------------------------------------------------------------------

fn bedrock_blocks(a: &Answer, forced: Option<&str>) -> Vec<Value> {
    let mut blocks = Vec::new();
    if let Some(t) = a.thinking {
        blocks.push(
            json!({"reasoningContent": {"reasoningText": {"text": t, "signature": "EqQBsig=="}}}),
        );
    }
    if let Some(t) = a
        .text
        .filter(|_| !a.tools.iter().any(|(n, _)| *n == FORCED))
    {
        blocks.push(json!({"text": t}));
    }
    for (i, (n, input)) in a.tools.iter().enumerate() {
        blocks.push(json!({"toolUse": {"toolUseId": format!("tooluse_{i}"), "name": tool_name(n, forced), "input": input}}));
    }
    blocks
}

fn bedrock_usage() -> Value {
    json!({"inputTokens": 30, "outputTokens": 20, "totalTokens": 150, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 0})
}

fn bedrock_response(a: &Answer, forced: Option<&str>) -> Value {
    json!({"output": {"message": {"role": "assistant", "content": bedrock_blocks(a, forced)}}, "stopReason": anthropic_stop(a), "usage": bedrock_usage(), "metrics": {"latencyMs": 812}})
}

fn bedrock_stream(a: &Answer, forced: Option<&str>) -> Vec<u8> {
    let mut frames: Vec<Bytes> = Vec::new();
    let mut ev = |t: &str, mut v: Value| {
        v["p"] = json!("abcdefghij");
        frames.push(llm::eventstream::event(t, &v.to_string()));
    };
    ev("messageStart", json!({"role": "assistant"}));
    for (i, b) in bedrock_blocks(a, forced).iter().enumerate() {
        if let Some(r) = b.get("reasoningContent") {
            for p in pieces(r["reasoningText"]["text"].as_str().unwrap(), 12) {
                ev(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": i, "delta": {"reasoningContent": {"text": p}}}),
                );
            }
            ev(
                "contentBlockDelta",
                json!({"contentBlockIndex": i, "delta": {"reasoningContent": {"signature": "EqQBsig=="}}}),
            );
        } else if let Some(t) = b.get("text").and_then(Value::as_str) {
            for p in pieces(t, 9) {
                ev(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": i, "delta": {"text": p}}),
                );
            }
        } else {
            let tu = &b["toolUse"];
            ev(
                "contentBlockStart",
                json!({"contentBlockIndex": i, "start": {"toolUse": {"toolUseId": tu["toolUseId"], "name": tu["name"]}}}),
            );
            for p in pieces(&tu["input"].to_string(), 7) {
                ev(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": i, "delta": {"toolUse": {"input": p}}}),
                );
            }
        }
        ev("contentBlockStop", json!({"contentBlockIndex": i}));
    }
    ev("messageStop", json!({"stopReason": anthropic_stop(a)}));
    ev(
        "metadata",
        json!({"usage": bedrock_usage(), "metrics": {"latencyMs": 812}}),
    );
    frames.concat()
}

// ---- Running a case --------------------------------------------------------------------------

/// Feeds `bytes` to the translator in pieces of `cut` bytes; returns the OpenAI chunks.
fn run_stream(mut t: Box<dyn StreamTranslator>, bytes: &[u8], cut: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for piece in bytes.chunks(cut) {
        t.push(piece, &mut out);
    }
    t.finish(&mut out);
    assert_eq!(t.outcome(), llm::StreamOutcome::Completed);
    let text: String = out
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string())))
        .collect()
}

fn golden(provider: &str, case: &Case) -> Value {
    let upstream_model = match provider {
        "google" => "gemini-2.5-flash",
        "bedrock" => "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        _ => "claude-sonnet-4-5-20250929",
    };
    let rctx = |stream: bool| RequestContext {
        upstream_model,
        max_output_tokens: Some(64000),
        stream,
    };
    let translated = match provider {
        "anthropic" => llm::anthropic::request_from_chat(&case.request, &rctx(false)),
        "google" => llm::gemini::request_from_chat(&case.request, &rctx(false)).map(|r| (r, None)),
        _ => llm::bedrock::request_from_chat(&case.request, &rctx(false)),
    };
    let (request, forced) = match translated {
        Ok(t) => t,
        Err(llm::TranslateError::InvalidRequest { message, param }) => {
            return json!({"invalid_request": {"message": message, "param": param}});
        }
        Err(e) => panic!("{}/{provider}: {e}", case.name),
    };
    let ctx = ResponseContext {
        model: case.model,
        created: CREATED,
        forced_json_tool: forced.as_deref(),
    };
    let a = &case.answer;
    let f = forced.as_deref();
    let include_usage = true;
    let (response, stream) = match provider {
        "anthropic" => (
            llm::anthropic::response_to_chat(anthropic_response(a, f).to_string().as_bytes(), &ctx)
                .unwrap()
                .0,
            run_stream(
                Box::new(llm::anthropic::ChatStream::new(&ctx, include_usage)),
                &anthropic_stream(a, f),
                13,
            ),
        ),
        "google" => (
            llm::gemini::response_to_chat(gemini_response(a).to_string().as_bytes(), &ctx)
                .unwrap()
                .0,
            run_stream(
                Box::new(llm::gemini::ChatStream::new(&ctx, include_usage)),
                &gemini_stream(a),
                17,
            ),
        ),
        _ => (
            llm::bedrock::response_to_chat(bedrock_response(a, f).to_string().as_bytes(), &ctx)
                .unwrap()
                .0,
            run_stream(
                Box::new(llm::bedrock::ChatStream::new(&ctx, include_usage)),
                &bedrock_stream(a, f),
                37,
            ),
        ),
    };
    // Invariants every stream must keep, whatever the snapshot says.
    let chunks: Vec<&Value> = stream.iter().filter(|c| c.is_object()).collect();
    let id = &chunks[0]["id"];
    for c in &chunks {
        assert_eq!(
            &c["id"], id,
            "{}/{provider}: one stable id on every chunk",
            case.name
        );
        assert_eq!(
            c["model"], case.model,
            "{}/{provider}: the requested model on every chunk",
            case.name
        );
        assert_eq!(c["object"], "chat.completion.chunk");
    }
    assert_eq!(
        stream.last(),
        Some(&Value::String("[DONE]".into())),
        "{}/{provider}",
        case.name
    );
    json!({"upstream_request": request, "response": response, "stream": stream})
}

#[test]
fn golden_translations() {
    for case in cases() {
        for provider in ["anthropic", "google", "bedrock"] {
            let v = golden(provider, &case);
            insta::assert_json_snapshot!(format!("{}__{provider}", case.name), v);
        }
    }
}
