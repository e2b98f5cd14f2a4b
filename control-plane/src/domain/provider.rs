//! Provider credentials ("AI providers"): the types the product knows and the validation of each
//! type's metadata. Validation is strict at write time (unknown metadata keys are refused with a
//! clear message); nodes read metadata leniently, so a newer control plane never breaks them.
//!
//! Sensitive metadata — Bedrock `session_token` and extra `headers` (which may carry auth) — is
//! split off and sealed together with the secret; reads show only that it is set.

use data_plane::netguard::{NetPolicy, check_uri_host};
use llm::Format;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Every provider type (spec §3).
pub const TYPES: &[&str] = &[
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
];

pub const MAX_SECRET_LEN: usize = 64 * 1024;
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

pub fn check_type(t: &str) -> Result<(), ApiError> {
    if TYPES.contains(&t) {
        Ok(())
    } else {
        Err(ApiError::validation(
            "type",
            format!(
                "unknown provider type {t:?}; expected one of {}",
                TYPES.join(", ")
            ),
        ))
    }
}

/// Metadata split into what is stored readable and what is sealed with the secret.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitMetadata {
    pub public: Map<String, Value>,
    pub session_token: Option<String>,
    pub headers: Option<Map<String, Value>>,
}

/// What is sealed at rest for one credential.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SealedPayload {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Map<String, Value>>,
}

fn allowed_keys(t: &str) -> &'static [&'static str] {
    const COMMON: &[&str] = &[
        "api_base",
        "models",
        "weight",
        "custom_models",
        "exclude_default_models",
        "headers",
    ];
    match t {
        "openai" => &[
            "api_base",
            "models",
            "weight",
            "custom_models",
            "exclude_default_models",
            "headers",
            "organization_id",
        ],
        "azure" => &[
            "api_base",
            "models",
            "weight",
            "custom_models",
            "exclude_default_models",
            "headers",
            "deployment",
            "api_version",
            "auth_type",
        ],
        "bedrock" => &[
            "api_base",
            "models",
            "weight",
            "custom_models",
            "exclude_default_models",
            "headers",
            "region",
            "access_key_id",
            "session_token",
            "auth_type",
        ],
        "anthropic" => &[
            "api_base",
            "models",
            "weight",
            "custom_models",
            "exclude_default_models",
            "headers",
            "auth_type",
        ],
        "custom" => &[
            "api_base",
            "models",
            "weight",
            "custom_models",
            "exclude_default_models",
            "headers",
            "format",
            "supports_streaming",
            "auth_format",
        ],
        _ => COMMON,
    }
}

