//! Token usage normalised to OpenAI semantics (prompt includes cached and cache-write tokens,
//! completion includes reasoning tokens), whatever the provider reported.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::jsoncheck::Check;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// All input tokens, cached and cache-write included (OpenAI `prompt_tokens`).
    pub prompt_tokens: u64,
    /// All output tokens, reasoning included (OpenAI `completion_tokens`).
    pub completion_tokens: u64,
    /// Subset of `prompt_tokens` read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Subset of `prompt_tokens` written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// Subset of `completion_tokens` spent on reasoning.
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// The OpenAI `usage` object for this usage.
    pub fn to_openai_json(&self) -> serde_json::Value {
        let mut prompt_details = serde_json::json!({ "cached_tokens": self.cached_tokens });
        if self.cache_write_tokens > 0 {
            prompt_details["cache_write_tokens"] = self.cache_write_tokens.into();
        }
        serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens(),
            "prompt_tokens_details": prompt_details,
            "completion_tokens_details": { "reasoning_tokens": self.reasoning_tokens },
        })
    }

    /// Reads an OpenAI `usage` object (chat completions, completions or embeddings).
    /// Unknown or missing fields count as zero; absurd values (negative, fractional) are ignored.
    pub fn from_openai_json(v: &serde_json::Value) -> Option<Usage> {
        let obj = v.as_object()?;
        let n = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_u64).unwrap_or(0);
        // Responses API names its fields input/output tokens.
        let prompt = obj.get("prompt_tokens").or_else(|| obj.get("input_tokens"));
        let completion = obj
            .get("completion_tokens")
            .or_else(|| obj.get("output_tokens"));
        let pd = obj
            .get("prompt_tokens_details")
            .or_else(|| obj.get("input_tokens_details"));
        let cd = obj
            .get("completion_tokens_details")
            .or_else(|| obj.get("output_tokens_details"));
        Some(Usage {
            prompt_tokens: n(prompt),
            completion_tokens: n(completion),
            cached_tokens: n(pd.and_then(|d| d.get("cached_tokens"))),
            cache_write_tokens: n(pd.and_then(|d| d.get("cache_write_tokens"))),
            reasoning_tokens: n(cd.and_then(|d| d.get("reasoning_tokens"))),
        })
    }
}

/// An OpenAI `usage` value read straight from the JSON text: the same result as
/// [`Usage::from_openai_json`] on the parsed value, for every input, without building that value
/// (a same-format answer is otherwise never parsed into a document). Any JSON value is accepted
/// and fully checked; one that is not an object reads as `None`.
pub struct OpenAiUsage(pub Option<Usage>);

impl<'de> Deserialize<'de> for OpenAiUsage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(OpenAiUsage(
            Obj::<UsageFields>::deserialize(d)?
                .0
                .map(UsageFields::usage),
        ))
    }
}

