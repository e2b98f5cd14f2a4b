//! Anthropic-format ingress: the Messages API in, any chat model out. The Anthropic request is
//! turned into an OpenAI chat request (the proxy's canonical form, translated further for
//! Gemini or Bedrock), and the OpenAI answer — whole or streamed — back into Anthropic's shape,
//! so the Anthropic SDK can call `gpt-4o`.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::error::TranslateError;
use crate::sse::{SseDecoder, encode_event};
use crate::stream::{StreamOutcome, StreamTranslator};
use crate::usage::Usage;

fn effort_for_budget(budget: u64) -> &'static str {
    match budget {
        0..=2048 => "low",
        2049..=12000 => "medium",
        _ => "high",
    }
}

/// Anthropic Messages request → OpenAI chat request.
pub fn ingress_request_to_chat(req: &Value) -> Result<Value, TranslateError> {
    let obj = req
        .as_object()
        .ok_or_else(|| TranslateError::invalid("the request body must be a JSON object"))?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid_param("model", "model: Field required"))?;
    let max_tokens = obj
        .get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| TranslateError::invalid_param("max_tokens", "max_tokens: Field required"))?;
    let mut messages: Vec<Value> = Vec::new();
    match obj.get("system") {
        Some(Value::String(s)) if !s.is_empty() => {
            messages.push(json!({"role": "system", "content": s}))
        }
        Some(Value::Array(blocks)) => {
            let text: Vec<&str> = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            if !text.is_empty() {
                messages.push(json!({"role": "system", "content": text.join("\n\n")}));
            }
        }
        _ => {}
    }
    for m in obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid_param("messages", "messages: Field required"))?
    {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let blocks: Vec<Value> = match m.get("content") {
            Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
            Some(Value::Array(a)) => a.clone(),
            _ => vec![],
        };
        match role {
            "user" => {
                let mut parts = Vec::new();
                for b in &blocks {
                    match b.get("type").and_then(Value::as_str) {
                        Some("tool_result") => {
                            let content = match b.get("content") {
                                Some(Value::String(s)) => s.clone(),
                                Some(Value::Array(a)) => a
                                    .iter()
                                    .filter_map(|x| x.get("text").and_then(Value::as_str))
                                    .collect::<Vec<_>>()
                                    .join(""),
                                _ => String::new(),
                            };
                            let content =
                                if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                                    format!("Error: {content}")
                                } else {
                                    content
                                };
                            messages.push(json!({"role": "tool", "tool_call_id": b.get("tool_use_id"), "content": content}));
                        }
                        Some("text") => parts.push(json!({"type": "text", "text": b.get("text")})),
                        Some("image") => {
                            let src = b.get("source").cloned().unwrap_or_default();
                            let url = match src.get("type").and_then(Value::as_str) {
                                Some("base64") => format!(
                                    "data:{};base64,{}",
                                    src.get("media_type")
                                        .and_then(Value::as_str)
                                        .unwrap_or("image/png"),
                                    src.get("data").and_then(Value::as_str).unwrap_or("")
                                ),
                                Some("url") => src
                                    .get("url")
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                                    .to_string(),
                                _ => {
                                    return Err(TranslateError::invalid_param(
                                        "messages",
                                        "unsupported image source",
                                    ));
                                }
                            };
                            parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                        }
                        Some("document") => {
                            let src = b.get("source").cloned().unwrap_or_default();
                            let data = src.get("data").and_then(Value::as_str).unwrap_or("");
                            let mime = src
                                .get("media_type")
                                .and_then(Value::as_str)
                                .unwrap_or("application/pdf");
                            parts.push(json!({"type": "file", "file": {"filename": "document.pdf", "file_data": format!("data:{mime};base64,{data}")}}));
                        }
                        _ => {}
                    }
                }
                if !parts.is_empty() {
                    let all_text = parts.iter().all(|p| p["type"] == "text");
                    let content = if all_text {
                        Value::String(
                            parts
                                .iter()
                                .filter_map(|p| p["text"].as_str())
                                .collect::<Vec<_>>()
                                .join(""),
                        )
                    } else {
                        Value::Array(parts)
                    };
                    messages.push(json!({"role": "user", "content": content}));
                }
            }
            "assistant" => {
                let mut text = String::new();
                let mut tool_calls = Vec::new();
                let mut thinking = Vec::new();
                for b in &blocks {
                    match b.get("type").and_then(Value::as_str) {
                        Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
                        Some("tool_use") => tool_calls.push(json!({"id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": b.get("input").cloned().unwrap_or_else(|| json!({})).to_string()}})),
                        Some("thinking" | "redacted_thinking") => thinking.push(b.clone()),
                        _ => {}
                    }
                }
                let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) }});
                if !tool_calls.is_empty() {
                    msg["tool_calls"] = Value::Array(tool_calls);
                }
                if !thinking.is_empty() {
                    msg["thinking_blocks"] = Value::Array(thinking);
                }
                messages.push(msg);
            }
            other => {
                return Err(TranslateError::invalid_param(
                    "messages",
                    format!("unexpected role {other:?}"),
                ));
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_completion_tokens".into(), json!(max_tokens));
    for (from, to) in [("temperature", "temperature"), ("top_p", "top_p")] {
        if let Some(v) = obj.get(from) {
            out.insert(to.into(), v.clone());
        }
    }
    if let Some(s) = obj.get("stop_sequences") {
        out.insert("stop".into(), s.clone());
    }
    if let Some(u) = obj.get("metadata").and_then(|m| m.get("user_id")) {
        out.insert("user".into(), u.clone());
    }
    if let Some(b) = obj
        .get("thinking")
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("enabled"))
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64)
    {
        out.insert("reasoning_effort".into(), json!(effort_for_budget(b)));
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        let fns: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("input_schema").is_some())
            .map(|t| json!({"type": "function", "function": {"name": t.get("name"), "description": t.get("description"), "parameters": t.get("input_schema")}}))
            .collect();
        if !fns.is_empty() {
            out.insert("tools".into(), Value::Array(fns));
        }
    }
    if let Some(tc) = obj.get("tool_choice") {
        let choice = match tc.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": tc.get("name")}}),
            _ => Value::Null,
        };
        if !choice.is_null() && out.contains_key("tools") {
            out.insert("tool_choice".into(), choice);
        }
        if tc.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if obj.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(out))
}

fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

fn anthropic_usage(u: &Usage) -> Value {
    json!({"input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens.saturating_add(u.cache_write_tokens)), "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": u.cached_tokens, "cache_creation_input_tokens": u.cache_write_tokens})
}

/// OpenAI `chat.completion` → Anthropic `message`.
pub fn ingress_response_from_chat(chat: &Value, model: &str) -> Value {
    let msg = chat
        .pointer("/choices/0/message")
        .cloned()
        .unwrap_or_default();
    let mut content = Vec::new();
    for b in msg
        .get("thinking_blocks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        content.push(b.clone());
    }
    if let Some(t) = msg
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": t}));
    }
    for tc in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let args = tc
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": tc.get("id"), "name": tc.pointer("/function/name"), "input": input}));
    }
    let finish = chat
        .pointer("/choices/0/finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("stop");
    let usage = chat
        .get("usage")
        .and_then(Usage::from_openai_json)
        .unwrap_or_default();
    let id = chat.get("id").and_then(Value::as_str).unwrap_or("msg");
    json!({"id": format!("msg_{}", id.trim_start_matches("chatcmpl-")), "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason(finish), "stop_sequence": null, "usage": anthropic_usage(&usage)})
}

/// An Anthropic error envelope for an OpenAI-shaped error.
pub fn ingress_error_body(status: u16, message: &str) -> Value {
    let t = match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": t, "message": message}})
}

#[derive(Debug, PartialEq)]
enum Open {
    None,
    Text,
    Thinking,
    Tool(u64),
}

/// OpenAI chat SSE → Anthropic SSE.
pub struct IngressStream {
    sse: SseDecoder,
    model: String,
    id: String,
    started: bool,
    index: u64,
    open: Open,
    stop: &'static str,
    usage: Usage,
    outcome: StreamOutcome,
}

impl IngressStream {
    pub fn new(model: &str, id: &str) -> IngressStream {
        IngressStream {
            sse: SseDecoder::new(),
            model: model.into(),
            id: id.into(),
            started: false,
            index: 0,
            open: Open::None,
            stop: "end_turn",
            usage: Usage::default(),
            outcome: StreamOutcome::Open,
        }
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.started = true;
            let m = json!({"type": "message_start", "message": {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}});
            out.push(encode_event("message_start", &m.to_string()));
        }
    }

    fn close_block(&mut self, out: &mut Vec<Bytes>) {
        if self.open != Open::None {
            out.push(encode_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.index}).to_string(),
            ));
            self.index += 1;
            self.open = Open::None;
        }
    }

    fn open_block(&mut self, kind: Open, block: Value, out: &mut Vec<Bytes>) {
        self.close_block(out);
        out.push(encode_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.index, "content_block": block})
                .to_string(),
        ));
        self.open = kind;
    }

    fn delta(&self, delta: Value, out: &mut Vec<Bytes>) {
        out.push(encode_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.index, "delta": delta})
                .to_string(),
        ));
    }

    fn fail(&mut self, message: &str, out: &mut Vec<Bytes>) {
        out.push(encode_event(
            "error",
            &json!({"type": "error", "error": {"type": "api_error", "message": message}})
                .to_string(),
        ));
        self.outcome = StreamOutcome::Failed {
            kind: "api_error".into(),
            message: message.into(),
        };
    }

    fn chunk(&mut self, data: &str, out: &mut Vec<Bytes>) {
        if self.outcome != StreamOutcome::Open {
            return;
        }
        if data.trim() == "[DONE]" {
            self.start(out);
            self.close_block(out);
            let u = anthropic_usage(&self.usage);
            out.push(encode_event("message_delta", &json!({"type": "message_delta", "delta": {"stop_reason": self.stop, "stop_sequence": null}, "usage": u}).to_string()));
            out.push(encode_event(
                "message_stop",
                &json!({"type": "message_stop"}).to_string(),
            ));
            self.outcome = StreamOutcome::Completed;
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(e) = v.get("error") {
            let msg = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the provider reported an error")
                .to_string();
            self.start(out);
            self.fail(&msg, out);
            return;
        }
        self.start(out);
        if let Some(u) = v
            .get("usage")
            .filter(|u| u.is_object())
            .and_then(Usage::from_openai_json)
        {
            self.usage = u;
        }
        let Some(ch) = v.pointer("/choices/0") else {
            return;
        };
        let d = ch.get("delta").cloned().unwrap_or_default();
        if let Some(r) = d
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            if self.open != Open::Thinking {
                self.open_block(
                    Open::Thinking,
                    json!({"type": "thinking", "thinking": ""}),
                    out,
                );
            }
            self.delta(json!({"type": "thinking_delta", "thinking": r}), out);
        }
        if let Some(t) = d
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if self.open != Open::Text {
                self.open_block(Open::Text, json!({"type": "text", "text": ""}), out);
            }
            self.delta(json!({"type": "text_delta", "text": t}), out);
        }
        for tc in d
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let idx = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
            if self.open != Open::Tool(idx) {
                let id = tc
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("toolu_{idx}"));
                self.open_block(Open::Tool(idx), json!({"type": "tool_use", "id": id, "name": tc.pointer("/function/name"), "input": {}}), out);
            }
            if let Some(a) = tc
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                self.delta(json!({"type": "input_json_delta", "partial_json": a}), out);
            }
        }
        if let Some(f) = ch.get("finish_reason").and_then(Value::as_str) {
            self.stop = stop_reason(f);
        }
    }
}

