//! What every translator shares: the request/response contexts, reading OpenAI message content,
//! tool-call arguments, data URLs, the unsupported-parameter policy and the forced-JSON-tool
//! technique for structured output.
//!
//! Unsupported-parameter policy (for providers that lack them): parameters whose absence would
//! silently change what the client gets back — `n > 1`, `logprobs`/`top_logprobs`,
//! `input_audio` parts — are refused with 400 naming the parameter; parameters that only tune
//! sampling or bookkeeping (`presence_penalty`, `frequency_penalty`, `logit_bias`, `seed`,
//! `service_tier`, `store`, `metadata`, `prediction`, …) are dropped.

use serde_json::{Map, Value, json};

use crate::error::TranslateError;

/// What a request translator needs besides the OpenAI body.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The model id the provider knows (equivalents rewritten per provider).
    pub upstream_model: &'a str,
    /// The catalog's output limit, used when the request sets none (Anthropic requires one).
    pub max_output_tokens: Option<u64>,
    pub stream: bool,
}

/// What a response translator needs.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext<'a> {
    /// The model name the client asked for (echoed in every response and chunk).
    pub model: &'a str,
    pub created: i64,
    /// The forced structured-output tool, when the request used one (its call is the answer).
    pub forced_json_tool: Option<&'a str>,
}

/// The name of the synthetic tool used to force JSON output, unique against the user's tools.
pub fn forced_tool_name(req: &Value) -> String {
    let taken = |n: &str| {
        req.get("tools")
            .and_then(Value::as_array)
            .is_some_and(|ts| {
                ts.iter()
                    .any(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(n))
            })
    };
    let mut name = "json_response".to_string();
    let mut i = 1;
    while taken(&name) {
        name = format!("json_response_{i}");
        i += 1;
    }
    name
}

/// The JSON schema a `response_format: json_schema` asks for (None for other formats).
pub fn json_schema(req: &Value) -> Option<(String, Value)> {
    let rf = req.get("response_format")?;
    if rf.get("type")?.as_str()? != "json_schema" {
        return None;
    }
    let js = rf.get("json_schema")?;
    let schema = js
        .get("schema")
        .cloned()
        .unwrap_or_else(|| json!({"type": "object"}));
    Some((
        js.get("name")
            .and_then(Value::as_str)
            .unwrap_or("response")
            .to_string(),
        schema,
    ))
}

pub fn wants_json_object(req: &Value) -> bool {
    req.pointer("/response_format/type").and_then(Value::as_str) == Some("json_object")
}

/// Refuses the parameters no translated provider can honour.
pub fn check_unsupported(req: &Value, provider: &str) -> Result<(), TranslateError> {
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(TranslateError::invalid_param(
            "n",
            format!("{provider} models return one choice; n > 1 is not supported"),
        ));
    }
    if req.get("logprobs").and_then(Value::as_bool) == Some(true)
        || req.get("top_logprobs").is_some_and(|v| !v.is_null())
    {
        return Err(TranslateError::invalid_param(
            "logprobs",
            format!("{provider} models do not return log probabilities"),
        ));
    }
    Ok(())
}

/// The output token limit: `max_completion_tokens`, else `max_tokens`, else the fallback.
pub fn max_tokens(req: &Value, fallback: Option<u64>) -> u64 {
    req.get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| req.get("max_tokens").and_then(Value::as_u64))
        .or(fallback)
        .unwrap_or(4096)
}

/// `stop` as a list.
pub fn stop_list(req: &Value) -> Option<Vec<String>> {
    match req.get("stop")? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        _ => None,
    }
}

/// The text of a message's content: a string, or its text parts concatenated.
pub fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// `data:<mime>;base64,<data>` → (mime, data).
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (mime, data) = rest.split_once(";base64,")?;
    Some((mime, data))
}

/// Tool-call `arguments` (a JSON string) as an object: `""` is `{}`; invalid JSON is a 400.
pub fn parse_arguments(args: &Value) -> Result<Value, TranslateError> {
    match args {
        Value::String(s) if s.trim().is_empty() => Ok(json!({})),
        Value::String(s) => serde_json::from_str::<Value>(s).map_err(|_| {
            TranslateError::invalid_param(
                "messages",
                format!(
                    "tool call arguments are not valid JSON: {}",
                    truncate(s, 200)
                ),
            )
        }),
        Value::Object(_) => Ok(args.clone()),
        Value::Null => Ok(json!({})),
        other => Ok(json!({"value": other})),
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let cut = s
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|i| *i <= max)
        .last()
        .unwrap_or(0);
    format!("{}…", &s[..cut])
}

