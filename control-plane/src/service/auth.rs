//! Who is calling, and what they may touch. A caller is a signed-in user (session cookie) or an
//! API key. Anything a caller may not see is "not found" (never a hint that it exists); anything
//! it may see but not change is "forbidden".

use crate::crypto::{password, tokens};
use crate::db::{self, api_keys::ApiKeyRow, orgs::OrgRow, projects::ProjectRow};
use crate::domain::{ApiKeyId, KeyRole, OrgId, OrgRole, ProjectId, UserId};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    User {
        id: UserId,
        email: String,
        instance_admin: bool,
    },
    ApiKey {
        id: ApiKeyId,
        name: String,
        org_id: OrgId,
        project_id: Option<ProjectId>,
        role: KeyRole,
    },
}

impl Principal {
    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        match self {
            Principal::User { email, .. } => format!("user:{email}"),
            Principal::ApiKey { id, name, .. } => format!("api_key:{name} ({id})"),
        }
    }

    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Principal::User { id, .. } => Some(id),
            Principal::ApiKey { .. } => None,
        }
    }

    pub fn is_instance_admin(&self) -> bool {
        matches!(
            self,
            Principal::User {
                instance_admin: true,
                ..
            }
        )
    }
}

/// Looks an API key up by hash. Unknown and revoked keys are both plain 401s.
pub async fn authenticate_api_key(st: &AppState, token: &str) -> ApiResult<Principal> {
    let hash = tokens::hash_token(token);
    let row = db::api_keys::get_by_hash(st.db().pool(), &hash)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("invalid API key"))?;
    if row.revoked_at.is_some() {
        return Err(ApiError::unauthenticated("invalid API key"));
    }
    Ok(key_principal(&row))
}

fn key_principal(row: &ApiKeyRow) -> Principal {
    Principal::ApiKey {
        id: ApiKeyId(row.id.clone()),
        name: row.name.clone(),
        org_id: OrgId(row.org_id.clone()),
        project_id: row.project_id.clone().map(ProjectId),
        role: if row.role == "admin" {
            KeyRole::Admin
        } else {
            KeyRole::Proxy
        },
    }
}

/// A signed-in session: the user and the CSRF token state-changing requests must echo.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf_token: String,
    pub id_hash: String,
}

pub async fn authenticate_session(st: &AppState, cookie_token: &str) -> ApiResult<Session> {
    let id_hash = tokens::hash_token(cookie_token);
    let row = db::sessions::get(st.db().pool(), &id_hash)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("session expired; sign in again"))?;
    if row.expires_at < st.now_ms() {
        db::sessions::delete(st.db().pool(), &id_hash).await?;
        return Err(ApiError::unauthenticated("session expired; sign in again"));
    }
    let user = db::users::get(st.db().pool(), &row.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("session expired; sign in again"))?;
    Ok(Session {
        principal: Principal::User {
            id: UserId(user.id),
            email: user.email,
            instance_admin: user.instance_admin,
        },
        csrf_token: row.csrf_token,
        id_hash,
    })
}

/// A new session's cookie token (shown to the browser) and CSRF token.
pub struct NewSession {
    pub cookie_token: String,
    pub csrf_token: String,
    pub principal: Principal,
}

/// Checks email and password, with per-account lockout after repeated failures. The answer is
/// the same for an unknown email and a wrong password, and takes as long.
pub async fn login(st: &AppState, email: &str, pw: &str) -> ApiResult<NewSession> {
    let email = email.trim().to_lowercase();
    let now = st.now_ms();
    let user = db::users::get_by_email(st.db().pool(), &email).await?;
    let bad = || ApiError::unauthenticated("invalid email or password");
    let Some(user) = user else {
        password::verify_off_runtime(pw, None).await;
        return Err(bad());
    };
    if user.locked_until > now {
        let secs = ((user.locked_until - now) / 1000).max(1) as u64;
        return Err(ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                crate::error::ErrorCode::RateLimited,
                "too many failed sign-in attempts; try again later",
            )
        });
    }
    let ok = password::verify_off_runtime(pw, user.password_hash.as_deref()).await;
    if !ok {
        let cfg = st.config();
        db::users::record_failure(
            st.db().pool(),
            &user.id,
            i64::from(cfg.login_max_failures),
            now + (cfg.login_lockout_secs as i64) * 1000,
        )
        .await?;
        tracing::info!(user_id = %user.id, "failed sign-in");
        return Err(bad());
    }
    if user.failed_logins > 0 {
        db::users::reset_failures(st.db().pool(), &user.id).await?;
    }
    let cookie_token = tokens::random_token(32);
    let csrf_token = tokens::random_token(32);
    db::sessions::insert(
        st.db().pool(),
        &db::sessions::SessionRow {
            id_hash: tokens::hash_token(&cookie_token),
            user_id: user.id.clone(),
            csrf_token: csrf_token.clone(),
            created_at: now,
            expires_at: now + (st.config().session_ttl_secs as i64) * 1000,
        },
    )
    .await?;
    Ok(NewSession {
        cookie_token,
        csrf_token,
        principal: Principal::User {
            id: UserId(user.id),
            email: user.email,
            instance_admin: user.instance_admin,
        },
    })
}

