//! Organizations: the tenant. Instance admins create them; owners delete them.

use serde::{Deserialize, Serialize};

use crate::db::{self, orgs::OrgRow};
use crate::domain::{OrgId, OrgRole, names};
use crate::error::{ApiError, ApiResult};
use crate::service::{Principal, audit, auth, commit_config_rows};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Org {
    pub id: String,
    pub name: String,
    /// The caller's role in this organization.
    #[schema(value_type = Option<String>)]
    pub role: Option<OrgRole>,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

impl Org {
    fn from_row(r: OrgRow, role: Option<OrgRole>) -> Org {
        Org {
            id: r.id,
            name: r.name,
            role,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    pub name: String,
    /// Email of an existing user to make the organization's owner.
    #[serde(default)]
    pub owner_email: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    #[serde(default)]
    pub name: Option<String>,
}

pub async fn list(st: &AppState, who: &Principal) -> ApiResult<Vec<Org>> {
    match who {
        Principal::User {
            id,
            instance_admin: true,
            ..
        } => {
            let mine = db::users::members_of_user(st.db().pool(), id.as_str()).await?;
            let rows = db::orgs::list_all(st.db().pool()).await?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    let role = mine
                        .iter()
                        .find(|(o, _)| *o == r.id)
                        .and_then(|(_, role)| OrgRole::parse(role).ok())
                        .or(Some(OrgRole::Owner));
                    Org::from_row(r, role)
                })
                .collect())
        }
        Principal::User { id, .. } => {
            let mine = db::users::members_of_user(st.db().pool(), id.as_str()).await?;
            let rows = db::orgs::list_for_user(st.db().pool(), id.as_str()).await?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    let role = mine
                        .iter()
                        .find(|(o, _)| *o == r.id)
                        .and_then(|(_, role)| OrgRole::parse(role).ok());
                    Org::from_row(r, role)
                })
                .collect())
        }
        Principal::ApiKey { org_id, role, .. } => {
            if *role == crate::domain::KeyRole::Proxy {
                return Err(ApiError::forbidden(
                    "proxy API keys can only call the data plane; use an admin key",
                ));
            }
            let row = db::orgs::get(st.db().pool(), org_id.as_str())
                .await?
                .ok_or_else(|| ApiError::not_found("organization"))?;
            Ok(vec![Org::from_row(row, Some(OrgRole::Admin))])
        }
    }
}

pub async fn create(st: &AppState, who: &Principal, input: CreateOrg) -> ApiResult<Org> {
    if !who.is_instance_admin() {
        return Err(ApiError::forbidden(
            "only an instance admin can create organizations",
        ));
    }
    let name = names::org_name(&input.name)?;
    let owner = match &input.owner_email {
        Some(e) => {
            let email = names::email(e)?;
            Some(
                db::users::get_by_email(st.db().pool(), &email)
                    .await?
                    .ok_or_else(|| {
                        ApiError::validation("owner_email", "no user with this email")
                    })?,
            )
        }
        None => None,
    };
    let now = st.now_ms();
    let row = OrgRow {
        id: OrgId::generate().0,
        name: name.clone(),
        created_at: now,
        updated_at: now,
    };
    let mut tx = st.db().begin().await?;
    db::orgs::insert(&mut *tx, &row)
        .await
        .map_err(|e| dup(e, &name))?;
    if let Some(u) = &owner {
        db::users::add_member(&mut *tx, &row.id, &u.id, "owner", now).await?;
    }
    audit::record(
        &mut tx,
        st,
        who,
        Some(&row.id),
        "org.create",
        ("org", &row.id),
        serde_json::json!({"name": name, "owner": owner.as_ref().map(|u| &u.email)}),
    )
    .await?;
    commit_config_rows(st, tx).await?;
    Ok(Org::from_row(row, Some(OrgRole::Owner)))
}

fn dup(e: db::DbError, name: &str) -> ApiError {
    match e {
        db::DbError::Unique(_) => {
            ApiError::conflict(format!("an organization named {name:?} already exists"))
        }
        other => other.into(),
    }
}

pub async fn get(st: &AppState, who: &Principal, org_id: &OrgId) -> ApiResult<Org> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_read()?;
    Ok(Org::from_row(a.org, Some(a.role)))
}

pub async fn update(
    st: &AppState,
    who: &Principal,
    org_id: &OrgId,
    input: UpdateOrg,
) -> ApiResult<Org> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_manage()?;
    let mut row = a.org.clone();
    if let Some(n) = input.name {
        let name = names::org_name(&n)?;
        let now = st.now_ms();
        let mut tx = st.db().begin().await?;
        db::orgs::rename(&mut *tx, &row.id, &name, now)
            .await
            .map_err(|e| dup(e, &name))?;
        audit::record(
            &mut tx,
            st,
            who,
            Some(&row.id),
            "org.update",
            ("org", &row.id),
            serde_json::json!({"name": {"from": row.name, "to": name}}),
        )
        .await?;
        commit_config_rows(st, tx).await?;
        row.name = name;
        row.updated_at = now;
    }
    Ok(Org::from_row(row, Some(a.role)))
}

pub async fn delete(st: &AppState, who: &Principal, org_id: &OrgId) -> ApiResult<()> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_manage()?;
    if a.role != OrgRole::Owner {
        return Err(ApiError::forbidden(
            "only an owner can delete an organization",
        ));
    }
    let mut tx = st.db().begin().await?;
    db::logs::delete_org(&mut tx, org_id.as_str()).await?;
    db::orgs::delete(&mut *tx, org_id.as_str()).await?;
    audit::record(
        &mut tx,
        st,
        who,
        Some(org_id.as_str()),
        "org.delete",
        ("org", org_id.as_str()),
        serde_json::json!({"name": a.org.name}),
    )
    .await?;
    commit_config_rows(st, tx).await
}
