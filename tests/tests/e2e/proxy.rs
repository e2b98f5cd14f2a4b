//! Routing, precedence, key restrictions, OpenAI-format providers, errors.

use reqwest::StatusCode;
use serde_json::json;
use tests::fake::openai::{FakeOpenAi, Reply};
use tests::stack::{ControlPlane, Node};

async fn setup() -> (ControlPlane, Node, FakeOpenAi, String) {
    let cp = ControlPlane::start().await;
    let fake = FakeOpenAi::start("sk-fake-org-openai-000111").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-fake-org-openai-000111", "metadata": {"api_base": fake.base()}})).await;
    let node = Node::start(&cp).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    (cp, node, fake, key)
}

#[tokio::test]
async fn chat_completion_through_an_org_key() {
    let (_cp, node, fake, key) = setup().await;
    let (s, h, body) = node
        .post(
            "/v1/proxy/chat/completions",
            &key,
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}),
            &[("x-bt-use-cache", "never"), ("x-request-id", "req-123")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the fake!"
    );
    assert_eq!(h["x-bt-used-endpoint"], "OPENAI_API_KEY");
    assert_eq!(h["x-request-id"], "req-123");
    assert_eq!(h["x-bt-attempts"], "1");
    let r = fake.last().unwrap();
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some("Bearer sk-fake-org-openai-000111")
    );
    assert!(
        r.headers.keys().all(|k| !k.as_str().starts_with("x-bt-")),
        "x-bt-* headers never go upstream: {:?}",
        r.headers
    );
    assert!(
        !r.headers
            .values()
            .any(|v| v.to_str().unwrap_or("").contains(&key)),
        "the caller's key never goes upstream"
    );
    assert_eq!(r.body["model"], "gpt-4o");
    // The /v1 alias serves the same API.
    let (s, _, _) = node
        .post(
            "/v1/chat/completions",
            &key,
            json!({"model": "gpt-4o", "messages": []}),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // x-api-key works as well as Authorization.
    let r = reqwest::Client::new()
        .post(node.url("/v1/proxy/chat/completions"))
        .header("x-api-key", &key)
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // HTTP/2 without TLS (prior knowledge) is served too, several calls on one connection.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for i in 0..3 {
        let r = h2
            .post(node.url("/v1/proxy/chat/completions"))
            .bearer_auth(&key)
            .header("x-bt-use-cache", "never")
            .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("h2 {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), StatusCode::OK);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Hello from the fake!"
        );
        assert_eq!(
            fake.last().unwrap().body["messages"][0]["content"],
            format!("h2 {i}")
        );
    }
}

