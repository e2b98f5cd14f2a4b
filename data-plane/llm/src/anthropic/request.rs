//! OpenAI chat request → Anthropic Messages request (§3.8).

use serde_json::{Map, Value, json};

use crate::error::TranslateError;
use crate::translate::{self, RequestContext, ToolChoice};

/// The Anthropic body, and the forced structured-output tool's name when one was added.
pub fn request_from_chat(
    req: &Value,
    ctx: &RequestContext<'_>,
) -> Result<(Value, Option<String>), TranslateError> {
    translate::check_unsupported(req, "Anthropic")?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid_param("messages", "messages must be an array"))?;
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        match role {
            "system" | "developer" => {
                system.extend(text_blocks(m.get("content").unwrap_or(&Value::Null)))
            }
            "user" => push(
                &mut turns,
                "user",
                user_blocks(m.get("content").unwrap_or(&Value::Null))?,
            ),
            "assistant" => push(&mut turns, "assistant", assistant_blocks(m)?),
            "tool" | "function" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .or_else(|| m.get("name").and_then(Value::as_str))
                    .unwrap_or("tool");
                let content = match m.get("content") {
                    Some(Value::Array(parts)) => {
                        Value::Array(text_blocks(&Value::Array(parts.clone())))
                    }
                    Some(c) => Value::String(translate::text_of(c)),
                    None => Value::String(String::new()),
                };
                let block = json!({"type": "tool_result", "tool_use_id": sanitize_id(id), "content": content});
                push(&mut turns, "user", vec![block]);
            }
            other => {
                return Err(TranslateError::invalid_param(
                    "messages",
                    format!("unsupported message role {other:?}"),
                ));
            }
        }
    }
    // Anthropic needs at least one user turn, and the conversation starts with one.
    if turns.is_empty() {
        let text = system
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n\n");
        system.clear();
        turns.push(("user".into(), vec![json!({"type": "text", "text": if text.is_empty() { "Hello".to_string() } else { text }})]));
    } else if turns[0].0 != "user" {
        turns.insert(
            0,
            (
                "user".into(),
                vec![json!({"type": "text", "text": "(conversation continues)"})],
            ),
        );
    }
    let max_tokens = translate::max_tokens(req, ctx.max_output_tokens);
    let mut out = Map::new();
    out.insert("model".into(), json!(ctx.upstream_model));
    out.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(r, c)| json!({"role": r, "content": c}))
                .collect(),
        ),
    );
    let thinking = req
        .get("reasoning_effort")
        .and_then(Value::as_str)
        .and_then(translate::reasoning_budget);
    let mut max_tokens = max_tokens;
    if let Some(wanted) = thinking {
        let budget;
        (max_tokens, budget) = translate::fit_thinking(req, max_tokens, wanted);
        out.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    } else {
        if let Some(t) = req.get("temperature").and_then(Value::as_f64) {
            out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
        }
        if let Some(p) = req.get("top_p").and_then(Value::as_f64) {
            out.insert("top_p".into(), json!(p));
        }
    }
    out.insert("max_tokens".into(), json!(max_tokens));
    if let Some(stop) = translate::stop_list(req) {
        out.insert("stop_sequences".into(), json!(stop));
    }
    if let Some(u) = req.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": u}));
    }
    if ctx.stream {
        out.insert("stream".into(), json!(true));
    }
    // Tools, tool_choice, structured output.
    let mut tools: Vec<Value> = req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let f = t.get("function")?;
            let mut tool = json!({"name": f.get("name")?, "input_schema": f.get("parameters").cloned().filter(Value::is_object).unwrap_or_else(|| json!({"type": "object", "properties": {}}))});
            if let Some(d) = f.get("description") {
                tool["description"] = d.clone();
            }
            if let Some(cc) = t.get("cache_control") {
                tool["cache_control"] = cc.clone();
            }
            Some(tool)
        })
        .collect();
    let mut choice: Option<Value> = match translate::tool_choice(req) {
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Named(n)) => Some(json!({"type": "tool", "name": n})),
        None => None,
    };
    let mut forced = None;
    if let Some((_, schema)) = translate::json_schema(req) {
        if thinking.is_some() {
            // Forced tool use is refused with thinking on: ask for the JSON in the system prompt.
            system.push(json!({"type": "text", "text": format!("Respond only with a JSON value matching this JSON Schema, with no other text:\n{schema}")}));
        } else {
            let name = translate::forced_tool_name(req);
            tools.push(json!({"name": name, "description": "Respond with the final answer as this tool's input.", "input_schema": schema}));
            choice = Some(json!({"type": "tool", "name": name}));
            forced = Some(name);
        }
    } else if translate::wants_json_object(req) {
        system.push(json!({"type": "text", "text": "Respond only with a single valid JSON object, with no other text."}));
    }
    if req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false) && !tools.is_empty() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = json!(true);
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(c) = choice {
            out.insert("tool_choice".into(), c);
        }
    }
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    Ok((Value::Object(out), forced))
}

