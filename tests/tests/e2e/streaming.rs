//! Streaming pass-through: bytes untouched, usage read on the side, disconnects cancel upstream,
//! broken upstream streams end with an error event.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use tests::fake::openai::{FakeOpenAi, Reply};
use tests::stack::{ControlPlane, Node};

async fn setup() -> (ControlPlane, Node, FakeOpenAi, String) {
    let cp = ControlPlane::start().await;
    let fake = FakeOpenAi::start("sk-stream-0000001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-stream-0000001", "metadata": {"api_base": fake.base()}})).await;
    let node = Node::start(&cp).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    (cp, node, fake, key)
}

async fn stream(node: &Node, key: &str, body: serde_json::Value) -> (StatusCode, String) {
    let r = reqwest::Client::new()
        .post(node.url("/v1/proxy/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.text().await.unwrap())
}

#[tokio::test]
async fn streams_pass_through_with_usage() {
    let (_cp, node, fake, key) = setup().await;
    let (s, text) = stream(&node, &key, json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(tests::sse::content(&text), "Hello from the fake!");
    let chunks = tests::sse::chunks(&text);
    assert_eq!(
        chunks.last().unwrap()["usage"]["prompt_tokens"],
        11,
        "the usage chunk the client asked for arrives"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
    // Without include_usage the proxy still asks upstream for usage, but the client does not see
    // the extra chunk.
    let (s, text) = stream(
        &node,
        &key,
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        fake.last().unwrap().body["stream_options"]["include_usage"],
        true
    );
    assert!(
        tests::sse::chunks(&text)
            .iter()
            .all(|c| !c["choices"].as_array().unwrap().is_empty()),
        "no usage-only chunk: {text}"
    );
    assert_eq!(tests::sse::content(&text), "Hello from the fake!");
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_request() {
    let (_cp, node, fake, key) = setup().await;
    fake.push(Reply::Slow {
        chunks: 200,
        gap: Duration::from_millis(50),
    });
    let resp = reqwest::Client::new()
        .post(node.url("/v1/proxy/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake
        .cancelled_streams
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the upstream stream was not cancelled after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stream_cut_after_the_first_chunk_ends_with_an_error_event() {
    let (_cp, node, fake, key) = setup().await;
    fake.push(Reply::StreamCut { after_chunks: 1 });
    let (s, text) = stream(
        &node,
        &key,
        json!({"model": "gpt-4o", "stream": true, "messages": []}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "the 200 was already sent");
    let events = tests::sse::data_events(&text);
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"].is_string(),
        "ends with an error event: {text}"
    );
    assert!(
        !text.contains("[DONE]"),
        "never a silent, successful-looking truncation"
    );
    assert_eq!(tests::sse::content(&text), "part0 ");
}
