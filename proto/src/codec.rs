//! The gRPC codec of every service here: prost's messages, decoded from `Bytes`.
//!
//! `tonic_prost::ProstCodec` decodes from tonic's `DecodeBuf`, a view of the stream's `BytesMut`:
//! every field read ends in a call to `DecodeBuf::advance` and from there to
//! `BytesMut::advance_unchecked`, which the decode cannot inline. For the control plane's log
//! batches that was ≈2k of the ≈10k instructions of decoding a record (callgrind,
//! `bench/README.md`). Here the message's bytes are split off the stream's buffer first, as
//! `Bytes` (no copy), and decoded from that, whose `advance` is a pointer step; `bytes` fields
//! (the snapshot envelope's) still share the buffer rather than being copied. Encoding is
//! prost's, unchanged.

use bytes::Buf;
use prost::Message;
use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// prost messages over gRPC, decoded from `Bytes` (module docs).
#[derive(Debug, Clone)]
pub struct BytesCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for BytesCodec<T, U> {
    fn default() -> Self {
        BytesCodec(PhantomData)
    }
}

impl<T, U> Codec for BytesCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BytesDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder(PhantomData)
    }
}

/// Decodes `U` from the message's bytes split off as `Bytes` (module docs).
#[derive(Debug, Clone)]
pub struct BytesDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for BytesDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // The whole message, taken out of the stream's buffer whether or not it decodes, as
        // prost's decode would have consumed it.
        let bytes = buf.copy_to_bytes(buf.remaining());
        U::decode(bytes)
            .map(Some)
            // As tonic_prost maps a parse error: INTERNAL, per gRPC's status code guide.
            .map_err(|e| Status::internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{LogBatch, SnapshotEnvelope, UsageRecord};
    use tonic::codec::Streaming;

    /// Frames `msgs` as a gRPC stream (no compression) and decodes them with `BytesCodec`, the
    /// way a server reads a request stream.
    async fn decode_stream<U: Message + Default + Send + 'static>(
        frames: Vec<u8>,
    ) -> Vec<Result<U, Status>> {
        let body = http_body_util::Full::new(bytes::Bytes::from(frames));
        let mut codec = BytesCodec::<U, U>::default();
        let mut stream = Streaming::new_request(codec.decoder(), body, None, None);
        let mut out = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
        }
        out
    }

    fn frame(out: &mut Vec<u8>, payload: &[u8]) {
        out.push(0);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
    }

    /// Several messages in one stream decode to what was encoded, each from its own frame (a
    /// decoder that left bytes behind would garble the next), `bytes` fields included.
    #[tokio::test]
    async fn messages_decode_to_what_was_encoded_frame_after_frame() {
        let batches: Vec<LogBatch> = (0..3)
            .map(|i| LogBatch {
                batch_id: format!("b{i}"),
                node_id: "node-1".into(),
                records: (0..i + 1)
                    .map(|j| UsageRecord {
                        id: format!("r{i}-{j}"),
                        model: "gpt-4o".into(),
                        prompt_tokens: 7 * j as u64,
                        input_json: "é\u{1F600}".repeat(j + 1),
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect();
        let mut frames = Vec::new();
        for b in &batches {
            frame(&mut frames, &b.encode_to_vec());
        }
        let got: Vec<LogBatch> = decode_stream::<LogBatch>(frames)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got, batches);

        let env = SnapshotEnvelope {
            snapshot: bytes::Bytes::from(vec![7u8; 100_000]),
            ..Default::default()
        };
        let mut frames = Vec::new();
        frame(&mut frames, &env.encode_to_vec());
        frame(&mut frames, &env.encode_to_vec());
        let got = decode_stream::<SnapshotEnvelope>(frames).await;
        assert_eq!(got.len(), 2);
        for g in got {
            assert_eq!(g.unwrap(), env);
        }
    }

    /// A malformed message is an INTERNAL status, as with tonic_prost's codec.
    #[tokio::test]
    async fn a_malformed_message_is_an_internal_status() {
        let good = LogBatch {
            batch_id: "ok".into(),
            ..Default::default()
        };
        let mut frames = Vec::new();
        frame(&mut frames, &good.encode_to_vec());
        // Field 1 (batch_id), length-delimited, says 50 bytes and has 2.
        frame(&mut frames, &[0x0a, 50, b'a', b'b']);
        let got = decode_stream::<LogBatch>(frames).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap(), &good);
        let err = got[1].as_ref().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
        assert!(
            err.message().contains("buffer underflow"),
            "{}",
            err.message()
        );
    }
}
