//! AI provider pages: one row per standard provider type at organization and project level
//! (several keys per type, with weights; project pages mark org keys "Overridden" or
//! "Inherited"), and custom providers with their model table.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::org::Done;
use super::{
    Errors, Form, FormError, Layout, Viewer, api_error_page, error_page, fmt_time, layout, notice,
    render, see_other,
};
use crate::domain::{CredentialId, OrgId, ProjectId};
use crate::service::projects;
use crate::service::providers::{self, CreateProvider, Provider, Scope, UpdateProvider};
use crate::state::AppState;

type Page = Result<Response, Response>;

/// The standard provider types, in the order the page lists them.
const STANDARD: &[(&str, &str)] = &[
    ("openai", "OpenAI"),
    ("anthropic", "Anthropic"),
    ("google", "Google (Gemini)"),
    ("bedrock", "AWS Bedrock"),
    ("azure", "Azure OpenAI"),
    ("mistral", "Mistral"),
    ("together", "Together"),
    ("fireworks", "Fireworks"),
    ("groq", "Groq"),
    ("perplexity", "Perplexity"),
    ("xai", "xAI"),
    ("deepseek", "DeepSeek"),
    ("openrouter", "OpenRouter"),
    ("cerebras", "Cerebras"),
    ("ollama", "Ollama"),
];

pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: &'static str,
    pub required: bool,
    pub hint: &'static str,
}

const fn f(
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    required: bool,
    hint: &'static str,
) -> Field {
    Field {
        name,
        label,
        kind,
        required,
        hint,
    }
}

/// The add-key form's fields for a provider type.
fn fields_for(t: &str) -> Vec<Field> {
    let mut v = vec![f(
        "name",
        "Name",
        "text",
        false,
        "optional; defaults to the type's usual variable name",
    )];
    match t {
        "azure" => v.extend([
            f("secret", "API key", "password", true, ""),
            f(
                "metadata.api_base",
                "Endpoint",
                "url",
                true,
                "https://<resource>.openai.azure.com",
            ),
            f(
                "metadata.deployment",
                "Deployment",
                "text",
                false,
                "optional; defaults to the model name",
            ),
            f(
                "metadata.api_version",
                "API version",
                "text",
                false,
                "optional; default 2024-10-21",
            ),
        ]),
        "bedrock" => v.extend([
            f("metadata.region", "Region", "text", true, "e.g. us-east-1"),
            f(
                "metadata.access_key_id",
                "Access key id",
                "text",
                true,
                "AKIA…",
            ),
            f("secret", "Secret access key", "password", true, ""),
            f(
                "metadata.session_token",
                "Session token",
                "password",
                false,
                "optional; for temporary credentials",
            ),
            f(
                "metadata.api_base",
                "Endpoint override",
                "url",
                false,
                "optional",
            ),
        ]),
        "ollama" => v.extend([
            f(
                "secret",
                "API key",
                "password",
                false,
                "optional for a local Ollama",
            ),
            f(
                "metadata.api_base",
                "Base URL",
                "url",
                false,
                "default http://127.0.0.1:11434/v1",
            ),
        ]),
        _ => v.extend([
            f("secret", "API key", "password", true, ""),
            f(
                "metadata.api_base",
                "Base URL override",
                "url",
                false,
                "optional; e.g. a regional or proxy endpoint",
            ),
        ]),
    }
    v.extend([
        f(
            "metadata.weight",
            "Weight",
            "number",
            false,
            "load-balancing share among keys of this type; default 1",
        ),
        f(
            "metadata.models",
            "Only these models",
            "text",
            false,
            "optional, comma-separated; empty: every model of the type",
        ),
    ]);
    v
}

pub struct KeyView {
    pub id: String,
    pub name: String,
    pub preview: String,
    pub weight: String,
    pub updated: String,
    pub updated_by: String,
    pub stale: bool,
    /// "", "Overridden" or "Inherited" (project pages, org keys), "Project key".
    pub status: &'static str,
    pub editable: bool,
    pub details: String,
}

pub struct TypeRow {
    pub t: &'static str,
    pub label: &'static str,
    pub keys: Vec<KeyView>,
    pub fields: Vec<Field>,
}

fn meta_str<'a>(p: &'a Provider, k: &str) -> &'a str {
    p.metadata.get(k).and_then(Value::as_str).unwrap_or("")
}

