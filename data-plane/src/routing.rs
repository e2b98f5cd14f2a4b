//! Which credentials may serve a request: the project context (API key restriction,
//! `x-bt-project-id`, `x-bt-parent`), the org check (`x-bt-org-name`), the precedence rule
//! (project credentials shadow org credentials of the same type; for `custom`, of the same
//! name), endpoint pinning (`x-bt-endpoint-name`) and model eligibility.

use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use llm::catalog::{Flavor, Format};

use crate::eligibility::{Served, serves};
use crate::error::ProxyError;
use crate::snapshot::{ApiKey, Credential, Org, Project, Snapshot};

const X_BT_ORG_NAME: HeaderName = HeaderName::from_static("x-bt-org-name");
const X_BT_PROJECT_ID: HeaderName = HeaderName::from_static("x-bt-project-id");
const X_BT_PARENT: HeaderName = HeaderName::from_static("x-bt-parent");

/// What kind of call is being routed (decides which models and formats qualify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Chat,
    Completions,
    Embeddings,
    Responses,
    /// Anthropic Messages ingress: any chat model.
    Messages,
    Realtime,
}

impl RouteKind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [RouteKind; 6] = [
        RouteKind::Chat,
        RouteKind::Completions,
        RouteKind::Embeddings,
        RouteKind::Responses,
        RouteKind::Messages,
        RouteKind::Realtime,
    ];

    pub fn path(self) -> &'static str {
        match self {
            RouteKind::Chat | RouteKind::Messages => "/chat/completions",
            RouteKind::Completions => "/completions",
            RouteKind::Embeddings => "/embeddings",
            RouteKind::Responses => "/responses",
            RouteKind::Realtime => "/realtime",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Chat => "chat_completions",
            RouteKind::Completions => "completions",
            RouteKind::Embeddings => "embeddings",
            RouteKind::Responses => "responses",
            RouteKind::Messages => "anthropic_messages",
            RouteKind::Realtime => "realtime",
        }
    }

    fn accepts(self, served: &Served) -> bool {
        match self {
            RouteKind::Chat | RouteKind::Messages => served.flavor == Flavor::Chat,
            RouteKind::Completions => {
                served.flavor == Flavor::Completion && served.format == Format::Openai
            }
            RouteKind::Embeddings => {
                served.flavor == Flavor::Embedding && served.format == Format::Openai
            }
            RouteKind::Responses | RouteKind::Realtime => {
                served.flavor == Flavor::Chat && served.format == Format::Openai
            }
        }
    }
}

/// Who is calling, in which org and project.
#[derive(Debug, Clone)]
pub struct Context<'s> {
    pub key: &'s ApiKey,
    pub org: &'s Org,
    /// The project whose credentials apply (its own shadow the org's).
    pub project: Option<&'s Project>,
    /// The project `x-bt-parent` asked to log the call to.
    pub log_project: Option<&'s Project>,
}

/// Parses `x-bt-parent`: `project_id:<id>` or `project_name:<name>`.
pub fn parse_parent(v: &str) -> Result<(&'static str, &str), ProxyError> {
    match v.split_once(':') {
        Some(("project_id", id)) if !id.is_empty() => Ok(("id", id)),
        Some(("project_name", name)) if !name.is_empty() => Ok(("name", name)),
        _ => Err(ProxyError::invalid_param(
            "x-bt-parent",
            "x-bt-parent must be `project_id:<id>` or `project_name:<name>`.",
        )),
    }
}

/// A request header as trimmed text (400 naming it when it is not ASCII). Names are
/// `HeaderName` constants: a `&str` name is parsed and lower-cased on every lookup.
pub(crate) fn header<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h str>, ProxyError> {
    let name_str = name.as_str();
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| ProxyError::invalid_param(name_str, format!("{name_str} must be ASCII."))),
    }
}