/// Validates `metadata` for a credential of type `t`. `policy` judges `api_base` destinations.
pub fn validate_metadata(
    t: &str,
    metadata: &Value,
    policy: &NetPolicy,
) -> Result<SplitMetadata, ApiError> {
    let obj = match metadata {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        _ => return Err(ApiError::validation("metadata", "must be an object")),
    };
    let allowed = allowed_keys(t);
    if let Some(bad) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::validation(
            &format!("metadata.{bad}"),
            format!(
                "unknown field for a {t} provider; allowed: {}",
                allowed.join(", ")
            ),
        ));
    }
    let mut out = SplitMetadata::default();
    for (k, v) in obj {
        let field = format!("metadata.{k}");
        match k.as_str() {
            "api_base" => {
                let s = non_empty_str(&field, &v, 2048)?;
                check_api_base(&field, &s, policy)?;
                out.public
                    .insert(k, Value::String(s.trim_end_matches('/').to_string()));
            }
            "models" => {
                let arr = v.as_array().ok_or_else(|| {
                    ApiError::validation(&field, "must be an array of model names")
                })?;
                if arr.len() > 10_000 {
                    return Err(ApiError::validation(&field, "at most 10000 models"));
                }
                for m in arr {
                    non_empty_str(&field, m, 256)?;
                }
                out.public.insert(k, v);
            }
            "weight" => {
                let w = v
                    .as_f64()
                    .filter(|w| *w > 0.0 && *w <= 1000.0)
                    .ok_or_else(|| {
                        ApiError::validation(
                            &field,
                            "must be a number greater than 0 and at most 1000",
                        )
                    })?;
                out.public.insert(k, serde_json::json!(w));
            }
            "exclude_default_models" | "supports_streaming" => {
                if !v.is_boolean() {
                    return Err(ApiError::validation(&field, "must be true or false"));
                }
                out.public.insert(k, v);
            }
            "custom_models" => {
                out.public.insert(k, validate_custom_models(&field, &v)?);
            }
            "headers" => {
                let m = v.as_object().ok_or_else(|| {
                    ApiError::validation(
                        &field,
                        "must be an object of header names to string values",
                    )
                })?;
                for (name, value) in m {
                    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        return Err(ApiError::validation(
                            &field,
                            format!("{name:?} is not a valid header name"),
                        ));
                    }
                    let ok = value
                        .as_str()
                        .is_some_and(|s| http::HeaderValue::from_str(s).is_ok());
                    if !ok {
                        return Err(ApiError::validation(
                            &field,
                            format!(
                                "the value of {name:?} must be a string valid in an HTTP header"
                            ),
                        ));
                    }
                    let lower = name.to_ascii_lowercase();
                    if matches!(
                        lower.as_str(),
                        "host" | "content-length" | "transfer-encoding" | "connection"
                    ) || lower.starts_with("x-bt-")
                    {
                        return Err(ApiError::validation(
                            &field,
                            format!("{name:?} cannot be set"),
                        ));
                    }
                }
                out.headers = Some(m.clone());
            }
            "session_token" => {
                out.session_token = Some(non_empty_str(&field, &v, 8192)?);
            }
            "format" => {
                let s = non_empty_str(&field, &v, 32)?;
                if Format::parse(&s).is_none() {
                    return Err(ApiError::validation(
                        &field,
                        "must be one of openai, anthropic, google, bedrock",
                    ));
                }
                out.public.insert(k, Value::String(s));
            }
            "auth_format" => {
                let s = non_empty_str(&field, &v, 32)?;
                if llm::vendor::AuthStyle::parse_custom(&s).is_none() {
                    return Err(ApiError::validation(
                        &field,
                        "must be one of bearer, api_key, x-api-key, none",
                    ));
                }
                out.public.insert(k, Value::String(s));
            }
            "auth_type" => {
                let s = non_empty_str(&field, &v, 32)?;
                let ok = match t {
                    "bedrock" => matches!(s.as_str(), "iam" | "api_key"),
                    "azure" => matches!(s.as_str(), "api_key" | "bearer"),
                    "anthropic" => matches!(s.as_str(), "api_key" | "bearer"),
                    _ => false,
                };
                if !ok {
                    let expected = if t == "bedrock" {
                        "iam or api_key"
                    } else {
                        "api_key or bearer"
                    };
                    return Err(ApiError::validation(&field, format!("must be {expected}")));
                }
                out.public.insert(k, Value::String(s));
            }
            "region" => {
                let s = non_empty_str(&field, &v, 32)?;
                if !s
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    return Err(ApiError::validation(
                        &field,
                        "not a valid AWS region (e.g. us-east-1)",
                    ));
                }
                out.public.insert(k, Value::String(s));
            }
            "access_key_id" | "deployment" | "api_version" | "organization_id" => {
                let s = non_empty_str(&field, &v, 256)?;
                if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(ApiError::validation(&field, "must not contain whitespace"));
                }
                out.public.insert(k, Value::String(s));
            }
            _ => {}
        }
    }
    check_required(t, &out)?;
    Ok(out)
}

fn check_required(t: &str, m: &SplitMetadata) -> Result<(), ApiError> {
    let has = |k: &str| m.public.contains_key(k);
    match t {
        "azure" if !has("api_base") => Err(ApiError::validation(
            "metadata.api_base",
            "required for azure (the resource endpoint, e.g. https://myres.openai.azure.com)",
        )),
        "bedrock" if !has("region") => Err(ApiError::validation(
            "metadata.region",
            "required for bedrock (e.g. us-east-1)",
        )),
        "bedrock"
            if m.public.get("auth_type").and_then(Value::as_str) != Some("api_key")
                && !has("access_key_id") =>
        {
            Err(ApiError::validation(
                "metadata.access_key_id",
                "required for bedrock with IAM credentials (or set auth_type to api_key)",
            ))
        }
        "custom" if !has("api_base") => Err(ApiError::validation(
            "metadata.api_base",
            "required for a custom provider",
        )),
        "custom" if !has("format") => Err(ApiError::validation(
            "metadata.format",
            "required for a custom provider (openai, anthropic, google or bedrock)",
        )),
        _ => Ok(()),
    }
}

/// Does this credential need a secret? (Local and keyless endpoints do not.)
pub fn secret_required(t: &str, public: &Map<String, Value>) -> bool {
    match t {
        "ollama" => false,
        "custom" => public.get("auth_format").and_then(Value::as_str) != Some("none"),
        _ => true,
    }
}

