//! Vendors are data: every provider type is a preset (default base URL, wire format, auth style,
//! request quirks). A custom provider is the same shape filled in by an admin.

use serde_json::Value;

use crate::catalog::Format;

/// How the provider's key is presented upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>`
    Bearer,
    /// `api-key: <key>` (Azure OpenAI)
    ApiKeyHeader,
    /// `Authorization: Api-Key <key>` (e.g. Baseten-style custom endpoints)
    AuthorizationApiKey,
    /// `x-api-key: <key>` (Anthropic)
    XApiKey,
    /// `x-goog-api-key: <key>` (Gemini)
    GoogApiKey,
    /// AWS SigV4 or a Bedrock bearer API key, chosen by credential metadata.
    Aws,
    /// No auth header at all (e.g. a local Ollama).
    None,
}

impl AuthStyle {
    /// Parses a custom provider's `auth_format`.
    pub fn parse_custom(s: &str) -> Option<AuthStyle> {
        match s {
            "bearer" => Some(AuthStyle::Bearer),
            "api_key" => Some(AuthStyle::AuthorizationApiKey),
            "x-api-key" => Some(AuthStyle::XApiKey),
            "none" => Some(AuthStyle::None),
            _ => None,
        }
    }
}

/// Request rewrites a vendor needs on top of the OpenAI shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quirks {
    /// The vendor rejects `stream_options`; drop it (usage may then be missing from streams).
    pub drop_stream_options: bool,
    /// Top-level request fields the vendor rejects; dropped before sending.
    pub drop_fields: &'static [&'static str],
    /// The vendor wants `max_tokens`, not `max_completion_tokens`.
    pub max_tokens_field: bool,
    /// The vendor rejects `name` on messages.
    pub drop_message_names: bool,
    /// The vendor rejects non-standard assistant fields such as `reasoning_content`.
    pub drop_reasoning_content: bool,
}

/// What `Quirks::applies` reads of a request body: its top-level keys, and the keys of the
/// objects in its `messages` array. A summary of a body may answer true for a key it does not
/// have (then the caller checks the document itself), never false for one it has.
pub trait RequestKeys {
    fn has(&self, key: &str) -> bool;
    fn message_has(&self, key: &str) -> bool;
}

impl RequestKeys for Value {
    fn has(&self, key: &str) -> bool {
        self.as_object().is_some_and(|o| o.contains_key(key))
    }