/// `default_parent` is a temporary credential's logging grant, used when the request sends no
/// `x-bt-parent`.
pub fn resolve_context<'s>(
    snap: &'s Snapshot,
    key: &'s ApiKey,
    headers: &HeaderMap,
    default_parent: Option<&'s str>,
) -> Result<Context<'s>, ProxyError> {
    let org = snap
        .orgs
        .get(&*key.org_id)
        .ok_or_else(|| ProxyError::unauthorized("Invalid API key."))?;
    if let Some(name) = header(headers, &X_BT_ORG_NAME)?
        && name != org.name
    {
        return Err(ProxyError::forbidden(
            "x-bt-org-name does not match the API key's organization.",
        ));
    }
    let foreign = || ProxyError::forbidden("The project is not accessible with this API key.");
    let by_id = |id: &str| {
        snap.projects
            .get(id)
            .map(|p| &**p)
            .filter(|p| p.org_id == org.id)
    };
    let mut chosen: Option<&'s Project> = None;
    let mut choose = |p: &'s Project, source: &str| -> Result<(), ProxyError> {
        match chosen {
            Some(c) if c.id != p.id => Err(ProxyError::bad_request(
                "conflicting_project",
                format!("{source} names a different project than the API key or another header."),
            )),
            _ => {
                chosen = Some(p);
                Ok(())
            }
        }
    };
    if let Some(pid) = &key.project_id {
        choose(by_id(pid).ok_or_else(foreign)?, "the API key")?;
    }
    if let Some(pid) = header(headers, &X_BT_PROJECT_ID)? {
        choose(by_id(pid).ok_or_else(foreign)?, "x-bt-project-id")?;
    }
    let mut log_project = None;
    if let Some(parent) = header(headers, &X_BT_PARENT)?.or(default_parent) {
        let (kind, v) = parse_parent(parent)?;
        let p = match kind {
            "id" => by_id(v),
            _ => snap.project_named(&org.id, v),
        }
        .ok_or_else(foreign)?;
        choose(p, "x-bt-parent")?;
        log_project = Some(p);
    }
    Ok(Context {
        key,
        org,
        project: chosen,
        log_project,
    })
}

/// A credential that can serve the request, with how.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub cred: Arc<Credential>,
    pub served: Served,
}

/// Does project credential `p` shadow org credential `o`?
pub fn shadows(p: &Credential, o: &Credential) -> bool {
    p.provider_type == o.provider_type && (o.provider_type != "custom" || p.name == o.name)
}

/// The credentials in reach of this context, after precedence.
pub fn in_reach<'s>(snap: &'s Snapshot, ctx: &Context<'s>) -> Vec<&'s Arc<Credential>> {
    let org = snap.org_credentials(&ctx.org.id);
    match ctx.project {
        Some(p) => {
            let own = snap.project_credentials(&p.id);
            own.iter()
                .chain(org.iter().filter(|o| !own.iter().any(|p| shadows(p, o))))
                .collect()
        }
        None => org.iter().collect(),
    }
}

pub fn candidates(
    snap: &Snapshot,
    ctx: &Context<'_>,
    model: &str,
    kind: RouteKind,
    endpoint_name: Option<&str>,
) -> Result<Vec<Candidate>, ProxyError> {
    let reach = in_reach(snap, ctx);
    let mut out = Vec::new();
    let mut wrong_flavor = None;
    for cred in reach
        .iter()
        .filter(|c| endpoint_name.is_none_or(|n| c.name == n))
    {
        if let Some(served) = serves(&cred.provider_type, &cred.models, model, &snap.catalog) {
            if kind.accepts(&served) {
                out.push(Candidate {
                    cred: Arc::clone(cred),
                    served,
                });
            } else {
                wrong_flavor = Some(served);
            }
        }
    }
    if !out.is_empty() {
        return Ok(out);
    }
    if let Some(s) = wrong_flavor {
        let hint = match s.flavor {
            Flavor::Embedding => "an embedding model; call /embeddings",
            Flavor::Completion => "a completion model; call /completions",
            Flavor::Chat => "a chat model; call /chat/completions",
        };
        let fmt = if s.format != Format::Openai
            && matches!(
                kind,
                RouteKind::Responses | RouteKind::Completions | RouteKind::Embeddings
            ) {
            format!(
                " (this route only reaches OpenAI-format providers; {model} is served in {} format)",
                s.format.as_str()
            )
        } else {
            String::new()
        };
        return Err(ProxyError::invalid_param(
            "model",
            format!("`{model}` is {hint}.{fmt}"),
        ));
    }
    if let Some(n) = endpoint_name
        && !reach.iter().any(|c| c.name == n)
    {
        return Err(ProxyError::invalid_param(
            "x-bt-endpoint-name",
            format!("No provider credential named `{n}` is available here."),
        ));
    }
    let known = snap.catalog.get(model).is_some()
        || snap.all_credentials().any(|c| {
            c.org_id == ctx.org.id
                && (c.models.custom_models.contains_key(model)
                    || c.models.models.iter().any(|m| m == model))
        });
    if !known {
        return Err(ProxyError::model_not_found(model));
    }
    let providers = snap
        .catalog
        .get(model)
        .map(|s| s.providers.join(", "))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "a provider that serves it".into());
    let place = match ctx.project {
        Some(p) => format!("the organization's AI providers or project `{}`'s", p.name),
        None => "the organization's AI providers (Settings → AI providers)".to_string(),
    };
    Err(ProxyError {
        param: Some("model".into()),
        ..ProxyError::bad_request(
            "no_credential",
            format!(
                "No provider credential can serve `{model}` here. Add a key for {providers} in {place}."
            ),
        )
    })
}
