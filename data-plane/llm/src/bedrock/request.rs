//! OpenAI chat request → Bedrock Converse request (§5.8), with the validation rules Converse
//! enforces: strict user/assistant alternation starting with a user turn (edge 11), no blank
//! text and no empty content (edge 12), `toolConfig` whenever history holds tool blocks (edge 10),
//! tool results as `[{text}]`/`[{json}]` items (edge 13), no `toolChoice` without tools or for
//! `none` (edge 16), and tool-use ids restricted to `[a-zA-Z0-9_.:-]{1,64}`.

use serde_json::{Map, Value, json};

use crate::error::TranslateError;
use crate::translate::{self, RequestContext, ToolChoice};

/// Bedrock's id rule; longer or foreign ids are mapped deterministically (same input, same id).
pub fn tool_id(id: &str) -> String {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    if ok {
        id.to_string()
    } else {
        translate::stable_id("tooluse_", id)
    }
}

fn image_format(mime: &str) -> Option<&'static str> {
    match mime {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

pub fn request_from_chat(
    req: &Value,
    ctx: &RequestContext<'_>,
) -> Result<(Value, Option<String>), TranslateError> {
    translate::check_unsupported(req, "Bedrock")?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid_param("messages", "messages must be an array"))?;
    let mut system = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    let mut history_tools: Vec<String> = Vec::new();
    for m in messages {
        match m.get("role").and_then(Value::as_str).unwrap_or("") {
            "system" | "developer" => {
                let t = translate::text_of(m.get("content").unwrap_or(&Value::Null));
                if !t.trim().is_empty() {
                    system.push(json!({"text": t}));
                }
            }
            "user" => push(
                &mut turns,
                "user",
                user_blocks(m.get("content").unwrap_or(&Value::Null))?,
            ),
            "assistant" => {
                let mut blocks = Vec::new();
                for b in m
                    .get("thinking_blocks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match b.get("type").and_then(Value::as_str) {
                        Some("thinking") => blocks.push(json!({"reasoningContent": {"reasoningText": {"text": b.get("thinking"), "signature": b.get("signature")}}})),
                        Some("redacted_thinking") => blocks.push(json!({"reasoningContent": {"redactedContent": b.get("data")}})),
                        _ => {}
                    }
                }
                let t = translate::text_of(m.get("content").unwrap_or(&Value::Null));
                if !t.trim().is_empty() {
                    blocks.push(json!({"text": t}));
                }
                for tc in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = tc
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or("tool")
                        .to_string();
                    let input = translate::parse_arguments(
                        tc.pointer("/function/arguments").unwrap_or(&Value::Null),
                    )?;
                    blocks.push(json!({"toolUse": {"toolUseId": tool_id(tc.get("id").and_then(Value::as_str).unwrap_or("tool")), "name": name, "input": input}}));
                    if !history_tools.contains(&name) {
                        history_tools.push(name);
                    }
                }
                push(&mut turns, "assistant", blocks);
            }
            "tool" | "function" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .or_else(|| m.get("name").and_then(Value::as_str))
                    .unwrap_or("tool");
                let content: Vec<Value> = match m.get("content") {
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .filter(|t| !t.is_empty())
                        .map(|t| json!({"text": t}))
                        .collect(),
                    Some(c) => {
                        let t = translate::text_of(c);
                        match serde_json::from_str::<Value>(&t) {
                            Ok(j @ Value::Object(_)) => vec![json!({"json": j})],
                            _ if t.trim().is_empty() => vec![json!({"text": "(empty)"})],
                            _ => vec![json!({"text": t})],
                        }
                    }
                    None => vec![json!({"text": "(empty)"})],
                };
                let content = if content.is_empty() {
                    vec![json!({"text": "(empty)"})]
                } else {
                    content
                };
                push(
                    &mut turns,
                    "user",
                    vec![
                        json!({"toolResult": {"toolUseId": tool_id(id), "content": content, "status": "success"}}),
                    ],
                );
            }
            other => {
                return Err(TranslateError::invalid_param(
                    "messages",
                    format!("unsupported message role {other:?}"),
                ));
            }
        }
    }
    if turns.is_empty() {
        let text = system
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n\n");
        system.clear();
        turns.push((
            "user".into(),
            vec![json!({"text": if text.trim().is_empty() { "Hello".to_string() } else { text }})],
        ));
    } else if turns[0].0 != "user" {
        turns.insert(
            0,
            (
                "user".into(),
                vec![json!({"text": "(conversation continues)"})],
            ),
        );
    }
    let mut out = Map::new();
    out.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(r, c)| json!({"role": r, "content": c}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let mut inference = Map::new();
    inference.insert(
        "maxTokens".into(),
        json!(translate::max_tokens(req, ctx.max_output_tokens)),
    );
    let thinking = req
        .get("reasoning_effort")
        .and_then(Value::as_str)
        .and_then(translate::reasoning_budget);
    if thinking.is_none() {
        if let Some(t) = req.get("temperature") {
            inference.insert("temperature".into(), t.clone());
        }
        if let Some(t) = req.get("top_p") {
            inference.insert("topP".into(), t.clone());
        }
    }
    if let Some(stop) = translate::stop_list(req) {
        inference.insert("stopSequences".into(), json!(stop));
    }
    if let Some(b) = thinking {
        let max = inference
            .get("maxTokens")
            .and_then(Value::as_u64)
            .unwrap_or(4096);
        let (max, b) = translate::fit_thinking(req, max, b);
        inference.insert("maxTokens".into(), json!(max));
        out.insert(
            "additionalModelRequestFields".into(),
            json!({"thinking": {"type": "enabled", "budget_tokens": b}}),
        );
    }
    out.insert("inferenceConfig".into(), Value::Object(inference));
    // Tools: the request's, the forced structured-output tool, and — when history holds tool
    // blocks but the request offers none — specs rebuilt from the history.
    let mut tools: Vec<Value> = translate::function_tools(req)
        .into_iter()
        .map(|(name, desc, params)| {
            let mut spec = json!({"name": name, "inputSchema": {"json": params}});
            if let Some(d) = desc {
                spec["description"] = json!(d);
            }
            json!({"toolSpec": spec})
        })
        .collect();
    let mut choice = match translate::tool_choice(req) {
        Some(ToolChoice::Auto) => Some(json!({"auto": {}})),
        Some(ToolChoice::Required) => Some(json!({"any": {}})),
        Some(ToolChoice::Named(n)) => Some(json!({"tool": {"name": n}})),
        Some(ToolChoice::None) | None => None,
    };
    let mut forced = None;
    if let Some((_, schema)) = translate::json_schema(req) {
        let name = translate::forced_tool_name(req);
        tools.push(json!({"toolSpec": {"name": name, "description": "Respond with the final answer as this tool's input.", "inputSchema": {"json": schema}}}));
        choice = Some(json!({"tool": {"name": name}}));
        forced = Some(name);
    } else if translate::wants_json_object(req) {
        let sys = out.entry("system").or_insert_with(|| json!([]));
        if let Some(a) = sys.as_array_mut() {
            a.push(json!({"text": "Respond only with a single valid JSON object, with no other text."}));
        }
    }
    if tools.is_empty() && !history_tools.is_empty() {
        tools = history_tools
            .iter()
            .map(|n| json!({"toolSpec": {"name": n, "inputSchema": {"json": {"type": "object"}}}}))
            .collect();
        choice = None;
    }
    if !tools.is_empty() {
        let mut tc = json!({"tools": tools});
        if let Some(c) = choice {
            tc["toolChoice"] = c;
        }
        out.insert("toolConfig".into(), tc);
    }
    Ok((Value::Object(out), forced))
}

