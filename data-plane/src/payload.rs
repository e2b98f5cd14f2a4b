//! What a logged call stores of its payloads: the request's input and the response's output,
//! with base64 media replaced by a placeholder (type and size) and anything too large truncated
//! with a marker. Auth headers are never part of it (only bodies are logged).

use serde_json::Value;

/// Largest serialized payload kept whole.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// What is kept of a larger one.
pub const TRUNCATED_PREVIEW_BYTES: usize = 32 * 1024;

fn redact_media(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix("data:")
                && let Some((mime, data)) = rest.split_once(";base64,")
            {
                let bytes = data.len() / 4 * 3;
                *s = format!("[base64 {mime}, {bytes} bytes]");
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_media),
        Value::Object(o) => {
            // Raw base64 fields of other formats (Anthropic/Gemini/Bedrock image blocks).
            let media = o
                .get("media_type")
                .or_else(|| o.get("mimeType"))
                .and_then(Value::as_str)
                .map(str::to_string);
            for (k, val) in o.iter_mut() {
                if matches!(k.as_str(), "data" | "bytes")
                    && let Value::String(s) = val
                    && s.len() > 256
                {
                    *s = format!(
                        "[base64 {}, {} bytes]",
                        media.as_deref().unwrap_or("data"),
                        s.len() / 4 * 3
                    );
                    continue;
                }
                redact_media(val);
            }
        }
        _ => {}
    }
}

fn bound(v: Value) -> Value {
    let text = v.to_string();
    if text.len() <= MAX_PAYLOAD_BYTES {
        return v;
    }
    let cut = text
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|i| *i <= TRUNCATED_PREVIEW_BYTES)
        .last()
        .unwrap_or(0);
    serde_json::json!({"_truncated": true, "original_bytes": text.len(), "preview": &text[..cut]})
}

/// The request as logged: messages and parameters.
pub fn input_for_log(body: &Value) -> Value {
    let mut v = body.clone();
    redact_media(&mut v);
    bound(v)
}

pub fn output_for_log(body: &Value) -> Value {
    let mut v = body.clone();
    redact_media(&mut v);
    bound(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn media_is_replaced_and_large_payloads_truncated() {
        let img = format!("data:image/png;base64,{}", "A".repeat(4000));
        let v = input_for_log(
            &json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": img}}]}]}),
        );
        assert_eq!(
            v["messages"][0]["content"][0]["image_url"]["url"],
            "[base64 image/png, 3000 bytes]"
        );
        let big = json!({"messages": [{"role": "user", "content": "x".repeat(MAX_PAYLOAD_BYTES)}]});
        let v = input_for_log(&big);
        assert_eq!(v["_truncated"], true);
        assert!(v["preview"].as_str().unwrap().len() <= TRUNCATED_PREVIEW_BYTES);
        let small = json!({"model": "gpt-4o"});
        assert_eq!(input_for_log(&small), small);
    }
}
