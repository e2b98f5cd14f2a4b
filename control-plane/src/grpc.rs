//! gRPC services: ConfigService (snapshots to nodes), LogService (log ingest from nodes) and
//! AdminService (the admin API for automation).

pub mod admin;
pub mod config;
pub mod logs;
pub mod serve;

use data_plane::seal::SealKey;
use tonic::{Request, Status};

use crate::crypto::tokens::ct_eq;
use crate::state::AppState;

/// Checks the node token in `authorization: Bearer …` against the current token and the old
/// ones still accepted during a rotation; returns the seal key derived from the token presented.
pub fn node_auth<T>(st: &AppState, req: &Request<T>) -> Result<SealKey, Status> {
    let Some(current) = &st.config().node_token else {
        return Err(Status::failed_precondition(
            "this control plane has no AIPROXY_NODE_TOKEN; nodes cannot connect",
        ));
    };
    let presented = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let mut matched = None;
    for t in std::iter::once(current).chain(st.config().old_node_tokens.iter()) {
        // Compare against every token, so timing does not reveal which one matched.
        if ct_eq(presented, t.expose()) && matched.is_none() {
            matched = Some(t.expose());
        }
    }
    match matched {
        Some(t) => Ok(SealKey::from_node_token(
            t,
            data_plane::seal::PURPOSE_SNAPSHOT,
        )),
        None => {
            let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(peer = %peer, "refused a node connection: wrong or missing node token");
            Err(Status::unauthenticated("invalid node token"))
        }
    }
}
