//! Tenant isolation, generated from the route table: every admin route, called by each kind of
//! credential of organization B with organization A's ids, gets 403/404 and changes nothing. A
//! route added to the table without an expectation here fails the test.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Session, TestApp};

/// How B's callers must be answered on each route when aimed at A's resources.
fn expectation(method: &str, path: &str) -> Option<&'static [u16]> {
    Some(match (method, path) {
        ("post", "/api/v1/auth/login") => &[401],
        ("post", "/api/v1/auth/logout") | ("get", "/api/v1/me") | ("get", "/api/v1/orgs") => {
            &[200, 204, 403]
        }
        ("post", "/api/v1/orgs") => &[403],
        ("get", "/api/v1/nodes") => &[200, 403],
        (_, p) if p.contains('{') => &[403, 404],
        _ => return None,
    })
}

fn body_for(method: &str, path: &str) -> Option<Value> {
    Some(match (method, path) {
        ("post", "/api/v1/auth/login") => {
            json!({"email": control_plane::testing::TEST_ADMIN_EMAIL, "password": "not-the-password"})
        }
        ("post", "/api/v1/orgs") => json!({"name": "evil-corp"}),
        ("patch", "/api/v1/orgs/{org_id}") | ("patch", "/api/v1/projects/{project_id}") => {
            json!({"name": "pwned"})
        }
        ("post", "/api/v1/orgs/{org_id}/members") => {
            json!({"email": "attacker@example.com", "role": "owner"})
        }
        ("patch", "/api/v1/orgs/{org_id}/members/{user_id}") => json!({"role": "member"}),
        ("post", "/api/v1/orgs/{org_id}/projects") => json!({"name": "evil"}),
        ("post", "/api/v1/orgs/{org_id}/api-keys") => json!({"name": "evil", "role": "admin"}),
        ("post", p) if p.ends_with("/providers") => {
            json!({"type": "openai", "secret": "sk-attacker-0000000000"})
        }
        ("patch", "/api/v1/providers/{id}") => json!({"secret": "sk-attacker-0000000000"}),
        ("put", "/api/v1/orgs/{org_id}/settings") => json!({"api_url": "https://evil.example"}),
        ("post", _) => json!({}),
        _ => return None,
    })
}

struct Ids {
    org: String,
    project: String,
    user: String,
    key: String,
    provider: String,
}

fn fill(path: &str, ids: &Ids) -> String {
    let id = if path.starts_with("/api/v1/api-keys/") {
        &ids.key
    } else {
        &ids.provider
    };
    path.replace("{log_id}", "0190f3a4-0000-7000-8000-000000000000")
        .replace("{org_id}", &ids.org)
        .replace("{project_id}", &ids.project)
        .replace("{user_id}", &ids.user)
        .replace("{id}", id)
}

/// Everything A owns, as A's admin sees it.
async fn fingerprint(app: &TestApp, ids: &Ids) -> String {
    let mut out = String::new();
    for p in [
        format!("/api/v1/orgs/{}", ids.org),
        format!("/api/v1/orgs/{}/members", ids.org),
        format!("/api/v1/orgs/{}/projects", ids.org),
        format!("/api/v1/orgs/{}/api-keys", ids.org),
        format!("/api/v1/orgs/{}/providers", ids.org),
        format!("/api/v1/projects/{}/providers", ids.project),
        format!("/api/v1/orgs/{}/settings", ids.org),
    ] {
        let (s, v) = app.get(&p).await;
        assert_eq!(s, StatusCode::OK, "{p}");
        out.push_str(&v.to_string());
    }
    out
}

enum Caller<'a> {
    Key(&'a str),
    Session(&'a Session),
}

async fn call(
    app: &TestApp,
    who: &Caller<'_>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    match who {
        Caller::Key(k) => app.send(m, path, Some(k), body).await,
        Caller::Session(s) => s.send(m, path, body).await,
    }
}

#[tokio::test]
async fn org_b_cannot_touch_org_a_on_any_route() {
    let app = TestApp::spawn().await;
    let (_, members) = app
        .get(&format!("/api/v1/orgs/{}/members", app.org_id))
        .await;
    let (_, key) = app
        .post(
            &format!("/api/v1/orgs/{}/api-keys", app.org_id),
            json!({"name": "a-key", "role": "proxy"}),
        )
        .await;
    let (_, prov) = app
        .post(
            &format!("/api/v1/projects/{}/providers", app.project_id),
            json!({"type": "openai", "secret": "sk-tenant-a-0000000000"}),
        )
        .await;
    app.put(
        &format!("/api/v1/orgs/{}/settings", app.org_id),
        json!({"api_url": "https://a.example"}),
    )
    .await;
    let ids = Ids {
        org: app.org_id.clone(),
        project: app.project_id.clone(),
        user: members[0]["user_id"].as_str().unwrap().into(),
        key: key["id"].as_str().unwrap().into(),
        provider: prov["id"].as_str().unwrap().into(),
    };
    // Organization B and its callers: admin key, proxy key, project-restricted key, owner session.
    let (b_org, b_admin) = app.other_org("tenant-b").await;
    let b = |path: &str| format!("/api/v1/orgs/{b_org}{path}");
    let (_, b_project) = app
        .send(
            Method::POST,
            &b("/projects"),
            Some(&b_admin),
            Some(json!({"name": "bp"})),
        )
        .await;
    let (_, b_proxy) = app
        .send(
            Method::POST,
            &b("/api-keys"),
            Some(&b_admin),
            Some(json!({"name": "p", "role": "proxy"})),
        )
        .await;
    let (_, b_scoped) = app
        .send(
            Method::POST,
            &b("/api-keys"),
            Some(&b_admin),
            Some(json!({"name": "s", "role": "admin", "project_id": b_project["id"]})),
        )
        .await;
    let (s, _) = app.send(Method::POST, &b("/members"), Some(&b_admin), Some(json!({"email": "b-owner@example.com", "role": "admin", "password": "Staple-battery-42!"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let b_session = app.login("b-owner@example.com", "Staple-battery-42!").await;
    let callers = [
        ("B admin key", Caller::Key(&b_admin)),
        ("B proxy key", Caller::Key(b_proxy["key"].as_str().unwrap())),
        (
            "B project key",
            Caller::Key(b_scoped["key"].as_str().unwrap()),
        ),
        ("B user session", Caller::Session(&b_session)),
    ];
    let before = fingerprint(&app, &ids).await;
    let mut checked = 0;
    // Sign-out last, so the session stays valid for the other routes.
    let mut routes: Vec<&(&str, &str)> = control_plane::http::ROUTES.iter().collect();
    routes.sort_by_key(|(_, p)| *p == "/api/v1/auth/logout");
    for (method, path) in routes {
        let allowed = expectation(method, path)
            .unwrap_or_else(|| panic!("no isolation expectation for {method} {path}: add one"));
        for (label, who) in &callers {
            let (s, v) = call(&app, who, method, &fill(path, &ids), body_for(method, path)).await;
            assert!(
                allowed.contains(&s.as_u16()),
                "{label}: {method} {path} -> {s} {v}"
            );
            let text = v.to_string();
            assert!(
                !text.contains(&ids.org) || *path == "/api/v1/nodes",
                "{label}: {method} {path} leaked org A's id: {text}"
            );
            assert!(
                !text.contains("a.example") && !text.contains("sk-tenant-a"),
                "{label}: {method} {path} leaked A's data"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, control_plane::http::ROUTES.len() * callers.len());
    // Logout ended B's session; nothing of A changed.
    assert_eq!(
        before,
        fingerprint(&app, &ids).await,
        "org A's state changed"
    );
}
