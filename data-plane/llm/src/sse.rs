//! Incremental Server-Sent Events decoding (WHATWG rules as the wire-format sheet §0.2 lists
//! them): `\n`, `\r\n` and `\r` line ends (also split across reads), comments ignored, several
//! `data:` lines joined with `\n`, one optional space after the colon stripped, UTF-8 decoded
//! only on complete lines, and a bound on an event's size.

use bytes::Bytes;

/// Largest event accepted (bytes); a larger one is dropped whole.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a leading `\n` belongs to that line end.
    pending_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    size: usize,
    oversized: bool,
}

impl SseDecoder {
    pub fn new() -> SseDecoder {
        SseDecoder::default()
    }

    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) {
        let mut rest = bytes;
        if self.pending_cr && !rest.is_empty() {
            self.pending_cr = false;
            if let Some(b'\n') = rest.first() {
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            match rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
                Some(i) => {
                    self.extend_line(&rest[..i]);
                    let cr = rest[i] == b'\r';
                    rest = &rest[i + 1..];
                    if cr {
                        match rest.first() {
                            Some(b'\n') => rest = &rest[1..],
                            None => self.pending_cr = true,
                            _ => {}
                        }
                    }
                    self.end_line(out);
                }
                None => {
                    self.extend_line(rest);
                    break;
                }
            }
        }
    }

    /// The stream ended: a last event without its blank line is still delivered.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.line.is_empty() {
            self.end_line(out);
        }
        self.dispatch(out);
    }

    fn extend_line(&mut self, b: &[u8]) {
        if self.line.len() + b.len() + self.size > MAX_EVENT_BYTES {
            self.oversized = true;
            self.line.clear();
            return;
        }
        self.line.extend_from_slice(b);
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        self.size += line.len();
        let text = String::from_utf8_lossy(&line);
        if text.starts_with(':') {
            return;
        }
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&text[..], ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data && !self.oversized {
            out.push(SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            });
        }
        self.event = None;
        self.data.clear();
        self.has_data = false;
        self.size = 0;
        self.oversized = false;
    }
}

/// `data: <json>\n\n`
pub fn encode_data(json: &str) -> Bytes {
    let mut s = String::with_capacity(json.len() + 8);
    s.push_str("data: ");
    s.push_str(json);
    s.push_str("\n\n");
    Bytes::from(s)
}

/// `event: <name>\ndata: <json>\n\n`
pub fn encode_event(name: &str, json: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(input: &[u8], chunks: &[usize]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        for c in chunks {
            let end = (pos + c).min(input.len());
            d.push(&input[pos..end], &mut out);
            pos = end;
        }
        d.push(&input[pos..], &mut out);
        d.finish(&mut out);
        out
    }

    const SAMPLE: &str = "\n\n: keep-alive\nevent: message_start\ndata: {\"a\":1}\n\ndata: line1\r\ndata:line2\r\n\r\ndata: é€😀\r\r: OPENROUTER PROCESSING\n\ndata: [DONE]\n\n";

    #[test]
    fn decodes_the_sheets_rules() {
        let ev = all(SAMPLE.as_bytes(), &[]);
        assert_eq!(ev.len(), 4);
        assert_eq!(
            ev[0],
            SseEvent {
                event: Some("message_start".into()),
                data: "{\"a\":1}".into()
            }
        );
        assert_eq!(ev[1].data, "line1\nline2");
        assert_eq!(ev[2].data, "é€😀");
        assert_eq!(ev[3].data, "[DONE]");
        // A final event without its blank line.
        let ev = all(b"data: x", &[]);
        assert_eq!(ev[0].data, "x");
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_events(cuts in proptest::collection::vec(0usize..12, 0..40)) {
            prop_assert_eq!(all(SAMPLE.as_bytes(), &cuts), all(SAMPLE.as_bytes(), &[]));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), cuts in proptest::collection::vec(0usize..64, 0..20)) {
            let _ = all(&bytes, &cuts);
        }
    }
}
