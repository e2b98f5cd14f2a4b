//! What a logged call stores of its payloads: the request's input and the response's output,
//! with base64 media replaced by a placeholder (type and size) and anything too large truncated
//! with a marker. Auth headers are never part of it (only bodies are logged).
//!
//! Payloads travel as JSON text. When the bytes at hand are already the JSON to log — small
//! enough and without anything media redaction would touch — they are logged as they are,
//! without parsing, cloning or re-serialising (the bench measured those at ≈60 µs of CPU per
//! logged call, a third of the node's work).

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

/// Whether `raw` (valid JSON) can be logged as it is: within the size bound, and without the
/// markers media redaction looks for (`base64` of data URLs, `"data"` / `"bytes"` fields of
/// other formats' media blocks). Conservative: a false "no" only costs the slow path.
pub fn loggable_as_is(raw: &[u8]) -> bool {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // Vectorised substring search: a byte-by-byte window compare of three markers over the
    // request and the answer was a tenth of a node's instructions per logged call.
    static MARKERS: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
        [
            Finder::new(b"base64"),
            Finder::new(b"\"data\""),
            Finder::new(b"\"bytes\""),
        ]
    });
    raw.len() <= MAX_PAYLOAD_BYTES && MARKERS.iter().all(|m| m.find(raw).is_none())
}

/// The JSON text to log for a payload: `raw` itself when it is the JSON of `value` and needs no
/// redaction or truncation, otherwise `value` redacted, bounded and serialised once.
pub fn log_text(raw: Option<&[u8]>, value: &Value) -> String {
    if let Some(text) = raw.and_then(as_is) {
        return text;
    }
    let mut v = value.clone();
    redact_media(&mut v);
    bound_text(v.to_string())
}

/// `raw` (known to be valid JSON) as the text to log when it can be logged as it is (see
/// `loggable_as_is`).
pub(crate) fn as_is(raw: &[u8]) -> Option<String> {
    if !loggable_as_is(raw) {
        return None;
    }
    std::str::from_utf8(raw).ok().map(str::to_string)
}

fn bound_text(text: String) -> String {
    if text.len() <= MAX_PAYLOAD_BYTES {
        return text;
    }
    let cut = text
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|i| *i <= TRUNCATED_PREVIEW_BYTES)
        .last()
        .unwrap_or(0);
    serde_json::json!({"_truncated": true, "original_bytes": text.len(), "preview": &text[..cut]})
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn logged(v: &Value) -> Value {
        serde_json::from_str(&log_text(None, v)).unwrap()
    }

    #[test]
    fn media_is_replaced_and_large_payloads_truncated() {
        let img = format!("data:image/png;base64,{}", "A".repeat(4000));
        let v = logged(
            &json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": img}}]}]}),
        );
        assert_eq!(
            v["messages"][0]["content"][0]["image_url"]["url"],
            "[base64 image/png, 3000 bytes]"
        );
        let big = json!({"messages": [{"role": "user", "content": "x".repeat(MAX_PAYLOAD_BYTES)}]});
        let v = logged(&big);
        assert_eq!(v["_truncated"], true);
        assert!(v["preview"].as_str().unwrap().len() <= TRUNCATED_PREVIEW_BYTES);
        let small = json!({"model": "gpt-4o"});
        assert_eq!(logged(&small), small);
    }

    #[test]
    fn raw_json_is_logged_as_is_only_when_nothing_needs_redaction() {
        let raw = br#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}"#;
        let v: Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(log_text(Some(raw), &v), std::str::from_utf8(raw).unwrap());
        // A data URL: redacted through the slow path.
        let img = format!("data:image/png;base64,{}", "A".repeat(4000));
        let v = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": img}}]}]});
        let raw = v.to_string();
        let logged: Value = serde_json::from_str(&log_text(Some(raw.as_bytes()), &v)).unwrap();
        assert_eq!(
            logged["messages"][0]["content"][0]["image_url"]["url"],
            "[base64 image/png, 3000 bytes]"
        );
        // Another format's raw media field.
        let v = json!({"source": {"type": "base64", "media_type": "image/jpeg", "data": "B".repeat(1000)}});
        let raw = v.to_string();
        assert!(!log_text(Some(raw.as_bytes()), &v).contains("BBBB"));
        // Too large: truncated with a marker.
        let v = json!({"content": "x".repeat(MAX_PAYLOAD_BYTES)});
        let raw = v.to_string();
        let logged: Value = serde_json::from_str(&log_text(Some(raw.as_bytes()), &v)).unwrap();
        assert_eq!(logged["_truncated"], true);
        // No raw bytes: the value, serialised.
        assert_eq!(log_text(None, &json!({"a": 1})), r#"{"a":1}"#);
    }
}