/// The keys [`OpenAiUsage`] reads, at either level (a name in the wrong object is ignored).
enum Key {
    Prompt,
    Input,
    Completion,
    Output,
    PromptDetails,
    InputDetails,
    CompletionDetails,
    OutputDetails,
    Cached,
    CacheWrite,
    Reasoning,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<Key, E> {
                Ok(match k {
                    "prompt_tokens" => Key::Prompt,
                    "input_tokens" => Key::Input,
                    "completion_tokens" => Key::Completion,
                    "output_tokens" => Key::Output,
                    "prompt_tokens_details" => Key::PromptDetails,
                    "input_tokens_details" => Key::InputDetails,
                    "completion_tokens_details" => Key::CompletionDetails,
                    "output_tokens_details" => Key::OutputDetails,
                    "cached_tokens" => Key::Cached,
                    "cache_write_tokens" => Key::CacheWrite,
                    "reasoning_tokens" => Key::Reasoning,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// A value read as an object of `T`'s entries; any other value is read, checked and gives
/// `None` (as `Value::get` finds nothing in a non-object).
struct Obj<T>(Option<T>);

impl<'de, T: Entries> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjVisitor(std::marker::PhantomData))
            .map(Obj)
    }
}

struct ObjVisitor<T>(std::marker::PhantomData<T>);

/// An object's entries, read one at a time; a repeated key keeps its last value, as in a
/// parsed document.
trait Entries: Default {
    /// Reads the value of `key` if it is one of `self`'s (`false`: not read).
    fn entry<'de, A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<bool, A::Error>;
}

/// Reads and checks the elements of an array that is not one of the values looked for.
fn skip_seq<'de, A: SeqAccess<'de>, T>(mut seq: A) -> Result<Option<T>, A::Error> {
    while seq.next_element_seed(Check)?.is_some() {}
    Ok(None)
}

impl<'de, T: Entries> Visitor<'de> for ObjVisitor<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    crate::accept_scalars!(None);
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<T>, A::Error> {
        skip_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let mut t = T::default();
        while let Some(k) = map.next_key::<Key>()? {
            if !t.entry(k, &mut map)? {
                map.next_value_seed(Check)?;
            }
        }
        Ok(Some(t))
    }
}

/// A token count: a non-negative integer, and nothing otherwise (`Value::as_u64`).
struct Count(Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = Option<u64>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Option<u64>, E> {
                Ok(None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<u64>, A::Error> {
                skip_seq(seq)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<u64>, E> {
                Ok(Some(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<u64>, E> {
                Ok(u64::try_from(v).ok())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<u64>, A::Error> {
                Check.visit_map(map)?;
                Ok(None)
            }
        }
        d.deserialize_any(CountVisitor).map(Count)
    }
}

/// A `*_details` object's counts.
#[derive(Default)]
struct Details {
    cached: Option<u64>,
    cache_write: Option<u64>,
    reasoning: Option<u64>,
}

impl Entries for Details {
    fn entry<'de, A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<bool, A::Error> {
        let slot = match key {
            Key::Cached => &mut self.cached,
            Key::CacheWrite => &mut self.cache_write,
            Key::Reasoning => &mut self.reasoning,
            _ => return Ok(false),
        };
        *slot = map.next_value::<Count>()?.0;
        Ok(true)
    }
}

/// The usage object's entries. An outer `Some` means the key was present: a present
/// `prompt_tokens` is used even when it is not a count, as `get(..).or_else(..)` does.
#[derive(Default)]
struct UsageFields {
    prompt: Option<Option<u64>>,
    input: Option<Option<u64>>,
    completion: Option<Option<u64>>,
    output: Option<Option<u64>>,
    prompt_details: Option<Option<Details>>,
    input_details: Option<Option<Details>>,
    completion_details: Option<Option<Details>>,
    output_details: Option<Option<Details>>,
}

impl Entries for UsageFields {
    fn entry<'de, A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<bool, A::Error> {
        let details = match key {
            Key::PromptDetails => &mut self.prompt_details,
            Key::InputDetails => &mut self.input_details,
            Key::CompletionDetails => &mut self.completion_details,
            Key::OutputDetails => &mut self.output_details,
            _ => {
                let count = match key {
                    Key::Prompt => &mut self.prompt,
                    Key::Input => &mut self.input,
                    Key::Completion => &mut self.completion,
                    Key::Output => &mut self.output,
                    _ => return Ok(false),
                };
                *count = Some(map.next_value::<Count>()?.0);
                return Ok(true);
            }
        };
        *details = Some(map.next_value::<Obj<Details>>()?.0);
        Ok(true)
    }
}

impl UsageFields {
    fn usage(self) -> Usage {
        let n = |v: Option<Option<u64>>| v.flatten().unwrap_or(0);
        let pd = self.prompt_details.or(self.input_details).flatten();
        let cd = self.completion_details.or(self.output_details).flatten();
        Usage {
            prompt_tokens: n(self.prompt.or(self.input)),
            completion_tokens: n(self.completion.or(self.output)),
            cached_tokens: pd.as_ref().and_then(|d| d.cached).unwrap_or(0),
            cache_write_tokens: pd.as_ref().and_then(|d| d.cache_write).unwrap_or(0),
            reasoning_tokens: cd.and_then(|d| d.reasoning).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_round_trip_keeps_every_count() {
        let u = Usage {
            prompt_tokens: 100,
            completion_tokens: 40,
            cached_tokens: 30,
            cache_write_tokens: 5,
            reasoning_tokens: 10,
        };
        let j = u.to_openai_json();
        assert_eq!(j["total_tokens"], 140);
        assert_eq!(Usage::from_openai_json(&j), Some(u));
    }

    /// `OpenAiUsage` reads every value as `from_openai_json` reads the parsed value: both
    /// spellings and their precedence, details in or out of objects, counts that are not
    /// non-negative integers, repeated keys (the last counts) and values that are not objects.
    #[test]
    fn read_from_text_as_from_the_parsed_value() {
        let cases = [
            r#"{"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}"#,
            r#"{"prompt_tokens": 100, "completion_tokens": 40, "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 5, "audio_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 10, "accepted_prediction_tokens": [1, {"a": 2}]}}"#,
            r#"{"input_tokens": 20, "output_tokens": 12, "input_tokens_details": {"cached_tokens": 4}, "output_tokens_details": {"reasoning_tokens": 3}}"#,
            r#"{"prompt_tokens": null, "input_tokens": 7, "completion_tokens": "5", "output_tokens": 6}"#,
            r#"{"prompt_tokens": -3, "completion_tokens": 2.5, "input_tokens": 4}"#,
            r#"{"prompt_tokens": 1e2, "completion_tokens": 18446744073709551615}"#,
            r#"{"prompt_tokens_details": null, "input_tokens_details": {"cached_tokens": 8}}"#,
            r#"{"prompt_tokens_details": 3, "completion_tokens_details": [], "output_tokens_details": {"reasoning_tokens": 2}}"#,
            r#"{"prompt_tokens_details": {"cached_tokens": {"n": 1}, "reasoning_tokens": 4}, "completion_tokens_details": {"cached_tokens": 6}}"#,
            r#"{"prompt_tokens": 1, "prompt_tokens": 2, "completion_tokens": 3, "completion_tokens": true}"#,
            r#"{"prompt_tokens_details": {"cached_tokens": 1}, "prompt_tokens_details": "x", "input_tokens_details": {"cached_tokens": 5}}"#,
            r#"{"pr\u006fmpt_tokens": 11, "completion_tokens": 0, "extra": {"deep": [[{"x": null}]]}}"#,
            r#"{}"#,
            r#"[]"#,
            r#"[1, 2]"#,
            r#""usage""#,
            r#"42"#,
            r#"-1"#,
            r#"true"#,
            r#"null"#,
        ];
        for text in cases {
            let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
            let read: OpenAiUsage = serde_json::from_str(text).unwrap();
            assert_eq!(read.0, Usage::from_openai_json(&parsed), "{text}");
        }
        // Malformed text inside the value is refused, as a parse of the document refuses it.
        for bad in [
            r#"{"prompt_tokens": 1,}"#,
            r#"{"x": [1 2]}"#,
            r#"{"prompt_tokens": 01}"#,
        ] {
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad}"
            );
            assert!(serde_json::from_str::<OpenAiUsage>(bad).is_err(), "{bad}");
        }
        // So are bytes that are not UTF-8, in the values read and in those skipped.
        for bad in [
            &b"{\"prompt_tokens\": 1, \"x\": \"\xff\"}"[..],
            b"{\"x\": [\"\xc3\"], \"prompt_tokens\": 1}",
            b"{\"x\": {\"k\": \"\xe2\x82\"}}",
            b"{\"prompt_tokens_details\": {\"cached_tokens\": [\"\xff\"]}}",
            b"{\"\xff\": 1}",
        ] {
            assert!(
                serde_json::from_slice::<serde_json::Value>(bad).is_err(),
                "{bad:?}"
            );
            assert!(
                serde_json::from_slice::<OpenAiUsage>(bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn responses_api_names_are_read() {
        let j = serde_json::json!({"input_tokens": 20, "output_tokens": 12,
            "input_tokens_details": {"cached_tokens": 4}, "output_tokens_details": {"reasoning_tokens": 3}});
        let u = Usage::from_openai_json(&j).unwrap_or_default();
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.cached_tokens,
                u.reasoning_tokens
            ),
            (20, 12, 4, 3)
        );
    }
}