fn key_view(p: &Provider, project_page: bool) -> KeyView {
    let weight = p
        .metadata
        .get("weight")
        .and_then(Value::as_f64)
        .map(|w| format!("{w}"))
        .unwrap_or_else(|| "1".into());
    let mut details = Vec::new();
    for (k, label) in [
        ("api_base", "base URL"),
        ("deployment", "deployment"),
        ("api_version", "API version"),
        ("region", "region"),
        ("access_key_id", "access key id"),
    ] {
        let v = meta_str(p, k);
        if !v.is_empty() {
            details.push(format!("{label} {v}"));
        }
    }
    if let Some(m) = p.metadata.get("models").and_then(Value::as_array) {
        let names: Vec<&str> = m.iter().filter_map(Value::as_str).collect();
        details.push(format!("models: {}", names.join(", ")));
    }
    let status = match (project_page, p.scope.as_str(), p.overridden) {
        (false, _, _) => "",
        (true, "project", _) => "Project key",
        (true, _, true) => "Overridden",
        (true, _, false) => "Inherited",
    };
    KeyView {
        id: p.id.clone(),
        name: p.name.clone(),
        preview: p.preview_secret.clone(),
        weight,
        updated: fmt_time(p.updated_at),
        updated_by: p.updated_by.clone(),
        stale: p.stale,
        status,
        editable: !project_page || p.scope == "project",
        details: details.join(" · "),
    }
}

fn type_rows(list: &[Provider], project_page: bool) -> Vec<TypeRow> {
    STANDARD
        .iter()
        .map(|(t, label)| TypeRow {
            t,
            label,
            keys: list
                .iter()
                .filter(|p| p.provider_type == *t)
                .map(|p| key_view(p, project_page))
                .collect(),
            fields: fields_for(t),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "providers.html")]
struct ProvidersPage {
    l: Layout,
    e: Errors,
    rows: Vec<TypeRow>,
    /// Where the add forms post (org or project scope).
    action: String,
    project_level: bool,
}

async fn org_render(st: &AppState, v: &Viewer, org: &OrgId, done: &str, e: Errors) -> Page {
    let mut l = layout(st, v, org, None, "providers", "AI providers")
        .await
        .map_err(api_error_page)?;
    l.notice = notice(done).into();
    let list = providers::list_org(st, &v.who, org)
        .await
        .map_err(api_error_page)?;
    Ok(providers_page(
        l,
        e,
        format!("/ui/orgs/{org}/providers"),
        &list,
        false,
    ))
}

fn providers_page(
    l: Layout,
    e: Errors,
    action: String,
    list: &[Provider],
    project_level: bool,
) -> Response {
    render(
        e.status(),
        &ProvidersPage {
            action,
            rows: type_rows(list, project_level),
            l,
            e,
            project_level,
        },
    )
}

async fn project_render(st: &AppState, v: &Viewer, pid: &ProjectId, done: &str, e: Errors) -> Page {
    let p = projects::get(st, &v.who, pid)
        .await
        .map_err(api_error_page)?;
    let org = OrgId(p.org_id.clone());
    let title = format!("AI providers · {}", p.name);
    let mut l = layout(st, v, &org, Some(&p), "project-providers", &title)
        .await
        .map_err(api_error_page)?;
    l.notice = notice(done).into();
    let list = providers::list_project(st, &v.who, pid)
        .await
        .map_err(api_error_page)?;
    Ok(providers_page(
        l,
        e,
        format!("/ui/projects/{pid}/providers"),
        &list,
        true,
    ))
}

pub async fn org_page(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    Query(q): Query<Done>,
) -> Page {
    let org = OrgId::parse("org_id", &org).map_err(api_error_page)?;
    org_render(&st, &v, &org, &q.done, Errors::default()).await
}

pub async fn project_page(
    State(st): State<AppState>,
    v: Viewer,
    Path(pid): Path<String>,
    Query(q): Query<Done>,
) -> Page {
    let pid = ProjectId::parse("project_id", &pid).map_err(api_error_page)?;
    project_render(&st, &v, &pid, &q.done, Errors::default()).await
}

/// Builds `metadata` from the form's `metadata.*` fields (empty fields are left out) and, for
/// custom providers, the model table.
pub fn metadata_from_form(form: &Form, form_name: &str) -> Result<Map<String, Value>, FormError> {
    let mut m = Map::new();
    for (k, v) in &form.0 {
        let Some(key) = k.strip_prefix("metadata.") else {
            continue;
        };
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let value = match key {
            "weight" => match v.parse::<f64>() {
                Ok(w) if w.is_finite() => json!(w),
                _ => {
                    return Err(FormError::field(
                        form_name,
                        k,
                        "must be a number, e.g. 1 or 2.5",
                    ));
                }
            },
            "models" => Value::Array(
                v.split([',', '\n'])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.into()))
                    .collect(),
            ),
            "headers" => {
                let mut h = Map::new();
                for line in v.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    let Some((name, value)) = line.split_once(':') else {
                        return Err(FormError::field(
                            form_name,
                            k,
                            format!("each line must be `Name: value` (got {line:?})"),
                        ));
                    };
                    h.insert(name.trim().into(), Value::String(value.trim().into()));
                }
                Value::Object(h)
            }
            "supports_streaming" | "exclude_default_models" => {
                Value::Bool(v == "on" || v == "true")
            }
            _ => Value::String(v.into()),
        };
        m.insert(key.into(), value);
    }
    if form.has("model.name") {
        let names = form.all("model.name");
        let col = |n: &str| form.all(n);
        let (flavor, input, output, max_in, max_out) = (
            col("model.flavor"),
            col("model.input_cost"),
            col("model.output_cost"),
            col("model.max_input"),
            col("model.max_output"),
        );
        let mut models = Map::new();
        for (i, name) in names.iter().enumerate() {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let mut model = Map::new();
            let flavor = flavor.get(i).copied().unwrap_or("chat");
            model.insert(
                "flavor".into(),
                json!(if flavor.is_empty() { "chat" } else { flavor }),
            );
            for (vals, key, field, int) in [
                (
                    &input,
                    "input_cost_per_mil_tokens",
                    "model.input_cost",
                    false,
                ),
                (
                    &output,
                    "output_cost_per_mil_tokens",
                    "model.output_cost",
                    false,
                ),
                (&max_in, "max_input_tokens", "model.max_input", true),
                (&max_out, "max_output_tokens", "model.max_output", true),
            ] {
                let raw = vals.get(i).map(|s| s.trim()).unwrap_or("");
                if raw.is_empty() {
                    continue;
                }
                let v = if int {
                    raw.parse::<u64>().ok().map(|n| json!(n))
                } else {
                    raw.parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .map(|x| json!(x))
                };
                let Some(v) = v else {
                    return Err(FormError::field(
                        form_name,
                        field,
                        format!("model {name}: {raw:?} is not a number"),
                    ));
                };
                model.insert(key.into(), v);
            }
            models.insert(name.into(), Value::Object(model));
        }
        m.insert("custom_models".into(), Value::Object(models));
    }
    Ok(m)
}

