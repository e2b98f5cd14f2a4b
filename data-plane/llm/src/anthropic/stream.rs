//! Anthropic SSE → OpenAI chunks (§3.9 state machine): one stable id and the requested model on
//! every chunk; tool-call indexes counted over tool_use blocks from 0 (edge 3); the `input: {}`
//! placeholder ignored (edge 2); `{}` emitted for a tool that got no arguments (edge 1);
//! cumulative output usage; one usage chunk before `[DONE]`; in-stream errors surfaced (edge 18).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::response::{finish_reason, usage_of};
use crate::openai::ChunkBuilder;
use crate::sse::{SseDecoder, SseEvent};
use crate::stream::{StreamOutcome, StreamTranslator};
use crate::translate::ResponseContext;
use crate::usage::Usage;

#[derive(Debug)]
enum Block {
    Text,
    Thinking,
    Tool { index: usize, got_args: bool },
    ForcedJson,
    Other,
}

pub struct ChatStream {
    sse: SseDecoder,
    chunks: ChunkBuilder,
    include_usage: bool,
    forced: Option<String>,
    blocks: HashMap<u64, Block>,
    tools: usize,
    started: bool,
    usage: Usage,
    finish: Option<&'static str>,
    outcome: StreamOutcome,
}

impl ChatStream {
    pub fn new(ctx: &ResponseContext<'_>, include_usage: bool) -> ChatStream {
        ChatStream {
            sse: SseDecoder::new(),
            chunks: ChunkBuilder {
                id: format!(
                    "chatcmpl-{}",
                    crate::translate::stable_id("", &format!("{}{}", ctx.model, ctx.created))
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
            usage: Usage::default(),
            finish: None,
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

    fn fail(&mut self, kind: &str, message: &str, out: &mut Vec<Bytes>) {
        out.push(ChunkBuilder::error(message, "server_error", Some(kind)));
        self.outcome = StreamOutcome::Failed {
            kind: kind.into(),
            message: message.into(),
        };
    }

    fn event(&mut self, ev: SseEvent, out: &mut Vec<Bytes>) {
        if self.outcome != StreamOutcome::Open {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            return;
        };
        let t = v
            .get("type")
            .and_then(Value::as_str)
            .or(ev.event.as_deref())
            .unwrap_or("");
        match t {
            "message_start" => {
                if let Some(m) = v.get("message") {
                    if let Some(id) = m.get("id").and_then(Value::as_str) {
                        self.chunks.id = format!("chatcmpl-{id}");
                    }
                    if let Some(u) = m.get("usage") {
                        self.usage = usage_of(u);
                    }
                }
                self.start(out);
            }
            "content_block_start" => {
                self.start(out);
                let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let b = v.get("content_block").cloned().unwrap_or_default();
                let block = match b.get("type").and_then(Value::as_str) {
                    Some("text") => Block::Text,
                    Some("thinking") => Block::Thinking,
                    Some("tool_use")
                        if self.forced.as_deref() == b.get("name").and_then(Value::as_str) =>
                    {
                        Block::ForcedJson
                    }
                    Some("tool_use") => {
                        let index = self.tools;
                        self.tools += 1;
                        // The `input: {}` of the start event is a placeholder, never a fragment.
                        out.push(self.chunks.delta(json!({"tool_calls": [{"index": index, "id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": ""}}]}), None));
                        Block::Tool {
                            index,
                            got_args: false,
                        }
                    }
                    _ => Block::Other,
                };
                self.blocks.insert(idx, block);
            }
            "content_block_delta" => {
                let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let d = v.get("delta").cloned().unwrap_or_default();
                let dt = d.get("type").and_then(Value::as_str).unwrap_or("");
                match (self.blocks.get_mut(&idx), dt) {
                    (_, "text_delta") => {
                        let text = d.get("text").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            out.push(self.chunks.delta(json!({"content": text}), None));
                        }
                    }
                    (_, "thinking_delta") => out.push(
                        self.chunks
                            .delta(json!({"reasoning_content": d.get("thinking")}), None),
                    ),
                    (Some(Block::Tool { index, got_args }), "input_json_delta") => {
                        let frag = d.get("partial_json").and_then(Value::as_str).unwrap_or("");
                        if !frag.is_empty() {
                            *got_args = true;
                            let index = *index;
                            out.push(self.chunks.delta(json!({"tool_calls": [{"index": index, "function": {"arguments": frag}}]}), None));
                        }
                    }
                    (Some(Block::ForcedJson), "input_json_delta") => {
                        let frag = d.get("partial_json").and_then(Value::as_str).unwrap_or("");
                        if !frag.is_empty() {
                            out.push(self.chunks.delta(json!({"content": frag}), None));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(Block::Tool {
                    index,
                    got_args: false,
                }) = self.blocks.get(&idx)
                {
                    let index = *index;
                    out.push(self.chunks.delta(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": "{}"}}]}),
                        None,
                    ));
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    let latest = usage_of(u);
                    self.usage.completion_tokens = latest.completion_tokens;
                    if u.get("input_tokens").is_some() {
                        self.usage.prompt_tokens = latest.prompt_tokens;
                        self.usage.cached_tokens = latest.cached_tokens;
                        self.usage.cache_write_tokens = latest.cache_write_tokens;
                    }
                }
                if let Some(s) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    let forced_only = self.tools == 0
                        && self.blocks.values().any(|b| matches!(b, Block::ForcedJson));
                    self.finish = Some(finish_reason(s, forced_only));
                }
            }
            "message_stop" => {
                self.start(out);
                out.push(
                    self.chunks
                        .delta(json!({}), Some(self.finish.unwrap_or("stop"))),
                );
                if self.include_usage {
                    out.push(self.chunks.usage(&self.usage));
                }
                out.push(ChunkBuilder::done());
                self.outcome = StreamOutcome::Completed;
            }
            "error" => {
                let kind = v
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .unwrap_or("api_error")
                    .to_string();
                let msg = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("the provider reported an error")
                    .to_string();
                self.fail(&kind, &msg, out);
            }
            _ => {}
        }
    }
}

impl StreamTranslator for ChatStream {
    fn push(&mut self, input: &[u8], out: &mut Vec<Bytes>) {
        let mut events = Vec::new();
        self.sse.push(input, &mut events);
        for e in events {
            self.event(e, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        let mut events = Vec::new();
        self.sse.finish(&mut events);
        for e in events {
            self.event(e, out);
        }
        if self.outcome == StreamOutcome::Open {
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

    pub const STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":5}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me check. é\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_A\",\"name\":\"w\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"c\\\": \\\"Pa\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ris\\\"}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_B\",\"name\":\"noargs\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":57}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    fn run(input: &str, cut: usize) -> (Vec<Value>, ChatStream) {
        let ctx = ResponseContext {
            model: "claude-sonnet-4-5",
            created: 7,
            forced_json_tool: None,
        };
        let mut s = ChatStream::new(&ctx, true);
        let mut out = Vec::new();
        for piece in input.as_bytes().chunks(cut) {
            s.push(piece, &mut out);
        }
        s.finish(&mut out);
        let text: String = out
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        let chunks = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        (chunks, s)
    }

    #[test]
    fn edge_01_02_03_tool_indexes_placeholders_and_empty_args() {
        for cut in [1, 3, 17, 10_000] {
            let (chunks, s) = run(STREAM, cut);
            assert_eq!(s.outcome(), StreamOutcome::Completed);
            assert!(
                chunks
                    .iter()
                    .all(|c| c["id"] == "chatcmpl-msg_1" && c["model"] == "claude-sonnet-4-5"),
                "one id and the requested model on every chunk"
            );
            let mut args: HashMap<u64, String> = HashMap::new();
            for c in &chunks {
                for tc in c
                    .pointer("/choices/0/delta/tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    args.entry(tc["index"].as_u64().unwrap())
                        .or_default()
                        .push_str(
                            tc.pointer("/function/arguments")
                                .and_then(Value::as_str)
                                .unwrap_or(""),
                        );
                }
            }
            assert_eq!(
                args.len(),
                2,
                "indexes 0 and 1, not the block indexes 1 and 2"
            );
            assert_eq!(
                args[&0], "{\"c\": \"Paris\"}",
                "the {{}} placeholder is not a fragment"
            );
            assert_eq!(args[&1], "{}", "no-argument tools get {{}}");
            let text: String = chunks
                .iter()
                .filter_map(|c| {
                    c.pointer("/choices/0/delta/content")
                        .and_then(Value::as_str)
                })
                .collect();
            assert_eq!(text, "Let me check. é");
            let finish = chunks
                .iter()
                .rev()
                .find_map(|c| {
                    c.pointer("/choices/0/finish_reason")
                        .and_then(Value::as_str)
                })
                .unwrap();
            assert_eq!(finish, "tool_calls");
            let usage = chunks.last().unwrap();
            assert_eq!(usage["choices"], json!([]));
            assert_eq!(
                (
                    usage["usage"]["prompt_tokens"].as_u64(),
                    usage["usage"]["completion_tokens"].as_u64()
                ),
                (Some(30), Some(57))
            );
        }
    }

    #[test]
    fn edge_18_errors_after_the_200_are_surfaced() {
        let input = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let (chunks, s) = run(input, 5);
        assert!(
            matches!(s.outcome(), StreamOutcome::Failed { ref kind, .. } if kind == "overloaded_error")
        );
        assert_eq!(chunks.last().unwrap()["error"]["message"], "Overloaded");
        let (_, s) = run(&STREAM[..STREAM.len() / 2], 7);
        assert!(
            matches!(s.outcome(), StreamOutcome::Failed { .. }),
            "a stream that just stops is a failure"
        );
    }
}
