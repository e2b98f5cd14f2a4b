//! Members of an organization and their roles. Admins manage members; only owners grant or
//! touch the owner role; the last owner cannot be removed or demoted.

use serde::{Deserialize, Serialize};

use crate::crypto::{password, tokens};
use crate::db::{self, users::UserRow};
use crate::domain::{OrgId, OrgRole, UserId, names};
use crate::error::{ApiError, ApiResult};
use crate::service::{Principal, audit, auth, commit};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub user_id: String,
    pub email: String,
    #[schema(value_type = String)]
    pub role: OrgRole,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Only when this call created a new user without a password: a one-time token for the
    /// invitee to set one (`POST /ui/invite/{token}` in the web admin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_token: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub email: String,
    pub role: String,
    /// Sets the password of a new user; without it an invite token is returned.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: String,
}

pub async fn list(st: &AppState, who: &Principal, org_id: &OrgId) -> ApiResult<Vec<Member>> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_read()?;
    let rows = db::users::members(st.db().pool(), org_id.as_str()).await?;
    rows.into_iter()
        .map(|m| {
            Ok(Member {
                role: OrgRole::parse(&m.role)?,
                user_id: m.user_id,
                email: m.email,
                created_at: m.created_at,
                invite_token: None,
            })
        })
        .collect()
}

pub async fn add(
    st: &AppState,
    who: &Principal,
    org_id: &OrgId,
    input: AddMember,
) -> ApiResult<Member> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_manage()?;
    let email = names::email(&input.email)?;
    let role = OrgRole::parse(&input.role)?;
    if role == OrgRole::Owner && a.role != OrgRole::Owner {
        return Err(ApiError::forbidden("only an owner can add an owner"));
    }
    if let Some(pw) = &input.password {
        password::check_policy(pw, &email).map_err(|m| ApiError::validation("password", m))?;
    }
    let now = st.now_ms();
    let existing = db::users::get_by_email(st.db().pool(), &email).await?;
    // A new user's password is hashed before the write transaction begins: argon2id takes tens
    // of milliseconds, which every other writer would otherwise wait out.
    let new_hash = match (&existing, &input.password) {
        (None, Some(pw)) => Some(
            password::hash_off_runtime(pw)
                .await
                .map_err(|_| ApiError::internal())?,
        ),
        _ => None,
    };
    let mut tx = st.db().begin().await?;
    let mut invite_token = None;
    let user_id = match existing {
        Some(u) => {
            if input.password.is_some() {
                return Err(ApiError::validation(
                    "password",
                    "this user already exists; they keep their own password",
                ));
            }
            u.id
        }
        None => {
            let id = UserId::generate().0;
            let hash = new_hash;
            let invite_hash = if hash.is_none() {
                let t = tokens::random_token(24);
                let h = tokens::hash_token(&t);
                invite_token = Some(t);
                Some(h)
            } else {
                None
            };
            let row = UserRow {
                id: id.clone(),
                email: email.clone(),
                password_hash: hash,
                instance_admin: false,
                failed_logins: 0,
                locked_until: 0,
                created_at: now,
            };
            db::users::insert(&mut *tx, &row, invite_hash).await?;
            id
        }
    };
    db::users::add_member(&mut *tx, org_id.as_str(), &user_id, role.as_str(), now)
        .await
        .map_err(|e| match e {
            db::DbError::Unique(_) => ApiError::conflict(format!("{email} is already a member")),
            other => other.into(),
        })?;
    audit::record(
        &mut tx,
        st,
        who,
        Some(org_id.as_str()),
        "member.add",
        ("user", &user_id),
        serde_json::json!({"email": email, "role": role.as_str()}),
    )
    .await?;
    commit(st, tx, false).await?;
    Ok(Member {
        user_id,
        email,
        role,
        created_at: now,
        invite_token,
    })
}

async fn target(
    st: &AppState,
    org_id: &OrgId,
    user_id: &UserId,
) -> ApiResult<db::users::MemberRow> {
    db::users::member(st.db().pool(), org_id.as_str(), user_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("member"))
}

pub async fn update(
    st: &AppState,
    who: &Principal,
    org_id: &OrgId,
    user_id: &UserId,
    input: UpdateMember,
) -> ApiResult<Member> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_manage()?;
    let role = OrgRole::parse(&input.role)?;
    let m = target(st, org_id, user_id).await?;
    let current = OrgRole::parse(&m.role)?;
    if (role == OrgRole::Owner || current == OrgRole::Owner) && a.role != OrgRole::Owner {
        return Err(ApiError::forbidden(
            "only an owner can grant or change the owner role",
        ));
    }
    let mut tx = st.db().begin().await?;
    if current == OrgRole::Owner
        && role != OrgRole::Owner
        && db::users::count_owners(&mut *tx, org_id.as_str()).await? <= 1
    {
        return Err(ApiError::unprocessable(
            "an organization must keep at least one owner",
        ));
    }
    db::users::set_role(&mut *tx, org_id.as_str(), user_id.as_str(), role.as_str()).await?;
    audit::record(&mut tx, st, who, Some(org_id.as_str()), "member.update", ("user", user_id.as_str()), serde_json::json!({"email": m.email, "role": {"from": current.as_str(), "to": role.as_str()}})).await?;
    commit(st, tx, false).await?;
    Ok(Member {
        user_id: m.user_id,
        email: m.email,
        role,
        created_at: m.created_at,
        invite_token: None,
    })
}

pub async fn remove(
    st: &AppState,
    who: &Principal,
    org_id: &OrgId,
    user_id: &UserId,
) -> ApiResult<()> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_manage()?;
    let m = target(st, org_id, user_id).await?;
    let current = OrgRole::parse(&m.role)?;
    if current == OrgRole::Owner && a.role != OrgRole::Owner {
        return Err(ApiError::forbidden("only an owner can remove an owner"));
    }
    let mut tx = st.db().begin().await?;
    if current == OrgRole::Owner && db::users::count_owners(&mut *tx, org_id.as_str()).await? <= 1 {
        return Err(ApiError::unprocessable(
            "an organization must keep at least one owner",
        ));
    }
    db::users::remove_member(&mut *tx, org_id.as_str(), user_id.as_str()).await?;
    audit::record(
        &mut tx,
        st,
        who,
        Some(org_id.as_str()),
        "member.remove",
        ("user", user_id.as_str()),
        serde_json::json!({"email": m.email}),
    )
    .await?;
    commit(st, tx, false).await
}

/// An invited user (added without a password) sets one with the token from the invite link;
/// the token works once. Returns the user's email (the caller signs them in next).
pub async fn accept_invite(st: &AppState, token: &str, password: &str) -> ApiResult<String> {
    let invalid = || ApiError::not_found("invitation (the link was used already or is wrong)");
    if token.is_empty() || token.len() > 200 {
        return Err(invalid());
    }
    let user = db::users::get_by_invite(st.db().pool(), &tokens::hash_token(token))
        .await?
        .ok_or_else(invalid)?;
    password::check_policy(password, &user.email)
        .map_err(|m| ApiError::validation("password", m))?;
    let hash = password::hash_off_runtime(password)
        .await
        .map_err(|_| ApiError::internal())?;
    db::users::set_password(st.db().pool(), &user.id, &hash, st.now_ms()).await?;
    Ok(user.email)
}
