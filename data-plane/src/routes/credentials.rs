//! `POST /credentials`: mints a temporary credential for the calling API key.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::json;

use crate::error::ProxyError;
use crate::node::Node;
use crate::routing;
use crate::tempcred::{self, Claims, MintRequest};

pub async fn mint(State(node): State<Node>, headers: HeaderMap, body: Body) -> Response {
    match run(&node, &headers, body).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn run(
    node: &Node,
    headers: &HeaderMap,
    body: Body,
) -> Result<serde_json::Value, ProxyError> {
    let raw = crate::proxy::read_body(node, body).await?;
    let snap = node.store.load().ok_or_else(ProxyError::not_ready)?;
    let caller = crate::auth::authenticate(&snap, headers)?;
    if caller.temp.is_some() {
        return Err(ProxyError::forbidden(
            "A temporary credential cannot issue another credential.",
        ));
    }
    let req: MintRequest = serde_json::from_slice(if raw.is_empty() { b"{}" } else { &raw })
        .map_err(|e| {
            ProxyError::bad_request(
                "invalid_request",
                format!("Invalid credential request: {e}"),
            )
        })?;
    let ttl = req.ttl_seconds.unwrap_or(tempcred::DEFAULT_TTL_SECS);
    if ttl == 0 || ttl > tempcred::MAX_TTL_SECS {
        return Err(ProxyError::invalid_param(
            "ttl_seconds",
            format!(
                "ttl_seconds must be between 1 and {}.",
                tempcred::MAX_TTL_SECS
            ),
        ));
    }
    let key = &caller.key;
    let foreign = || ProxyError::forbidden("The project is not accessible with this API key.");
    let project = match req.project_id.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => {
            let proj = snap
                .projects
                .get(p)
                .filter(|pr| *pr.org_id == *key.org_id)
                .ok_or_else(foreign)?;
            if key.project_id.as_deref().is_some_and(|k| k != proj.id) {
                return Err(foreign());
            }
            Some(proj.id.clone())
        }
        None => key.project_id.as_deref().map(str::to_string),
    };
    let log = match req.logging.and_then(|l| l.parent).filter(|p| !p.is_empty()) {
        Some(parent) => {
            // Validated now, with the same rules as the x-bt-parent header.
            let mut h = HeaderMap::new();
            h.insert(
                "x-bt-parent",
                parent.parse().map_err(|_| {
                    ProxyError::invalid_param("logging.parent", "logging.parent must be ASCII.")
                })?,
            );
            let mut scoped = key.as_ref().clone();
            scoped.project_id = project.as_deref().map(Into::into);
            routing::resolve_context(&snap, &scoped, &h, None)?;
            Some(parent)
        }
        None => None,
    };
    let model = req.model.filter(|m| !m.trim().is_empty());
    let signing = snap
        .signing_keys
        .iter()
        .find(|k| k.active)
        .or(snap.signing_keys.first())
        .ok_or_else(|| ProxyError {
            retryable: true,
            ..ProxyError::gateway("No signing key is configured for temporary credentials.")
        })?;
    let now = crate::record::now_ms() / 1000;
    let claims = Claims {
        v: 1,
        kid: signing.id.clone(),
        sub: key.id.clone(),
        org: key.org_id.to_string(),
        prj: project,
        mdl: model.map(|m| vec![m]),
        log,
        iat: now,
        exp: now + ttl as i64,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let token = tempcred::mint(&claims, &signing.key);
    Ok(json!({"key": token, "expires_in": ttl, "expires_at": claims.exp}))
}
