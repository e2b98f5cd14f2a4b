//! Which models a credential serves, and under which upstream id and format. One pure function
//! shared by the node's router and the control plane's model listing, so both always agree.
//!
//! Rules (also in ARCHITECTURE.md):
//! - a model in the credential's `custom_models` is always served (its own format and prices);
//! - a model named explicitly in `models` is served even if the catalog does not know it yet
//!   (the escape hatch for catalog lag), in the credential's format;
//! - otherwise a catalog model is served when the catalog lists the credential's type for it,
//!   `exclude_default_models` is not set, the type is not `custom`, and `models` (when
//!   non-empty) contains it.

use std::collections::HashMap;
use std::sync::Arc;

use llm::catalog::{Catalog, Flavor, Format, ModelSpec};
use serde::Deserialize;

/// The part of a credential's metadata that decides model eligibility.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CredentialModels {
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub custom_models: HashMap<String, Arc<ModelSpec>>,
    #[serde(default)]
    pub exclude_default_models: bool,
    /// For `custom` providers: the wire format.
    #[serde(default)]
    pub format: Option<String>,
}

impl CredentialModels {
    /// Lenient: unknown metadata keys are ignored; malformed known ones fall back to defaults.
    pub fn from_metadata(meta: &serde_json::Value) -> CredentialModels {
        let models = meta
            .get("models")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let custom_models = meta
            .get("custom_models")
            .and_then(|v| v.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        serde_json::from_value::<ModelSpec>(v.clone())
                            .ok()
                            .map(|s| (k.clone(), Arc::new(s)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        CredentialModels {
            models,
            custom_models,
            exclude_default_models: meta
                .get("exclude_default_models")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            format: meta
                .get("format")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        }
    }
}

/// How a credential serves a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// The model id to send upstream (equivalent models are rewritten per provider).
    pub upstream_model: String,
    /// The wire format to speak to this credential.
    pub format: Format,
    pub flavor: Flavor,
    /// Prices and limits (catalog or custom).
    pub spec: Option<Arc<ModelSpec>>,
    pub custom: bool,
}

/// The wire format a credential of this type speaks.
pub fn credential_format(provider_type: &str, m: &CredentialModels) -> Format {
    if provider_type == "custom" {
        return m
            .format
            .as_deref()
            .and_then(Format::parse)
            .unwrap_or(Format::Openai);
    }
    llm::vendor::preset(provider_type)
        .map(|p| p.format)
        .unwrap_or(Format::Openai)
}

pub fn serves(
    provider_type: &str,
    m: &CredentialModels,
    model: &str,
    catalog: &Catalog,
) -> Option<Served> {
    let format = credential_format(provider_type, m);
    if let Some(spec) = m.custom_models.get(model) {
        return Some(Served {
            upstream_model: model.to_string(),
            format: spec.format.unwrap_or(format),
            flavor: spec.flavor,
            spec: Some(spec.clone()),
            custom: true,
        });
    }
    let listed = m.models.iter().any(|x| x == model);
    match catalog.get(model) {
        Some(spec)
            if provider_type != "custom"
                && !m.exclude_default_models
                && spec.served_by(provider_type)
                && (m.models.is_empty() || listed) =>
        {
            Some(Served {
                upstream_model: spec.upstream_id(model, provider_type).to_string(),
                format,
                flavor: spec.flavor,
                spec: Some(spec.clone()),
                custom: false,
            })
        }
        spec if listed => Some(Served {
            upstream_model: model.to_string(),
            format,
            flavor: spec.map(|s| s.flavor).unwrap_or_default(),
            spec: spec.cloned(),
            custom: false,
        }),
        _ => None,
    }
}

/// Every model a credential serves (for model listings).
pub fn served_models(provider_type: &str, m: &CredentialModels, catalog: &Catalog) -> Vec<String> {
    let mut out: Vec<String> = m.custom_models.keys().cloned().collect();
    out.extend(m.models.iter().cloned());
    if provider_type != "custom" && !m.exclude_default_models {
        out.extend(
            catalog
                .models
                .iter()
                .filter(|(name, spec)| {
                    spec.served_by(provider_type)
                        && (m.models.is_empty() || m.models.contains(name))
                })
                .map(|(n, _)| n.clone()),
        );
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn catalog_custom_and_listed_models() {
        let c = Catalog::builtin();
        let openai = CredentialModels::default();
        assert_eq!(
            serves("openai", &openai, "gpt-4o", &c).map(|s| s.format),
            Some(Format::Openai)
        );
        assert!(serves("openai", &openai, "claude-sonnet-4-5-20250929", &c).is_none());
        let bedrock = CredentialModels::default();
        let s = serves("bedrock", &bedrock, "claude-sonnet-4-5-20250929", &c).unwrap();
        assert!(s.upstream_model.starts_with("anthropic.claude-sonnet-4-5"));
        assert_eq!(s.format, Format::Bedrock);
        let allow =
            CredentialModels::from_metadata(&json!({"models": ["gpt-4o-mini", "gpt-9-preview"]}));
        assert!(serves("openai", &allow, "gpt-4o", &c).is_none());
        assert!(serves("openai", &allow, "gpt-4o-mini", &c).is_some());
        assert_eq!(
            serves("openai", &allow, "gpt-9-preview", &c).map(|s| s.upstream_model),
            Some("gpt-9-preview".into())
        );
        let custom = CredentialModels::from_metadata(
            &json!({"format": "anthropic", "custom_models": {"my-llm": {"flavor": "chat", "input_cost_per_mil_tokens": 1.0}}}),
        );
        let s = serves("custom", &custom, "my-llm", &c).unwrap();
        assert!(s.custom && s.format == Format::Anthropic);
        assert!(
            serves("custom", &custom, "gpt-4o", &c).is_none(),
            "custom providers don't serve catalog models unless listed"
        );
        let excl = CredentialModels::from_metadata(
            &json!({"exclude_default_models": true, "custom_models": {"ft:x": {}}}),
        );
        assert!(serves("openai", &excl, "gpt-4o", &c).is_none());
        assert!(serves("openai", &excl, "ft:x", &c).is_some());
        assert!(served_models("openai", &excl, &c) == vec!["ft:x".to_string()]);
    }
}