fn create_input(form: &Form, form_name: &str, t: &str) -> Result<CreateProvider, FormError> {
    let metadata = metadata_from_form(form, form_name)?;
    Ok(CreateProvider {
        name: Some(form.get("name").trim().to_string()).filter(|s| !s.is_empty()),
        provider_type: t.into(),
        secret: Some(form.get("secret").to_string()).filter(|s| !s.is_empty()),
        metadata: (!metadata.is_empty()).then_some(Value::Object(metadata)),
    })
}

async fn add(st: &AppState, v: &Viewer, scope: Scope, form: &Form) -> Result<(), FormError> {
    let t = form.get("type");
    let form_name = format!("add-{t}");
    let input = create_input(form, &form_name, t)?;
    providers::create(st, &v.who, scope, input)
        .await
        .map(|_| ())
        .map_err(|e| FormError::from_api(&form_name, &e))
}

pub async fn org_add(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    form: Form,
) -> Page {
    v.check_csrf(&form)?;
    let org = OrgId::parse("org_id", &org).map_err(api_error_page)?;
    match add(&st, &v, Scope::Org(org.clone()), &form).await {
        Ok(()) => Ok(see_other(&format!(
            "/ui/orgs/{org}/providers?done=provider-added"
        ))),
        Err(e) => org_render(&st, &v, &org, "", Errors(Some(e))).await,
    }
}

pub async fn project_add(
    State(st): State<AppState>,
    v: Viewer,
    Path(pid): Path<String>,
    form: Form,
) -> Page {
    v.check_csrf(&form)?;
    let pid = ProjectId::parse("project_id", &pid).map_err(api_error_page)?;
    match add(&st, &v, Scope::Project(pid.clone()), &form).await {
        Ok(()) => Ok(see_other(&format!(
            "/ui/projects/{pid}/providers?done=provider-added"
        ))),
        Err(e) => project_render(&st, &v, &pid, "", Errors(Some(e))).await,
    }
}

/// The page a credential is managed on.
fn home_of(p: &Provider) -> String {
    match (&p.project_id, p.provider_type.as_str()) {
        (Some(pid), _) => format!("/ui/projects/{pid}/providers"),
        (None, "custom") => format!("/ui/orgs/{}/custom-providers", p.org_id),
        (None, _) => format!("/ui/orgs/{}/providers", p.org_id),
    }
}

