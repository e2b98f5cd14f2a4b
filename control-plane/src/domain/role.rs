//! Roles: what a member of an organization, or an API key, may do.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// A member's role in an organization. Owners and admins manage providers, keys, settings and
/// projects; members read them, read logs and dashboards, and manage their own proxy keys.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OrgRole {
    Member,
    Admin,
    Owner,
}

impl OrgRole {
    pub fn parse(s: &str) -> Result<OrgRole, ApiError> {
        match s {
            "owner" => Ok(OrgRole::Owner),
            "admin" => Ok(OrgRole::Admin),
            "member" => Ok(OrgRole::Member),
            _ => Err(ApiError::validation(
                "role",
                "must be one of owner, admin, member",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Owner => "owner",
            OrgRole::Admin => "admin",
            OrgRole::Member => "member",
        }
    }

    pub fn can_manage(self) -> bool {
        self >= OrgRole::Admin
    }
}

/// An API key's role: `proxy` keys only call the data plane; `admin` keys also call the admin
/// API of their organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    Proxy,
    Admin,
}

impl KeyRole {
    pub fn parse(s: &str) -> Result<KeyRole, ApiError> {
        match s {
            "proxy" => Ok(KeyRole::Proxy),
            "admin" => Ok(KeyRole::Admin),
            _ => Err(ApiError::validation("role", "must be proxy or admin")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Proxy => "proxy",
            KeyRole::Admin => "admin",
        }
    }
}
