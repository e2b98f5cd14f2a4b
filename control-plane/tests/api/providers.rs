//! Provider credentials: validation per type, previews, PATCH semantics, precedence listing.

use data_plane::seal::{PURPOSE_SNAPSHOT, SealKey};
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, assert_error};

/// The plaintext payload nodes would receive for a credential, via a real snapshot.
pub async fn node_view(app: &TestApp, credential_id: &str) -> Option<Value> {
    let st = &app.running.as_ref().unwrap().state;
    let snap = control_plane::service::snapshot::build(st).await.unwrap();
    let key = SealKey::from_node_token(
        app.config.node_token.as_ref().unwrap().expose(),
        PURPOSE_SNAPSHOT,
    );
    let snap = std::sync::Arc::new(snap);
    let decoded = proto::v1::Snapshot::decode(snap.encode_for(&key).await).unwrap();
    let c = decoded.credentials.iter().find(|c| c.id == credential_id)?;
    let plain = key.open(&c.sealed_secret, c.id.as_bytes()).unwrap();
    let mut v: Value = serde_json::from_slice(&plain).unwrap();
    v["metadata"] = serde_json::from_str(&c.metadata_json).unwrap();
    Some(v)
}

#[tokio::test]
async fn type_specific_metadata_is_validated() {
    let app = TestApp::spawn().await;
    let path = format!("/api/v1/orgs/{}/providers", app.org_id);
    let cases = [
        (
            json!({"type": "azure", "secret": "k".repeat(32)}),
            "metadata.api_base",
        ),
        (
            json!({"type": "bedrock", "secret": "k".repeat(32), "metadata": {"access_key_id": "AKID"}}),
            "metadata.region",
        ),
        (
            json!({"type": "bedrock", "secret": "k".repeat(32), "metadata": {"region": "us-east-1"}}),
            "metadata.access_key_id",
        ),
        (
            json!({"type": "custom", "secret": "k".repeat(32), "metadata": {"api_base": "https://llm.example/v1"}}),
            "metadata.format",
        ),
        (
            json!({"type": "custom", "secret": "k".repeat(32), "metadata": {"format": "openai"}}),
            "metadata.api_base",
        ),
        (
            json!({"type": "openai", "secret": "k".repeat(32), "metadata": {"weight": 0}}),
            "metadata.weight",
        ),
        (
            json!({"type": "openai", "secret": "k".repeat(32), "metadata": {"region": "us-east-1"}}),
            "metadata.region",
        ),
        (
            json!({"type": "openai", "secret": "k".repeat(32), "metadata": {"api_base": "http://169.254.169.254/v1"}}),
            "metadata.api_base",
        ),
        (json!({"type": "openai"}), "secret"),
        (json!({"type": "gpt", "secret": "x"}), "type"),
    ];
    for (body, field) in cases {
        let (s, e) = app.post(&path, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {e}");
        assert_eq!(e["error"]["field"], field, "{body} -> {e}");
    }
    let ok = [
        json!({"type": "azure", "secret": "k".repeat(32), "metadata": {"api_base": "https://res.openai.azure.com", "deployment": "gpt4o", "api_version": "2024-10-21"}}),
        json!({"type": "bedrock", "secret": "k".repeat(32), "metadata": {"region": "us-east-1", "access_key_id": "AKIDEXAMPLE", "session_token": "tok-123"}}),
        json!({"type": "custom", "name": "vllm", "metadata": {"api_base": "http://10.0.0.5:8000/v1", "format": "openai", "auth_format": "none", "supports_streaming": false}}),
        json!({"type": "ollama"}),
    ];
    for body in ok {
        let (s, p) = app.post(&path, body.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{body} -> {p}");
    }
}

#[tokio::test]
async fn reads_show_previews_and_patch_keeps_the_secret() {
    let app = TestApp::spawn().await;
    let secret = "sk-proj-abcdefghijklmnopqrstuv1234";
    let (s, p) = app.post(&format!("/api/v1/orgs/{}/providers", app.org_id), json!({"type": "openai", "secret": secret, "metadata": {"headers": {"X-Team-Token": "team-secret-value"}}})).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["name"], "OPENAI_API_KEY", "default name for the type");
    assert_eq!(p["preview_secret"], "sk-…1234");
    assert_eq!(p["metadata"]["headers"], "[hidden]");
    assert_eq!(p["scope"], "org");
    assert!(
        p["updated_by"]
            .as_str()
            .unwrap()
            .starts_with("api_key:bootstrap")
    );
    assert!(
        !p.to_string().contains("abcdefghijklmnop") && !p.to_string().contains("team-secret-value")
    );
    let id = p["id"].as_str().unwrap().to_string();
    let (_, got) = app.get(&format!("/api/v1/providers/{id}")).await;
    assert!(!got.to_string().contains(secret));
    // PATCH without `secret` keeps it; "[hidden]" keeps the headers.
    let (s, p2) = app
        .patch(
            &format!("/api/v1/providers/{id}"),
            json!({"name": "primary", "metadata": {"weight": 3, "headers": "[hidden]"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p2}");
    assert_eq!(
        p2["secret_updated_at"], p["secret_updated_at"],
        "a rename does not count as a new secret"
    );
    let view = node_view(&app, &id).await.unwrap();
    assert_eq!(view["secret"], secret);
    assert_eq!(view["headers"]["X-Team-Token"], "team-secret-value");
    assert_eq!(view["metadata"]["weight"], 3.0);
    // Replacing the secret.
    let (_, p3) = app
        .patch(
            &format!("/api/v1/providers/{id}"),
            json!({"secret": "sk-new-secret-value-99990000"}),
        )
        .await;
    assert_eq!(p3["preview_secret"], "sk-…0000");
    assert_eq!(
        node_view(&app, &id).await.unwrap()["secret"],
        "sk-new-secret-value-99990000"
    );
    // Clearing sealed headers with null.
    let (_, _) = app
        .patch(
            &format!("/api/v1/providers/{id}"),
            json!({"metadata": {"headers": null}}),
        )
        .await;
    assert!(node_view(&app, &id).await.unwrap().get("headers").is_none());
    // Empty secret on PATCH is refused.
    let (s, e) = app
        .patch(&format!("/api/v1/providers/{id}"), json!({"secret": ""}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["field"], "secret");
    let (s, _) = app.delete(&format!("/api/v1/providers/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = app.get(&format!("/api/v1/providers/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&e, "not_found");
}

#[tokio::test]
async fn project_listing_shows_the_effective_set() {
    let app = TestApp::spawn().await;
    let org = format!("/api/v1/orgs/{}/providers", app.org_id);
    let proj = format!("/api/v1/projects/{}/providers", app.project_id);
    app.post(
        &org,
        json!({"type": "openai", "secret": "sk-org-openai-00000001"}),
    )
    .await;
    app.post(
        &org,
        json!({"type": "anthropic", "secret": "sk-ant-org-000000001"}),
    )
    .await;
    app.post(&org, json!({"type": "custom", "name": "Shared", "metadata": {"api_base": "https://a.example/v1", "format": "openai", "auth_format": "none"}})).await;
    app.post(&org, json!({"type": "custom", "name": "other", "metadata": {"api_base": "https://b.example/v1", "format": "openai", "auth_format": "none"}})).await;
    let (s, _) = app
        .post(
            &proj,
            json!({"type": "openai", "name": "project-openai", "secret": "sk-proj-openai-0000001"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    app.post(&proj, json!({"type": "custom", "name": "Shared", "metadata": {"api_base": "https://c.example/v1", "format": "openai", "auth_format": "none"}})).await;
    app.post(&proj, json!({"type": "custom", "name": "shared", "metadata": {"api_base": "https://d.example/v1", "format": "openai", "auth_format": "none"}})).await;
    let (s, list) = app.get(&proj).await;
    assert_eq!(s, StatusCode::OK);
    let rows: Vec<(String, String, String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["scope"].as_str().unwrap().into(),
                r["type"].as_str().unwrap().into(),
                r["name"].as_str().unwrap().into(),
                r["overridden"].as_bool().unwrap(),
            )
        })
        .collect();
    let find = |scope: &str, name: &str| {
        rows.iter()
            .find(|r| r.0 == scope && r.2 == name)
            .cloned()
            .unwrap_or_else(|| panic!("{scope}/{name} missing in {rows:?}"))
    };
    assert!(
        find("org", "OPENAI_API_KEY").3,
        "org openai is shadowed by the project's openai (same type)"
    );
    assert!(!find("org", "ANTHROPIC_API_KEY").3);
    assert!(find("org", "Shared").3, "custom shadows by exact name");
    assert!(
        !find("org", "other").3,
        "a different custom name does not shadow"
    );
    assert!(!find("project", "project-openai").3);
    assert_eq!(rows.iter().filter(|r| r.0 == "project").count(), 3);
    // Duplicate names at the same level conflict; the same name at another level is fine.
    let (s, _) = app.post(&proj, json!({"type": "custom", "name": "Shared", "metadata": {"api_base": "https://e.example/v1", "format": "openai", "auth_format": "none"}})).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

/// The published snapshot once the builder has caught up with the database, and each credential's
/// sealed secret in it (for nodes holding the test node token).
async fn published_sealed(app: &TestApp) -> (u64, std::collections::HashMap<String, Vec<u8>>) {
    let st = &app.running.as_ref().unwrap().state;
    let key = SealKey::from_node_token(
        app.config.node_token.as_ref().unwrap().expose(),
        PURPOSE_SNAPSHOT,
    );
    for _ in 0..500 {
        let want = control_plane::db::config_version(st.db()).await.unwrap() as u64;
        if let Some(s) = st.snapshots().current().filter(|s| s.version == want) {
            let decoded = proto::v1::Snapshot::decode(s.encode_for(&key).await).unwrap();
            let sealed = decoded
                .credentials
                .into_iter()
                .map(|c| (c.id, c.sealed_secret))
                .collect();
            return (s.version, sealed);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the snapshot builder did not catch up");
}

#[tokio::test]
async fn a_credential_keeps_its_sealed_bytes_until_its_secret_changes() {
    let app = TestApp::spawn().await;
    let path = format!("/api/v1/orgs/{}/providers", app.org_id);
    let mut ids = Vec::new();
    for (name, secret) in [("a", "sk-aaaa-0000-1111"), ("b", "sk-bbbb-0000-1111")] {
        let (s, p) = app
            .post(
                &path,
                json!({"type": "openai", "name": name, "secret": secret}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        ids.push(p["id"].as_str().unwrap().to_string());
    }
    let (v1, first) = published_sealed(&app).await;
    // A rename of `a` and a new secret for `b`.
    let (s, _) = app
        .patch(
            &format!("/api/v1/providers/{}", ids[0]),
            json!({"name": "a2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .patch(
            &format!("/api/v1/providers/{}", ids[1]),
            json!({"secret": "sk-bbbb-rotated-2222"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (v2, second) = published_sealed(&app).await;
    assert!(v2 > v1);
    assert_eq!(
        first[&ids[0]], second[&ids[0]],
        "unchanged secret, same bytes"
    );
    assert_ne!(first[&ids[1]], second[&ids[1]], "new secret, new bytes");
    assert_eq!(
        node_view(&app, &ids[1]).await.unwrap()["secret"],
        "sk-bbbb-rotated-2222"
    );
}
