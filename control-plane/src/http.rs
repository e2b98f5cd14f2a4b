//! The admin REST API (`/api/v1`), JSON only. One module per resource; handlers are thin and
//! call `service`. The route table below generates both the router and `ROUTES`, which the
//! OpenAPI coverage and tenant-isolation tests iterate over, so a new route cannot go untested.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod extract;
pub mod logs;
pub mod members;
pub mod models;
pub mod nodes;
pub mod openapi;
pub mod orgs;
pub mod projects;
pub mod providers;
pub mod ratelimit;
pub mod settings;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

macro_rules! route_table {
    ($( $method:ident $path:literal => $handler:path ),* $(,)?) => {
        /// Every admin API route: (method, path).
        pub const ROUTES: &[(&str, &str)] = &[ $( (stringify!($method), $path) ),* ];

        fn api_routes() -> Router<AppState> {
            Router::new() $( .route($path, axum::routing::$method($handler)) )*
        }
    };
}

route_table! {
    post "/api/v1/auth/login" => auth::login,
    post "/api/v1/auth/logout" => auth::logout,
    get "/api/v1/me" => auth::me,
    get "/api/v1/orgs" => orgs::list,
    post "/api/v1/orgs" => orgs::create,
    get "/api/v1/orgs/{org_id}" => orgs::get,
    patch "/api/v1/orgs/{org_id}" => orgs::update,
    delete "/api/v1/orgs/{org_id}" => orgs::delete,
    get "/api/v1/orgs/{org_id}/members" => members::list,
    post "/api/v1/orgs/{org_id}/members" => members::add,
    patch "/api/v1/orgs/{org_id}/members/{user_id}" => members::update,
    delete "/api/v1/orgs/{org_id}/members/{user_id}" => members::remove,
    get "/api/v1/orgs/{org_id}/projects" => projects::list,
    post "/api/v1/orgs/{org_id}/projects" => projects::create,
    get "/api/v1/projects/{project_id}" => projects::get,
    patch "/api/v1/projects/{project_id}" => projects::update,
    delete "/api/v1/projects/{project_id}" => projects::delete,
    get "/api/v1/orgs/{org_id}/api-keys" => api_keys::list,
    post "/api/v1/orgs/{org_id}/api-keys" => api_keys::create,
    delete "/api/v1/api-keys/{id}" => api_keys::revoke,
    get "/api/v1/orgs/{org_id}/providers" => providers::list_org,
    post "/api/v1/orgs/{org_id}/providers" => providers::create_org,
    get "/api/v1/projects/{project_id}/providers" => providers::list_project,
    post "/api/v1/projects/{project_id}/providers" => providers::create_project,
    get "/api/v1/providers/{id}" => providers::get,
    patch "/api/v1/providers/{id}" => providers::update,
    delete "/api/v1/providers/{id}" => providers::delete,
    get "/api/v1/orgs/{org_id}/settings" => settings::get,
    put "/api/v1/orgs/{org_id}/settings" => settings::put,
    post "/api/v1/orgs/{org_id}/settings/test" => settings::test,
    get "/api/v1/orgs/{org_id}/models" => models::list,
    get "/api/v1/projects/{project_id}/logs" => logs::list,
    get "/api/v1/projects/{project_id}/logs/{log_id}" => logs::get,
    get "/api/v1/orgs/{org_id}/usage" => logs::usage,
    get "/api/v1/orgs/{org_id}/audit-log" => audit::list,
    get "/api/v1/nodes" => nodes::list,
}

/// The control plane's HTTP app: REST API, OpenAPI document, health endpoints.
pub fn router(st: AppState) -> Router {
    Router::new()
        .merge(api_routes())
        .merge(crate::ui::router())
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(openapi::document),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(common_headers))
        .layer(axum::middleware::from_fn_with_state(
            st.clone(),
            count_requests,
        ))
        .with_state(st)
}

async fn readyz(axum::extract::State(st): axum::extract::State<AppState>) -> Response {
    match st.db().ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response(),
    }
}

async fn metrics(axum::extract::State(st): axum::extract::State<AppState>) -> Response {
    let pool = st.db().pool();
    let mut body = st.0.metrics.render(pool.size(), pool.num_idle());
    if let Some(t) = &st.0.tracer {
        body.push_str(&t.render_metrics());
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}

/// Counts API requests by method, matched route and status.
async fn count_requests(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let traced = st.0.tracer.as_ref().map(|_| {
        let parent = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(data_plane::otlp::TraceParent::parse);
        (parent, data_plane::otlp::unix_nano_now())
    });
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    if route.starts_with("/api/") {
        st.0.metrics.api_request(&method, &route, status);
    }
    if let (Some(tracer), Some((parent, start))) = (&st.0.tracer, traced)
        && route != "/healthz"
        && route != "/readyz"
        && route != "/metrics"
    {
        tracer.submit(api_span(&method, &route, status, parent, start));
    }
    resp
}

/// One server span per HTTP request (HTTP semantic conventions; the route template, never the
/// path with its ids or the query string).
fn api_span(
    method: &str,
    route: &str,
    status: u16,
    parent: Option<data_plane::otlp::TraceParent>,
    start: u64,
) -> data_plane::otlp::Span {
    use data_plane::otlp::{self, AttrValue};
    otlp::Span {
        trace_id: parent
            .map(|p| p.trace_id)
            .unwrap_or_else(otlp::new_trace_id),
        span_id: otlp::new_span_id(),
        parent_span_id: parent.map(|p| p.span_id),
        name: format!("{method} {route}"),
        kind: otlp::KIND_SERVER,
        start_unix_nano: start,
        end_unix_nano: otlp::unix_nano_now(),
        attributes: vec![
            ("http.request.method", AttrValue::Str(method.to_string())),
            ("http.route", AttrValue::Str(route.to_string())),
            (
                "http.response.status_code",
                AttrValue::Int(i64::from(status)),
            ),
        ],
        error: (status >= 500).then(|| format!("HTTP {status}")),
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request id and security headers on every response.
async fn common_headers(req: Request, next: Next) -> Response {
    let rid = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            v.len() <= 128
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let is_ui = req.uri().path().starts_with("/ui") || req.uri().path() == "/";
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&rid) {
        h.insert(REQUEST_ID.clone(), v);
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if !is_ui && !h.contains_key("content-security-policy") {
        h.insert(
            "content-security-policy",
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if !h.contains_key("cache-control") {
        h.insert("cache-control", HeaderValue::from_static("no-store"));
    }
    resp
}

/// Parses a path id, or answers 400 naming the parameter.
pub fn path_id<T>(
    field: &str,
    raw: &str,
    parse: fn(&str, &str) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    parse(field, raw)
}
