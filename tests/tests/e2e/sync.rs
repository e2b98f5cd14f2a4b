//! Configuration distribution: live changes, several nodes, the control plane dying while
//! traffic flows, restarts from the last-known-good disk cache, node authentication.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tests::fake::openai::FakeOpenAi;
use tests::stack::{ControlPlane, Node};

#[tokio::test]
async fn a_change_reaches_running_nodes_without_restart() {
    let cp = ControlPlane::start().await;
    let n1 = Node::start(&cp).await;
    let n2 = Node::start(&cp).await;
    let key = cp.key("proxy", None).await;
    n1.wait_version(cp.current_version().await).await;
    let (s, _, _) = n1.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "no credential yet");
    let fake = FakeOpenAi::start("sk-live-change-01").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-live-change-01", "metadata": {"api_base": fake.base()}})).await;
    let v = cp.current_version().await;
    n1.wait_version(v).await;
    n2.wait_version(v).await;
    for n in [&n1, &n2] {
        let (s, _, b) = n.chat(&key, "gpt-4o", &[]).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    // A node serves a version a moment before it acknowledges it: the control plane's listing
    // catches up within moments.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let nodes = loop {
        let (_, nodes) = cp.api("GET", "/api/v1/nodes", None).await;
        let acked = nodes
            .as_array()
            .is_some_and(|a| a.iter().all(|n| n["applied_version"].as_u64() == Some(v)));
        if acked || std::time::Instant::now() > deadline {
            break nodes;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let listed = nodes.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{nodes}");
    for n in listed {
        assert_eq!(n["connected"], true);
        assert_eq!(n["applied_version"].as_u64(), Some(v), "{n}");
        assert!(n["last_seen_at"].is_string());
    }
    // A revoked key stops working on the nodes too.
    let (_, keys) = cp
        .api("GET", &format!("/api/v1/orgs/{}/api-keys", cp.org_id), None)
        .await;
    let id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "proxy")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    cp.api("DELETE", &format!("/api/v1/api-keys/{id}"), None)
        .await;
    n1.wait_version(cp.current_version().await).await;
    let (s, _, _) = n1.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The credential and the revocation reached the running node as deltas, not whole
    // snapshots.
    let deltas = n1.metric("aiproxy_config_deltas_applied_total").await;
    assert!(deltas >= 2.0, "{}", n1.metrics().await);
}

#[tokio::test]
async fn traffic_continues_when_the_control_plane_dies_and_nodes_restart_from_disk() {
    let mut cp = ControlPlane::start().await;
    let fake = FakeOpenAi::start("sk-lkg-000000001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-lkg-000000001", "metadata": {"api_base": fake.base()}})).await;
    let cache = Arc::new(tempfile::tempdir().unwrap());
    let mut node = Node::start_with(&cp, cache.clone(), &[]).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    // One more change reaches it as a delta: what it writes to disk is then the whole
    // snapshot it made from its previous one and the delta.
    cp.project("before-the-kill").await;
    let cp_version = cp.current_version().await;
    node.wait_version(cp_version).await;
    assert!(node.metric("aiproxy_config_deltas_applied_total").await >= 1.0);
    // Traffic flows while the control plane is killed.
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let url = node.url("/v1/proxy/chat/completions");
    let traffic = {
        let (ok, failed, key, url) = (ok.clone(), failed.clone(), key.clone(), url.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for _ in 0..60 {
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"model": "gpt-4o", "messages": []}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::OK => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    cp.kill().await;
    traffic.await.unwrap();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "no request failed while the control plane died"
    );
    assert_eq!(ok.load(Ordering::SeqCst), 60);
    // The disk cache holds no plaintext secret.
    let raw = std::fs::read(cache.path().join("snapshot.bin")).unwrap();
    assert!(
        !raw.windows(16).any(|w| w == b"sk-lkg-000000001"),
        "the snapshot cache is encrypted"
    );
    // The node restarts with the control plane still down: it serves from its disk cache,
    // which holds the version it served (written at most once a second under a stream of
    // changes, so a crash right after one can restart from the version before it).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.metric("aiproxy_config_cache_version").await < cp_version as f64
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cached = node.metric("aiproxy_config_cache_version").await;
    assert!(cached >= cp_version as f64, "{cached} < {cp_version}");
    node.kill().await;
    node.respawn().await;
    assert!(
        tests::stack::wait_http_ok(&node.url("/readyz"), Duration::from_secs(20)).await,
        "{}",
        node.logs.text()
    );
    let (s, _, b) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        node.logs.text().contains("last-known-good"),
        "{}",
        node.logs.text()
    );
    // And reconnects once the control plane is back.
    cp.spawn().await;
    let p = cp.project("after-restart").await;
    let v = cp.current_version().await;
    node.wait_version(v).await;
    assert!(!p.is_empty());
}

