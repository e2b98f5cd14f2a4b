//! Gemini SSE (`alt=sse`, CRLF framing, no terminator) → OpenAI chunks. Each chunk carries only
//! new parts; function calls arrive whole and each gets its own tool-call index; usage is the
//! last running total; the stream ends at connection close, so `finish` emits the final chunk,
//! usage and `[DONE]` — or an error if no finish reason came.

use bytes::Bytes;
use serde_json::{Value, json};

use super::response::{blocked, finish_reason, tool_call, usage_of};
use crate::openai::ChunkBuilder;
use crate::sse::SseDecoder;
use crate::stream::{StreamOutcome, StreamTranslator};
use crate::translate::ResponseContext;
use crate::usage::Usage;

pub struct ChatStream {
    sse: SseDecoder,
    chunks: ChunkBuilder,
    include_usage: bool,
    started: bool,
    calls: usize,
    rid: String,
    finish: Option<String>,
    usage: Usage,
    outcome: StreamOutcome,
}

impl ChatStream {
    pub fn new(ctx: &ResponseContext<'_>, include_usage: bool) -> ChatStream {
        ChatStream {
            sse: SseDecoder::new(),
            chunks: ChunkBuilder {
                id: crate::translate::stable_id(
                    "chatcmpl-",
                    &format!("{}{}", ctx.model, ctx.created),
                ),
                created: ctx.created,
                model: ctx.model.to_string(),
                include_usage,
            },
            include_usage,
            started: false,
            calls: 0,
            rid: String::new(),
            finish: None,
            usage: Usage::default(),
            outcome: StreamOutcome::Open,
        }
    }

    fn event(&mut self, data: &str, out: &mut Vec<Bytes>) {
        if self.outcome != StreamOutcome::Open {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(e) = v.get("error") {
            let msg = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("Gemini reported an error")
                .to_string();
            out.push(ChunkBuilder::error(
                &msg,
                "server_error",
                e.get("status").and_then(Value::as_str),
            ));
            self.outcome = StreamOutcome::Failed {
                kind: "upstream_error".into(),
                message: msg,
            };
            return;
        }
        if let Some(e) = blocked(&v) {
            out.push(ChunkBuilder::error(
                &e.to_string(),
                "invalid_request_error",
                Some("content_filter"),
            ));
            self.outcome = StreamOutcome::Failed {
                kind: "content_filter".into(),
                message: e.to_string(),
            };
            return;
        }
        if !self.started {
            self.started = true;
            if let Some(r) = v.get("responseId").and_then(Value::as_str) {
                self.rid = r.to_string();
                self.chunks.id = format!("chatcmpl-{r}");
            }
            out.push(
                self.chunks
                    .delta(json!({"role": "assistant", "content": ""}), None),
            );
        }
        if let Some(u) = v.get("usageMetadata") {
            self.usage = usage_of(u);
        }
        let cand = v.pointer("/candidates/0").cloned().unwrap_or_default();
        for p in cand
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if p.get("functionCall").is_some() {
                let mut tc = tool_call(p, &self.rid, self.calls);
                tc["index"] = json!(self.calls);
                self.calls += 1;
                out.push(self.chunks.delta(json!({"tool_calls": [tc]}), None));
            } else if let Some(t) = p
                .get("text")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                let key = if p.get("thought").and_then(Value::as_bool) == Some(true) {
                    "reasoning_content"
                } else {
                    "content"
                };
                out.push(self.chunks.delta(json!({key: t}), None));
            }
        }
        if let Some(f) = cand.get("finishReason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
    }
}

impl StreamTranslator for ChatStream {
    fn push(&mut self, input: &[u8], out: &mut Vec<Bytes>) {
        let mut events = Vec::new();
        self.sse.push(input, &mut events);
        for e in events {
            self.event(&e.data, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        let mut events = Vec::new();
        self.sse.finish(&mut events);
        for e in events {
            self.event(&e.data, out);
        }
        if self.outcome != StreamOutcome::Open {
            return;
        }
        match self.finish.clone() {
            Some(f) => {
                out.push(
                    self.chunks
                        .delta(json!({}), Some(finish_reason(&f, self.calls > 0))),
                );
                if self.include_usage {
                    out.push(self.chunks.usage(&self.usage));
                }
                out.push(ChunkBuilder::done());
                self.outcome = StreamOutcome::Completed;
            }
            None => {
                let msg = "The provider's stream ended before it was complete.";
                out.push(ChunkBuilder::error(
                    msg,
                    "server_error",
                    Some("stream_truncated"),
                ));
                self.outcome = StreamOutcome::Failed {
                    kind: "stream_truncated".into(),
                    message: msg.into(),
                };
            }
        }
    }

    fn usage(&self) -> Option<Usage> {
        Some(self.usage)
    }

    fn outcome(&self) -> StreamOutcome {
        self.outcome.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":1,\"totalTokenCount\":6},\"responseId\":\"r1\"}\r\n\r\n\
data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"a\",\"args\":{\"x\":1}}},{\"functionCall\":{\"name\":\"b\",\"args\":{}}}],\"role\":\"model\"},\"index\":0}],\"responseId\":\"r1\"}\r\n\r\n\
data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo!\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":3,\"thoughtsTokenCount\":2,\"totalTokenCount\":10},\"responseId\":\"r1\"}\r\n\r\n";

    fn run(input: &str, cut: usize) -> (String, ChatStream) {
        let mut s = ChatStream::new(
            &ResponseContext {
                model: "gemini-2.5-flash",
                created: 1,
                forced_json_tool: None,
            },
            true,
        );
        let mut out = Vec::new();
        for p in input.as_bytes().chunks(cut) {
            s.push(p, &mut out);
        }
        s.finish(&mut out);
        (
            out.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect(),
            s,
        )
    }

    #[test]
    fn crlf_frames_parallel_calls_and_usage() {
        for cut in [1, 5, 64, 100_000] {
            let (text, s) = run(STREAM, cut);
            assert_eq!(s.outcome(), StreamOutcome::Completed);
            assert!(
                text.contains("\"index\":0") && text.contains("\"index\":1"),
                "each call its own index (edge 3)"
            );
            assert!(
                text.contains("\"finish_reason\":\"tool_calls\""),
                "STOP with calls is tool_calls (edge 6)"
            );
            assert!(
                text.contains("\"completion_tokens\":5"),
                "thoughts count as completion (edge 5)"
            );
            assert!(text.ends_with("data: [DONE]\n\n"));
        }
        let (text, s) = run(&STREAM[..STREAM.len() / 2], 9);
        assert!(matches!(s.outcome(), StreamOutcome::Failed { .. }));
        assert!(!text.contains("[DONE]"));
    }
}