#[tokio::test]
async fn project_credentials_override_org_credentials() {
    let cp = ControlPlane::start().await;
    let org_fake = FakeOpenAi::start("sk-org-0000000001").await;
    let proj_fake = FakeOpenAi::start("sk-proj-000000001").await;
    let org_custom = FakeOpenAi::start("custom-org-key").await;
    let proj_custom = FakeOpenAi::start("custom-proj-key").await;
    let other_custom = FakeOpenAi::start("custom-other-key").await;
    let p2 = cp.project("second").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-org-0000000001", "metadata": {"api_base": org_fake.base()}})).await;
    cp.project_provider(&cp.project_id, json!({"type": "openai", "name": "proj-openai", "secret": "sk-proj-000000001", "metadata": {"api_base": proj_fake.base()}})).await;
    let models = json!({"my-model": {"flavor": "chat"}});
    cp.org_provider(json!({"type": "custom", "name": "Shared", "secret": "custom-org-key", "metadata": {"api_base": org_custom.base(), "format": "openai", "custom_models": models}})).await;
    cp.project_provider(&cp.project_id, json!({"type": "custom", "name": "Shared", "secret": "custom-proj-key", "metadata": {"api_base": proj_custom.base(), "format": "openai", "custom_models": models}})).await;
    cp.project_provider(&p2, json!({"type": "custom", "name": "shared", "secret": "custom-other-key", "metadata": {"api_base": other_custom.base(), "format": "openai", "custom_models": models}})).await;
    let node = Node::start(&cp).await;
    let org_key = cp.key("proxy", None).await;
    let proj_key = cp.key("proxy", Some(&cp.project_id)).await;
    node.wait_version(cp.current_version().await).await;
    let project_name = "default";

    let (s, h, _) = node.chat(&org_key, "gpt-4o", &[]).await;
    assert_eq!(
        (s, h["x-bt-used-endpoint"].to_str().unwrap()),
        (StatusCode::OK, "OPENAI_API_KEY"),
        "no project context: org key"
    );
    let (_, h, _) = node.chat(&proj_key, "gpt-4o", &[]).await;
    assert_eq!(
        h["x-bt-used-endpoint"], "proj-openai",
        "project-restricted key: the project's key shadows the org's"
    );
    let (_, h, _) = node
        .chat(&org_key, "gpt-4o", &[("x-bt-project-id", &cp.project_id)])
        .await;
    assert_eq!(
        h["x-bt-used-endpoint"], "proj-openai",
        "x-bt-project-id selects the project context"
    );
    let (_, h, _) = node
        .chat(
            &org_key,
            "gpt-4o",
            &[("x-bt-parent", &format!("project_name:{project_name}"))],
        )
        .await;
    assert_eq!(
        h["x-bt-used-endpoint"], "proj-openai",
        "x-bt-parent selects the project context"
    );
    let (_, h, _) = node
        .chat(&org_key, "gpt-4o", &[("x-bt-project-id", &p2)])
        .await;
    assert_eq!(
        h["x-bt-used-endpoint"], "OPENAI_API_KEY",
        "a project without its own openai key inherits the org's"
    );
    assert_eq!(proj_fake.count(), 3);
    assert_eq!(org_fake.count(), 2);

    // custom providers shadow by exact name.
    let (s, h, b) = node
        .chat(&org_key, "my-model", &[("x-bt-project-id", &cp.project_id)])
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(h["x-bt-used-endpoint"], "Shared");
    assert_eq!(
        (proj_custom.count(), org_custom.count()),
        (1, 0),
        "the project's 'Shared' shadows the org's 'Shared'"
    );
    for _ in 0..30 {
        let (s, _, b) = node
            .chat(&org_key, "my-model", &[("x-bt-project-id", &p2)])
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    assert!(
        org_custom.count() > 0 && other_custom.count() > 0,
        "'shared' ≠ 'Shared': both are candidates in project two"
    );
    // x-bt-endpoint-name pins one credential.
    for _ in 0..4 {
        let (s, h, _) = node
            .chat(
                &org_key,
                "my-model",
                &[("x-bt-project-id", &p2), ("x-bt-endpoint-name", "shared")],
            )
            .await;
        assert_eq!(
            (s, h["x-bt-used-endpoint"].to_str().unwrap()),
            (StatusCode::OK, "shared")
        );
    }
    let (s, _, b) = node
        .chat(&org_key, "my-model", &[("x-bt-endpoint-name", "nope")])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["param"], "x-bt-endpoint-name");
}

#[tokio::test]
async fn key_restrictions_and_org_checks() {
    let (cp, node, _fake, org_key) = setup().await;
    let p2 = cp.project("other").await;
    let proj_key = cp.key("proxy", Some(&cp.project_id)).await;
    node.wait_version(cp.current_version().await).await;
    let (s, _, b) = node
        .chat(&proj_key, "gpt-4o", &[("x-bt-project-id", &p2)])
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a restricted key naming a sibling project: {b}"
    );
    assert_eq!(b["error"]["code"], "conflicting_project");
    let (s, _, b) = node
        .chat(
            &proj_key,
            "gpt-4o",
            &[("x-bt-parent", &format!("project_id:{p2}"))],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _, b) = node
        .chat(
            &org_key,
            "gpt-4o",
            &[("x-bt-project-id", &uuid::Uuid::now_v7().to_string())],
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "unknown or foreign projects are 403: {b}"
    );
    let (s, _, _) = node
        .chat(&org_key, "gpt-4o", &[("x-bt-org-name", "someone-else")])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = node
        .chat(&org_key, "gpt-4o", &[("x-bt-org-name", "default")])
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = node
        .chat(&org_key, "gpt-4o", &[("x-bt-parent", "experiment_id:123")])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"]["param"], "x-bt-parent");
    // Another org's project by id: 403, never a hint.
    let (s, other) = cp
        .api("POST", "/api/v1/orgs", Some(json!({"name": "x"})))
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "the bootstrap key is an org admin, not an instance admin: {other}"
    );
}