/// Reasoning budget for `reasoning_effort` (Anthropic thinking / Gemini thinkingBudget).
pub fn reasoning_budget(effort: &str) -> Option<u64> {
    match effort {
        "minimal" => Some(1024),
        "low" => Some(2048),
        "medium" => Some(8192),
        "high" => Some(16384),
        "xhigh" | "max" => Some(32000),
        _ => None,
    }
}

/// The OpenAI tools of a request as (name, description, parameters).
/// Fits a thinking budget and the output limit together (Anthropic and Claude on Bedrock need
/// `1024 <= budget < max_tokens`). When the client set a limit it covers thinking and answer,
/// so the budget shrinks to fit it rather than spending more than asked; without one, the
/// limit grows to leave room for the answer. Returns `(max_tokens, budget)`.
pub fn fit_thinking(req: &Value, max_tokens: u64, budget: u64) -> (u64, u64) {
    let explicit = req
        .get("max_completion_tokens")
        .or_else(|| req.get("max_tokens"))
        .is_some_and(Value::is_u64);
    if explicit {
        let budget = budget.min(max_tokens.saturating_sub(1024)).max(1024);
        (max_tokens.max(budget + 1), budget)
    } else if max_tokens <= budget {
        (budget + 4096, budget)
    } else {
        (max_tokens, budget)
    }
}

pub fn function_tools(req: &Value) -> Vec<(String, Option<String>, Value)> {
    req.get("tools")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .filter_map(|t| {
                    let f = t.get("function")?;
                    let name = f.get("name")?.as_str()?.to_string();
                    let desc = f
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    let params = f
                        .get("parameters")
                        .cloned()
                        .filter(|p| p.is_object())
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                    Some((name, desc, params))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `tool_choice` in a provider-neutral form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    Required,
    None,
    Named(String),
}

pub fn tool_choice(req: &Value) -> Option<ToolChoice> {
    match req.get("tool_choice")? {
        Value::String(s) => match s.as_str() {
            "auto" => Some(ToolChoice::Auto),
            "required" | "any" => Some(ToolChoice::Required),
            "none" => Some(ToolChoice::None),
            _ => None,
        },
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Named(n.to_string())),
        _ => None,
    }
}

/// Names of earlier tool calls, by id (tool messages carry only the id; Gemini needs names).
pub fn tool_names_by_id(messages: &[Value]) -> Map<String, Value> {
    let mut m = Map::new();
    for msg in messages {
        for tc in msg
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(id), Some(name)) = (
                tc.get("id").and_then(Value::as_str),
                tc.pointer("/function/name").and_then(Value::as_str),
            ) {
                m.insert(id.to_string(), Value::String(name.to_string()));
            }
        }
    }
    m
}

/// A short, stable, unique id from some seed text.
pub fn stable_id(prefix: &str, seed: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(seed.as_bytes());
    format!(
        "{prefix}{}",
        h.iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Builds the OpenAI `chat.completion` object for a translated answer.
#[allow(clippy::too_many_arguments)]
pub fn chat_completion(
    id: &str,
    ctx: &ResponseContext<'_>,
    content: Option<String>,
    reasoning: Option<String>,
    thinking_blocks: Vec<Value>,
    tool_calls: Vec<Value>,
    finish_reason: &str,
    usage: &crate::Usage,
) -> Value {
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    if let Some(r) = reasoning {
        message["reasoning_content"] = Value::String(r);
    }
    if !thinking_blocks.is_empty() {
        message["thinking_blocks"] = Value::Array(thinking_blocks);
    }
    json!({
        "id": id, "object": "chat.completion", "created": ctx.created, "model": ctx.model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": usage.to_openai_json(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(parse_arguments(&json!("")).unwrap(), json!({}));
        assert!(parse_arguments(&json!("{bad")).is_err());
        assert_eq!(
            parse_data_url("data:image/png;base64,AAAA"),
            Some(("image/png", "AAAA"))
        );
        assert_eq!(
            text_of(&json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])),
            "ab"
        );
        assert_eq!(stop_list(&json!({"stop": "x"})), Some(vec!["x".into()]));
        assert_eq!(
            max_tokens(&json!({"max_tokens": 5, "max_completion_tokens": 7}), None),
            7
        );
        assert_eq!(
            forced_tool_name(
                &json!({"tools": [{"type": "function", "function": {"name": "json_response"}}]})
            ),
            "json_response_1"
        );
        assert!(check_unsupported(&json!({"n": 2}), "Anthropic").is_err());
        assert_eq!(
            tool_choice(&json!({"tool_choice": {"type": "function", "function": {"name": "f"}}})),
            Some(ToolChoice::Named("f".into()))
        );
        assert_eq!(stable_id("call_", "x"), stable_id("call_", "x"));
    }
}
