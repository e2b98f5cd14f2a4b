//! Pure LLM wire formats: the OpenAI dialect the proxy speaks to clients, the native formats it
//! forwards to (Anthropic, Gemini, Bedrock), the translators between them, stream codecs (SSE,
//! AWS event-stream), the vendor presets and the model catalog. No IO lives here, so everything
//! can be snapshot-tested and fuzzed.

pub mod anthropic;
pub mod bedrock;
pub mod catalog;
pub mod error;
pub mod eventstream;
pub mod gemini;
pub mod jsoncheck;
pub mod openai;
pub mod sse;
pub mod stream;
pub mod translate;
pub mod usage;
pub mod vendor;

pub use catalog::{Catalog, Flavor, Format, ModelSpec};
pub use error::TranslateError;
pub use stream::{StreamOutcome, StreamTranslator};
pub use usage::Usage;
