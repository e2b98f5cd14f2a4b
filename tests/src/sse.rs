//! Reading SSE responses in tests.

use serde_json::Value;

/// The `data:` payloads of an SSE body, in order (`[DONE]` kept as a string).
pub fn data_events(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    for event in body.replace("\r\n", "\n").split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if !data.is_empty() {
            out.push(data.join("\n"));
        }
    }
    out
}

/// The JSON chunks of an OpenAI chat stream (without `[DONE]`).
pub fn chunks(body: &str) -> Vec<Value> {
    data_events(body)
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

/// Concatenated `delta.content` of a chat stream.
pub fn content(body: &str) -> String {
    chunks(body)
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}
