//! Token usage normalised to OpenAI semantics (prompt includes cached and cache-write tokens,
//! completion includes reasoning tokens), whatever the provider reported.

use serde::{Deserialize, Serialize};

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
