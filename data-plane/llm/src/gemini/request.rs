//! OpenAI chat request → Gemini `generateContent` request (§4.7).

use serde_json::{Map, Value, json};

use super::{decode_id, sanitize_schema};
use crate::error::TranslateError;
use crate::translate::{self, RequestContext, ToolChoice};

pub fn request_from_chat(req: &Value, ctx: &RequestContext<'_>) -> Result<Value, TranslateError> {
    if req.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(TranslateError::invalid_param(
            "logprobs",
            "log probabilities are not supported through the Gemini translation",
        ));
    }
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid_param("messages", "messages must be an array"))?;
    let names = translate::tool_names_by_id(messages);
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<(String, Vec<Value>)> = Vec::new();
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        match role {
            "system" | "developer" => {
                let t = translate::text_of(m.get("content").unwrap_or(&Value::Null));
                if !t.is_empty() {
                    system.push(json!({"text": t}));
                }
            }
            "user" => push(
                &mut contents,
                "user",
                user_parts(m.get("content").unwrap_or(&Value::Null))?,
            ),
            "assistant" => {
                let mut parts = Vec::new();
                let t = translate::text_of(m.get("content").unwrap_or(&Value::Null));
                if !t.is_empty() {
                    parts.push(json!({"text": t}));
                }
                for tc in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let (gid, sig) = decode_id(tc.get("id").and_then(Value::as_str).unwrap_or(""));
                    let mut call = json!({"name": tc.pointer("/function/name"), "args": translate::parse_arguments(tc.pointer("/function/arguments").unwrap_or(&Value::Null))?});
                    if let Some(id) = gid {
                        call["id"] = json!(id);
                    }
                    let mut part = json!({"functionCall": call});
                    if let Some(s) = sig {
                        part["thoughtSignature"] = json!(s);
                    }
                    parts.push(part);
                }
                push(&mut contents, "model", parts);
            }
            "tool" | "function" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                let name = names
                    .get(id)
                    .and_then(Value::as_str)
                    .or_else(|| m.get("name").and_then(Value::as_str))
                    .ok_or_else(|| {
                        TranslateError::invalid_param(
                            "messages",
                            format!("tool message {id:?} answers no earlier tool call"),
                        )
                    })?;
                let text = translate::text_of(m.get("content").unwrap_or(&Value::Null));
                // Gemini wants an object: a JSON object result as is, anything else wrapped.
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(o)) => Value::Object(o),
                    Ok(other) => json!({"result": other}),
                    Err(_) => json!({"result": text}),
                };
                let mut fr = json!({"name": name, "response": response});
                if let (Some(gid), _) = decode_id(id) {
                    fr["id"] = json!(gid);
                }
                push(&mut contents, "user", vec![json!({"functionResponse": fr})]);
            }
            other => {
                return Err(TranslateError::invalid_param(
                    "messages",
                    format!("unsupported message role {other:?}"),
                ));
            }
        }
    }
    let mut out = Map::new();
    out.insert(
        "contents".into(),
        Value::Array(
            contents
                .into_iter()
                .map(|(r, p)| json!({"role": r, "parts": p}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let mut config = Map::new();
    if let Some(t) = req.get("temperature") {
        config.insert("temperature".into(), t.clone());
    }
    if let Some(t) = req.get("top_p") {
        config.insert("topP".into(), t.clone());
    }
    config.insert(
        "maxOutputTokens".into(),
        json!(translate::max_tokens(req, ctx.max_output_tokens)),
    );
    if let Some(stop) = translate::stop_list(req) {
        config.insert(
            "stopSequences".into(),
            json!(stop.into_iter().take(5).collect::<Vec<_>>()),
        );
    }
    if let Some(n) = req.get("n").and_then(Value::as_u64).filter(|n| *n > 1) {
        config.insert("candidateCount".into(), json!(n));
    }
    for (from, to) in [
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
    ] {
        if let Some(v) = req.get(from).filter(|v| !v.is_null()) {
            config.insert(to.into(), v.clone());
        }
    }
    if let Some((_, schema)) = translate::json_schema(req) {
        config.insert("responseMimeType".into(), json!("application/json"));
        config.insert("responseSchema".into(), sanitize_schema(&schema));
    } else if translate::wants_json_object(req) {
        config.insert("responseMimeType".into(), json!("application/json"));
    }
    if let Some(effort) = req.get("reasoning_effort").and_then(Value::as_str) {
        let budget = if effort == "none" {
            Some(0)
        } else {
            translate::reasoning_budget(effort)
        };
        if let Some(b) = budget {
            config.insert(
                "thinkingConfig".into(),
                json!({"thinkingBudget": b, "includeThoughts": b > 0}),
            );
        }
    }
    out.insert("generationConfig".into(), Value::Object(config));
    let tools = translate::function_tools(req);
    if !tools.is_empty() {
        let decls: Vec<Value> = tools
            .iter()
            .map(|(name, desc, params)| {
                let mut d = json!({"name": name, "parameters": sanitize_schema(params)});
                if let Some(desc) = desc {
                    d["description"] = json!(desc);
                }
                d
            })
            .collect();
        out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
        let mode = match translate::tool_choice(req) {
            Some(ToolChoice::Required) => Some(json!({"mode": "ANY"})),
            Some(ToolChoice::None) => Some(json!({"mode": "NONE"})),
            Some(ToolChoice::Named(n)) => Some(json!({"mode": "ANY", "allowedFunctionNames": [n]})),
            Some(ToolChoice::Auto) => Some(json!({"mode": "AUTO"})),
            None => None,
        };
        if let Some(m) = mode {
            out.insert("toolConfig".into(), json!({"functionCallingConfig": m}));
        }
    }
    Ok(Value::Object(out))
}

fn push(contents: &mut Vec<(String, Vec<Value>)>, role: &str, parts: Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some((r, p)) if r == role => p.extend(parts),
        _ => contents.push((role.to_string(), parts)),
    }
}

fn user_parts(content: &Value) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(parts) = content else {
        let t = translate::text_of(content);
        return Ok(if t.is_empty() {
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
                    .filter(|t| !t.is_empty())
                {
                    out.push(json!({"text": t}));
                }
            }
            "image_url" => {
                let url = p
                    .pointer("/image_url/url")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match translate::parse_data_url(url) {
                    Some((mime, data)) => {
                        out.push(json!({"inlineData": {"mimeType": mime, "data": data}}))
                    }
                    None if url.starts_with("gs://") => {
                        out.push(json!({"fileData": {"mimeType": "image/*", "fileUri": url}}))
                    }
                    None => {
                        return Err(TranslateError::invalid_param(
                            "messages",
                            "Gemini takes images as data: URLs (inline base64); fetch the image and send it inline",
                        ));
                    }
                }
            }
            "file" => match p
                .pointer("/file/file_data")
                .and_then(Value::as_str)
                .and_then(translate::parse_data_url)
            {
                Some((mime, data)) => {
                    out.push(json!({"inlineData": {"mimeType": mime, "data": data}}))
                }
                None => {
                    return Err(TranslateError::invalid_param(
                        "messages",
                        "files must be sent as file_data data: URLs",
                    ));
                }
            },
            "input_audio" => {
                let data = p
                    .pointer("/input_audio/data")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let fmt = p
                    .pointer("/input_audio/format")
                    .and_then(Value::as_str)
                    .unwrap_or("wav");
                out.push(json!({"inlineData": {"mimeType": format!("audio/{fmt}"), "data": data}}));
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
            upstream_model: "gemini-2.5-flash",
            max_output_tokens: Some(65536),
            stream: false,
        }
    }

    #[test]
    fn edge_07_09_parallel_results_grouped_named_wrapped_signatures_returned() {
        let id_a = super::super::encode_id("fc_a", Some("SIG-A"));
        let req = json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "w?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": id_a, "type": "function", "function": {"name": "weather", "arguments": "{\"c\":\"P\"}"}}, {"id": "call_gxyz", "type": "function", "function": {"name": "time", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": id_a, "content": "{\"temp\":21}"}, {"role": "tool", "tool_call_id": "call_gxyz", "content": "noon"}],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "additionalProperties": false, "properties": {"c": {"type": "string"}}}}}], "tool_choice": {"type": "function", "function": {"name": "weather"}}});
        let out = request_from_chat(&req, &ctx()).unwrap();
        assert_eq!(
            out["systemInstruction"],
            json!({"parts": [{"text": "be brief"}]})
        );
        let c = out["contents"].as_array().unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[1]["parts"][0]["thoughtSignature"], "SIG-A");
        assert_eq!(c[1]["parts"][0]["functionCall"]["id"], "fc_a");
        assert!(
            c[1]["parts"][1]["functionCall"].get("id").is_none(),
            "synthesized ids are not sent to Gemini"
        );
        assert_eq!(c[2]["role"], "user");
        assert_eq!(
            c[2]["parts"].as_array().unwrap().len(),
            2,
            "parallel results in one turn"
        );
        assert_eq!(
            c[2]["parts"][0]["functionResponse"],
            json!({"name": "weather", "response": {"temp": 21}, "id": "fc_a"})
        );
        assert_eq!(
            c[2]["parts"][1]["functionResponse"]["response"],
            json!({"result": "noon"})
        );
        assert!(
            out["tools"][0]["functionDeclarations"][0]["parameters"]
                .get("additionalProperties")
                .is_none()
        );
        assert_eq!(
            out["toolConfig"]["functionCallingConfig"],
            json!({"mode": "ANY", "allowedFunctionNames": ["weather"]})
        );
        assert_eq!(out["generationConfig"]["maxOutputTokens"], 65536);
    }

    #[test]
    fn images_json_and_reasoning() {
        let req = json!({"reasoning_effort": "low", "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object", "title": "x"}}},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "what"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAA"}}]}]});
        let out = request_from_chat(&req, &ctx()).unwrap();
        assert_eq!(
            out["contents"][0]["parts"][1],
            json!({"inlineData": {"mimeType": "image/jpeg", "data": "AAA"}})
        );
        assert_eq!(
            out["generationConfig"]["responseMimeType"],
            "application/json"
        );
        assert_eq!(
            out["generationConfig"]["responseSchema"],
            json!({"type": "object"})
        );
        assert_eq!(
            out["generationConfig"]["thinkingConfig"]["thinkingBudget"],
            2048
        );
        let bad = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]});
        assert!(request_from_chat(&bad, &ctx()).is_err());
    }
}
