//! The model catalog: which provider types can serve a model, under which upstream id, its
//! limits and its prices. The built-in catalog ships inside the binary (`catalog.json`); the
//! control plane carries it to nodes in every snapshot, so it can be updated centrally.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The wire format a model (or a custom provider) speaks natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Openai,
    Anthropic,
    Google,
    /// Bedrock Converse.
    Bedrock,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Openai => "openai",
            Format::Anthropic => "anthropic",
            Format::Google => "google",
            Format::Bedrock => "bedrock",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "openai" => Some(Format::Openai),
            "anthropic" => Some(Format::Anthropic),
            "google" => Some(Format::Google),
            "bedrock" | "converse" => Some(Format::Bedrock),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    #[default]
    Chat,
    Completion,
    Embedding,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Chat => "chat",
            Flavor::Completion => "completion",
            Flavor::Embedding => "embedding",
        }
    }
}

/// One model. Prices are USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(default)]
    pub flavor: Flavor,
    /// Provider types that can serve this model (e.g. `["openai", "azure", "openrouter"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// The model's id on a given provider type when it differs from the catalog name — the
    /// equivalence between, e.g., Anthropic's `claude-sonnet-4-5-20250929` and Bedrock's
    /// `anthropic.claude-sonnet-4-5-20250929-v1:0`.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub provider_models: HashMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub input_cost_per_mil_tokens: f64,
    #[serde(default)]
    pub output_cost_per_mil_tokens: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_cache_read_cost_per_mil_tokens: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_cache_write_cost_per_mil_tokens: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Accepts images.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multimodal: bool,
    /// A reasoning model (takes `reasoning_effort`; may reject sampling parameters).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reasoning: bool,
    /// Unix seconds; reported as `created` in model lists.
    #[serde(default)]
    pub created: i64,
}

impl ModelSpec {
    /// The model id to send to a provider of `provider_type`, given the catalog name.
    pub fn upstream_id<'a>(&'a self, name: &'a str, provider_type: &str) -> &'a str {
        self.provider_models
            .get(provider_type)
            .map(String::as_str)
            .unwrap_or(name)
    }

    /// Can a provider of this type serve the model?
    pub fn served_by(&self, provider_type: &str) -> bool {
        self.providers.iter().any(|p| p == provider_type)
            || self.provider_models.contains_key(provider_type)
    }

    /// Cost in USD of a call with the given usage, from this model's prices. Cached reads and
    /// cache writes are priced separately when the catalog has a price for them, else as input.
    pub fn cost_usd(&self, usage: &crate::Usage) -> f64 {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let written = usage.cache_write_tokens.min(usage.prompt_tokens - cached);
        let plain_input = usage.prompt_tokens - cached - written;
        let read_price = self
            .input_cache_read_cost_per_mil_tokens
            .unwrap_or(self.input_cost_per_mil_tokens);
        let write_price = self
            .input_cache_write_cost_per_mil_tokens
            .unwrap_or(self.input_cost_per_mil_tokens);
        (plain_input as f64 * self.input_cost_per_mil_tokens
            + cached as f64 * read_price
            + written as f64 * write_price
            + usage.completion_tokens as f64 * self.output_cost_per_mil_tokens)
            / 1_000_000.0
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Shared so a routed call carries its model's spec without copying it.
    pub models: HashMap<String, std::sync::Arc<ModelSpec>>,
}

/// The catalog shipped with this build.
pub const BUILTIN_JSON: &str = include_str!("../catalog.json");

impl Catalog {
    pub fn from_json(json: &str) -> Result<Catalog, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The built-in catalog. Its JSON is checked by a unit test, so this cannot fail in a
    /// released build; an empty catalog is returned rather than panicking if it ever did.
    pub fn builtin() -> Catalog {
        Catalog::from_json(BUILTIN_JSON).unwrap_or_default()
    }

    pub fn get(&self, name: &str) -> Option<&std::sync::Arc<ModelSpec>> {
        self.models.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_is_consistent() {
        let c = Catalog::from_json(BUILTIN_JSON).expect("catalog.json must parse");
        assert!(c.models.len() > 20, "catalog has {} models", c.models.len());
        for (name, spec) in &c.models {
            assert!(!spec.providers.is_empty(), "{name} has no providers");
            assert!(
                spec.input_cost_per_mil_tokens >= 0.0 && spec.output_cost_per_mil_tokens >= 0.0,
                "{name}"
            );
            for p in spec.providers.iter().chain(spec.provider_models.keys()) {
                assert!(
                    crate::vendor::preset(p).is_some(),
                    "{name}: unknown provider type {p}"
                );
            }
        }
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "claude-sonnet-4-5-20250929",
            "gemini-2.5-flash",
            "text-embedding-3-small",
        ] {
            assert!(c.get(m).is_some(), "{m} missing from catalog");
        }
    }

    #[test]
    fn cost_prices_cached_and_written_tokens_separately() {
        let spec = ModelSpec {
            input_cost_per_mil_tokens: 3.0,
            output_cost_per_mil_tokens: 15.0,
            input_cache_read_cost_per_mil_tokens: Some(0.3),
            input_cache_write_cost_per_mil_tokens: Some(3.75),
            ..Default::default()
        };
        let usage = crate::Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 100_000,
            cached_tokens: 200_000,
            cache_write_tokens: 100_000,
            reasoning_tokens: 0,
        };
        // 700k plain input * 3 + 200k * 0.3 + 100k * 3.75 + 100k * 15, per million
        let expected =
            (700_000.0 * 3.0 + 200_000.0 * 0.3 + 100_000.0 * 3.75 + 100_000.0 * 15.0) / 1e6;
        assert!((spec.cost_usd(&usage) - expected).abs() < 1e-9);
    }

    #[test]
    fn equivalent_model_ids_are_rewritten_per_provider() {
        let c = Catalog::builtin();
        let spec = c
            .get("claude-sonnet-4-5-20250929")
            .expect("claude in catalog");
        assert!(spec.served_by("anthropic") && spec.served_by("bedrock"));
        assert_eq!(
            spec.upstream_id("claude-sonnet-4-5-20250929", "anthropic"),
            "claude-sonnet-4-5-20250929"
        );
        assert!(
            spec.upstream_id("claude-sonnet-4-5-20250929", "bedrock")
                .starts_with("anthropic.claude-sonnet-4-5")
        );
    }
}
