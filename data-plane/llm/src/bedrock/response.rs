//! Bedrock Converse response → OpenAI chat completion.

use serde_json::{Value, json};

use crate::error::TranslateError;
use crate::translate::{self, ResponseContext};
use crate::usage::Usage;

pub fn usage_of(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (read, write) = (n("cacheReadInputTokens"), n("cacheWriteInputTokens"));
    Usage {
        prompt_tokens: n("inputTokens").saturating_add(read).saturating_add(write),
        completion_tokens: n("outputTokens"),
        cached_tokens: read,
        cache_write_tokens: write,
        reasoning_tokens: 0,
    }
}

pub fn finish_reason(stop: &str, forced_only: bool) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" if forced_only => "stop",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

pub fn response_to_chat(
    body: &[u8],
    ctx: &ResponseContext<'_>,
) -> Result<(Value, Usage), TranslateError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::bad_upstream(format!("Bedrock answered invalid JSON: {e}")))?;
    let blocks = v
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            TranslateError::bad_upstream("Bedrock response without output.message.content")
        })?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking = Vec::new();
    let mut calls = Vec::new();
    let mut forced = None;
    for b in blocks {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tu) = b.get("toolUse") {
            let name = tu.get("name").and_then(Value::as_str).unwrap_or("");
            let input = tu.get("input").cloned().unwrap_or_else(|| json!({}));
            if ctx.forced_json_tool == Some(name) {
                forced = Some(input.to_string());
                continue;
            }
            calls.push(json!({"id": tu.get("toolUseId"), "type": "function", "function": {"name": name, "arguments": input.to_string()}}));
        } else if let Some(rc) = b.get("reasoningContent") {
            if let Some(rt) = rc.get("reasoningText") {
                reasoning.push_str(rt.get("text").and_then(Value::as_str).unwrap_or(""));
                thinking.push(json!({"type": "thinking", "thinking": rt.get("text"), "signature": rt.get("signature")}));
            } else if let Some(r) = rc.get("redactedContent") {
                thinking.push(json!({"type": "redacted_thinking", "data": r}));
            }
        }
    }
    let usage = v.get("usage").map(usage_of).unwrap_or_default();
    let finish = finish_reason(
        v.get("stopReason")
            .and_then(Value::as_str)
            .unwrap_or("end_turn"),
        forced.is_some() && calls.is_empty(),
    );
    let content = match forced {
        Some(j) => Some(j),
        None if text.is_empty() && !calls.is_empty() => None,
        None => Some(text),
    };
    let id = translate::stable_id("chatcmpl-", &format!("{}{}", ctx.model, body.len()));
    Ok((
        translate::chat_completion(
            &id,
            ctx,
            content,
            (!reasoning.is_empty()).then_some(reasoning),
            thinking,
            calls,
            finish,
            &usage,
        ),
        usage,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converse_answers() {
        let body = json!({"output": {"message": {"role": "assistant", "content": [{"text": "Let me check."}, {"toolUse": {"toolUseId": "tooluse_1", "name": "w", "input": {"c": "P"}}}]}},
            "stopReason": "tool_use", "usage": {"inputTokens": 30, "outputTokens": 20, "totalTokens": 60, "cacheReadInputTokens": 10}});
        let ctx = ResponseContext {
            model: "claude-sonnet-4-5",
            created: 1,
            forced_json_tool: None,
        };
        let (out, u) = response_to_chat(body.to_string().as_bytes(), &ctx).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"c\":\"P\"}"
        );
        assert_eq!(
            (u.prompt_tokens, u.cached_tokens, u.completion_tokens),
            (40, 10, 20)
        );
        assert_eq!(
            finish_reason("guardrail_intervened", false),
            "content_filter"
        );
    }
}
