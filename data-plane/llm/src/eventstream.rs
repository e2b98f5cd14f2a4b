//! AWS event-stream binary framing (Bedrock ConverseStream), decoded incrementally with the
//! maintained `aws-smithy-eventstream` codec (prelude and message CRC32 checks, size limits),
//! and encoded for test fakes.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

impl Frame {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event-stream frame: {0}")]
pub struct FrameError(pub String);

#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    buf: BytesMut,
    decoder: MessageFrameDecoder,
    failed: bool,
}

impl EventStreamDecoder {
    pub fn new() -> EventStreamDecoder {
        EventStreamDecoder::default()
    }

    /// Feeds bytes; appends every complete message. After an error the decoder stays failed
    /// (framing is lost; the stream cannot be trusted any more).
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), FrameError> {
        if self.failed {
            return Err(FrameError("decoder already failed".into()));
        }
        self.buf.extend_from_slice(bytes);
        loop {
            match self.decoder.decode_frame(&mut self.buf) {
                Ok(DecodedFrame::Complete(m)) => out.push(to_frame(&m)),
                Ok(DecodedFrame::Incomplete) => return Ok(()),
                Err(e) => {
                    self.failed = true;
                    return Err(FrameError(e.to_string()));
                }
            }
        }
    }

    /// Bytes left over that never formed a message.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

fn to_frame(m: &Message) -> Frame {
    let headers = m
        .headers()
        .iter()
        .map(|h| {
            let v = match h.value() {
                HeaderValue::String(s) => s.as_str().to_string(),
                HeaderValue::Bool(b) => b.to_string(),
                HeaderValue::Int32(n) => n.to_string(),
                HeaderValue::Int64(n) => n.to_string(),
                other => format!("{other:?}"),
            };
            (h.name().as_str().to_string(), v)
        })
        .collect();
    Frame {
        headers,
        payload: m.payload().clone(),
    }
}

/// Encodes one message with string headers (for fakes and tests).
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut m = Message::new(Bytes::copy_from_slice(payload));
    for (k, v) in headers {
        m = m.add_header(Header::new(
            k.to_string(),
            HeaderValue::String(v.to_string().into()),
        ));
    }
    let mut out = Vec::new();
    // Writing to a Vec cannot fail except for oversized headers, which tests do not build.
    let _ = write_message_to(&m, &mut out);
    Bytes::from(out)
}

/// An event message as Bedrock sends it.
pub fn event(event_type: &str, payload: &str) -> Bytes {
    encode(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.as_bytes(),
    )
}

/// An exception message as Bedrock sends it mid-stream.
pub fn exception(exception_type: &str, message: &str) -> Bytes {
    let payload = serde_json::json!({ "message": message }).to_string();
    encode(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let clean: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The worked example of the wire-format sheet (§5.5).
    const WORKED: &str = "0000009f 00000057 c37babff \
        0b 3a6576656e742d74797065 07 0011 636f6e74656e74426c6f636b44656c7461 \
        0d 3a636f6e74656e742d74797065 07 0010 6170706c69636174696f6e2f6a736f6e \
        0d 3a6d6573736167652d74797065 07 0005 6576656e74 \
        7b22636f6e74656e74426c6f636b496e646578223a302c2264656c7461223a7b2274657874223a224869227d2c2270223a2261626364227d \
        f2ace5ff";

    #[test]
    fn the_sheets_frames_decode() {
        let mut d = EventStreamDecoder::new();
        let mut out = Vec::new();
        d.push(&hex(WORKED), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].header(":event-type"), Some("contentBlockDelta"));
        assert_eq!(
            &out[0].payload[..],
            br#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"abcd"}"#
        );
        let mut out = Vec::new();
        EventStreamDecoder::new()
            .push(&hex("00000010 00000000 05c248eb 7d98c8ff"), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].payload.is_empty());
    }

    #[test]
    fn our_encoding_matches_the_sheet_and_bad_crcs_fail() {
        let enc = encode(
            &[
                (":event-type", "contentBlockDelta"),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            br#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"abcd"}"#,
        );
        assert_eq!(enc.to_vec(), hex(WORKED));
        let mut bad = hex(WORKED);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(
            EventStreamDecoder::new()
                .push(&bad, &mut Vec::new())
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_messages(cuts in proptest::collection::vec(1usize..40, 0..30)) {
            let mut all = Vec::new();
            for i in 0..5 {
                all.extend_from_slice(&event("contentBlockDelta", &format!("{{\"contentBlockIndex\":0,\"delta\":{{\"text\":\"{i}\"}}}}")));
            }
            let mut d = EventStreamDecoder::new();
            let mut out = Vec::new();
            let mut pos = 0;
            for c in cuts {
                let end = (pos + c).min(all.len());
                d.push(&all[pos..end], &mut out).unwrap();
                pos = end;
            }
            d.push(&all[pos..], &mut out).unwrap();
            prop_assert_eq!(out.len(), 5);
            prop_assert!(!d.has_partial());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = EventStreamDecoder::new().push(&bytes, &mut Vec::new());
        }
    }
}