async fn render_home(st: &AppState, v: &Viewer, p: &Provider, e: FormError) -> Page {
    let org = OrgId(p.org_id.clone());
    match (&p.project_id, p.provider_type.as_str()) {
        (Some(pid), _) => project_render(st, v, &ProjectId(pid.clone()), "", Errors(Some(e))).await,
        (None, "custom") => custom_render(st, v, &org, "", Errors(Some(e))).await,
        (None, _) => org_render(st, v, &org, "", Errors(Some(e))).await,
    }
}

/// `action=update` (new secret and/or changed fields; custom providers send their whole form)
/// or `action=delete`.
pub async fn provider_action(
    State(st): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    form: Form,
) -> Page {
    v.check_csrf(&form)?;
    let cid = CredentialId::parse("id", &id).map_err(api_error_page)?;
    let current = providers::get(&st, &v.who, &cid)
        .await
        .map_err(api_error_page)?;
    let form_name = format!("key-{}", current.id);
    let home = home_of(&current);
    match form.get("action") {
        "delete" => match providers::delete(&st, &v.who, &cid).await {
            Ok(()) => Ok(see_other(&format!("{home}?done=provider-removed"))),
            Err(e) => render_home(&st, &v, &current, FormError::from_api(&form_name, &e)).await,
        },
        "update" => {
            let changed = match metadata_from_form(&form, &form_name) {
                Ok(m) => m,
                Err(e) => return render_home(&st, &v, &current, e).await,
            };
            let metadata = if current.provider_type == "custom" {
                let mut m = changed;
                m.entry("supports_streaming").or_insert(Value::Bool(false));
                m
            } else {
                // Only the fields on the form change; the rest is kept as stored.
                let mut m = current.metadata.as_object().cloned().unwrap_or_default();
                for (k, _) in &form.0 {
                    if let Some(key) = k.strip_prefix("metadata.") {
                        match changed.get(key) {
                            Some(v) => m.insert(key.into(), v.clone()),
                            None => m.remove(key),
                        };
                    }
                }
                m
            };
            let name = form.get("name").trim();
            let input = UpdateProvider {
                name: (!name.is_empty()).then(|| name.to_string()),
                secret: Some(form.get("secret").to_string()).filter(|s| !s.is_empty()),
                metadata: Some(Value::Object(metadata)),
            };
            match providers::update(&st, &v.who, &cid, input).await {
                Ok(_) => Ok(see_other(&format!("{home}?done=provider-updated"))),
                Err(e) => render_home(&st, &v, &current, FormError::from_api(&form_name, &e)).await,
            }
        }
        _ => Err(error_page(
            StatusCode::BAD_REQUEST,
            "Unknown action",
            "Expected update or delete.",
        )),
    }
}

// ---- custom providers ----

pub struct ModelRow {
    pub name: String,
    pub flavor: String,
    pub input: String,
    pub output: String,
    pub max_in: String,
    pub max_out: String,
}

pub struct CustomView {
    pub id: String,
    pub name: String,
    pub api_base: String,
    pub format: String,
    pub auth_format: String,
    pub streaming: bool,
    pub headers: String,
    /// Sealed headers exist; an empty textarea keeps them.
    pub headers_stored: bool,
    pub preview: String,
    pub updated: String,
    pub updated_by: String,
    pub models: Vec<ModelRow>,
}

fn num(v: Option<&Value>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn custom_view(p: &Provider) -> CustomView {
    let mut models: Vec<ModelRow> = p
        .metadata
        .get("custom_models")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(name, d)| ModelRow {
                    name: name.clone(),
                    flavor: d
                        .get("flavor")
                        .and_then(Value::as_str)
                        .unwrap_or("chat")
                        .into(),
                    input: num(d.get("input_cost_per_mil_tokens")),
                    output: num(d.get("output_cost_per_mil_tokens")),
                    max_in: num(d.get("max_input_tokens")),
                    max_out: num(d.get("max_output_tokens")),
                })
                .collect()
        })
        .unwrap_or_default();
    models.push(blank_model());
    // Header values (and names) are sealed; reads show only that some are stored.
    let headers_stored = p.metadata.get("headers").is_some();
    CustomView {
        id: p.id.clone(),
        name: p.name.clone(),
        api_base: meta_str(p, "api_base").into(),
        format: meta_str(p, "format").into(),
        auth_format: meta_str(p, "auth_format").into(),
        streaming: p
            .metadata
            .get("supports_streaming")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        headers: String::new(),
        headers_stored,
        preview: p.preview_secret.clone(),
        updated: fmt_time(p.updated_at),
        updated_by: p.updated_by.clone(),
        models,
    }
}

