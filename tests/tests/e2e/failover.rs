//! Balancing and failover under faults: a failing key, a rate-limited key, a hanging key, a
//! stream that breaks before its first byte, every key down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tests::fake::openai::{FakeOpenAi, Reply};
use tests::stack::{ControlPlane, Node};

async fn two_keys(extra: &[(&str, &str)]) -> (ControlPlane, Node, FakeOpenAi, FakeOpenAi, String) {
    let cp = ControlPlane::start().await;
    let a = FakeOpenAi::start("sk-key-a-00000001").await;
    let b = FakeOpenAi::start("sk-key-b-00000001").await;
    // Same type, both org-level: names differ, both are candidates for gpt-4o.
    cp.org_provider(json!({"type": "openai", "name": "key-a", "secret": "sk-key-a-00000001", "metadata": {"api_base": a.base()}})).await;
    cp.org_provider(json!({"type": "openai", "name": "key-b", "secret": "sk-key-b-00000001", "metadata": {"api_base": b.base()}})).await;
    let node = Node::start_with(&cp, Arc::new(tempfile::tempdir().unwrap()), extra).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    (cp, node, a, b, key)
}

#[tokio::test]
async fn a_failing_key_costs_no_request_and_gets_ejected() {
    let (cp, node, a, b, key) = two_keys(&[]).await;
    a.set_default(Reply::status(503, "overloaded"));
    for i in 0..60 {
        let (s, h, body) = node.chat(&key, "gpt-4o", &[]).await;
        assert_eq!(s, StatusCode::OK, "request {i}: {body}");
        assert_eq!(h["x-bt-used-endpoint"], "key-b");
    }
    assert!(a.count() >= 1, "the failing key was tried");
    assert!(
        a.count() <= 5,
        "after 5 failures it is ejected for its cool-down (tried {} times)",
        a.count()
    );
    assert_eq!(b.count(), 60);
    let m = node.metrics().await;
    assert!(
        m.lines().any(|l| l.starts_with("aiproxy_credential_up{")
            && l.contains("credential=\"key-a\"")
            && l.contains("state=\"open\"")
            && l.ends_with(" 0")),
        "{m}"
    );
    // The node reports credential health to the control plane (heartbeat every 10 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, nodes) = cp.api("GET", "/api/v1/nodes", None).await;
        let creds = nodes[0]["details"]["credentials"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if creds
            .iter()
            .any(|c| c["name"] == "key-a" && c["up"] == false)
        {
            break;
        }
        assert!(Instant::now() < deadline, "{nodes}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_rate_limited_key_rests_until_its_reset() {
    let (_cp, node, a, b, key) = two_keys(&[]).await;
    a.set_default(Reply::rate_limited(2));
    // Until the balancer happens to pick key-a first.
    let mut hit_at = None;
    for _ in 0..40 {
        let (s, h, _) = node.chat(&key, "gpt-4o", &[]).await;
        assert_eq!(s, StatusCode::OK);
        if a.count() == 1 {
            assert_eq!(h["x-bt-attempts"], "2", "the 429 failed over to key-b");
            hit_at = Some(Instant::now());
            break;
        }
    }
    let hit_at = hit_at.expect("key-a was picked at least once in 40 requests");
    a.set_default(Reply::text("a is back"));
    while hit_at.elapsed() < Duration::from_millis(1700) {
        let (s, _, _) = node.chat(&key, "gpt-4o", &[]).await;
        assert_eq!(s, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        a.count(),
        1,
        "key-a was not used before its Retry-After elapsed"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..40 {
        node.chat(&key, "gpt-4o", &[]).await;
    }
    assert!(a.count() > 1, "key-a takes traffic again after its reset");
    assert!(b.count() > 0);
}

#[tokio::test]
async fn when_every_key_is_rate_limited_the_proxy_waits_or_says_when() {
    let cp = ControlPlane::start().await;
    let a = FakeOpenAi::start("sk-only-000000001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-only-000000001", "metadata": {"api_base": a.base()}})).await;
    let node = Node::start(&cp).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    // A short reset is waited out within the request.
    a.push(Reply::rate_limited(1));
    let t0 = Instant::now();
    let (s, h, b) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(h["x-bt-attempts"], "2");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "waited for the reset"
    );
    // A long one is answered at once with 429 and Retry-After.
    a.push(Reply::rate_limited(30));
    let t0 = Instant::now();
    let (s, h, b) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((28..=30).contains(&retry), "{retry}");
    assert_eq!(b["error"]["type"], "rate_limit_error");
    let (s, _, _) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "the key is not retried before its reset"
    );
    assert_eq!(a.count(), 3);
}