    fn message_has(&self, key: &str) -> bool {
        self.get("messages")
            .and_then(Value::as_array)
            .is_some_and(|messages| {
                messages
                    .iter()
                    .filter_map(Value::as_object)
                    .any(|m| m.contains_key(key))
            })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub provider_type: &'static str,
    pub display_name: &'static str,
    pub format: Format,
    /// Default base URL; `{region}` is substituted for Bedrock. Empty: `api_base` is required.
    pub base_url: &'static str,
    pub auth: AuthStyle,
    pub quirks: Quirks,
    /// Name of the org-level credential the web admin suggests (also what `x-bt-endpoint-name`
    /// users are used to).
    pub default_key_name: &'static str,
}

const OPENAI_QUIRKS: Quirks = Quirks {
    drop_stream_options: false,
    drop_fields: &[],
    max_tokens_field: false,
    drop_message_names: false,
    drop_reasoning_content: true,
};

const OPENAI_FIELDS_ONLY: &[&str] = &[
    "store",
    "metadata",
    "service_tier",
    "prediction",
    "modalities",
    "audio",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
];

macro_rules! preset {
    ($t:literal, $name:literal, $fmt:ident, $url:literal, $auth:ident, $quirks:expr, $key:literal) => {
        Preset {
            provider_type: $t,
            display_name: $name,
            format: Format::$fmt,
            base_url: $url,
            auth: AuthStyle::$auth,
            quirks: $quirks,
            default_key_name: $key,
        }
    };
}

/// Every provider type the product knows, in the order the web admin lists them.
pub const PRESETS: &[Preset] = &[
    preset!(
        "openai",
        "OpenAI",
        Openai,
        "https://api.openai.com/v1",
        Bearer,
        OPENAI_QUIRKS,
        "OPENAI_API_KEY"
    ),
    preset!(
        "anthropic",
        "Anthropic",
        Anthropic,
        "https://api.anthropic.com",
        XApiKey,
        Quirks::NONE,
        "ANTHROPIC_API_KEY"
    ),
    preset!(
        "google",
        "Google",
        Google,
        "https://generativelanguage.googleapis.com",
        GoogApiKey,
        Quirks::NONE,
        "GEMINI_API_KEY"
    ),
    preset!(
        "bedrock",
        "AWS Bedrock",
        Bedrock,
        "https://bedrock-runtime.{region}.amazonaws.com",
        Aws,
        Quirks::NONE,
        "AWS_DEFAULT_CREDENTIALS"
    ),
    preset!(
        "azure",
        "Azure OpenAI",
        Openai,
        "",
        ApiKeyHeader,
        OPENAI_QUIRKS,
        "AZURE_DEFAULT_CREDENTIALS"
    ),
    preset!(
        "mistral",
        "Mistral",
        Openai,
        "https://api.mistral.ai/v1",
        Bearer,
        Quirks {
            drop_stream_options: false,
            drop_fields: &[
                "store",
                "metadata",
                "service_tier",
                "prediction",
                "modalities",
                "audio",
                "web_search_options",
                "verbosity",
                "prompt_cache_key",
                "safety_identifier",
                "logit_bias",
                "logprobs",
                "top_logprobs",
                "user",
                "parallel_tool_calls",
                "reasoning_effort"
            ],
            max_tokens_field: true,
            drop_message_names: true,
            drop_reasoning_content: true,
        },
        "MISTRAL_API_KEY"
    ),
    preset!(
        "together",
        "Together",
        Openai,
        "https://api.together.xyz/v1",
        Bearer,
        Quirks {
            drop_fields: OPENAI_FIELDS_ONLY,
            ..OPENAI_QUIRKS
        },
        "TOGETHER_API_KEY"
    ),
    preset!(
        "fireworks",
        "Fireworks",
        Openai,
        "https://api.fireworks.ai/inference/v1",
        Bearer,
        Quirks {
            drop_fields: OPENAI_FIELDS_ONLY,
            ..OPENAI_QUIRKS
        },
        "FIREWORKS_API_KEY"
    ),
    preset!(
        "groq",
        "Groq",
        Openai,
        "https://api.groq.com/openai/v1",
        Bearer,
        Quirks {
            drop_stream_options: false,
            drop_fields: &[
                "store",
                "metadata",
                "service_tier",
                "prediction",
                "modalities",
                "audio",
                "web_search_options",
                "verbosity",
                "prompt_cache_key",
                "safety_identifier",
                "logprobs",
                "logit_bias",
                "top_logprobs"
            ],
            max_tokens_field: false,
            drop_message_names: true,
            drop_reasoning_content: true,
        },
        "GROQ_API_KEY"
    ),
    preset!(
        "perplexity",
        "Perplexity",
        Openai,
        "https://api.perplexity.ai",
        Bearer,
        Quirks {
            drop_stream_options: true,
            drop_fields: &[
                "store",
                "metadata",
                "service_tier",
                "prediction",
                "modalities",
                "audio",
                "web_search_options",
                "verbosity",
                "prompt_cache_key",
                "safety_identifier",
                "logprobs",
                "logit_bias",
                "top_logprobs",
                "parallel_tool_calls",
                "n",
                "seed",
                "user"
            ],
            max_tokens_field: true,
            drop_message_names: true,
            drop_reasoning_content: true,
        },
        "PERPLEXITY_API_KEY"
    ),
    preset!(
        "xai",
        "xAI",
        Openai,
        "https://api.x.ai/v1",
        Bearer,
        Quirks {
            drop_fields: &[
                "store",
                "metadata",
                "service_tier",
                "prediction",
                "modalities",
                "audio",
                "web_search_options",
                "verbosity",
                "prompt_cache_key",
                "safety_identifier"
            ],
            ..OPENAI_QUIRKS
        },
        "XAI_API_KEY"
    ),
    preset!(
        "deepseek",
        "DeepSeek",
        Openai,
        "https://api.deepseek.com/v1",
        Bearer,
        Quirks {
            drop_fields: OPENAI_FIELDS_ONLY,
            max_tokens_field: true,
            ..OPENAI_QUIRKS
        },
        "DEEPSEEK_API_KEY"
    ),
    preset!(
        "openrouter",
        "OpenRouter",
        Openai,
        "https://openrouter.ai/api/v1",
        Bearer,
        OPENAI_QUIRKS,
        "OPENROUTER_API_KEY"
    ),
    preset!(
        "cerebras",
        "Cerebras",
        Openai,
        "https://api.cerebras.ai/v1",
        Bearer,
        Quirks {
            drop_fields: &[
                "store",
                "metadata",
                "service_tier",
                "prediction",
                "modalities",
                "audio",
                "web_search_options",
                "verbosity",
                "prompt_cache_key",
                "safety_identifier",
                "logit_bias",
                "presence_penalty",
                "frequency_penalty"
            ],
            ..OPENAI_QUIRKS
        },
        "CEREBRAS_API_KEY"
    ),
    preset!(
        "ollama",
        "Ollama",
        Openai,
        "http://localhost:11434/v1",
        None,
        Quirks {
            drop_fields: OPENAI_FIELDS_ONLY,
            ..OPENAI_QUIRKS
        },
        "OLLAMA_DEFAULT_CREDENTIALS"
    ),
    preset!(
        "custom",
        "Custom provider",
        Openai,
        "",
        Bearer,
        Quirks::NONE,
        "CUSTOM_PROVIDER"
    ),
];

impl Quirks {
    pub const NONE: Quirks = Quirks {
        drop_stream_options: false,
        drop_fields: &[],
        max_tokens_field: false,
        drop_message_names: false,
        drop_reasoning_content: false,
    };

