//! The node's HTTP surface: the proxy API under `/v1/proxy` (and `/v1` as an alias), health,
//! readiness and metrics.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::ProxyError;
use crate::node::Node;
use crate::routing::RouteKind;

/// The POST route that proxies a call of `kind`.
fn proxied(kind: RouteKind) -> axum::routing::MethodRouter<Node> {
    // The request taken whole: the `HeaderMap` extractor would copy the headers.
    post(move |State(n): State<Node>, req: Request| {
        let (parts, body) = req.into_parts();
        crate::proxy::handle(n, kind, parts.headers, body)
    })
}

/// The proxy API under `prefix`. Registered flat under each prefix rather than nested: a nested
/// router strips its prefix from every request's URI (rebuilding it) and dispatches twice, ≈3%
/// of a node's instructions per request.
fn api(mut r: Router<Node>, prefix: &str) -> Router<Node> {
    for (path, kind) in [
        ("/chat/completions", RouteKind::Chat),
        ("/completions", RouteKind::Completions),
        ("/embeddings", RouteKind::Embeddings),
        ("/responses", RouteKind::Responses),
        ("/anthropic/v1/messages", RouteKind::Messages),
        ("/anthropic/messages", RouteKind::Messages),
    ] {
        r = r.route(&format!("{prefix}{path}"), proxied(kind));
    }
    r.route(
        &format!("{prefix}/models"),
        get(crate::routes::models::list),
    )
    .route(
        &format!("{prefix}/credentials"),
        post(crate::routes::credentials::mint),
    )
    .route(
        &format!("{prefix}/realtime"),
        get(crate::routes::realtime::handle),
    )
    .route(
        &format!("{prefix}/models/{{*model}}"),
        get(|s: State<Node>, h: HeaderMap, Path(m): Path<String>| {
            crate::routes::models::get(s, h, m)
        }),
    )
}

pub fn router(node: Node) -> Router {
    let r = api(api(Router::new(), "/v1/proxy"), "/v1");
    r.route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(n): State<Node>| async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    n.metrics.render(&format!(
                        "{}{}{}",
                        n.balancer.render_metrics(),
                        n.store.render_metrics(),
                        n.tracer
                            .as_ref()
                            .map(|t| t.render_metrics())
                            .unwrap_or_default()
                    )),
                )
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .with_state(node)
}

async fn readyz(State(n): State<Node>) -> Response {
    if n.ready() {
        (
            StatusCode::OK,
            format!("ready (config version {})", n.store.version()),
        )
            .into_response()
    } else if n.draining.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no configuration snapshot loaded yet",
        )
            .into_response()
    }
}

async fn not_found(req: Request) -> Response {
    ProxyError {
        status: StatusCode::NOT_FOUND,
        code: None,
        ..ProxyError::bad_request(
            "",
            format!("Invalid URL ({} {})", req.method(), req.uri().path()),
        )
    }
    .into_response()
}

async fn not_allowed(req: Request) -> Response {
    ProxyError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: None,
        ..ProxyError::bad_request(
            "",
            format!(
                "Method {} is not allowed on {}",
                req.method(),
                req.uri().path()
            ),
        )
    }
    .into_response()
}
