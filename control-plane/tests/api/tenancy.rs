//! Organizations, members and roles, projects, API keys, the audit log.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{TestApp, assert_error};

#[tokio::test]
async fn only_instance_admins_create_orgs() {
    let app = TestApp::spawn().await;
    let (s, e) = app.post("/api/v1/orgs", json!({"name": "acme"})).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "an org admin key cannot create orgs"
    );
    assert_error(&e, "forbidden");
    let admin = app.login_admin().await;
    let (s, org) = admin
        .send(Method::POST, "/api/v1/orgs", Some(json!({"name": "acme"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{org}");
    let (s, e) = admin
        .send(Method::POST, "/api/v1/orgs", Some(json!({"name": "acme"})))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&e, "conflict");
    let member = app.member("m@example.com", "member").await;
    let (s, _) = member
        .send(Method::POST, "/api/v1/orgs", Some(json!({"name": "other"})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, orgs) = member.send(Method::GET, "/api/v1/orgs", None).await;
    assert_eq!(
        orgs.as_array().unwrap().len(),
        1,
        "a member sees only their orgs: {orgs}"
    );
    assert_eq!(orgs[0]["role"], "member");
}

#[tokio::test]
async fn member_roles_are_enforced() {
    let app = TestApp::spawn().await;
    let org = app.org_id.clone();
    let member = app.member("member@example.com", "member").await;
    let admin = app.member("orgadmin@example.com", "admin").await;
    // Members read but do not manage.
    let (s, _) = member
        .send(Method::GET, &format!("/api/v1/orgs/{org}/providers"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = member
        .send(
            Method::POST,
            &format!("/api/v1/orgs/{org}/providers"),
            Some(json!({"type": "openai", "secret": "sk-member-should-fail"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = member
        .send(
            Method::POST,
            &format!("/api/v1/orgs/{org}/projects"),
            Some(json!({"name": "p"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = member
        .send(
            Method::PUT,
            &format!("/api/v1/orgs/{org}/settings"),
            Some(json!({"api_url": "https://x.example"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Admins manage but cannot touch owners.
    let (s, _) = admin
        .send(
            Method::POST,
            &format!("/api/v1/orgs/{org}/projects"),
            Some(json!({"name": "by-admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = admin
        .send(
            Method::POST,
            &format!("/api/v1/orgs/{org}/members"),
            Some(json!({"email": "o2@example.com", "role": "owner"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only owners grant owner");
    let (_, members) = app.get(&format!("/api/v1/orgs/{org}/members")).await;
    let owner_id = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "owner")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = admin
        .send(
            Method::DELETE,
            &format!("/api/v1/orgs/{org}/members/{owner_id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The last owner stays.
    let owner = app.login_admin().await;
    let (s, e) = owner
        .send(
            Method::PATCH,
            &format!("/api/v1/orgs/{org}/members/{owner_id}"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (s, e) = owner
        .send(
            Method::PATCH,
            &format!("/api/v1/orgs/{org}/members/{owner_id}"),
            Some(json!({"role": "boss"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["field"], "role");
    // Invite without a password returns a one-time invite token.
    let (s, m) = app
        .post(
            &format!("/api/v1/orgs/{org}/members"),
            json!({"email": "invitee@example.com", "role": "member"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(m["invite_token"].as_str().is_some_and(|t| t.len() > 20));
    let (s, _) = app
        .post(
            &format!("/api/v1/orgs/{org}/members"),
            json!({"email": "invitee@example.com", "role": "member"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let uid = m["user_id"].as_str().unwrap();
    let (s, _) = app
        .delete(&format!("/api/v1/orgs/{org}/members/{uid}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn projects_crud() {
    let app = TestApp::spawn().await;
    let (s, p) = app
        .post(
            &format!("/api/v1/orgs/{}/projects", app.org_id),
            json!({"name": "search"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = p["id"].as_str().unwrap();
    let (s, _) = app
        .post(
            &format!("/api/v1/orgs/{}/projects", app.org_id),
            json!({"name": "search"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, p2) = app
        .patch(
            &format!("/api/v1/projects/{id}"),
            json!({"name": "search-v2"}),
        )
        .await;
    assert_eq!(
        (s, p2["name"].as_str()),
        (StatusCode::OK, Some("search-v2"))
    );
    let (s, _) = app.delete(&format!("/api/v1/projects/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = app.get(&format!("/api/v1/projects/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&e, "not_found");
}

#[tokio::test]
async fn api_keys_are_shown_once_and_scoped() {
    let app = TestApp::spawn().await;
    let (s, k) = app
        .post(
            &format!("/api/v1/orgs/{}/api-keys", app.org_id),
            json!({"name": "ci", "role": "admin"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let key = k["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("aip_") && key.len() >= 47, "{key}");
    let (_, list) = app
        .get(&format!("/api/v1/orgs/{}/api-keys", app.org_id))
        .await;
    let text = list.to_string();
    assert!(
        !text.contains(&key) && !text.contains("\"key\""),
        "the list never shows a key: {text}"
    );
    // The key works until revoked.
    let (s, _) = app.send(Method::GET, "/api/v1/me", Some(&key), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .delete(&format!("/api/v1/api-keys/{}", k["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = app.send(Method::GET, "/api/v1/me", Some(&key), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error(&e, "unauthenticated");
    // Proxy keys never reach the admin API.
    let proxy = app.key("proxy", None).await;
    let (s, e) = app
        .send(
            Method::GET,
            &format!("/api/v1/orgs/{}/providers", app.org_id),
            Some(&proxy),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("data plane")
    );
    // A project-restricted admin key sees only its project.
    let (_, other) = app
        .post(
            &format!("/api/v1/orgs/{}/projects", app.org_id),
            json!({"name": "other"}),
        )
        .await;
    let scoped = app.key("admin", Some(&app.project_id)).await;
    let (_, projects) = app
        .send(
            Method::GET,
            &format!("/api/v1/orgs/{}/projects", app.org_id),
            Some(&scoped),
            None,
        )
        .await;
    assert_eq!(projects.as_array().unwrap().len(), 1, "{projects}");
    let (s, _) = app
        .send(
            Method::GET,
            &format!("/api/v1/projects/{}", other["id"].as_str().unwrap()),
            Some(&scoped),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .send(
            Method::POST,
            &format!("/api/v1/orgs/{}/providers", app.org_id),
            Some(&scoped),
            Some(json!({"type": "openai", "secret": "sk-xxxxxxxxxxxxxxxxxx"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "org-level changes are out of a project key's reach"
    );
    let (s, _) = app
        .send(
            Method::POST,
            &format!("/api/v1/projects/{}/providers", app.project_id),
            Some(&scoped),
            Some(json!({"type": "openai", "secret": "sk-xxxxxxxxxxxxxxxxxx"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "but its own project is");
    // Bad project restriction.
    let (s, e) = app
        .post(
            &format!("/api/v1/orgs/{}/api-keys", app.org_id),
            json!({"name": "x", "role": "proxy", "project_id": uuid::Uuid::now_v7().to_string()}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["field"], "project_id");
}

#[tokio::test]
async fn members_manage_only_their_own_proxy_keys() {
    let app = TestApp::spawn().await;
    let org = app.org_id.clone();
    let _admin_made = app.key("proxy", None).await;
    let m = app.member("dev@example.com", "member").await;
    let (s, _) = m
        .send(
            Method::POST,
            &format!("/api/v1/orgs/{org}/api-keys"),
            Some(json!({"name": "mine", "role": "admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, k) = m
        .send(
            Method::POST,
            &format!("/api/v1/orgs/{org}/api-keys"),
            Some(json!({"name": "mine", "role": "proxy"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, list) = m
        .send(Method::GET, &format!("/api/v1/orgs/{org}/api-keys"), None)
        .await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "members see only their keys: {list}"
    );
    let (_, all) = app.get(&format!("/api/v1/orgs/{org}/api-keys")).await;
    let foreign = all
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "proxy-key")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = m
        .send(Method::DELETE, &format!("/api/v1/api-keys/{foreign}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = m
        .send(
            Method::DELETE,
            &format!("/api/v1/api-keys/{}", k["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn audit_log_records_changes_without_secrets() {
    let app = TestApp::spawn().await;
    let secret = "sk-audit-secret-value-998877";
    let (_, p) = app
        .post(
            &format!("/api/v1/orgs/{}/providers", app.org_id),
            json!({"type": "openai", "secret": secret}),
        )
        .await;
    app.patch(
        &format!("/api/v1/providers/{}", p["id"].as_str().unwrap()),
        json!({"secret": "sk-audit-secret-value-rotated"}),
    )
    .await;
    app.post(
        &format!("/api/v1/orgs/{}/projects", app.org_id),
        json!({"name": "audited"}),
    )
    .await;
    let (s, log) = app
        .get(&format!("/api/v1/orgs/{}/audit-log", app.org_id))
        .await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["project.create", "provider.update", "provider.create"]
    );
    let text = log.to_string();
    assert!(
        !text.contains("audit-secret"),
        "no secret in the audit log: {text}"
    );
    assert!(
        log["entries"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("api_key:bootstrap")
    );
    let (_, page) = app
        .get(&format!("/api/v1/orgs/{}/audit-log?limit=1", app.org_id))
        .await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page2) = app
        .get(&format!(
            "/api/v1/orgs/{}/audit-log?limit=1&before={cursor}",
            app.org_id
        ))
        .await;
    assert_eq!(page2["entries"][0]["action"], "provider.update");
}

#[tokio::test]
async fn settings_and_connectivity_test() {
    let app = TestApp::spawn().await;
    let path = format!("/api/v1/orgs/{}/settings", app.org_id);
    let (s, e) = app.put(&path, json!({"api_url": "ftp://x"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["field"], "api_url");
    let own = app.base.clone();
    let (s, v) = app.put(&path, json!({"api_url": own, "proxy_url": "http://169.254.169.254/latest", "realtime_url": "ws://127.0.0.1:1/v1/realtime"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, r) = app.post(&format!("{path}/test"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["ok"], true, "{r}");
    assert!(results[0]["latency_ms"].as_u64().is_some());
    assert_eq!(results[1]["ok"], false);
    assert!(
        results[1]["error"]
            .as_str()
            .unwrap()
            .contains("cloud metadata"),
        "{r}"
    );
    assert_eq!(results[2]["ok"], false, "nothing listens on port 1");
    let (_, got) = app.get(&path).await;
    assert_eq!(got["api_url"], own.as_str());
    assert!(got["updated_by"].as_str().unwrap().starts_with("api_key:"));
}

#[tokio::test]
async fn models_listing_reflects_credentials() {
    let app = TestApp::spawn().await;
    app.post(
        &format!("/api/v1/orgs/{}/providers", app.org_id),
        json!({"type": "openai", "secret": "sk-models-listing-1"}),
    )
    .await;
    app.post(
        &format!("/api/v1/projects/{}/providers", app.project_id),
        json!({"type": "custom", "name": "local", "metadata": {"api_base": "http://127.0.0.1:9/v1", "format": "openai", "auth_format": "none", "custom_models": {"my-llm": {"flavor": "chat", "input_cost_per_mil_tokens": 1.0, "output_cost_per_mil_tokens": 2.0}}}}),
    )
    .await;
    let (s, models) = app
        .get(&format!(
            "/api/v1/orgs/{}/models?available=true",
            app.org_id
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = models
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"gpt-4o") && ids.contains(&"my-llm"),
        "{ids:?}"
    );
    assert!(!ids.contains(&"claude-sonnet-4-5-20250929"));
    let mine = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "my-llm")
        .unwrap();
    assert_eq!(mine["custom"], true);
    assert_eq!(mine["served_by"][0]["scope"], "project");
    let (s, _) = app
        .get(&format!("/api/v1/orgs/{}/models?bogus=1", app.org_id))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
