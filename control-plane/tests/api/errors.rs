//! Every bad input gets a clear error with the right status and shape, and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{TestApp, assert_error};

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let mut req = app
        .http
        .request(method, app.url(path))
        .bearer_auth(&app.admin_key)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let s = resp.status();
    (s, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn malformed_and_invalid_bodies() {
    let app = TestApp::spawn().await;
    let path = format!("/api/v1/orgs/{}/projects", app.org_id);
    let (s, e) = raw(
        &app,
        Method::POST,
        &path,
        Some("application/json"),
        b"{\"name\": ".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&e, "invalid_json");
    let (s, e) = raw(
        &app,
        Method::POST,
        &path,
        Some("application/json"),
        b"".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&e, "invalid_json");
    let (s, e) = app.post(&path, json!({"name": "x", "color": "red"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `color`"),
        "{e}"
    );
    let (s, e) = app.post(&path, json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing field `name`"),
        "{e}"
    );
    let (s, e) = app.post(&path, json!({"name": 42})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["field"], "name");
    let (s, e) = app.post(&path, json!({"name": "   "})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["field"], "name");
    let (s, e) = app.post(&path, json!(["not", "an", "object"])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, e) = raw(
        &app,
        Method::POST,
        &path,
        Some("text/plain"),
        b"{\"name\":\"x\"}".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error(&e, "unsupported_media_type");
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(2 * 1024 * 1024));
    let (s, e) = raw(
        &app,
        Method::POST,
        &path,
        Some("application/json"),
        big.into_bytes(),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&e, "payload_too_large");
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (s, _) = raw(
        &app,
        Method::POST,
        &path,
        Some("application/json"),
        nested.into_bytes(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "deep nesting is a clean 400");
    let (s, _) = raw(
        &app,
        Method::POST,
        &path,
        Some("application/json"),
        vec![0xff, 0xfe, b'{'],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "invalid UTF-8 is a clean 400");
    // Nothing was created by any of that.
    let (_, projects) = app.get(&path).await;
    assert_eq!(projects.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn routes_ids_and_methods() {
    let app = TestApp::spawn().await;
    let (s, e) = app.get("/api/v1/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&e, "not_found");
    let (s, e) = app
        .send(
            Method::PUT,
            "/api/v1/orgs",
            Some(&app.admin_key),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&e, "method_not_allowed");
    let (s, e) = app.get("/api/v1/projects/not-a-uuid").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["field"], "project_id");
    let (s, e) = app
        .get(&format!("/api/v1/projects/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&e, "not_found");
    let (s, e) = app.send(Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error(&e, "unauthenticated");
    let (s, _) = app
        .send(Method::GET, "/api/v1/me", Some("aip_wrong"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let resp = app
        .http
        .get(app.url("/api/v1/me"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (s, doc) = app
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        doc["paths"]["/api/v1/orgs/{org_id}/providers"]["post"].is_object(),
        "the OpenAPI document is generated from the handlers"
    );
    let resp = app
        .http
        .get(app.url("/api/v1/me"))
        .bearer_auth(&app.admin_key)
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
}
