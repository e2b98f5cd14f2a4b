//! Response cache, temporary credentials, realtime WebSocket proxy.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::json;
use tests::fake::openai::FakeOpenAi;
use tests::fake::realtime::FakeRealtime;
use tests::stack::{ControlPlane, Node};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

async fn setup(extra: &[(&str, &str)]) -> (ControlPlane, Node, FakeOpenAi, String) {
    let cp = ControlPlane::start().await;
    let fake = FakeOpenAi::start("sk-feat-00000001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-feat-00000001", "metadata": {"api_base": fake.base()}})).await;
    let node = Node::start_with(&cp, Arc::new(tempfile::tempdir().unwrap()), extra).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    (cp, node, fake, key)
}

fn chat(temperature: f64) -> serde_json::Value {
    json!({"model": "gpt-4o", "temperature": temperature, "messages": [{"role": "user", "content": "cache me"}]})
}

#[tokio::test]
async fn identical_and_reordered_requests_hit_the_cache() {
    let (cp, node, fake, key) = setup(&[]).await;
    let (s, h, first) = node
        .post("/v1/proxy/chat/completions", &key, chat(0.0), &[])
        .await;
    assert_eq!(
        (s, h["x-bt-cached"].to_str().unwrap()),
        (StatusCode::OK, "MISS")
    );
    // Same request with other key order and whitespace.
    let reordered = "{ \"messages\": [ { \"content\": \"cache me\", \"role\": \"user\" } ],\n \"temperature\": 0.0, \"model\": \"gpt-4o\" }";
    let r = reqwest::Client::new()
        .post(node.url("/v1/proxy/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(reordered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-bt-cached"], "HIT");
    assert!(r.headers().contains_key("age"));
    assert_eq!(r.headers()["x-bt-used-endpoint"], "OPENAI_API_KEY");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, first);
    assert_eq!(fake.count(), 1, "the hit did not reach the provider");
    // Non-deterministic requests are not cached in auto mode; `always` caches them.
    let (_, h, _) = node
        .post("/v1/proxy/chat/completions", &key, chat(0.7), &[])
        .await;
    assert!(!h.contains_key("x-bt-cached"));
    node.post(
        "/v1/proxy/chat/completions",
        &key,
        chat(0.7),
        &[("x-bt-use-cache", "always")],
    )
    .await;
    let (_, h, _) = node
        .post(
            "/v1/proxy/chat/completions",
            &key,
            chat(0.7),
            &[("x-bt-use-cache", "always")],
        )
        .await;
    assert_eq!(h["x-bt-cached"], "HIT");
    // Other projects and endpoint pins miss.
    let (_, h, _) = node
        .post(
            "/v1/proxy/chat/completions",
            &key,
            chat(0.0),
            &[("x-bt-project-id", &cp.project_id)],
        )
        .await;
    assert_eq!(
        h["x-bt-cached"], "MISS",
        "another project does not share the entry"
    );
    let (_, h, _) = node
        .post(
            "/v1/proxy/chat/completions",
            &key,
            chat(0.0),
            &[("x-bt-endpoint-name", "OPENAI_API_KEY")],
        )
        .await;
    assert_eq!(h["x-bt-cached"], "MISS");
    // no-store is honoured, no-cache forces a fresh answer, never skips the cache.
    let body = json!({"model": "gpt-4o", "seed": 42, "messages": []});
    node.post(
        "/v1/proxy/chat/completions",
        &key,
        body.clone(),
        &[("cache-control", "no-store")],
    )
    .await;
    let (_, h, _) = node
        .post("/v1/proxy/chat/completions", &key, body.clone(), &[])
        .await;
    assert_eq!(h["x-bt-cached"], "MISS", "the no-store answer was not kept");
    let (_, h, _) = node
        .post(
            "/v1/proxy/chat/completions",
            &key,
            body.clone(),
            &[("cache-control", "no-cache")],
        )
        .await;
    assert_eq!(h["x-bt-cached"], "MISS");
    let (_, h, _) = node
        .post(
            "/v1/proxy/chat/completions",
            &key,
            body.clone(),
            &[("x-bt-use-cache", "never")],
        )
        .await;
    assert!(!h.contains_key("x-bt-cached"));
    let (s, _, b) = node
        .post(
            "/v1/proxy/chat/completions",
            &key,
            body,
            &[("x-bt-use-cache", "maybe")],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // Hits are recorded, marked cached, at no cost.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, u) = cp
            .api(
                "GET",
                &format!("/api/v1/orgs/{}/usage?from=0", cp.org_id),
                None,
            )
            .await;
        if u["totals"]["cache_hits"].as_i64() == Some(2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{u}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn streams_are_replayed_byte_for_byte_and_redis_is_shared_across_nodes() {
    let redis = [("AIPROXY_REDIS_URL", "redis://127.0.0.1:6379")];
    let (cp, n1, fake, key) = setup(&redis).await;
    let n2 = Node::start_with(&cp, Arc::new(tempfile::tempdir().unwrap()), &redis).await;
    let unique = uuid::Uuid::new_v4().to_string();
    let body = json!({"model": "gpt-4o", "temperature": 0, "stream": true, "messages": [{"role": "user", "content": unique}]});
    let stream = |node: &Node| {
        let url = node.url("/v1/proxy/chat/completions");
        let (key, body) = (key.clone(), body.clone());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let cached = r.headers()["x-bt-cached"].to_str().unwrap().to_string();
            (cached, r.bytes().await.unwrap())
        }
    };
    let (c1, b1) = stream(&n1).await;
    assert_eq!(c1, "MISS");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        // The write is asynchronous; the other node finds it in Redis.
        let (c2, b2) = stream(&n2).await;
        if c2 == "HIT" {
            assert_eq!(b2, b1, "the replayed stream is byte-identical");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 2 never hit node 1's entry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(String::from_utf8_lossy(&b1).ends_with("data: [DONE]\n\n"));
    assert!(fake.count() <= 2);
}

async fn mint(node: &Node, key: &str, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
    let (s, _, b) = node.post("/v1/proxy/credentials", key, body, &[]).await;
    (s, b)
}

#[tokio::test]
async fn temporary_credentials_are_scoped_expire_and_die_with_their_parent() {
    let (cp, node, fake, _) = setup(&[]).await;
    let parent = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    let (s, t) = mint(&node, &parent, json!({"model": "gpt-4o", "ttl_seconds": 60, "logging": {"parent": "project_name:default"}})).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let temp = t["key"].as_str().unwrap().to_string();
    assert!(temp.starts_with("aipt_"));
    let (s, h, b) = node.chat(&temp, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(h.contains_key("x-bt-log-id"));
    let (s, _, b) = node.chat(&temp, "gpt-4o-mini", &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "refused for another model: {b}");
    // The model list shows what the credential may call: only its model, where the parent
    // key sees more.
    let ids = |key: String| {
        let node = &node;
        async move {
            let (s, list) = node.get("/v1/proxy/models", &key).await;
            assert_eq!(s, StatusCode::OK);
            let mut ids: Vec<String> = list["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(ids(temp.clone()).await, ["gpt-4o"]);
    assert!(ids(parent.clone()).await.len() > 1);
    let (s, _) = node.get("/v1/proxy/models/gpt-4o-mini", &temp).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "not listed for the credential");
    let (s, b) = mint(&node, &temp, json!({})).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a temporary credential cannot mint another: {b}"
    );
    // Tampering with the claims or the signature.
    let mut chars: Vec<char> = temp.chars().collect();
    let i = 10;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let (s, _, b) = node.chat(&tampered, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, _, b) = node.chat(&format!("{temp}x"), "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    // Expiry.
    let (_, t) = mint(&node, &parent, json!({"ttl_seconds": 1})).await;
    let short = t["key"].as_str().unwrap().to_string();
    let (s, _, _) = node.chat(&short, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, _, b) = node.chat(&short, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"]["code"], "temporary_credential_expired");
    // Bad requests.
    for bad in [
        json!({"ttl_seconds": 0}),
        json!({"ttl_seconds": 86401}),
        json!({"unknown": 1}),
        json!({"project_id": uuid::Uuid::now_v7().to_string()}),
    ] {
        let (s, b) = mint(&node, &parent, bad.clone()).await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::FORBIDDEN,
            "{bad} -> {s} {b}"
        );
    }
    // Revoking the parent key revokes its temporary credentials.
    let (_, keys) = cp
        .api("GET", &format!("/api/v1/orgs/{}/api-keys", cp.org_id), None)
        .await;
    let id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| {
            k["preview"]
                .as_str()
                .is_some_and(|p| parent.starts_with(&p[..8]) && parent.ends_with(&p[p.len() - 4..]))
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    cp.api("DELETE", &format!("/api/v1/api-keys/{id}"), None)
        .await;
    node.wait_version(cp.current_version().await).await;
    let (s, _, b) = node.chat(&temp, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(fake.count() >= 2);
}

async fn open_ws(
    node: &Node,
    key: &str,
    model: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://{}/v1/proxy/realtime?model={model}", node.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("realtime, openai-insecure-api-key.{key}, openai-beta.realtime-v1")
            .parse()
            .unwrap(),
    );
    req.headers_mut()
        .insert("x-bt-parent", "project_name:default".parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "realtime");
    ws
}

#[tokio::test]
async fn realtime_sessions_are_relayed_both_ways() {
    let cp = ControlPlane::start().await;
    let rt = FakeRealtime::start("sk-realtime-0001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-realtime-0001", "metadata": {"api_base": rt.base()}})).await;
    let node = Node::start(&cp).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    // Without an upgrade: 426.
    let r = reqwest::Client::new()
        .get(node.url("/v1/proxy/realtime?model=gpt-realtime"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
    let mut ws = open_ws(&node, &key, "gpt-realtime").await;
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("session.created"));
    ws.send(tungstenite::Message::text(
        "{\"type\":\"input_audio_buffer.append\",\"audio\":\"AAAA\"}",
    ))
    .await
    .unwrap();
    assert!(
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .contains("input_audio_buffer.append")
    );
    ws.send(tungstenite::Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_data().to_vec(),
        vec![1u8, 2, 3]
    );
    ws.send(tungstenite::Message::text("{\"type\":\"response.create\"}"))
        .await
        .unwrap();
    assert!(
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .contains("response.done")
    );
    ws.close(None).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rt.closed_by_client() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the client's close reached upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rt.models(), vec!["gpt-realtime".to_string()]);
    // The session is logged with its usage.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, page) = cp
            .api(
                "GET",
                &format!("/api/v1/projects/{}/logs", cp.project_id),
                None,
            )
            .await;
        if let Some(l) = page["logs"]
            .as_array()
            .and_then(|a| a.iter().find(|l| l["route"] == "realtime"))
        {
            assert_eq!(
                (l["prompt_tokens"].as_i64(), l["completion_tokens"].as_i64()),
                (Some(20), Some(10))
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An upstream failure reaches the client as an error event, then a close.
    let mut ws = open_ws(&node, &key, "gpt-realtime").await;
    ws.next().await.unwrap().unwrap();
    ws.send(tungstenite::Message::text("{\"type\":\"test.die\"}"))
        .await
        .unwrap();
    let ev = ws.next().await.unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(ev.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "server_error");
    assert!(matches!(
        ws.next().await,
        Some(Ok(tungstenite::Message::Close(_))) | None
    ));
    // A wrong key never gets a session.
    let mut req = format!("ws://{}/v1/proxy/realtime?model=gpt-realtime", node.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "realtime, openai-insecure-api-key.aip_wrong"
            .parse()
            .unwrap(),
    );
    let err = tokio_tungstenite::connect_async(req).await.err().unwrap();
    assert!(
        matches!(err, tungstenite::Error::Http(ref r) if r.status() == 401),
        "{err}"
    );
}