#[tokio::test]
async fn proxy_errors_are_openai_shaped() {
    let (cp, node, fake, key) = setup().await;
    let http = reqwest::Client::new();
    let url = node.url("/v1/proxy/chat/completions");
    let r = http
        .post(&url)
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let b: serde_json::Value = r.json().await.unwrap();
    assert!(
        b["error"].as_object().unwrap().contains_key("param") && b["error"]["type"].is_string(),
        "{b}"
    );
    let r = http
        .post(&url)
        .bearer_auth("aip_nope")
        .json(&json!({"model": "gpt-4o"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .post(&url)
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "invalid_json"
    );
    let big = format!(
        "{{\"model\": \"gpt-4o\", \"messages\": [{{\"role\": \"user\", \"content\": \"{}\"}}]}}",
        "x".repeat(33 * 1024 * 1024)
    );
    let r = http
        .post(&url)
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _, b) = node.chat(&key, "gpt-does-not-exist", &[]).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("model_not_found"))
    );
    let (s, _, b) = node.chat(&key, "claude-sonnet-4-5-20250929", &[]).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("no_credential"))
    );
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("claude-sonnet-4-5-20250929") && msg.contains("anthropic"),
        "the message names the model and where to add a key: {msg}"
    );
    let (s, _, b) = node
        .post(
            "/v1/proxy/chat/completions",
            &key,
            json!({"messages": []}),
            &[],
        )
        .await;
    assert_eq!(
        (s, b["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("model"))
    );
    let (s, _, b) = node
        .post(
            "/v1/proxy/embeddings",
            &key,
            json!({"model": "gpt-4o", "input": "x"}),
            &[],
        )
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a chat model on /embeddings: {b}"
    );
    let r = http
        .post(node.url("/v1/proxy/nope"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(
        r.json::<serde_json::Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid URL")
    );

    // Upstream errors: a 400 comes back as is, with no failover.
    fake.push(Reply::Status { status: 400, body: json!({"error": {"message": "Invalid 'messages': empty array.", "type": "invalid_request_error", "param": "messages", "code": "empty_array"}}), headers: vec![] });
    let before = fake.count();
    let (s, _, b) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        (b["error"]["code"].as_str(), b["error"]["param"].as_str()),
        (Some("empty_array"), Some("messages"))
    );
    assert_eq!(fake.count(), before + 1);
    // The provider rejects our key: no fragment of it reaches the client.
    let bad = FakeOpenAi::start("the-right-key").await;
    let id = cp.org_provider(json!({"type": "openai", "name": "bad", "secret": "sk-WRONG-secret-value-123456", "metadata": {"api_base": bad.base(), "models": ["gpt-4o-mini"]}})).await;
    node.wait_version(cp.current_version().await).await;
    let (s, _, b) = node
        .chat(&key, "gpt-4o-mini", &[("x-bt-endpoint-name", "bad")])
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert_eq!(b["error"]["code"], "provider_auth_failed");
    assert!(
        !b.to_string().contains("WRONG") && !b.to_string().contains("123456"),
        "{b}"
    );
    // An upstream that is down: 502, naming no secret.
    cp.api(
        "PATCH",
        &format!("/api/v1/providers/{id}"),
        Some(json!({"metadata": {"api_base": "http://127.0.0.1:9/v1", "models": ["gpt-4o-mini"]}})),
    )
    .await;
    node.wait_version(cp.current_version().await).await;
    let (s, _, b) = node
        .chat(&key, "gpt-4o-mini", &[("x-bt-endpoint-name", "bad")])
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert!(!b.to_string().contains("WRONG"), "{b}");
}

#[tokio::test]
async fn azure_deployments_and_custom_non_streaming_providers() {
    let cp = ControlPlane::start().await;
    let az = FakeOpenAi::start("azure-key-000000000001").await;
    let custom = FakeOpenAi::start("custom-key-0001").await;
    cp.org_provider(json!({"type": "azure", "secret": "azure-key-000000000001", "metadata": {"api_base": az.azure_base(), "deployment": "prod-gpt4o", "api_version": "2024-10-21"}})).await;
    cp.org_provider(json!({"type": "custom", "name": "batch-llm", "secret": "custom-key-0001", "metadata": {"api_base": custom.base(), "format": "openai", "supports_streaming": false,
        "headers": {"X-Tenant": "acme"}, "custom_models": {"batch-1": {"flavor": "chat", "input_cost_per_mil_tokens": 1.0, "output_cost_per_mil_tokens": 1.0}}}})).await;
    let node = Node::start(&cp).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    let (s, h, b) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(h["x-bt-used-endpoint"], "AZURE_DEFAULT_CREDENTIALS");
    let r = az.last().unwrap();
    assert_eq!(r.path, "/openai/deployments/prod-gpt4o/chat/completions");
    assert_eq!(r.query, "api-version=2024-10-21");
    assert_eq!(r.header("api-key"), Some("azure-key-000000000001"));
    assert!(r.header("authorization").is_none());
    // Azure streams open with a content-filter chunk whose `choices` is empty (edge case 19):
    // passed through, and usage is still read from the end of the stream.
    let resp = reqwest::Client::new().post(node.url("/v1/proxy/chat/completions")).bearer_auth(&key).json(&json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "x"}]})).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    let chunks = tests::sse::chunks(&text);
    assert_eq!(chunks[0]["choices"], json!([]), "{text}");
    assert!(chunks[0]["prompt_filter_results"].is_array());
    assert_eq!(tests::sse::content(&text), "Hello from the fake!");
    assert_eq!(
        chunks.last().unwrap()["usage"]["total_tokens"],
        18,
        "{text}"
    );
    // A custom provider that cannot stream: one chunk + [DONE].
    let resp = reqwest::Client::new().post(node.url("/v1/proxy/chat/completions")).bearer_auth(&key).json(&json!({"model": "batch-1", "stream": true, "messages": [{"role": "user", "content": "x"}]})).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    let events = tests::sse::data_events(&text);
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[1], "[DONE]");
    assert_eq!(tests::sse::content(&text), "Hello from the fake!");
    let r = custom.last().unwrap();
    assert_eq!(
        r.body["stream"], false,
        "the upstream is called without streaming"
    );
    assert_eq!(r.header("x-tenant"), Some("acme"));
    assert_eq!(r.header("authorization"), Some("Bearer custom-key-0001"));
}

#[tokio::test]
async fn other_openai_routes_and_model_listing() {
    let (cp, node, fake, key) = setup().await;
    let (s, _, b) = node
        .post(
            "/v1/proxy/embeddings",
            &key,
            json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"].as_array().unwrap().len(), 2);
    assert_eq!(fake.last().unwrap().path, "/v1/embeddings");
    let (s, _, b) = node
        .post(
            "/v1/proxy/completions",
            &key,
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["choices"][0]["text"], "Hello from the fake!");
    let (s, _, b) = node
        .post(
            "/v1/proxy/responses",
            &key,
            json!({"model": "gpt-4o", "input": "Say hi"}),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["object"], "response");
    let (_, list) = node.get("/v1/proxy/models", &key).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"gpt-4o") && ids.contains(&"text-embedding-3-small"),
        "{ids:?}"
    );
    assert!(
        !ids.contains(&"claude-sonnet-4-5-20250929"),
        "only models the caller can reach"
    );
    assert!(list["data"][0]["created"].is_i64() && list["data"][0]["owned_by"].is_string());
    let (s, _) = node.get("/v1/proxy/models/gpt-4o", &key).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = node.get("/v1/proxy/models/claude-nope", &key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    drop(cp);
}
