//! Anthropic Messages response → OpenAI chat completion (§3.9): every content block kept.

use serde_json::{Value, json};

use crate::error::TranslateError;
use crate::translate::{self, ResponseContext};
use crate::usage::Usage;

/// Anthropic usage in OpenAI terms: cache reads and writes are part of the prompt (edge 4).
pub fn usage_of(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (input, read, write) = (
        n("input_tokens"),
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    Usage {
        prompt_tokens: input.saturating_add(read).saturating_add(write),
        completion_tokens: n("output_tokens"),
        cached_tokens: read,
        cache_write_tokens: write,
        reasoning_tokens: u
            .pointer("/output_tokens_details/thinking_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    }
}

pub fn finish_reason(stop: &str, forced_only: bool) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" if forced_only => "stop",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

pub fn response_to_chat(
    body: &[u8],
    ctx: &ResponseContext<'_>,
) -> Result<(Value, Usage), TranslateError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        TranslateError::bad_upstream(format!("Anthropic answered invalid JSON: {e}"))
    })?;
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::bad_upstream("Anthropic response without content"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    let mut forced_json: Option<String> = None;
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                reasoning.push_str(b.get("thinking").and_then(Value::as_str).unwrap_or(""));
                thinking_blocks.push(b.clone());
            }
            Some("redacted_thinking") => thinking_blocks.push(b.clone()),
            Some("tool_use") => {
                let name = b.get("name").and_then(Value::as_str).unwrap_or("");
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                if ctx.forced_json_tool == Some(name) {
                    forced_json = Some(input.to_string());
                    continue;
                }
                tool_calls.push(json!({"id": b.get("id"), "type": "function", "function": {"name": name, "arguments": input.to_string()}}));
            }
            _ => {}
        }
    }
    let usage = v.get("usage").map(usage_of).unwrap_or_default();
    let stop = v
        .get("stop_reason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    let finish = finish_reason(stop, forced_json.is_some() && tool_calls.is_empty());
    let content = match forced_json {
        Some(j) => Some(j),
        None if text.is_empty() && !tool_calls.is_empty() => None,
        None => Some(text),
    };
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .map(|s| format!("chatcmpl-{s}"))
        .unwrap_or_else(|| "chatcmpl-anthropic".into());
    let out = translate::chat_completion(
        &id,
        ctx,
        content,
        (!reasoning.is_empty()).then_some(reasoning),
        thinking_blocks,
        tool_calls,
        finish,
        &usage,
    );
    Ok((out, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ResponseContext<'static> {
        ResponseContext {
            model: "claude-sonnet-4-5",
            created: 1,
            forced_json_tool: None,
        }
    }

    #[test]
    fn all_blocks_kept_and_usage_mapped() {
        let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "text", "text": "Let me "}, {"type": "text", "text": "check."},
            {"type": "tool_use", "id": "toolu_A", "name": "w", "input": {"c": "P"}}, {"type": "tool_use", "id": "toolu_B", "name": "t", "input": {}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 25, "output_tokens": 57, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 100}});
        let (out, u) = response_to_chat(body.to_string().as_bytes(), &ctx()).unwrap();
        let m = &out["choices"][0]["message"];
        assert_eq!(m["content"], "Let me check.");
        assert_eq!(m["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(m["tool_calls"][1]["function"]["arguments"], "{}");
        assert_eq!(m["reasoning_content"], "hmm");
        assert_eq!(m["thinking_blocks"][0]["signature"], "sig");
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            out["model"], "claude-sonnet-4-5",
            "the requested model is echoed"
        );
        assert_eq!(
            (
                u.prompt_tokens,
                u.cached_tokens,
                u.cache_write_tokens,
                u.completion_tokens
            ),
            (135, 100, 10, 57),
            "edge 04"
        );
        assert_eq!(out["usage"]["total_tokens"], 192);
    }

    #[test]
    fn edge_25_forced_json_tool_becomes_content() {
        let body = json!({"id": "m", "content": [{"type": "tool_use", "id": "t", "name": "json_response", "input": {"n": "x"}}], "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1}});
        let c = ResponseContext {
            forced_json_tool: Some("json_response"),
            ..ctx()
        };
        let (out, _) = response_to_chat(body.to_string().as_bytes(), &c).unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "{\"n\":\"x\"}");
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert!(out["choices"][0]["message"].get("tool_calls").is_none());
    }

    #[test]
    fn finish_reasons() {
        for (a, o) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
            ("model_context_window_exceeded", "length"),
        ] {
            assert_eq!(finish_reason(a, false), o);
        }
    }
}
