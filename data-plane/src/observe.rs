//! Reads an OpenAI-format SSE stream on the side while its bytes pass through: usage (the final
//! usage chunk), in-stream errors, whether `[DONE]` arrived, when the first content came. Also
//! splits the stream into whole events for the one case where the proxy must hold one back.

use bytes::{Bytes, BytesMut};
use llm::Usage;
use serde_json::Value;

#[derive(Debug, Default)]
pub struct Observer {
    buf: BytesMut,
    pub usage: Option<Usage>,
    pub done: bool,
    pub error: Option<String>,
    pub saw_content: bool,
    /// Chat chunks seen (for assembling a logged output).
    pub chunks: Vec<Value>,
    pub keep_chunks: bool,
}

/// One complete SSE event: its raw bytes and whether it is the usage-only chunk.
pub struct Event {
    pub raw: Bytes,
    pub usage_only: bool,
}

impl Observer {
    pub fn new(keep_chunks: bool) -> Observer {
        Observer {
            keep_chunks,
            ..Default::default()
        }
    }

    /// Feeds bytes; returns the complete events they finished.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buf) {
            let raw = self.buf.split_to(end).freeze();
            let usage_only = self.inspect(&raw);
            events.push(Event { raw, usage_only });
        }
        events
    }

    /// Whatever remains when the stream ends (an event without its blank line).
    pub fn finish(&mut self) -> Option<Event> {
        if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
            return None;
        }
        let raw = self.buf.split().freeze();
        let usage_only = self.inspect(&raw);
        Some(Event { raw, usage_only })
    }

    fn inspect(&mut self, raw: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(raw) else {
            return false;
        };
        let mut data = String::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        if data.is_empty() {
            return false;
        }
        if data.trim() == "[DONE]" {
            self.done = true;
            return false;
        }
        let Ok(v) = serde_json::from_str::<Value>(&data) else {
            return false;
        };
        if let Some(e) = v.get("error") {
            self.error = Some(
                e.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error")
                    .to_string(),
            );
            return false;
        }
        // Responses API terminal events carry usage inside `response`.
        if let Some(t) = v.get("type").and_then(Value::as_str) {
            if matches!(
                t,
                "response.completed" | "response.incomplete" | "response.failed"
            ) {
                self.done = true;
                if let Some(u) = v
                    .get("response")
                    .and_then(|r| r.get("usage"))
                    .and_then(Usage::from_openai_json)
                {
                    self.usage = Some(u);
                }
                if t == "response.failed" {
                    self.error = Some("the upstream reported the response failed".into());
                }
            }
            if t == "response.output_text.delta" {
                self.saw_content = true;
            }
            if t == "error" {
                self.error = Some(
                    v.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("upstream error")
                        .to_string(),
                );
            }
            return false;
        }
        let choices = v.get("choices").and_then(Value::as_array);
        let usage = v
            .get("usage")
            .filter(|u| u.is_object())
            .and_then(Usage::from_openai_json);
        let usage_only = usage.is_some() && choices.is_none_or(|c| c.is_empty());
        if let Some(u) = usage {
            self.usage = Some(u);
        }
        if let Some(c) = choices
            && c.iter().any(|ch| {
                ch.get("delta").is_some_and(|d| {
                    d.get("content")
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty())
                        || d.get("tool_calls").is_some()
                }) || ch
                    .get("text")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            })
        {
            self.saw_content = true;
        }
        if self.keep_chunks && !usage_only {
            self.chunks.push(v);
        }
        usage_only
    }
}

/// End offset (exclusive) of the first complete event in `buf`: after a blank line.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// Rebuilds the final `chat.completion` message from stream chunks (for payload logging).
pub fn assemble(chunks: &[Value]) -> Value {
    let mut content = String::new();
    let mut tool_calls: Vec<Value> = Vec::new();
    let mut finish = Value::Null;
    for c in chunks {
        for ch in c
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(d) = ch.get("delta") {
                if let Some(s) = d.get("content").and_then(Value::as_str) {
                    content.push_str(s);
                }
                for tc in d
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let idx = tc.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                    while tool_calls.len() <= idx {
                        tool_calls.push(serde_json::json!({"id": null, "type": "function", "function": {"name": "", "arguments": ""}}));
                    }
                    let slot = &mut tool_calls[idx];
                    if let Some(id) = tc.get("id") {
                        slot["id"] = id.clone();
                    }
                    if let Some(f) = tc.get("function") {
                        if let Some(n) = f.get("name").and_then(Value::as_str) {
                            slot["function"]["name"] = Value::String(n.to_string());
                        }
                        if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                            let prev = slot["function"]["arguments"]
                                .as_str()
                                .unwrap_or("")
                                .to_string();
                            slot["function"]["arguments"] = Value::String(prev + a);
                        }
                    }
                }
            }
            if let Some(f) = ch.get("finish_reason").filter(|f| !f.is_null()) {
                finish = f.clone();
            }
        }
    }
    let mut msg = serde_json::json!({"role": "assistant", "content": if content.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(content) }});
    if !tool_calls.is_empty() {
        msg["tool_calls"] = Value::Array(tool_calls);
    }
    serde_json::json!({"choices": [{"index": 0, "message": msg, "finish_reason": finish}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
: keep-alive\n\n\
data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\n\
data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn any_chunking_gives_the_same_result() {
        for size in [1, 2, 3, 7, 64, 4096] {
            let mut o = Observer::new(true);
            let mut usage_only = 0;
            let mut total = 0;
            for piece in STREAM.as_bytes().chunks(size) {
                for e in o.push(piece) {
                    total += e.raw.len();
                    usage_only += usize::from(e.usage_only);
                }
            }
            assert!(o.finish().is_none());
            assert_eq!(total, STREAM.len(), "events cover every byte (size {size})");
            assert_eq!(usage_only, 1);
            assert!(o.done && o.saw_content && o.error.is_none());
            assert_eq!(
                o.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
                Some((5, 2))
            );
            assert_eq!(
                assemble(&o.chunks)["choices"][0]["message"]["content"],
                "Hello"
            );
        }
    }

    #[test]
    fn in_stream_errors_are_seen() {
        let mut o = Observer::new(false);
        o.push(b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n");
        assert_eq!(o.error.as_deref(), Some("overloaded"));
        assert!(!o.done);
    }
}
