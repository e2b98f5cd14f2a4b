//! Bedrock ConverseStream (binary event-stream) → OpenAI chunks: tool indexes counted over
//! tool blocks (not `contentBlockIndex`), `metadata` (usage) awaited after `messageStop` before
//! `[DONE]`, exception frames surfaced as in-stream errors (edge 18).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::response::{finish_reason, usage_of};
use crate::eventstream::EventStreamDecoder;
use crate::openai::ChunkBuilder;
use crate::stream::{StreamOutcome, StreamTranslator};
use crate::translate::ResponseContext;
use crate::usage::Usage;

enum Block {
    Tool(usize),
    Forced,
}

pub struct ChatStream {
    decoder: EventStreamDecoder,
    chunks: ChunkBuilder,
    include_usage: bool,
    forced: Option<String>,
    blocks: HashMap<u64, Block>,
    tools: usize,
    started: bool,
    stop: Option<String>,
    usage: Usage,
    outcome: StreamOutcome,
}

impl ChatStream {
    pub fn new(ctx: &ResponseContext<'_>, include_usage: bool) -> ChatStream {
        ChatStream {
            decoder: EventStreamDecoder::new(),
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
            forced: ctx.forced_json_tool.map(str::to_string),
            blocks: HashMap::new(),
            tools: 0,
            started: false,
            stop: None,
            usage: Usage::default(),
            outcome: StreamOutcome::Open,
        }
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.started = true;
            out.push(
                self.chunks
                    .delta(json!({"role": "assistant", "content": ""}), None),
            );
        }
    }

    fn fail(&mut self, kind: &str, msg: &str, out: &mut Vec<Bytes>) {
        out.push(ChunkBuilder::error(msg, "server_error", Some(kind)));
        self.outcome = StreamOutcome::Failed {
            kind: kind.into(),
            message: msg.into(),
        };
    }

    fn complete(&mut self, out: &mut Vec<Bytes>) {
        let forced_only =
            self.tools == 0 && self.blocks.values().any(|b| matches!(b, Block::Forced));
        out.push(self.chunks.delta(
            json!({}),
            Some(finish_reason(
                self.stop.as_deref().unwrap_or("end_turn"),
                forced_only,
            )),
        ));
        if self.include_usage {
            out.push(self.chunks.usage(&self.usage));
        }
        out.push(ChunkBuilder::done());
        self.outcome = StreamOutcome::Completed;
    }

    fn frame(&mut self, f: crate::eventstream::Frame, out: &mut Vec<Bytes>) {
        if self.outcome != StreamOutcome::Open {
            return;
        }
        match f.header(":message-type") {
            Some("exception") => {
                let kind = f
                    .header(":exception-type")
                    .unwrap_or("exception")
                    .to_string();
                let v: Value = serde_json::from_slice(&f.payload).unwrap_or_default();
                let msg = v
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("Bedrock reported an error")
                    .to_string();
                return self.fail(&kind, &msg, out);
            }
            Some("error") => {
                let kind = f.header(":error-code").unwrap_or("error").to_string();
                let msg = f
                    .header(":error-message")
                    .unwrap_or("Bedrock reported an error")
                    .to_string();
                return self.fail(&kind, &msg, out);
            }
            _ => {}
        }
        let v: Value = serde_json::from_slice(&f.payload).unwrap_or_default();
        let idx = v
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match f.header(":event-type").unwrap_or("") {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                self.start(out);
                if let Some(tu) = v.pointer("/start/toolUse") {
                    let name = tu.get("name").and_then(Value::as_str).unwrap_or("");
                    if self.forced.as_deref() == Some(name) {
                        self.blocks.insert(idx, Block::Forced);
                    } else {
                        let k = self.tools;
                        self.tools += 1;
                        self.blocks.insert(idx, Block::Tool(k));
                        out.push(self.chunks.delta(json!({"tool_calls": [{"index": k, "id": tu.get("toolUseId"), "type": "function", "function": {"name": name, "arguments": ""}}]}), None));
                    }
                }
            }
            "contentBlockDelta" => {
                self.start(out);
                let d = v.get("delta").cloned().unwrap_or_default();
                if let Some(t) = d
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    out.push(self.chunks.delta(json!({"content": t}), None));
                } else if let Some(frag) = d
                    .pointer("/toolUse/input")
                    .and_then(Value::as_str)
                    .filter(|f| !f.is_empty())
                {
                    match self.blocks.get(&idx) {
                        Some(Block::Tool(k)) => {
                            let k = *k;
                            out.push(self.chunks.delta(json!({"tool_calls": [{"index": k, "function": {"arguments": frag}}]}), None));
                        }
                        Some(Block::Forced) => {
                            out.push(self.chunks.delta(json!({"content": frag}), None))
                        }
                        None => {}
                    }
                } else if let Some(r) = d.pointer("/reasoningContent/text").and_then(Value::as_str)
                {
                    out.push(self.chunks.delta(json!({"reasoning_content": r}), None));
                }
            }
            "messageStop" => {
                self.stop = v
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }
            "metadata" => {
                if let Some(u) = v.get("usage") {
                    self.usage = usage_of(u);
                }
                if self.stop.is_some() {
                    self.start(out);
                    self.complete(out);
                }
            }
            _ => {}
        }
    }
}