#[tokio::test]
async fn a_hanging_key_trips_the_first_byte_timeout_and_fails_over() {
    let (_cp, node, a, b, key) = two_keys(&[("AIPROXY_FIRST_BYTE_TIMEOUT_MS", "400")]).await;
    a.set_default(Reply::Hang);
    for _ in 0..6 {
        let t0 = Instant::now();
        let (s, h, body) = node.chat(&key, "gpt-4o", &[]).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(h["x-bt-used-endpoint"], "key-b");
        assert!(t0.elapsed() < Duration::from_secs(3));
    }
    assert!(b.count() == 6 && a.count() >= 1);
}

#[tokio::test]
async fn a_stream_broken_before_its_first_byte_fails_over() {
    let (_cp, node, a, b, key) = two_keys(&[]).await;
    a.set_default(Reply::AbortAfterHeaders);
    for _ in 0..8 {
        let r = reqwest::Client::new()
            .post(node.url("/v1/proxy/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "gpt-4o", "stream": true, "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-bt-used-endpoint"], "key-b");
        let text = r.text().await.unwrap();
        assert_eq!(tests::sse::content(&text), "Hello from the fake!", "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
    assert_eq!(b.count(), 8);
}

#[tokio::test]
async fn every_key_down_is_a_clear_error_without_secrets() {
    let (_cp, node, a, b, key) = two_keys(&[]).await;
    a.set_default(Reply::status(500, "boom"));
    b.set_default(Reply::status(503, "overloaded"));
    let (s, h, body) = node.chat(&key, "gpt-4o", &[]).await;
    assert!(
        s == StatusCode::SERVICE_UNAVAILABLE || s == StatusCode::BAD_GATEWAY,
        "{s} {body}"
    );
    assert_eq!(h["x-bt-attempts"], "2");
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    let t = body.to_string();
    assert!(!t.contains("sk-key-a") && !t.contains("sk-key-b"), "{t}");
    // Once both are ejected: 503 with Retry-After, without calling them.
    for _ in 0..6 {
        node.chat(&key, "gpt-4o", &[]).await;
    }
    let before = a.count() + b.count();
    let (s, h, body) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "no_healthy_credential");
    assert!(h.contains_key("retry-after"));
    assert_eq!(a.count() + b.count(), before);
}

/// Upstream answers that dribble or grow without end are cut at the node's limits: a whole
/// answer slower than the total timeout and one larger than the response limit (64 MiB) end in
/// a clear 502 in bounded time, a stream that stalls longer than the idle timeout ends with an
/// error event, and the node keeps serving.
#[tokio::test]
async fn slow_and_oversized_upstream_answers_are_bounded() {
    let (_cp, node, a, b, key) = two_keys(&[
        ("AIPROXY_TOTAL_TIMEOUT_MS", "4000"),
        // Generous: the fake takes a while to serialise the 64 MiB answer below.
        ("AIPROXY_FIRST_BYTE_TIMEOUT_MS", "3000"),
    ])
    .await;
    // A whole answer sent a little at a time for 10 s.
    let slow = Reply::Slow {
        chunks: 50,
        gap: Duration::from_millis(200),
    };
    a.set_default(slow.clone());
    b.set_default(slow);
    let t0 = Instant::now();
    let (s, _, body) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("could not be read"),
        "{body}"
    );
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    // A stream whose provider goes quiet for longer than the idle timeout.
    let stall = Reply::Slow {
        chunks: 2,
        gap: Duration::from_millis(5_000),
    };
    a.set_default(stall.clone());
    b.set_default(stall);
    let t0 = Instant::now();
    let r = reqwest::Client::new()
        .post(node.url("/v1/proxy/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    assert!(text.contains("idle timeout"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    // A whole answer over the 64 MiB response limit.
    let huge = Reply::Raw(
        serde_json::to_vec(&json!({"id": "chatcmpl-huge", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x".repeat(65 << 20)}, "finish_reason": "stop"}]}))
        .unwrap()
        .into(),
    );
    a.set_default(huge.clone());
    b.set_default(huge);
    let (s, _, body) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{}", body["error"]);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("larger than 67108864 bytes"),
        "{}",
        &body.to_string()[..body.to_string().len().min(500)]
    );
    // The node is fine afterwards.
    a.set_default(Reply::text("back"));
    b.set_default(Reply::text("back"));
    let (s, _, body) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK, "{body}");
}
