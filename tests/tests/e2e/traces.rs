//! OpenTelemetry traces: with `AIPROXY_OTLP_ENDPOINT` set, the node exports a server span per
//! proxied call (GenAI attributes, the caller's `traceparent` as parent) and a client span per
//! upstream attempt, the control plane a span per API request — to a collector speaking
//! OTLP/HTTP JSON. No secret in any span; a refusing collector costs no request, only counted
//! drops.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::fake::openai::{FakeOpenAi, Reply};
use tests::fake::otlp::{FakeCollector, attr};
use tests::stack::{ControlPlane, Node};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn calls_and_api_requests_export_spans() {
    let col = FakeCollector::start().await;
    let endpoint = col.endpoint();
    let otlp = [("AIPROXY_OTLP_ENDPOINT", endpoint.as_str())];
    let cp = ControlPlane::start_with(&otlp).await;
    let a = FakeOpenAi::start("sk-trace-a-0000001").await;
    let b = FakeOpenAi::start("sk-trace-b-0000001").await;
    a.set_default(Reply::status(503, "overloaded"));
    cp.org_provider(json!({"type": "openai", "name": "key-a", "secret": "sk-trace-a-0000001", "metadata": {"api_base": a.base()}})).await;
    cp.org_provider(json!({"type": "openai", "name": "key-b", "secret": "sk-trace-b-0000001", "metadata": {"api_base": b.base()}})).await;
    let node = Node::start_with(&cp, Arc::new(tempfile::tempdir().unwrap()), &otlp).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;

    // Until key-a has been tried, repeat: the balancer may pick key-b first.
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let mut attempts = 0;
    for _ in 0..20 {
        let (s, h, body) = node
            .chat(&key, "gpt-4o", &[("traceparent", traceparent.as_str())])
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        attempts = h["x-bt-attempts"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap();
        if attempts == 2 {
            break;
        }
    }
    assert_eq!(attempts, 2, "a call that failed over from key-a to key-b");
    // The last call: its server span, child of the caller's span, and its two attempt spans.
    col.wait_for("for a failed-over call", |s| {
        s["kind"] == 3
            && s["traceId"] == TRACE
            && attr(s, "aiproxy.credential") == Some(json!("key-a"))
    })
    .await;
    let spans = col.spans();
    let servers: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            s["kind"] == 2
                && s["traceId"] == TRACE
                && attr(s, "aiproxy.attempts") == Some(json!("2"))
        })
        .collect();
    let server = *servers
        .last()
        .expect("the server span of the failed-over call");
    assert_eq!(server["parentSpanId"], PARENT);
    assert_eq!(server["name"], "chat gpt-4o");
    assert_eq!(server["status"]["code"], 0);
    assert_eq!(attr(server, "gen_ai.operation.name"), Some(json!("chat")));
    assert_eq!(attr(server, "gen_ai.request.model"), Some(json!("gpt-4o")));
    assert_eq!(attr(server, "gen_ai.provider.name"), Some(json!("openai")));
    assert_eq!(attr(server, "aiproxy.credential"), Some(json!("key-b")));
    assert_eq!(
        attr(server, "http.response.status_code"),
        Some(json!("200"))
    );
    assert_eq!(attr(server, "gen_ai.usage.input_tokens"), Some(json!("11")));
    assert_eq!(attr(server, "gen_ai.usage.output_tokens"), Some(json!("7")));
    let start: u128 = server["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u128 = server["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(
        start > 1_700_000_000_000_000_000 && end >= start,
        "{server}"
    );
    let children: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parentSpanId"] == server["spanId"])
        .collect();
    assert_eq!(children.len(), 2, "{children:#?}");
    let failed = children
        .iter()
        .find(|s| attr(s, "aiproxy.credential") == Some(json!("key-a")))
        .unwrap();
    assert_eq!(failed["status"]["code"], 2);
    assert_eq!(
        attr(failed, "http.response.status_code"),
        Some(json!("503"))
    );
    assert!(
        children
            .iter()
            .all(|s| s["kind"] == 3 && s["traceId"] == TRACE)
    );

    // Without traceparent: a new trace of its own.
    let (s, _, _) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK);
    let fresh = col
        .wait_for("for a call without traceparent", |s| {
            s["kind"] == 2 && s["traceId"] != TRACE && s["name"] == "chat gpt-4o"
        })
        .await;
    assert!(fresh.get("parentSpanId").is_none());
    let tid = fresh["traceId"].as_str().unwrap();
    assert!(tid.len() == 32 && tid != "0".repeat(32), "{tid}");

    // A failed call (unknown model) is an error span.
    let (s, _, _) = node.chat(&key, "no-such-model", &[]).await;
    assert!(s.is_client_error());
    let bad = col
        .wait_for("for a failed call", |s| {
            attr(s, "gen_ai.request.model") == Some(json!("no-such-model"))
        })
        .await;
    assert_eq!(bad["status"]["code"], 2);
    assert!(attr(&bad, "error.type").is_some());

    // The control plane: a span per API request, route template as name, caller's parent.
    let r = reqwest::Client::new()
        .get(format!("http://{}/api/v1/orgs", cp.http_addr))
        .bearer_auth(&cp.admin_key)
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let api = col
        .wait_for("for GET /api/v1/orgs in the caller's trace", |s| {
            s["name"] == "GET /api/v1/orgs" && s["traceId"] == TRACE
        })
        .await;
    assert_eq!(api["traceId"], TRACE);
    assert_eq!(api["parentSpanId"], PARENT);
    assert_eq!(attr(&api, "http.route"), Some(json!("/api/v1/orgs")));
    let services = col.services();
    assert!(
        services.iter().any(|s| s == "aiproxy-data-plane"),
        "{services:?}"
    );
    assert!(
        services.iter().any(|s| s == "aiproxy-control-plane"),
        "{services:?}"
    );

    // Nothing secret in any span.
    let all = serde_json::to_string(&col.spans()).unwrap();
    for secret in [
        "sk-trace-a-0000001",
        "sk-trace-b-0000001",
        key.as_str(),
        cp.admin_key.as_str(),
    ] {
        assert!(!all.contains(secret), "a span carries a secret");
    }
    assert!(node.metric("aiproxy_otlp_spans_exported_total").await >= 4.0);

    // A collector that refuses: requests are unaffected; the lost spans are counted.
    col.refuse(true);
    for _ in 0..3 {
        let (s, _, _) = node.chat(&key, "gpt-4o", &[]).await;
        assert_eq!(s, StatusCode::OK);
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while node.metric("aiproxy_otlp_spans_dropped_total").await < 3.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            node.metrics().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(node.metric("aiproxy_otlp_export_failures_total").await >= 1.0);
}