impl StreamTranslator for ChatStream {
    fn push(&mut self, input: &[u8], out: &mut Vec<Bytes>) {
        if self.outcome != StreamOutcome::Open {
            return;
        }
        let mut frames = Vec::new();
        let res = self.decoder.push(input, &mut frames);
        for f in frames {
            self.frame(f, out);
        }
        if let Err(e) = res
            && self.outcome == StreamOutcome::Open
        {
            self.fail("invalid_frame", &e.to_string(), out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.outcome != StreamOutcome::Open {
            return;
        }
        if self.stop.is_some() && !self.decoder.has_partial() {
            // messageStop arrived but no metadata: complete without usage.
            self.start(out);
            self.complete(out);
        } else {
            self.fail(
                "stream_truncated",
                "The provider's stream ended before it was complete.",
                out,
            );
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
    use crate::eventstream::{event, exception};

    fn stream() -> Vec<u8> {
        let mut s = Vec::new();
        for (t, p) in [
            ("messageStart", r#"{"role":"assistant","p":"ab"}"#),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"Let me check."}}"#,
            ),
            ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            (
                "contentBlockStart",
                r#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_1","name":"w"}}}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"c\":"}}}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"P\"}"}}}"#,
            ),
            ("contentBlockStop", r#"{"contentBlockIndex":1}"#),
            ("messageStop", r#"{"stopReason":"tool_use"}"#),
            (
                "metadata",
                r#"{"usage":{"inputTokens":30,"outputTokens":20,"totalTokens":50},"metrics":{"latencyMs":812}}"#,
            ),
        ] {
            s.extend_from_slice(&event(t, p));
        }
        s
    }

    fn run(bytes: &[u8], cut: usize) -> (String, ChatStream) {
        let mut s = ChatStream::new(
            &ResponseContext {
                model: "claude-sonnet-4-5",
                created: 3,
                forced_json_tool: None,
            },
            true,
        );
        let mut out = Vec::new();
        for p in bytes.chunks(cut) {
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
    fn edge_20_usage_after_message_stop_and_tool_index_from_zero() {
        for cut in [1, 7, 160, 100_000] {
            let (text, s) = run(&stream(), cut);
            assert_eq!(s.outcome(), StreamOutcome::Completed);
            assert!(text.contains("\"tool_calls\":[{\"function\":{\"arguments\":\"\",\"name\":\"w\"},\"id\":\"tooluse_1\",\"index\":0,\"type\":\"function\"}]") || text.contains("\"index\":0"));
            assert!(text.contains("\"finish_reason\":\"tool_calls\""));
            let usage_pos = text.find("\"prompt_tokens\":30").unwrap();
            assert!(usage_pos < text.find("[DONE]").unwrap());
        }
    }

    #[test]
    fn edge_18_exception_frames_are_errors() {
        let mut b = event("messageStart", r#"{"role":"assistant"}"#).to_vec();
        b.extend_from_slice(&exception("throttlingException", "Too many requests"));
        let (text, s) = run(&b, 11);
        assert!(
            matches!(s.outcome(), StreamOutcome::Failed { ref kind, .. } if kind == "throttlingException")
        );
        assert!(text.contains("Too many requests") && !text.contains("[DONE]"));
        let (_, s) = run(&stream()[..200], 13);
        assert!(matches!(s.outcome(), StreamOutcome::Failed { .. }));
    }
}
