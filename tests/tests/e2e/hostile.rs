//! Hostile input and SSRF against a data-plane node: every attack gets a bounded, clear error
//! (never a 5xx for the client's mistake, never a connection to a forbidden address), and the
//! node keeps serving afterwards.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::fake::openai::{FakeOpenAi, Reply};
use tests::stack::{ControlPlane, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw_post(
    node: &Node,
    key: &str,
    body: Vec<u8>,
    extra_header: Option<(&str, String)>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(node.url("/v1/proxy/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body);
    if let Some((k, v)) = extra_header {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            let t = r.text().await.unwrap_or_default();
            (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
        }
        // The server may refuse by closing the connection (huge headers).
        Err(e) => (0, Value::String(e.to_string())),
    }
}

#[tokio::test]
async fn hostile_requests_get_bounded_clear_errors() {
    let cp = ControlPlane::start().await;
    let fake = FakeOpenAi::start("sk-hostile-00000000001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-hostile-00000000001", "metadata": {"api_base": fake.base()}})).await;
    let node = Node::start_with(
        &cp,
        Arc::new(tempfile::tempdir().unwrap()),
        &[
            ("AIPROXY_BODY_READ_TIMEOUT_SECS", "2"),
            ("AIPROXY_MAX_BODY_BYTES", "1048576"),
        ],
    )
    .await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;

    // Oversized body: 413 before it is all read.
    let (s, b) = raw_post(&node, &key, vec![b' '; 3 * 1024 * 1024], None).await;
    assert!(s == 413 || s == 0, "{s} {b}");
    // Deeply nested JSON: a parse error, not a stack overflow.
    let deep = format!(
        "{{\"model\": \"gpt-4o\", \"messages\": {}{}}}",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let (s, b) = raw_post(&node, &key, deep.into_bytes(), None).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["code"], "invalid_json", "{b}");
    let deep = format!(
        "{{\"model\": \"gpt-4o\", \"messages\": {}{}}}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let (s, b) = raw_post(&node, &key, deep.into_bytes(), None).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["code"], "invalid_json", "{b}");
    // Invalid UTF-8.
    let (s, b) = raw_post(
        &node,
        &key,
        b"{\"model\": \"gpt-4o\xff\xfe\", \"messages\": []}".to_vec(),
        None,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    // Wrong types and a non-object body.
    for body in [json!([1, 2]), json!({"model": 42}), json!({"model": ""})] {
        let (s, b) = raw_post(&node, &key, body.to_string().into_bytes(), None).await;
        assert_eq!(s, 400, "{body}: {b}");
        assert!(b["error"]["message"].is_string());
    }
    // A huge header: refused by the HTTP layer (431) or the connection is closed; never a 5xx.
    let (s, _) = raw_post(
        &node,
        &key,
        b"{}".to_vec(),
        Some(("x-junk", "a".repeat(512 * 1024))),
    )
    .await;
    assert!(s == 431 || s == 0 || s == 400, "{s}");

    // Slow body (slowloris): the node gives up after the body timeout with 408.
    let mut sock = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let head = format!(
        "POST /v1/proxy/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\""
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
        .await
        .expect("answered within the body timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    assert_eq!(fake.count(), 0, "no hostile request reached the provider");
    // The node is unharmed.
    let (s, _, b) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn forbidden_upstream_addresses_and_redirects_are_refused() {
    let cp = ControlPlane::start().await;
    let fake = FakeOpenAi::start("sk-ssrf-000000000001").await;
    let port = fake.addr.port();
    // A node in production posture: loopback, private, link-local and metadata addresses are
    // refused as upstreams.
    let node = Node::start_with(
        &cp,
        Arc::new(tempfile::tempdir().unwrap()),
        &[("AIPROXY_UPSTREAM_ALLOW_PRIVATE", "false")],
    )
    .await;
    let key = cp.key("proxy", None).await;
    let bases = [
        ("loopback", format!("http://127.0.0.1:{port}/v1")),
        ("localhost-name", format!("http://localhost:{port}/v1")),
        ("decimal", format!("http://2130706433:{port}/v1")),
        ("octal", format!("http://0177.0.0.1:{port}/v1")),
        ("hex", format!("http://0x7f.0.0.1:{port}/v1")),
        ("ipv6-loopback", format!("http://[::1]:{port}/v1")),
        (
            "ipv4-mapped-ipv6",
            format!("http://[::ffff:127.0.0.1]:{port}/v1"),
        ),
        ("metadata", "http://169.254.169.254/v1".to_string()),
        ("private", "http://10.0.0.1:9/v1".to_string()),
    ];
    let mut outcomes = Vec::new();
    for (i, (label, base)) in bases.iter().enumerate() {
        let model = format!("ssrf-model-{i}");
        let (s, v) = cp
            .api("POST", &format!("/api/v1/orgs/{}/providers", cp.org_id), Some(json!({"type": "custom", "name": format!("ssrf-{i}"), "secret": "sk-ssrf-000000000001",
                "metadata": {"api_base": base, "format": "openai", "custom_models": {model.clone(): {"flavor": "chat"}}}})))
            .await;
        if s.is_client_error() {
            outcomes.push(format!("{label}: refused when saved ({s})"));
            continue;
        }
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");
        node.wait_version(cp.current_version().await).await;
        let (s, _, b) = node.chat(&key, &model, &[]).await;
        assert!(
            s == StatusCode::BAD_GATEWAY || s == StatusCode::SERVICE_UNAVAILABLE,
            "{label}: {s} {b}"
        );
        let msg = b["error"]["message"].as_str().unwrap_or("").to_string();
        assert!(!msg.contains("sk-ssrf"), "{label}: {msg}");
        outcomes.push(format!("{label}: refused by the node ({s})"));
    }
    eprintln!("SSRF outcomes: {outcomes:#?}");
    assert_eq!(
        fake.count(),
        0,
        "no forbidden address was contacted: {outcomes:?}"
    );

    // Redirects are never followed (a provider answering 302 cannot bounce the proxy, and the
    // provider's secret, to another host).
    let target = FakeOpenAi::start("sk-other-00000000001").await;
    let open_node = Node::start(&cp).await;
    let bouncer = FakeOpenAi::start("sk-bounce-0000000001").await;
    bouncer.set_default(Reply::Status {
        status: 302,
        body: json!({}),
        headers: vec![(
            "location".into(),
            format!("{}/chat/completions", target.base()),
        )],
    });
    cp.org_provider(json!({"type": "custom", "name": "bouncer", "secret": "sk-bounce-0000000001",
        "metadata": {"api_base": bouncer.base(), "format": "openai", "custom_models": {"bounce-model": {"flavor": "chat"}}}})).await;
    open_node.wait_version(cp.current_version().await).await;
    let (s, _, b) = open_node.chat(&key, "bounce-model", &[]).await;
    assert!(!s.is_success(), "{s} {b}");
    assert_eq!(bouncer.count(), 1);
    assert_eq!(target.count(), 0, "the redirect was not followed");
}