fn push(turns: &mut Vec<(String, Vec<Value>)>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((r, b)) if r == role => {
            if role == "user" && blocks.iter().all(|x| x.get("toolResult").is_some()) {
                let pos = b
                    .iter()
                    .position(|x| x.get("toolResult").is_none())
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

fn document_name(filename: &str) -> String {
    let stem = filename
        .rsplit_once('.')
        .map(|(s, _)| s)
        .unwrap_or(filename);
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') {
                c
            } else {
                ' '
            }
        })
        .collect();
    let collapsed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        "document".into()
    } else {
        collapsed
    }
}

fn user_blocks(content: &Value) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(parts) = content else {
        let t = translate::text_of(content);
        return Ok(if t.trim().is_empty() {
            vec![]
        } else {
            vec![json!({"text": t})]
        });
    };
    let mut out = Vec::new();
    for p in parts {
        match p.get("type").and_then(Value::as_str).unwrap_or("text") {
            "text" => {
                if let Some(t) = p
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.trim().is_empty())
                {
                    out.push(json!({"text": t}));
                }
            }
            "image_url" => {
                let url = p
                    .pointer("/image_url/url")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let (mime, data) = translate::parse_data_url(url).ok_or_else(|| {
                    TranslateError::invalid_param(
                        "messages",
                        "Bedrock takes images as data: URLs (inline base64)",
                    )
                })?;
                let format = image_format(mime).ok_or_else(|| {
                    TranslateError::invalid_param(
                        "messages",
                        format!("unsupported image type {mime} (png, jpeg, gif, webp)"),
                    )
                })?;
                out.push(json!({"image": {"format": format, "source": {"bytes": data}}}));
            }
            "file" => {
                let (mime, data) = p
                    .pointer("/file/file_data")
                    .and_then(Value::as_str)
                    .and_then(translate::parse_data_url)
                    .ok_or_else(|| {
                        TranslateError::invalid_param(
                            "messages",
                            "files must be sent as file_data data: URLs",
                        )
                    })?;
                if mime != "application/pdf" {
                    return Err(TranslateError::invalid_param(
                        "messages",
                        "only PDF files are supported for Bedrock",
                    ));
                }
                let name = document_name(
                    p.pointer("/file/filename")
                        .and_then(Value::as_str)
                        .unwrap_or("document"),
                );
                out.push(
                    json!({"document": {"format": "pdf", "name": name, "source": {"bytes": data}}}),
                );
            }
            "input_audio" => {
                return Err(TranslateError::invalid_param(
                    "messages",
                    "audio input is not supported through Bedrock Converse",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext<'static> {
        RequestContext {
            upstream_model: "anthropic.claude",
            max_output_tokens: Some(8192),
            stream: false,
        }
    }

    #[test]
    fn edge_10_11_12_13_16_converse_rules() {
        let req = json!({"tool_choice": "none", "parallel_tool_calls": true, "messages": [
            {"role": "system", "content": "sys"}, {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"c\":1}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "21C"}]}, {"role": "user", "content": "then?"},
            {"role": "assistant", "content": "   "}]});
        let (out, _) = request_from_chat(&req, &ctx()).unwrap();
        let m = out["messages"].as_array().unwrap();
        assert_eq!(
            m.len(),
            3,
            "same-role turns merged, the blank assistant turn dropped: {m:?}"
        );
        assert_eq!(m[0]["content"], json!([{"text": "a"}, {"text": "b"}]));
        assert_eq!(
            m[1]["content"],
            json!([{"toolUse": {"toolUseId": "call_1", "name": "w", "input": {"c": 1}}}]),
            "no blank text block"
        );
        assert_eq!(
            m[2]["content"][0]["toolResult"]["content"],
            json!([{"text": "21C"}]),
            "items, not a nested array"
        );
        assert_eq!(m[2]["content"][1], json!({"text": "then?"}));
        assert_eq!(
            out["toolConfig"]["tools"][0]["toolSpec"]["name"], "w",
            "toolConfig rebuilt from history"
        );
        assert!(
            out["toolConfig"].get("toolChoice").is_none(),
            "no toolChoice for none / without tools"
        );
        let no_tools =
            json!({"tool_choice": "auto", "messages": [{"role": "user", "content": "x"}]});
        let (out, _) = request_from_chat(&no_tools, &ctx()).unwrap();
        assert!(out.get("toolConfig").is_none());
    }

    #[test]
    fn images_ids_and_structured_output() {
        assert_eq!(tool_id("call_abc"), "call_abc");
        let long = "x".repeat(80);
        assert_eq!(tool_id(&long), tool_id(&long));
        assert!(tool_id(&long).len() <= 64);
        assert!(tool_id("call~ts~abc").starts_with("tooluse_"));
        let req = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}}},
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/jpg;base64,AAA"}}, {"type": "text", "text": "?"}]}]});
        let (out, forced) = request_from_chat(&req, &ctx()).unwrap();
        assert_eq!(
            out["messages"][0]["content"][0],
            json!({"image": {"format": "jpeg", "source": {"bytes": "AAA"}}})
        );
        assert_eq!(forced.as_deref(), Some("json_response"));
        assert_eq!(
            out["toolConfig"]["toolChoice"],
            json!({"tool": {"name": "json_response"}})
        );
        assert_eq!(out["inferenceConfig"]["maxTokens"], 8192);
        let (out, _) = request_from_chat(
            &json!({"messages": [{"role": "system", "content": "only system"}]}),
            &ctx(),
        )
        .unwrap();
        assert_eq!(
            out["messages"][0],
            json!({"role": "user", "content": [{"text": "only system"}]})
        );
    }
}
