//! The interface every streaming translator implements: raw upstream bytes in, client-format
//! SSE bytes out, with usage and the stream's outcome read on the side.

use bytes::Bytes;

use crate::usage::Usage;

/// How a translated stream ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StreamOutcome {
    /// Still running (no terminal event seen yet).
    #[default]
    Open,
    /// The upstream sent its terminal event; the client got a complete stream.
    Completed,
    /// The upstream reported an error in-band (or closed early); the client got an error event.
    Failed { kind: String, message: String },
}

pub trait StreamTranslator: Send {
    /// Feeds the next bytes exactly as they came off the upstream connection (any chunking).
    /// Appends the client-format bytes to emit now to `out` (possibly nothing).
    fn push(&mut self, input: &[u8], out: &mut Vec<Bytes>);

    /// The upstream closed the connection. Appends the trailing bytes to `out`: the usage chunk
    /// and terminator on success, or an in-band error event when the upstream ended without its
    /// terminal event. After this, `outcome()` is never `Open`.
    fn finish(&mut self, out: &mut Vec<Bytes>);

    /// Usage reported so far (final once the stream is complete).
    fn usage(&self) -> Option<Usage>;

    fn outcome(&self) -> StreamOutcome;
}

/// Two translators in series: `first`'s output feeds `second` (e.g. Gemini → OpenAI chat →
/// Anthropic Messages for an Anthropic-format client of a Gemini model). Usage comes from
/// `first`, which reads it off the upstream; the outcome is `first`'s failure if it failed,
/// else `second`'s.
pub struct Chain {
    first: Box<dyn StreamTranslator>,
    second: Box<dyn StreamTranslator>,
    mid: Vec<Bytes>,
}

impl Chain {
    pub fn new(first: Box<dyn StreamTranslator>, second: Box<dyn StreamTranslator>) -> Self {
        Self {
            first,
            second,
            mid: Vec::new(),
        }
    }

    fn forward(&mut self, out: &mut Vec<Bytes>) {
        for chunk in self.mid.drain(..) {
            self.second.push(&chunk, out);
        }
    }
}

impl StreamTranslator for Chain {
    fn push(&mut self, input: &[u8], out: &mut Vec<Bytes>) {
        self.first.push(input, &mut self.mid);
        self.forward(out);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        self.first.finish(&mut self.mid);
        self.forward(out);
        self.second.finish(out);
    }

    fn usage(&self) -> Option<Usage> {
        self.first.usage()
    }

    fn outcome(&self) -> StreamOutcome {
        match self.first.outcome() {
            f @ StreamOutcome::Failed { .. } => f,
            _ => self.second.outcome(),
        }
    }
}
