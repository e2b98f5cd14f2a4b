//! Projects: belong to one organization; own their provider keys (overriding the org's), logs
//! and usage.

use serde::{Deserialize, Serialize};

use crate::db::{self, projects::ProjectRow};
use crate::domain::{OrgId, ProjectId, names};
use crate::error::{ApiError, ApiResult};
use crate::service::{Principal, audit, auth, commit_config_rows};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Project {
    pub id: String,
    pub org_id: String,
    pub name: String,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

impl From<ProjectRow> for Project {
    fn from(r: ProjectRow) -> Project {
        Project {
            id: r.id,
            org_id: r.org_id,
            name: r.name,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    #[serde(default)]
    pub name: Option<String>,
}

fn dup(e: db::DbError, name: &str) -> ApiError {
    match e {
        db::DbError::Unique(_) => ApiError::conflict(format!(
            "a project named {name:?} already exists in this organization"
        )),
        other => other.into(),
    }
}

pub async fn list(st: &AppState, who: &Principal, org_id: &OrgId) -> ApiResult<Vec<Project>> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_read()?;
    let rows = db::projects::list(st.db().pool(), org_id.as_str()).await?;
    Ok(rows
        .into_iter()
        .filter(|p| a.sees_project(&p.id))
        .map(Project::from)
        .collect())
}

pub async fn create(
    st: &AppState,
    who: &Principal,
    org_id: &OrgId,
    input: CreateProject,
) -> ApiResult<Project> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_manage()?;
    let name = names::name("name", &input.name, 128)?;
    let now = st.now_ms();
    let row = ProjectRow {
        id: ProjectId::generate().0,
        org_id: org_id.0.clone(),
        name: name.clone(),
        created_at: now,
        updated_at: now,
    };
    let mut tx = st.db().begin().await?;
    db::projects::insert(&mut *tx, &row)
        .await
        .map_err(|e| dup(e, &name))?;
    audit::record(
        &mut tx,
        st,
        who,
        Some(org_id.as_str()),
        "project.create",
        ("project", &row.id),
        serde_json::json!({"name": name}),
    )
    .await?;
    commit_config_rows(st, tx).await?;
    Ok(row.into())
}

pub async fn get(st: &AppState, who: &Principal, id: &ProjectId) -> ApiResult<Project> {
    let (p, a) = auth::project_access(st, who, id).await?;
    a.require_read()?;
    Ok(p.into())
}

pub async fn update(
    st: &AppState,
    who: &Principal,
    id: &ProjectId,
    input: UpdateProject,
) -> ApiResult<Project> {
    let (mut p, a) = auth::project_access(st, who, id).await?;
    a.require_manage_project(&p.id)?;
    if let Some(n) = input.name {
        let name = names::name("name", &n, 128)?;
        let now = st.now_ms();
        let mut tx = st.db().begin().await?;
        db::projects::rename(&mut *tx, &p.id, &name, now)
            .await
            .map_err(|e| dup(e, &name))?;
        audit::record(
            &mut tx,
            st,
            who,
            Some(&p.org_id),
            "project.update",
            ("project", &p.id),
            serde_json::json!({"name": {"from": p.name, "to": name}}),
        )
        .await?;
        commit_config_rows(st, tx).await?;
        p.name = name;
        p.updated_at = now;
    }
    Ok(p.into())
}

pub async fn delete(st: &AppState, who: &Principal, id: &ProjectId) -> ApiResult<()> {
    let (p, a) = auth::project_access(st, who, id).await?;
    a.require_manage()?;
    let mut tx = st.db().begin().await?;
    db::projects::delete(&mut *tx, &p.id).await?;
    audit::record(
        &mut tx,
        st,
        who,
        Some(&p.org_id),
        "project.delete",
        ("project", &p.id),
        serde_json::json!({"name": p.name}),
    )
    .await?;
    commit_config_rows(st, tx).await
}
