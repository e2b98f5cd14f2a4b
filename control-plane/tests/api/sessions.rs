//! Web sessions: cookies, CSRF, sign-out, brute-force protection.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{TestApp, assert_error};
use control_plane::testing::{TEST_ADMIN_EMAIL, TEST_ADMIN_PASSWORD};

#[tokio::test]
async fn session_cookie_flags_csrf_and_logout() {
    let app = TestApp::spawn().await;
    let s = app.login_admin().await;
    assert!(
        s.cookie.contains("HttpOnly")
            && s.cookie.contains("SameSite=Lax")
            && s.cookie.contains("Path=/"),
        "{}",
        s.cookie
    );
    assert!(
        !s.cookie.contains("Secure"),
        "plain HTTP without a TLS proxy: no Secure flag"
    );
    let path = format!("/api/v1/orgs/{}/projects", app.org_id);
    let (st, e) = s
        .send_csrf(Method::POST, &path, Some(json!({"name": "no-csrf"})), false)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(e["error"]["message"].as_str().unwrap().contains("CSRF"));
    let (st, _) = s
        .send(Method::POST, &path, Some(json!({"name": "with-csrf"})))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = s.send_csrf(Method::GET, &path, None, false).await;
    assert_eq!(st, StatusCode::OK, "reads need no CSRF token");
    let (st, _) = s.send(Method::POST, "/api/v1/auth/logout", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, e) = s.send(Method::GET, "/api/v1/me", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_error(&e, "unauthenticated");
    // Behind a TLS-terminating proxy the cookie is Secure.
    let resp = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-proto", "https")
        .json(&json!({"email": TEST_ADMIN_EMAIL, "password": TEST_ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
}

#[tokio::test]
async fn wrong_passwords_lock_the_account() {
    let app = TestApp::spawn().await;
    let login = |pw: &'static str| {
        let app = &app;
        async move {
            let resp = app
                .http
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"email": TEST_ADMIN_EMAIL, "password": pw}))
                .send()
                .await
                .unwrap();
            (
                resp.status(),
                resp.headers().get("retry-after").is_some(),
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (s, _, e) = login("wrong-password-0").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(e["error"]["message"], "invalid email or password");
    let resp = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": "nobody@example.com", "password": "whatever-password"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"], "invalid email or password",
        "unknown emails look the same"
    );
    for _ in 0..9 {
        login("wrong-password-x").await;
    }
    let (s, retry, e) = login(TEST_ADMIN_PASSWORD).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{e}");
    assert!(retry);
    assert_error(&e, "rate_limited");
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_client() {
    let app = TestApp::spawn().await;
    let mut limited = false;
    for i in 0..25 {
        let resp = app
            .http
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": format!("u{i}@example.com"), "password": "whatever-password"}))
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            assert!(i >= 20, "limited too early, at attempt {i}");
            break;
        }
    }
    assert!(
        limited,
        "25 attempts from one client within a minute are limited"
    );
    let resp = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error());
}

/// Session fixation: signing in never adopts a session id the client brought — a planted value
/// stays invalid, and every sign-in (even one carrying a valid session) gets a fresh id.
#[tokio::test]
async fn sign_in_issues_a_fresh_session_id() {
    let app = TestApp::spawn().await;
    let cookie_value = |set_cookie: &str| {
        set_cookie
            .split(';')
            .next()
            .and_then(|kv| kv.strip_prefix("aiproxy_session="))
            .unwrap_or_default()
            .to_string()
    };
    let login_with = |cookie: String| {
        let app = &app;
        async move {
            let resp = app
                .http
                .post(app.url("/api/v1/auth/login"))
                .header("cookie", cookie)
                .json(&json!({"email": TEST_ADMIN_EMAIL, "password": TEST_ADMIN_PASSWORD}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.headers()["set-cookie"].to_str().unwrap().to_string()
        }
    };
    let me_with = |value: String| {
        let app = &app;
        async move {
            app.http
                .get(app.url("/api/v1/me"))
                .header("cookie", format!("aiproxy_session={value}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let planted = "attacker-chosen-session-0123456789abcdef".to_string();
    let issued = cookie_value(&login_with(format!("aiproxy_session={planted}")).await);
    assert!(!issued.is_empty());
    assert_ne!(issued, planted, "the planted id is not adopted");
    assert_eq!(me_with(planted).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me_with(issued.clone()).await, StatusCode::OK);
    let again = cookie_value(&login_with(format!("aiproxy_session={issued}")).await);
    assert!(!again.is_empty());
    assert_ne!(
        again, issued,
        "a sign-in over a valid session gets a new id"
    );
    assert_eq!(me_with(again).await, StatusCode::OK);
}