    /// Whether `apply` would change `body`, without changing it (the proxy asks this of every
    /// request; copying the body to find out cost ≈2% of a node's instructions per request).
    /// `body` is a parsed document, or a summary of one that may answer "has" wrongly only in
    /// the safe direction (see `RequestKeys`).
    pub fn applies(&self, body: &(impl RequestKeys + ?Sized)) -> bool {
        (self.drop_stream_options && body.has("stream_options"))
            || self.drop_fields.iter().any(|f| body.has(f))
            || (self.max_tokens_field && body.has("max_completion_tokens"))
            || (self.drop_message_names && body.message_has("name"))
            || (self.drop_reasoning_content && body.message_has("reasoning_content"))
    }

    /// Rewrites an OpenAI-format request body (chat, completions, embeddings) for this vendor.
    /// Returns true when something changed (the caller then re-serialises the body).
    pub fn apply(&self, body: &mut Value) -> bool {
        let Some(obj) = body.as_object_mut() else {
            return false;
        };
        let mut changed = false;
        if self.drop_stream_options && obj.remove("stream_options").is_some() {
            changed = true;
        }
        for f in self.drop_fields {
            changed |= obj.remove(*f).is_some();
        }
        if self.max_tokens_field
            && let Some(v) = obj.remove("max_completion_tokens")
        {
            obj.entry("max_tokens").or_insert(v);
            changed = true;
        }
        if (self.drop_message_names || self.drop_reasoning_content)
            && let Some(Value::Array(messages)) = obj.get_mut("messages")
        {
            for m in messages.iter_mut().filter_map(Value::as_object_mut) {
                if self.drop_message_names && m.remove("name").is_some() {
                    changed = true;
                }
                if self.drop_reasoning_content && m.remove("reasoning_content").is_some() {
                    changed = true;
                }
            }
        }
        changed
    }
}

/// The preset for a provider type.
pub fn preset(provider_type: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.provider_type == provider_type)
}

/// All provider type names.
pub fn provider_types() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|p| p.provider_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_spec_type_has_a_preset() {
        for t in [
            "openai",
            "anthropic",
            "google",
            "bedrock",
            "azure",
            "mistral",
            "together",
            "fireworks",
            "groq",
            "perplexity",
            "xai",
            "deepseek",
            "openrouter",
            "cerebras",
            "ollama",
            "custom",
        ] {
            assert!(preset(t).is_some(), "{t}");
        }
        assert_eq!(PRESETS.len(), 16);
    }

    #[test]
    fn mistral_quirks_rename_and_drop() {
        let mut body = json!({"model": "mistral-large-latest", "max_completion_tokens": 10, "logit_bias": {}, "store": true,
            "messages": [{"role": "user", "content": "hi", "name": "bob"}, {"role": "assistant", "content": "x", "reasoning_content": "r"}]});
        assert!(
            preset("mistral")
                .map(|p| p.quirks.apply(&mut body))
                .unwrap_or(false)
        );
        assert_eq!(
            body,
            json!({"model": "mistral-large-latest", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]})
        );
    }

    #[test]
    fn applies_answers_what_apply_would_do() {
        let bodies = [
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}}),
            json!({"model": "m", "max_completion_tokens": 10}),
            json!({"model": "m", "logit_bias": {}, "store": true, "seed": 1}),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi", "name": "bob"}]}),
            json!({"model": "m", "messages": [{"role": "assistant", "content": "x", "reasoning_content": "r"}]}),
            json!({"model": "m", "messages": "not a list"}),
            json!(["not", "an", "object"]),
        ];
        let mut checked = 0;
        for p in PRESETS {
            for b in &bodies {
                let mut changed = b.clone();
                assert_eq!(
                    p.quirks.applies(b),
                    p.quirks.apply(&mut changed),
                    "{} on {b}",
                    p.provider_type
                );
                checked += 1;
            }
        }
        assert_eq!(checked, PRESETS.len() * bodies.len());
        // Both answers occur: the check compares something.
        assert!(PRESETS.iter().any(|p| p.quirks.applies(&bodies[2])));
        assert!(!preset("openai").unwrap().quirks.applies(&bodies[0]));
    }

    #[test]
    fn perplexity_drops_stream_options_and_openai_untouched() {
        let mut body =
            json!({"model": "sonar", "stream": true, "stream_options": {"include_usage": true}});
        assert!(
            preset("perplexity")
                .map(|p| p.quirks.apply(&mut body))
                .unwrap_or(false)
        );
        assert!(body.get("stream_options").is_none());
        let mut body = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}, "store": true});
        let before = body.clone();
        assert!(
            !preset("openai")
                .map(|p| p.quirks.apply(&mut body))
                .unwrap_or(true)
        );
        assert_eq!(body, before);
    }
}
