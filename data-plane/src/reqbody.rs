//! A request's JSON body, read without building the document when nothing needs it.
//!
//! Every call reads a handful of top-level fields (`model`, `stream`, `stream_options`, and
//! `temperature`/`seed` for the cache's rule); a same-format call then forwards the client's
//! bytes as they are. Building the whole document (`serde_json::Value`: a map per object, a
//! string per string) was ≈4 % of a node's CPU under load in `perf record`, for a document
//! nothing read. So the body is parsed once into its [`Head`] — those fields, with every other
//! value checked exactly as the document parser checks it but not kept — and the document is
//! built on first use ([`RequestBody::doc`]): translation, vendor quirks, rewriting the model,
//! the cache key, a payload log that cannot use the bytes as they are.
//!
//! Accepted and refused bodies are the same as with a full parse: the same parser reads every
//! value (numbers converted, strings unescaped and checked), a repeated key keeps its last value
//! as the document does, and a body that is not an object is refused with the same messages.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use llm::accept_scalars;
use llm::jsoncheck::Check;
use llm::vendor::RequestKeys;

use crate::error::ProxyError;

/// Read access to a request's top-level fields, from a parsed document or a [`RequestBody`].
pub trait Fields {
    fn field(&self, name: &str) -> Option<&Value>;
}

impl Fields for Value {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// The fields every call reads (absent when the body does not have them), and a sketch of the
/// body's keys for the vendor-quirk check (`llm::vendor::RequestKeys`).
#[derive(Debug, Default)]
struct Head {
    model: Option<Value>,
    stream: Option<Value>,
    stream_options: Option<Value>,
    temperature: Option<Value>,
    seed: Option<Value>,
    /// One bit per top-level key (`key_bit`): a key's bit is set when the body has it; a set
    /// bit may also come from another key.
    keys: u64,
    /// The same for the keys of the objects in `messages`.
    message_keys: u64,
}

/// A key's bit in a sketch (FNV-1a, folded to 0..64).
fn key_bit(key: &str) -> u64 {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    1 << (h % 64)
}

impl Head {
    fn slot(&self, name: &str) -> Option<&Option<Value>> {
        Some(match name {
            "model" => &self.model,
            "stream" => &self.stream,
            "stream_options" => &self.stream_options,
            "temperature" => &self.temperature,
            "seed" => &self.seed,
            _ => return None,
        })
    }

    fn of(doc: &Value) -> Head {
        let get = |k: &str| doc.get(k).cloned();
        let sketch = |o: &serde_json::Map<String, Value>| o.keys().fold(0, |b, k| b | key_bit(k));
        Head {
            model: get("model"),
            stream: get("stream"),
            stream_options: get("stream_options"),
            temperature: get("temperature"),
            seed: get("seed"),
            keys: doc.as_object().map_or(0, sketch),
            message_keys: doc
                .get("messages")
                .and_then(Value::as_array)
                .map_or(0, |m| {
                    m.iter()
                        .filter_map(Value::as_object)
                        .fold(0, |b, o| b | sketch(o))
                }),
        }
    }
}

pub struct RequestBody {
    raw: Bytes,
    head: Head,
    doc: OnceLock<Value>,
}

impl RequestBody {
    /// Checks that `raw` is one JSON object and reads its head; errors are the client's (400).
    pub fn parse(raw: Bytes) -> Result<RequestBody, ProxyError> {
        let starts_object = raw
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            == Some(&b'{');
        if !starts_object {
            // Valid JSON that is not an object, or not JSON at all: the same answers as a full
            // parse gives.
            read(&raw, Check).map_err(invalid_json)?;
            return Err(not_an_object());
        }
        let head = read(&raw, HeadVisitor).map_err(invalid_json)?;
        Ok(RequestBody {
            raw,
            head,
            doc: OnceLock::new(),
        })
    }

    /// A body built by the proxy itself: `raw` is the JSON of `doc`.
    pub fn from_doc(raw: Bytes, doc: Value) -> RequestBody {
        RequestBody {
            raw,
            head: Head::of(&doc),
            doc: OnceLock::from(doc),
        }
    }

    /// The body's bytes, as they arrived.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The whole document, built on first use.
    pub fn doc(&self) -> Result<&Value, ProxyError> {
        if let Some(v) = self.doc.get() {
            return Ok(v);
        }
        // `parse` already read every value with the same parser, so this does not fail; the
        // error path stays a client error rather than a panic.
        let v = serde_json::from_slice::<Value>(&self.raw).map_err(invalid_json)?;
        Ok(self.doc.get_or_init(|| v))
    }