pub async fn logout(st: &AppState, id_hash: &str) -> ApiResult<()> {
    db::sessions::delete(st.db().pool(), id_hash).await?;
    Ok(())
}

/// What a caller may do in one organization.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    pub org: OrgRow,
    /// The caller's effective role (instance admins act as owners; admin keys as admins).
    pub role: OrgRole,
    /// Set for project-restricted API keys: they only reach this project.
    pub project_scope: Option<ProjectId>,
    /// Proxy keys may authenticate but never use the admin API.
    pub proxy_key: bool,
}

impl OrgAccess {
    pub fn org_id(&self) -> OrgId {
        OrgId(self.org.id.clone())
    }

    fn deny_proxy(&self) -> ApiResult<()> {
        if self.proxy_key {
            Err(ApiError::forbidden(
                "proxy API keys can only call the data plane; use an admin key",
            ))
        } else {
            Ok(())
        }
    }

    /// Read access to org-level resources.
    pub fn require_read(&self) -> ApiResult<()> {
        self.deny_proxy()
    }

    /// Manage access to org-level resources (providers, settings, members, projects).
    pub fn require_manage(&self) -> ApiResult<()> {
        self.deny_proxy()?;
        if self.project_scope.is_some() {
            return Err(ApiError::forbidden(
                "this API key is restricted to one project and cannot change organization-level settings",
            ));
        }
        if !self.role.can_manage() {
            return Err(ApiError::forbidden(
                "this requires the admin or owner role in the organization",
            ));
        }
        Ok(())
    }

    /// Manage access to one project's resources.
    pub fn require_manage_project(&self, project_id: &str) -> ApiResult<()> {
        self.deny_proxy()?;
        if let Some(p) = &self.project_scope {
            if p.0 != project_id {
                return Err(ApiError::not_found("project"));
            }
            return Ok(());
        }
        if !self.role.can_manage() {
            return Err(ApiError::forbidden(
                "this requires the admin or owner role in the organization",
            ));
        }
        Ok(())
    }

    /// Can the caller see this project at all?
    pub fn sees_project(&self, project_id: &str) -> bool {
        self.project_scope
            .as_ref()
            .is_none_or(|p| p.0 == project_id)
    }
}

/// Resolves the caller's access to an org; orgs the caller cannot see are "not found".
pub async fn org_access(st: &AppState, who: &Principal, org_id: &OrgId) -> ApiResult<OrgAccess> {
    let not_found = || ApiError::not_found("organization");
    let access = match who {
        Principal::User {
            id, instance_admin, ..
        } => {
            let org = db::orgs::get(st.db().pool(), org_id.as_str())
                .await?
                .ok_or_else(not_found)?;
            let role = if *instance_admin {
                OrgRole::Owner
            } else {
                let m = db::users::member(st.db().pool(), org_id.as_str(), id.as_str())
                    .await?
                    .ok_or_else(not_found)?;
                OrgRole::parse(&m.role)?
            };
            OrgAccess {
                org,
                role,
                project_scope: None,
                proxy_key: false,
            }
        }
        Principal::ApiKey {
            org_id: key_org,
            project_id,
            role,
            ..
        } => {
            if key_org != org_id {
                return Err(not_found());
            }
            let org = db::orgs::get(st.db().pool(), org_id.as_str())
                .await?
                .ok_or_else(not_found)?;
            OrgAccess {
                org,
                role: OrgRole::Admin,
                project_scope: project_id.clone(),
                proxy_key: *role == KeyRole::Proxy,
            }
        }
    };
    Ok(access)
}

/// Resolves a project and the caller's access to its org; invisible projects are "not found".
pub async fn project_access(
    st: &AppState,
    who: &Principal,
    project_id: &ProjectId,
) -> ApiResult<(ProjectRow, OrgAccess)> {
    let project = db::projects::get(st.db().pool(), project_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    let access = org_access(st, who, &OrgId(project.org_id.clone()))
        .await
        .map_err(|e| {
            if e.code == crate::error::ErrorCode::NotFound {
                ApiError::not_found("project")
            } else {
                e
            }
        })?;
    if !access.sees_project(&project.id) {
        return Err(ApiError::not_found("project"));
    }
    Ok((project, access))
}