fn blank_model() -> ModelRow {
    ModelRow {
        name: String::new(),
        flavor: "chat".into(),
        input: String::new(),
        output: String::new(),
        max_in: String::new(),
        max_out: String::new(),
    }
}

#[derive(Template)]
#[template(path = "custom_providers.html")]
struct CustomPage {
    l: Layout,
    e: Errors,
    items: Vec<CustomView>,
    /// One empty provider with three blank model rows, for the add form.
    new_item: Vec<CustomView>,
}

async fn custom_render(st: &AppState, v: &Viewer, org: &OrgId, done: &str, e: Errors) -> Page {
    let mut l = layout(st, v, org, None, "custom", "Custom providers")
        .await
        .map_err(api_error_page)?;
    l.notice = notice(done).into();
    let list = providers::list_org(st, &v.who, org)
        .await
        .map_err(api_error_page)?;
    let items = list
        .iter()
        .filter(|p| p.provider_type == "custom")
        .map(custom_view)
        .collect();
    Ok(render(
        e.status(),
        &CustomPage {
            l,
            e,
            items,
            new_item: vec![CustomView {
                id: String::new(),
                name: String::new(),
                api_base: String::new(),
                format: "openai".into(),
                auth_format: "bearer".into(),
                streaming: true,
                headers: String::new(),
                headers_stored: false,
                preview: String::new(),
                updated: String::new(),
                updated_by: String::new(),
                models: vec![blank_model(), blank_model(), blank_model()],
            }],
        },
    ))
}

pub async fn custom_page(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    Query(q): Query<Done>,
) -> Page {
    let org = OrgId::parse("org_id", &org).map_err(api_error_page)?;
    custom_render(&st, &v, &org, &q.done, Errors::default()).await
}

pub async fn custom_add(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    form: Form,
) -> Page {
    v.check_csrf(&form)?;
    let org = OrgId::parse("org_id", &org).map_err(api_error_page)?;
    let result = match create_input(&form, "add-custom", "custom") {
        Ok(mut input) => {
            if let Some(Value::Object(m)) = input.metadata.as_mut() {
                m.entry("supports_streaming").or_insert(Value::Bool(false));
            }
            providers::create(&st, &v.who, Scope::Org(org.clone()), input)
                .await
                .map(|_| ())
                .map_err(|e| FormError::from_api("add-custom", &e))
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(see_other(&format!(
            "/ui/orgs/{org}/custom-providers?done=custom-saved"
        ))),
        Err(e) => custom_render(&st, &v, &org, "", Errors(Some(e))).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form {
        Form(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
    }

    #[test]
    fn form_fields_become_metadata() {
        let m = metadata_from_form(
            &form(&[
                ("metadata.weight", "2.5"),
                ("metadata.models", "gpt-4o, gpt-4o-mini\n"),
                ("metadata.api_base", " "),
                ("metadata.headers", "X-Team: ml\n\nX-Env: prod"),
                ("metadata.supports_streaming", "on"),
                ("model.name", "llama-3"),
                ("model.flavor", "chat"),
                ("model.input_cost", "0.5"),
                ("model.output_cost", ""),
                ("model.max_input", "8192"),
                ("model.max_output", ""),
                ("model.name", ""),
                ("model.flavor", "chat"),
                ("model.input_cost", ""),
                ("model.output_cost", ""),
                ("model.max_input", ""),
                ("model.max_output", ""),
            ]),
            "f",
        )
        .unwrap();
        assert_eq!(
            Value::Object(m),
            json!({
                "weight": 2.5,
                "models": ["gpt-4o", "gpt-4o-mini"],
                "headers": {"X-Team": "ml", "X-Env": "prod"},
                "supports_streaming": true,
                "custom_models": {"llama-3": {"flavor": "chat", "input_cost_per_mil_tokens": 0.5, "max_input_tokens": 8192}}
            })
        );
    }

    #[test]
    fn bad_numbers_and_headers_name_their_field() {
        let e = metadata_from_form(&form(&[("metadata.weight", "heavy")]), "f").unwrap_err();
        assert_eq!(e.field, "metadata.weight");
        let e = metadata_from_form(&form(&[("metadata.headers", "no colon")]), "f").unwrap_err();
        assert_eq!(e.field, "metadata.headers");
        let e = metadata_from_form(
            &form(&[("model.name", "m"), ("model.max_input", "-3")]),
            "f",
        )
        .unwrap_err();
        assert_eq!(e.field, "model.max_input");
    }
}