    /// Whether the document has been built (tests check the fast path keeps it unbuilt).
    pub fn doc_built(&self) -> bool {
        self.doc.get().is_some()
    }

    /// The JSON text to log for this body (`payload::log_text`): its bytes when they can be
    /// logged as they are, otherwise the document, redacted and bounded.
    pub fn log_text(&self) -> String {
        if let Some(text) = crate::payload::as_is(&self.raw) {
            return text;
        }
        match self.doc() {
            Ok(v) => crate::payload::log_text(None, v),
            Err(_) => String::new(),
        }
    }
}

/// Answers from the sketch: may say a key is there when it is not (the caller then checks the
/// document), never the reverse.
impl RequestKeys for RequestBody {
    fn has(&self, key: &str) -> bool {
        self.head.keys & key_bit(key) != 0
    }

    fn message_has(&self, key: &str) -> bool {
        self.head.message_keys & key_bit(key) != 0
    }
}

impl Fields for RequestBody {
    fn field(&self, name: &str) -> Option<&Value> {
        match self.head.slot(name) {
            Some(slot) => slot.as_ref(),
            None => self.doc().ok()?.get(name),
        }
    }
}

fn invalid_json(e: serde_json::Error) -> ProxyError {
    ProxyError::bad_request(
        "invalid_json",
        format!("We could not parse the JSON body of your request: {e}"),
    )
}

fn not_an_object() -> ProxyError {
    ProxyError::bad_request("invalid_json", "The request body must be a JSON object.")
}

/// Reads all of `raw` with `seed`, as `serde_json::from_slice` reads a type (text after the
/// value is an error).
fn read<'de, S: DeserializeSeed<'de>>(raw: &'de [u8], seed: S) -> serde_json::Result<S::Value> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Reads an object into its `Head`.
struct HeadVisitor;

impl<'de> DeserializeSeed<'de> for HeadVisitor {
    type Value = Head;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Head, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeadVisitor {
    type Value = Head;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Head, A::Error> {
        let mut head = Head::default();
        // Borrowed when the key has no escapes (the usual case): no allocation per key.
        while let Some(key) = map.next_key::<Key<'de>>()? {
            head.keys |= key_bit(&key.0);
            let slot = match key.0.as_ref() {
                "model" => &mut head.model,
                "stream" => &mut head.stream,
                "stream_options" => &mut head.stream_options,
                "temperature" => &mut head.temperature,
                "seed" => &mut head.seed,
                "messages" => {
                    map.next_value_seed(MessageKeys {
                        sketch: &mut head.message_keys,
                        element: false,
                    })?;
                    continue;
                }
                _ => {
                    map.next_value_seed(Check)?;
                    continue;
                }
            };
            // The last of repeated keys wins, as in the document.
            *slot = Some(map.next_value::<Value>()?);
        }
        Ok(head)
    }
}

/// An object key, borrowed from the body when it has no escapes (serde's own `Cow<str>` always
/// copies).
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads `messages` (`Messages`) or one of its elements (`Message`), checking every value as
/// `Check` does and noting in the sketch the keys of the objects that are elements of a
/// `messages` array.
struct MessageKeys<'a> {
    sketch: &'a mut u64,
    element: bool,
}

impl<'de> DeserializeSeed<'de> for MessageKeys<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessageKeys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    accept_scalars!(());
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.element {
            return Check.visit_seq(seq);
        }
        while seq
            .next_element_seed(MessageKeys {
                sketch: &mut *self.sketch,
                element: true,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if !self.element {
            return Check.visit_map(map);
        }
        while let Some(key) = map.next_key::<Key<'de>>()? {
            *self.sketch |= key_bit(&key.0);
            map.next_value_seed(Check)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the whole document, built as the proxy built it before bodies were read
    /// lazily.
    fn full(raw: &str) -> Result<Value, ProxyError> {
        let v: Value = serde_json::from_slice(raw.as_bytes()).map_err(invalid_json)?;
        if !v.is_object() {
            return Err(not_an_object());
        }
        Ok(v)
    }

    fn lazy(raw: &str) -> Result<RequestBody, ProxyError> {
        RequestBody::parse(Bytes::copy_from_slice(raw.as_bytes()))
    }

    /// The lazy reading accepts and refuses exactly what the full parse does, with the same
    /// messages, and reads the same field values.
    #[test]
    fn accepts_and_refuses_what_a_full_parse_does() {
        let cases = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            r#"  {"model":"a","model":"b","stream":true,"stream":false}  "#,
            r#"{"model":"m","x":"\u00e9\ud83d\ude00","n":[1,-2,3.5e10,null,{"k":[]}]}"#,
            r#"{"m\u006fdel":"escaped key","seed":7,"temperature":0}"#,
            r#"{"model":"m","stream_options":{"include_usage":true},"temperature":0.0}"#,
            r#"{"model":"m","big":1e400}"#,
            r#"{"model":"m","bad":"\ud800"}"#,
            r#"{"model":"m","bad":"\x"}"#,
            r#"{"model":"m","n":01}"#,
            r#"{"model":"m",}"#,
            r#"{"model":"m"} trailing"#,
            r#"{"model":"m""#,
            r#"[1,2]"#,
            r#""just a string""#,
            "",
            "not json",
            r#"{"deep":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
        ];
        let mut accepted = 0;
        let mut refused = 0;
        for raw in cases {
            match (full(raw), lazy(raw)) {
                (Ok(doc), Ok(body)) => {
                    accepted += 1;
                    for name in ["model", "stream", "stream_options", "temperature", "seed"] {
                        assert_eq!(body.field(name), doc.get(name), "{raw}: field {name}");
                    }
                    assert!(!body.doc_built(), "{raw}: head fields built the document");
                    assert_eq!(body.field("messages"), doc.get("messages"), "{raw}");
                    assert_eq!(body.doc().unwrap(), &doc, "{raw}");
                }
                (Err(a), Err(b)) => {
                    refused += 1;
                    assert_eq!(
                        (a.status, a.code.as_deref(), &a.message),
                        (b.status, b.code.as_deref(), &b.message),
                        "{raw}"
                    );
                }
                (a, b) => panic!(
                    "{raw}: full parse {:?}, lazy {:?}",
                    a.map(|_| ()).map_err(|e| e.message),
                    b.map(|_| ()).map_err(|e| e.message)
                ),
            }
        }
        assert_eq!((accepted, refused), (5, 12));
    }

    /// The key sketch never misses a key the document has, so no vendor quirk is skipped; and a
    /// plain chat request is ruled out for OpenAI's quirks without building the document.
    #[test]
    fn the_key_sketch_never_hides_a_quirk() {
        let bodies = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi","name":"bob"}]}"#,
            r#"{"model":"m","messages":[{"role":"assistant","content":"x","reasoning_content":"r"}]}"#,
            r#"{"model":"m","messages":"not a list","stream_options":{}}"#,
            r#"{"model":"m","messages":[1,[{"name":"nested, not a message"}],{"n\u0061me":"x"}]}"#,
            r#"{"model":"m","max_completion_tokens":5,"store":true,"logit_bias":{},"seed":1}"#,
            r#"{"model":"m","messages":[{"name":"a"}],"messages":[{"role":"user"}]}"#,
        ];
        let mut would_apply = 0;
        for raw in bodies {
            let body = lazy(raw).unwrap();
            let doc: Value = serde_json::from_str(raw).unwrap();
            let built = RequestBody::from_doc(Bytes::from(raw), doc.clone());
            for p in llm::vendor::PRESETS {
                if p.quirks.applies(&doc) {
                    would_apply += 1;
                    assert!(p.quirks.applies(&body), "{raw}: {}", p.provider_type);
                    assert!(p.quirks.applies(&built), "{raw}: {}", p.provider_type);
                }
            }
            assert!(!body.doc_built());
        }
        assert!(
            would_apply >= 5,
            "the bodies exercise the quirks: {would_apply}"
        );
        let openai = llm::vendor::preset("openai").unwrap();
        assert!(!openai.quirks.applies(&lazy(bodies[0]).unwrap()));
    }

    #[test]
    fn a_body_built_by_the_proxy_reads_its_fields_from_the_document() {
        let doc = serde_json::json!({"model": "m", "stream": true, "extra": 1});
        let body = RequestBody::from_doc(Bytes::from(doc.to_string()), doc.clone());
        assert_eq!(body.field("model"), Some(&Value::from("m")));
        assert_eq!(body.field("stream"), Some(&Value::Bool(true)));
        assert_eq!(body.field("extra"), Some(&Value::from(1)));
        assert_eq!(body.field("seed"), None);
        assert_eq!(body.doc().unwrap(), &doc);
    }

    #[test]
    fn log_text_uses_the_bytes_when_it_can() {
        let raw = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let body = lazy(raw).unwrap();
        assert_eq!(body.log_text(), raw);
        assert!(!body.doc_built());
    }
}
