//! Data-plane nodes: which are connected, to which replica, and which configuration version each
//! serves. Instance admins see all nodes; org admins see them too (they share the fleet).

use serde::Serialize;

use crate::db;
use crate::error::{ApiError, ApiResult};
use crate::service::Principal;
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Node {
    pub node_id: String,
    pub hostname: String,
    pub build: String,
    pub replica: String,
    pub connected: bool,
    pub applied_version: i64,
    pub current_version: i64,
    pub up_to_date: bool,
    pub last_error: String,
    /// Per-credential health and load as the node last reported it.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub connected_at: i64,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: i64,
}

pub async fn list(st: &AppState, who: &Principal) -> ApiResult<Vec<Node>> {
    // Instance admins see every credential's health; others only their org's credentials.
    let visible_org: Option<String> = match who {
        Principal::User {
            instance_admin: true,
            ..
        } => None,
        Principal::User { id, .. } => Some(
            db::users::members_of_user(st.db().pool(), id.as_str())
                .await?
                .into_iter()
                .find(|(_, r)| r == "owner" || r == "admin")
                .map(|(o, _)| o)
                .unwrap_or_default(),
        ),
        Principal::ApiKey { org_id, .. } => Some(org_id.0.clone()),
    };
    let allowed = match who {
        Principal::User {
            instance_admin: true,
            ..
        } => true,
        Principal::User { id, .. } => db::users::members_of_user(st.db().pool(), id.as_str())
            .await?
            .iter()
            .any(|(_, r)| r == "owner" || r == "admin"),
        Principal::ApiKey {
            role, project_id, ..
        } => *role == crate::domain::KeyRole::Admin && project_id.is_none(),
    };
    if !allowed {
        return Err(ApiError::forbidden("listing nodes requires an admin"));
    }
    let current = db::config_version(st.db()).await?;
    let rows = db::nodes::list(st.db().pool()).await?;
    Ok(rows
        .into_iter()
        .map(|n| Node {
            up_to_date: n.applied_version == current,
            details: filter_details(
                serde_json::from_str(&n.details).unwrap_or(serde_json::Value::Null),
                visible_org.as_deref(),
            ),
            node_id: n.node_id,
            hostname: n.hostname,
            build: n.build,
            replica: n.replica,
            connected: n.connected,
            applied_version: n.applied_version,
            current_version: current,
            last_error: n.last_error,
            connected_at: n.connected_at,
            last_seen_at: n.last_seen_at,
        })
        .collect())
}

/// Keeps only the credentials of `org` in a node's reported details (`None`: all).
fn filter_details(mut details: serde_json::Value, org: Option<&str>) -> serde_json::Value {
    if let (Some(org), Some(creds)) = (
        org,
        details
            .get_mut("credentials")
            .and_then(|c| c.as_array_mut()),
    ) {
        creds.retain(|c| c.get("org_id").and_then(|o| o.as_str()) == Some(org));
    }
    details
}
