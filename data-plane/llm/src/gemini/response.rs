//! Gemini response → OpenAI chat completion (§4.7): thoughts, function calls with stable ids,
//! finish reasons derived from the parts (edge 6), usage with thinking tokens (edge 5), blocked
//! prompts as a clear error.

use serde_json::{Value, json};

use super::{SYNTH_PREFIX, encode_id};
use crate::error::TranslateError;
use crate::translate::{self, ResponseContext};
use crate::usage::Usage;

pub fn usage_of(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let thoughts = n("thoughtsTokenCount");
    Usage {
        prompt_tokens: n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount")),
        completion_tokens: n("candidatesTokenCount").saturating_add(thoughts),
        cached_tokens: n("cachedContentTokenCount"),
        cache_write_tokens: 0,
        reasoning_tokens: thoughts,
    }
}

/// OpenAI finish reason; RECITATION, LANGUAGE, OTHER and malformed-call reasons map to `stop`
/// (the answer ended; nothing was filtered for safety).
pub fn finish_reason(reason: &str, has_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT" => "content_filter",
        _ if has_calls => "tool_calls",
        _ => "stop",
    }
}

/// A blocked prompt (HTTP 200 without candidates) as a 400 saying why.
pub fn blocked(v: &Value) -> Option<TranslateError> {
    let has_candidates = v
        .get("candidates")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    if has_candidates {
        return None;
    }
    let reason = v
        .pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str)?;
    Some(TranslateError::InvalidRequest {
        message: format!("Gemini blocked the prompt (blockReason: {reason})."),
        param: Some("messages".into()),
    })
}

/// The OpenAI tool call for a `functionCall` part (the `n`th call of response `rid`).
pub fn tool_call(part: &Value, rid: &str, n: usize) -> Value {
    let fc = &part["functionCall"];
    let name = fc.get("name").and_then(Value::as_str).unwrap_or("");
    let base = fc
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| translate::stable_id(SYNTH_PREFIX, &format!("{rid}/{n}/{name}")));
    let id = encode_id(&base, part.get("thoughtSignature").and_then(Value::as_str));
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": fc.get("args").cloned().unwrap_or_else(|| json!({})).to_string()}})
}

pub fn response_to_chat(
    body: &[u8],
    ctx: &ResponseContext<'_>,
) -> Result<(Value, Usage), TranslateError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::bad_upstream(format!("Gemini answered invalid JSON: {e}")))?;
    if let Some(e) = blocked(&v) {
        return Err(e);
    }
    let rid = v
        .get("responseId")
        .and_then(Value::as_str)
        .unwrap_or("gemini")
        .to_string();
    let cand = v.pointer("/candidates/0").cloned().unwrap_or_default();
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for p in cand
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if p.get("functionCall").is_some() {
            calls.push(tool_call(p, &rid, calls.len()));
        } else if let Some(t) = p.get("text").and_then(Value::as_str) {
            if p.get("thought").and_then(Value::as_bool) == Some(true) {
                reasoning.push_str(t);
            } else {
                text.push_str(t);
            }
        }
    }
    let usage = v.get("usageMetadata").map(usage_of).unwrap_or_default();
    let finish = finish_reason(
        cand.get("finishReason")
            .and_then(Value::as_str)
            .unwrap_or("STOP"),
        !calls.is_empty(),
    );
    let content = if text.is_empty() && !calls.is_empty() {
        None
    } else {
        Some(text)
    };
    let out = translate::chat_completion(
        &format!("chatcmpl-{rid}"),
        ctx,
        content,
        (!reasoning.is_empty()).then_some(reasoning),
        vec![],
        calls,
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
            model: "gemini-2.5-flash",
            created: 1,
            forced_json_tool: None,
        }
    }

    #[test]
    fn edge_05_06_thoughts_counted_and_stop_with_calls_is_tool_calls() {
        let body = json!({"responseId": "r1", "candidates": [{"content": {"role": "model", "parts": [{"text": "thinking…", "thought": true},
            {"functionCall": {"name": "w", "args": {"c": "P"}}, "thoughtSignature": "SIG"}, {"functionCall": {"id": "fc_2", "name": "t", "args": {}}}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 12, "thoughtsTokenCount": 85, "cachedContentTokenCount": 10, "totalTokenCount": 137}});
        let (out, u) = response_to_chat(body.to_string().as_bytes(), &ctx()).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        let calls = out["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            super::super::decode_id(calls[0]["id"].as_str().unwrap())
                .1
                .as_deref(),
            Some("SIG")
        );
        assert_eq!(calls[1]["id"], "fc_2");
        assert_ne!(calls[0]["id"], calls[1]["id"]);
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.reasoning_tokens,
                u.cached_tokens
            ),
            (40, 97, 85, 10)
        );
        assert_eq!(u.total_tokens(), 137);
        assert_eq!(
            out["choices"][0]["message"]["reasoning_content"],
            "thinking…"
        );
        assert_eq!(finish_reason("MAX_TOKENS", false), "length");
        assert_eq!(finish_reason("SAFETY", false), "content_filter");
    }

    #[test]
    fn blocked_prompts_are_errors() {
        let body = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}});
        let e = response_to_chat(body.to_string().as_bytes(), &ctx()).unwrap_err();
        assert!(e.to_string().contains("SAFETY"));
    }
}