impl StreamTranslator for IngressStream {
    fn push(&mut self, input: &[u8], out: &mut Vec<Bytes>) {
        let mut events = Vec::new();
        self.sse.push(input, &mut events);
        for e in events {
            self.chunk(&e.data, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        let mut events = Vec::new();
        self.sse.finish(&mut events);
        for e in events {
            self.chunk(&e.data, out);
        }
        if self.outcome == StreamOutcome::Open {
            self.start(out);
            self.fail("The provider's stream ended before it was complete.", out);
        }
    }

    fn usage(&self) -> Option<Usage> {
        Some(self.usage)
    }

    fn outcome(&self) -> StreamOutcome {
        self.outcome.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_request_becomes_chat() {
        let req = json!({"model": "gpt-4o", "max_tokens": 100, "system": [{"type": "text", "text": "Be brief."}], "stream": true,
            "messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": [{"type": "text", "text": "checking"}, {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"c": "P"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"}, {"type": "text", "text": "and?"}]}],
            "tools": [{"name": "w", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"}});
        let c = ingress_request_to_chat(&req).unwrap();
        let m = c["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"c\":\"P\"}"
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "21C"})
        );
        assert_eq!(m[4], json!({"role": "user", "content": "and?"}));
        assert_eq!(c["tool_choice"], "required");
        assert_eq!(c["stream_options"]["include_usage"], true);
        assert!(
            ingress_request_to_chat(&json!({"model": "m", "messages": []})).is_err(),
            "max_tokens is required, as in Anthropic's API"
        );
    }

    #[test]
    fn chat_answers_become_messages_and_streams() {
        let chat = json!({"id": "chatcmpl-9", "choices": [{"message": {"role": "assistant", "content": "Hi", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"c\":1}"}}]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}});
        let m = ingress_response_from_chat(&chat, "gpt-4o");
        assert_eq!(m["content"][1]["input"], json!({"c": 1}));
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            (
                m["usage"]["input_tokens"].as_u64(),
                m["usage"]["cache_read_input_tokens"].as_u64()
            ),
            (Some(6), Some(4))
        );
        let sse = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        let mut s = IngressStream::new("gpt-4o", "msg_1");
        let mut out = Vec::new();
        for p in sse.as_bytes().chunks(9) {
            s.push(p, &mut out);
        }
        s.finish(&mut out);
        let text: String = out
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(text.contains("\"output_tokens\":2"));
        assert_eq!(s.outcome(), StreamOutcome::Completed);
    }
}