fn push(turns: &mut Vec<(String, Vec<Value>)>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((r, b)) if r == role => {
            // Tool results go before any text of the same user turn.
            if role == "user"
                && blocks.iter().all(|x| x["type"] == "tool_result")
                && b.iter().any(|x| x["type"] != "tool_result")
            {
                let pos = b
                    .iter()
                    .position(|x| x["type"] != "tool_result")
                    .unwrap_or(b.len());
                for (i, blk) in blocks.into_iter().enumerate() {
                    b.insert(pos + i, blk);
                }
            } else {
                b.extend(blocks);
            }
        }
        _ => turns.push((role.to_string(), blocks)),
    }
}

/// Anthropic restricts tool-use ids to `[a-zA-Z0-9_-]`.
pub fn sanitize_id(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "tool".into() } else { s }
}

fn with_cache_control(mut block: Value, part: &Value) -> Value {
    if let Some(cc) = part.get("cache_control") {
        block["cache_control"] = cc.clone();
    }
    block
}

/// Text blocks of a content value (empty strings dropped).
fn text_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| {
                let t = p
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())?;
                Some(with_cache_control(json!({"type": "text", "text": t}), p))
            })
            .collect(),
        _ => vec![],
    }
}

fn user_blocks(content: &Value) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(parts) = content else {
        return Ok(text_blocks(content));
    };
    let mut out = Vec::new();
    for p in parts {
        match p.get("type").and_then(Value::as_str).unwrap_or("text") {
            "text" => out.extend(text_blocks(&Value::Array(vec![p.clone()]))),
            "image_url" => {
                let url = p
                    .pointer("/image_url/url")
                    .and_then(Value::as_str)
                    .or_else(|| p.get("image_url").and_then(Value::as_str))
                    .unwrap_or("");
                let block = match translate::parse_data_url(url) {
                    Some((mime, data)) => {
                        json!({"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}})
                    }
                    None if url.starts_with("http://") || url.starts_with("https://") => {
                        json!({"type": "image", "source": {"type": "url", "url": url}})
                    }
                    None => {
                        return Err(TranslateError::invalid_param(
                            "messages",
                            "image_url must be an http(s) URL or a data: URL",
                        ));
                    }
                };
                out.push(with_cache_control(block, p));
            }
            "file" => {
                let data = p
                    .pointer("/file/file_data")
                    .and_then(Value::as_str)
                    .and_then(translate::parse_data_url);
                match data {
                    Some((mime, d)) if mime == "application/pdf" => out.push(with_cache_control(json!({"type": "document", "source": {"type": "base64", "media_type": mime, "data": d}}), p)),
                    _ => return Err(TranslateError::invalid_param("messages", "only PDF files sent as file_data data: URLs can be passed to Anthropic")),
                }
            }
            "input_audio" => {
                return Err(TranslateError::invalid_param(
                    "messages",
                    "Anthropic models do not accept audio input",
                ));
            }
            other => {
                return Err(TranslateError::invalid_param(
                    "messages",
                    format!("unsupported content part type {other:?}"),
                ));
            }
        }
    }
    Ok(out)
}

fn assistant_blocks(m: &Value) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();
    // Thinking blocks carried back by the client (with their signatures) come first.
    for b in m
        .get("thinking_blocks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if matches!(
            b.get("type").and_then(Value::as_str),
            Some("thinking" | "redacted_thinking")
        ) {
            out.push(b.clone());
        }
    }
    out.extend(text_blocks(m.get("content").unwrap_or(&Value::Null)));
    for tc in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = tc.get("id").and_then(Value::as_str).unwrap_or("tool");
        let name = tc
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or("tool");
        let input =
            translate::parse_arguments(tc.pointer("/function/arguments").unwrap_or(&Value::Null))?;
        out.push(json!({"type": "tool_use", "id": sanitize_id(id), "name": name, "input": input}));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext<'static> {
        RequestContext {
            upstream_model: "claude-x",
            max_output_tokens: Some(64000),
            stream: false,
        }
    }

    #[test]
    fn every_system_message_consecutive_merging_and_max_tokens() {
        let req = json!({"model": "m", "messages": [
            {"role": "system", "content": "one"}, {"role": "user", "content": "a"}, {"role": "developer", "content": [{"type": "text", "text": "two", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "b"}, {"role": "assistant", "content": ""}, {"role": "assistant", "content": "c"}]});
        let (out, forced) = request_from_chat(&req, &ctx()).unwrap();
        assert!(forced.is_none());
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "one"}, {"type": "text", "text": "two", "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(
            out["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, {"role": "assistant", "content": [{"type": "text", "text": "c"}]}])
        );
        assert_eq!(
            out["max_tokens"], 64000,
            "the catalog's limit when the request sets none"
        );
    }

    #[test]
    fn edge_22_thinking_blocks_return_first_with_their_signature() {
        let req = json!({"reasoning_effort": "low", "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}], "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null,
             "thinking_blocks": [{"type": "thinking", "thinking": "need the tool", "signature": "sig=="}],
             "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]});
        let (out, _) = request_from_chat(&req, &ctx()).unwrap();
        let turn = &out["messages"][1]["content"];
        assert_eq!(
            turn[0],
            json!({"type": "thinking", "thinking": "need the tool", "signature": "sig=="})
        );
        assert_eq!(turn[1]["type"], "tool_use");
        assert_eq!(out["messages"][2]["content"][0]["type"], "tool_result");
    }

    #[test]
    fn system_only_gets_a_user_turn() {
        let (out, _) = request_from_chat(
            &json!({"messages": [{"role": "system", "content": "Say hi"}]}),
            &ctx(),
        )
        .unwrap();
        assert_eq!(out["messages"][0]["role"], "user");
        assert_eq!(out["messages"][0]["content"][0]["text"], "Say hi");
        assert!(out.get("system").is_none());
    }

    #[test]
    fn tool_round_trip_groups_results_before_text() {
        let req = json!({"messages": [{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"c\":\"P\"}"}}, {"id": "call_2", "type": "function", "function": {"name": "t", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "21C"}, {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            {"role": "user", "content": "thanks"}],
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}], "tool_choice": "required", "parallel_tool_calls": false});
        let (out, _) = request_from_chat(&req, &ctx()).unwrap();
        let msgs = out["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(
            msgs[1]["content"][1],
            json!({"type": "tool_use", "id": "call_2", "name": "t", "input": {}}),
            "edge 01 inverse: empty arguments become {{}}"
        );
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(
            msgs[2]["content"][1]["content"],
            json!([{"type": "text", "text": "noon"}])
        );
        assert_eq!(msgs[2]["content"][2]["text"], "thanks");
        assert_eq!(
            out["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true}),
            "edge 17"
        );
    }

    #[test]
    fn images_json_schema_and_reasoning() {
        let req = json!({"temperature": 1.7, "stop": "END", "messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}, {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}}]}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object", "properties": {"n": {"type": "string"}}}}}});
        let (out, forced) = request_from_chat(&req, &ctx()).unwrap();
        assert_eq!(out["temperature"], 1.0, "clamped to Anthropic's range");
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["messages"][0]["content"][1]["source"]["type"], "base64");
        assert_eq!(
            out["messages"][0]["content"][2]["source"]["url"],
            "https://x.example/a.png"
        );
        assert_eq!(forced.as_deref(), Some("json_response"));
        assert_eq!(
            out["tool_choice"],
            json!({"type": "tool", "name": "json_response"})
        );
        let r = json!({"reasoning_effort": "high", "max_tokens": 1000, "temperature": 0.2, "messages": [{"role": "user", "content": "think"}]});
        let (out, _) = request_from_chat(&r, &ctx()).unwrap();
        // The client's cap (1000) is below Anthropic's minimum budget: the smallest valid
        // thinking request, not the 16k "high" budget on top of it.
        assert_eq!(
            out["thinking"],
            json!({"type": "enabled", "budget_tokens": 1024})
        );
        assert_eq!(out["max_tokens"], 1025);
        let r = json!({"reasoning_effort": "high", "max_completion_tokens": 40000, "messages": [{"role": "user", "content": "think"}]});
        let (out, _) = request_from_chat(&r, &ctx()).unwrap();
        assert_eq!(out["thinking"]["budget_tokens"], 16384);
        assert_eq!(out["max_tokens"], 40000, "the client's cap is kept");
        let r =
            json!({"reasoning_effort": "high", "messages": [{"role": "user", "content": "think"}]});
        let (out, _) = request_from_chat(&r, &ctx()).unwrap();
        assert!(
            out["max_tokens"].as_u64().unwrap() > 16384,
            "no cap: room for the answer"
        );
        assert!(out.get("temperature").is_none());
        assert!(request_from_chat(&json!({"n": 2, "messages": []}), &ctx()).is_err());
        assert!(request_from_chat(&json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}), &ctx()).is_err());
    }
}