pub fn check_secret(
    t: &str,
    secret: Option<&str>,
    public: &Map<String, Value>,
) -> Result<(), ApiError> {
    match secret {
        Some(s) if s.len() > MAX_SECRET_LEN => Err(ApiError::validation(
            "secret",
            format!("must be at most {MAX_SECRET_LEN} bytes"),
        )),
        Some(s) if s.chars().any(char::is_control) => Err(ApiError::validation(
            "secret",
            "must not contain control characters or newlines",
        )),
        Some(s) if s.trim().is_empty() && secret_required(t, public) => {
            Err(ApiError::validation("secret", "must not be empty"))
        }
        None if secret_required(t, public) => Err(ApiError::validation(
            "secret",
            format!("required for a {t} provider"),
        )),
        _ => Ok(()),
    }
}

/// `sk-…a1b2`: at most the first 3 and last 4 characters of a secret.
pub fn preview_secret(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    match chars.len() {
        0 => String::new(),
        n if n >= 16 => format!(
            "{}…{}",
            chars[..3].iter().collect::<String>(),
            chars[n - 4..].iter().collect::<String>()
        ),
        n if n >= 8 => format!("…{}", chars[n - 2..].iter().collect::<String>()),
        _ => "…".to_string(),
    }
}

fn non_empty_str(field: &str, v: &Value, max: usize) -> Result<String, ApiError> {
    let s = v
        .as_str()
        .ok_or_else(|| ApiError::validation(field, "must be a string"))?;
    let s = s.trim();
    if s.is_empty() {
        return Err(ApiError::validation(field, "must not be empty"));
    }
    if s.len() > max {
        return Err(ApiError::validation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(s.to_string())
}

fn check_api_base(field: &str, s: &str, policy: &NetPolicy) -> Result<(), ApiError> {
    let uri: http::Uri = s
        .parse()
        .map_err(|_| ApiError::validation(field, "not a valid URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(ApiError::validation(
                field,
                "must be an http:// or https:// URL",
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ApiError::validation(field, "must include a host"));
    }
    if s.contains('@') {
        return Err(ApiError::validation(
            field,
            "must not contain credentials (user:password@)",
        ));
    }
    check_uri_host(policy, &uri).map_err(|e| ApiError::validation(field, e))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomModelInput {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    flavor: Option<String>,
    #[serde(default)]
    input_cost_per_mil_tokens: Option<f64>,
    #[serde(default)]
    output_cost_per_mil_tokens: Option<f64>,
    #[serde(default)]
    input_cache_read_cost_per_mil_tokens: Option<f64>,
    #[serde(default)]
    input_cache_write_cost_per_mil_tokens: Option<f64>,
    #[serde(default)]
    max_input_tokens: Option<u64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    display_name: Option<String>,
}

fn validate_custom_models(field: &str, v: &Value) -> Result<Value, ApiError> {
    let obj = v.as_object().ok_or_else(|| {
        ApiError::validation(field, "must be an object of model name to model spec")
    })?;
    if obj.len() > 1000 {
        return Err(ApiError::validation(field, "at most 1000 custom models"));
    }
    let mut out = Map::new();
    for (name, spec) in obj {
        let f = format!("{field}.{name}");
        if name.trim().is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
            return Err(ApiError::validation(
                field,
                format!("invalid model name {name:?}"),
            ));
        }
        let m: CustomModelInput = serde_json::from_value(spec.clone())
            .map_err(|e| ApiError::validation(&f, e.to_string()))?;
        let mut o = Map::new();
        if let Some(fmt) = m.format {
            if Format::parse(&fmt).is_none() {
                return Err(ApiError::validation(
                    &format!("{f}.format"),
                    "must be one of openai, anthropic, google, bedrock",
                ));
            }
            o.insert("format".into(), fmt.into());
        }
        let flavor = m.flavor.unwrap_or_else(|| "chat".into());
        if !matches!(flavor.as_str(), "chat" | "completion" | "embedding") {
            return Err(ApiError::validation(
                &format!("{f}.flavor"),
                "must be chat, completion or embedding",
            ));
        }
        o.insert("flavor".into(), flavor.into());
        for (k, price) in [
            ("input_cost_per_mil_tokens", m.input_cost_per_mil_tokens),
            ("output_cost_per_mil_tokens", m.output_cost_per_mil_tokens),
            (
                "input_cache_read_cost_per_mil_tokens",
                m.input_cache_read_cost_per_mil_tokens,
            ),
            (
                "input_cache_write_cost_per_mil_tokens",
                m.input_cache_write_cost_per_mil_tokens,
            ),
        ] {
            if let Some(p) = price {
                if !(p.is_finite() && (0.0..=1_000_000.0).contains(&p)) {
                    return Err(ApiError::validation(
                        &format!("{f}.{k}"),
                        "must be a price between 0 and 1000000 USD per million tokens",
                    ));
                }
                o.insert(k.into(), serde_json::json!(p));
            }
        }
        for (k, lim) in [
            ("max_input_tokens", m.max_input_tokens),
            ("max_output_tokens", m.max_output_tokens),
        ] {
            if let Some(n) = lim {
                if n == 0 || n > 100_000_000 {
                    return Err(ApiError::validation(
                        &format!("{f}.{k}"),
                        "must be between 1 and 100000000",
                    ));
                }
                o.insert(k.into(), n.into());
            }
        }
        if let Some(d) = m.display_name {
            o.insert(
                "display_name".into(),
                crate::domain::names::name(&format!("{f}.display_name"), &d, 128)?.into(),
            );
        }
        out.insert(name.clone(), Value::Object(o));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p() -> NetPolicy {
        NetPolicy::default()
    }

    #[test]
    fn type_specific_requirements() {
        assert!(validate_metadata("openai", &json!({}), &p()).is_ok());
        let e = validate_metadata("azure", &json!({"deployment": "d"}), &p()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("metadata.api_base"));
        let e = validate_metadata("bedrock", &json!({"access_key_id": "AKID"}), &p()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("metadata.region"));
        assert!(
            validate_metadata(
                "bedrock",
                &json!({"region": "us-east-1", "auth_type": "api_key"}),
                &p()
            )
            .is_ok()
        );
        let e = validate_metadata("custom", &json!({"api_base": "https://x.example/v1"}), &p())
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("metadata.format"));
        let e = validate_metadata("openai", &json!({"deployment": "d"}), &p()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("metadata.deployment"));
    }

    #[test]
    fn sensitive_fields_are_split_off() {
        let m = validate_metadata("bedrock", &json!({"region": "us-east-1", "access_key_id": "AKID", "session_token": "tok", "headers": {"X-A": "b"}}), &p()).unwrap();
        assert_eq!(m.session_token.as_deref(), Some("tok"));
        assert!(m.headers.is_some());
        assert!(!m.public.contains_key("session_token") && !m.public.contains_key("headers"));
    }

    #[test]
    fn api_base_ssrf_checks() {
        for bad in [
            "http://169.254.169.254/latest",
            "http://[fe80::1]/",
            "http://metadata.google.internal/",
            "ftp://x/",
            "http://u:p@x.example/",
            "not a url",
        ] {
            assert!(
                validate_metadata("openai", &json!({"api_base": bad}), &p()).is_err(),
                "{bad}"
            );
        }
        assert!(
            validate_metadata(
                "openai",
                &json!({"api_base": "http://127.0.0.1:9/v1"}),
                &p()
            )
            .is_err()
        );
        let local = NetPolicy {
            allow_private: true,
            allow_cidrs: vec![],
        };
        assert!(
            validate_metadata(
                "openai",
                &json!({"api_base": "http://127.0.0.1:9/v1/"}),
                &local
            )
            .is_ok()
        );
        assert!(
            validate_metadata(
                "openai",
                &json!({"api_base": "http://169.254.169.254/"}),
                &local
            )
            .is_err()
        );
    }

    #[test]
    fn custom_models_are_checked() {
        let ok = validate_metadata(
            "custom",
            &json!({"api_base": "https://x.example/v1", "format": "openai",
            "custom_models": {"my-model": {"flavor": "chat", "input_cost_per_mil_tokens": 1.5, "output_cost_per_mil_tokens": 2, "max_output_tokens": 1000}}}),
            &p(),
        );
        assert!(ok.is_ok());
        let bad = validate_metadata(
            "custom",
            &json!({"api_base": "https://x.example/v1", "format": "openai",
            "custom_models": {"m": {"flavor": "chat", "price": 1}}}),
            &p(),
        );
        assert!(bad.is_err());
        let bad = validate_metadata(
            "openai",
            &json!({"custom_models": {"m": {"input_cost_per_mil_tokens": -1}}}),
            &p(),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn previews_never_show_much() {
        assert_eq!(preview_secret("sk-proj-abcdefghijklmnop1234"), "sk-…1234");
        assert_eq!(preview_secret("abcdefghij"), "…ij");
        assert_eq!(preview_secret("abc"), "…");
    }

    #[test]
    fn secrets() {
        assert!(check_secret("openai", None, &Map::new()).is_err());
        assert!(check_secret("ollama", None, &Map::new()).is_ok());
        assert!(check_secret("openai", Some("a\nb"), &Map::new()).is_err());
        let mut none = Map::new();
        none.insert("auth_format".into(), "none".into());
        assert!(check_secret("custom", None, &none).is_ok());
    }
}