#[tokio::test]
async fn nodes_with_a_wrong_token_are_refused() {
    let cp = ControlPlane::start().await;
    let node = Node::spawn_unready(
        &cp.grpc_url(),
        "not-the-token",
        Arc::new(tempfile::tempdir().unwrap()),
        &[],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = reqwest::get(node.url("/readyz")).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "no snapshot without the right token"
    );
    let r = reqwest::Client::new()
        .post(node.url("/v1/proxy/chat/completions"))
        .bearer_auth(&cp.admin_key)
        .json(&json!({"model": "gpt-4o"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        cp.logs.text().contains("refused a node connection"),
        "{}",
        cp.logs.text()
    );
    assert!(
        node.logs.text().contains("invalid node token"),
        "{}",
        node.logs.text()
    );
    assert!(
        !cp.logs.text().contains("not-the-token"),
        "the presented token is not logged"
    );
}

#[tokio::test]
async fn node_token_rotation_without_downtime() {
    let mut cp = ControlPlane::start().await;
    let fake = FakeOpenAi::start("sk-rotate-00000000001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-rotate-00000000001", "metadata": {"api_base": fake.base()}})).await;
    let old = cp.node_token.clone();
    let mut old_node = Node::start(&cp).await;
    let key = cp.key("proxy", None).await;
    old_node.wait_version(cp.current_version().await).await;

    // Step 1: the control plane learns the new token and still accepts the old one.
    let new = format!("node-token-rotated-{}", uuid::Uuid::new_v4().simple());
    cp.kill().await;
    cp.env
        .retain(|(k, _)| k != "AIPROXY_NODE_TOKEN" && k != "AIPROXY_OLD_NODE_TOKENS");
    cp.env.push(("AIPROXY_NODE_TOKEN".into(), new.clone()));
    cp.env.push(("AIPROXY_OLD_NODE_TOKENS".into(), old.clone()));
    // The node keeps serving while the control plane restarts.
    let (s, _, _) = old_node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK);
    cp.spawn().await;
    cp.project("during-rotation").await;
    let v = cp.current_version().await;
    old_node.wait_version(v).await;
    // Step 2: nodes move to the new token, one by one.
    let new_node = Node::spawn_unready(
        &cp.grpc_url(),
        &new,
        Arc::new(tempfile::tempdir().unwrap()),
        &[],
    )
    .await;
    new_node.wait_version(v).await;
    old_node.kill().await;
    for (k, val) in old_node.env.iter_mut() {
        if k == "AIPROXY_NODE_TOKEN" {
            *val = new.clone();
        }
    }
    old_node.respawn().await;
    old_node.wait_version(v).await;
    // Step 3: the old token is retired; a node still holding it is refused.
    cp.kill().await;
    cp.env.retain(|(k, _)| k != "AIPROXY_OLD_NODE_TOKENS");
    cp.spawn().await;
    cp.project("after-rotation").await;
    let v2 = cp.current_version().await;
    for n in [&old_node, &new_node] {
        n.wait_version(v2).await;
        let (s, _, b) = n.chat(&key, "gpt-4o", &[]).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let stale = Node::spawn_unready(
        &cp.grpc_url(),
        &old,
        Arc::new(tempfile::tempdir().unwrap()),
        &[],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = reqwest::get(stale.url("/readyz")).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a retired token gets no configuration"
    );
    assert!(
        !stale.logs.text().contains(&old),
        "the token is never logged"
    );
}
