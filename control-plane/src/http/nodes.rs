//! `/api/v1/nodes`

use axum::Json;
use axum::extract::State;

use crate::error::ApiResult;
use crate::http::extract::Caller;
use crate::service::nodes::{self, Node};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", responses((status = 200, body = Vec<Node>)))]
pub async fn list(State(st): State<AppState>, c: Caller) -> ApiResult<Json<Vec<Node>>> {
    nodes::list(&st, &c.principal).await.map(Json)
}
