//! The models an organization (or one project) can use: the catalog plus custom models, each
//! with the credentials that serve it — computed with the same eligibility rules as the nodes.

use serde::Serialize;

use crate::db;
use crate::domain::{OrgId, ProjectId};
use crate::error::ApiResult;
use crate::service::{Principal, auth, providers::shadows};
use crate::state::AppState;
use data_plane::eligibility::{CredentialModels, served_models, serves};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServedBy {
    pub credential_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub provider_type: String,
    pub scope: String,
    pub project_id: Option<String>,
    /// The model id sent to this provider (equivalent models differ per provider).
    pub upstream_model: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelEntry {
    pub id: String,
    pub display_name: Option<String>,
    pub format: Option<String>,
    pub flavor: String,
    pub custom: bool,
    pub input_cost_per_mil_tokens: f64,
    pub output_cost_per_mil_tokens: f64,
    pub input_cache_read_cost_per_mil_tokens: Option<f64>,
    pub input_cache_write_cost_per_mil_tokens: Option<f64>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub served_by: Vec<ServedBy>,
}

pub async fn list(
    st: &AppState,
    who: &Principal,
    org_id: &OrgId,
    project: Option<&ProjectId>,
    available_only: bool,
) -> ApiResult<Vec<ModelEntry>> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_read()?;
    let org_creds = db::providers::list_org(st.db().pool(), org_id.as_str()).await?;
    let mut creds = Vec::new();
    match project {
        Some(pid) => {
            let (p, _) = auth::project_access(st, who, pid).await?;
            let own = db::providers::list_project(st.db().pool(), &p.id).await?;
            for o in org_creds {
                if !own
                    .iter()
                    .any(|r| shadows(&r.provider_type, &r.name, &o.provider_type, &o.name))
                {
                    creds.push(o);
                }
            }
            creds.extend(own);
        }
        None => {
            creds.extend(org_creds);
            for p in db::projects::list(st.db().pool(), org_id.as_str()).await? {
                if a.sees_project(&p.id) {
                    creds.extend(db::providers::list_project(st.db().pool(), &p.id).await?);
                }
            }
        }
    }
    let catalog = llm::Catalog::builtin();
    let parsed: Vec<(db::providers::CredentialRow, CredentialModels)> = creds
        .into_iter()
        .map(|c| {
            let meta: serde_json::Value = serde_json::from_str(&c.metadata).unwrap_or_default();
            let m = CredentialModels::from_metadata(&meta);
            (c, m)
        })
        .collect();
    let mut names: Vec<String> = catalog.models.keys().cloned().collect();
    for (c, m) in &parsed {
        names.extend(served_models(&c.provider_type, m, &catalog));
    }
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let mut served_by = Vec::new();
        let mut spec = catalog.get(&name).cloned();
        let mut custom = false;
        for (c, m) in &parsed {
            if let Some(s) = serves(&c.provider_type, m, &name, &catalog) {
                if s.custom {
                    custom = true;
                    if spec.is_none() {
                        spec = s.spec.clone();
                    }
                }
                served_by.push(ServedBy {
                    credential_id: c.id.clone(),
                    name: c.name.clone(),
                    provider_type: c.provider_type.clone(),
                    scope: if c.project_id.is_some() {
                        "project"
                    } else {
                        "org"
                    }
                    .into(),
                    project_id: c.project_id.clone(),
                    upstream_model: s.upstream_model,
                });
            }
        }
        if available_only && served_by.is_empty() {
            continue;
        }
        let spec = spec.unwrap_or_default();
        out.push(ModelEntry {
            id: name,
            display_name: spec.display_name.clone(),
            format: spec.format.map(|f| f.as_str().to_string()),
            flavor: spec.flavor.as_str().into(),
            custom,
            input_cost_per_mil_tokens: spec.input_cost_per_mil_tokens,
            output_cost_per_mil_tokens: spec.output_cost_per_mil_tokens,
            input_cache_read_cost_per_mil_tokens: spec.input_cache_read_cost_per_mil_tokens,
            input_cache_write_cost_per_mil_tokens: spec.input_cache_write_cost_per_mil_tokens,
            max_input_tokens: spec.max_input_tokens,
            max_output_tokens: spec.max_output_tokens,
            served_by,
        });
    }
    Ok(out)
}
