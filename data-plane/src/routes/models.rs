//! `GET /models`: the models the caller can use now — catalog and custom models served by the
//! credentials in reach of the caller's project context — in OpenAI's list shape. A temporary
//! credential limited to some models lists only those (the calls are refused for the others).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::{Value, json};

use crate::eligibility::served_models;
use crate::error::ProxyError;
use crate::node::Node;
use crate::routing;

fn available(node: &Node, headers: &HeaderMap) -> Result<Vec<Value>, ProxyError> {
    let snap = node.store.load().ok_or_else(ProxyError::not_ready)?;
    let key = crate::auth::authenticate(&snap, headers)?;
    let ctx = routing::resolve_context(&snap, &key.key, headers, None)?;
    let mut seen = std::collections::BTreeMap::new();
    for cred in routing::in_reach(&snap, &ctx) {
        for m in served_models(&cred.provider_type, &cred.models, &snap.catalog) {
            let spec = cred
                .models
                .custom_models
                .get(&m)
                .or_else(|| snap.catalog.get(&m));
            let created = spec.map(|s| s.created).unwrap_or(0);
            seen.entry(m.clone()).or_insert_with(|| json!({"id": m, "object": "model", "created": created, "owned_by": cred.provider_type}));
        }
    }
    seen.retain(|m, _| key.allows_model(m));
    Ok(seen.into_values().collect())
}

pub async fn list(State(node): State<Node>, headers: HeaderMap) -> Response {
    match available(&node, &headers) {
        Ok(data) => Json(json!({"object": "list", "data": data})).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn get(State(node): State<Node>, headers: HeaderMap, model: String) -> Response {
    match available(&node, &headers) {
        Ok(data) => match data.into_iter().find(|m| m["id"] == model.as_str()) {
            Some(m) => Json(m).into_response(),
            None => ProxyError::model_not_found(&model).into_response(),
        },
        Err(e) => e.into_response(),
    }
}
