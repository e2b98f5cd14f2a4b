//! Usage records and payload logs, end to end: every call counted with the right tokens and
//! cost, payloads only with x-bt-parent, nothing lost or doubled when the control plane is away
//! or the node restarts, and drops counted when the spool is full.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tests::fake::openai::FakeOpenAi;
use tests::stack::{ControlPlane, Node};

async fn setup(extra: &[(&str, &str)]) -> (ControlPlane, Node, FakeOpenAi, String) {
    let cp = ControlPlane::start().await;
    let fake = FakeOpenAi::start("sk-log-000000001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-log-000000001", "metadata": {"api_base": fake.base()}})).await;
    let node = Node::start_with(&cp, Arc::new(tempfile::tempdir().unwrap()), extra).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    (cp, node, fake, key)
}

/// gpt-4o: $2.50 / $10.00 per million input / output tokens; the fake reports 11 + 7 tokens.
const COST_PER_CALL: f64 = (11.0 * 2.5 + 7.0 * 10.0) / 1e6;

#[tokio::test]
async fn calls_are_logged_with_tokens_cost_and_payloads() {
    let (cp, node, fake, key) = setup(&[]).await;
    let parent = [("x-bt-parent", "project_name:default")];
    let (s, h, _) = node
        .post(
            "/v1/proxy/chat/completions",
            &key,
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "log me"}]}),
            &parent,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let log_id = h["x-bt-log-id"].to_str().unwrap().to_string();
    let r = reqwest::Client::new().post(node.url("/v1/proxy/chat/completions")).bearer_auth(&key).header("x-bt-parent", "project_name:default")
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "stream me"}]})).send().await.unwrap();
    let stream_log = r.headers()["x-bt-log-id"].to_str().unwrap().to_string();
    assert_eq!(
        tests::sse::content(&r.text().await.unwrap()),
        "Hello from the fake!"
    );
    let (s, _, _) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK);
    // A malformed x-bt-parent is refused before any upstream call.
    let before = fake.count();
    let (s, _, b) = node
        .chat(&key, "gpt-4o", &[("x-bt-parent", "project_nam:default")])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(fake.count(), before);

    let usage = cp.wait_requests(3, Duration::from_secs(20)).await;
    let gpt = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "gpt-4o")
        .unwrap()
        .clone();
    assert_eq!(gpt["prompt_tokens"], 33);
    assert_eq!(gpt["completion_tokens"], 21);
    let cost = gpt["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - 3.0 * COST_PER_CALL).abs() < 1e-12,
        "cost {cost} ≠ 3 × {COST_PER_CALL}"
    );
    // Logged calls are in the project's logs with their payloads.
    let (_, page) = cp
        .api(
            "GET",
            &format!("/api/v1/projects/{}/logs", cp.project_id),
            None,
        )
        .await;
    assert_eq!(page["logs"].as_array().unwrap().len(), 2, "{page}");
    let (_, d) = cp
        .api(
            "GET",
            &format!("/api/v1/projects/{}/logs/{log_id}", cp.project_id),
            None,
        )
        .await;
    assert_eq!(d["input"]["messages"][0]["content"], "log me");
    assert_eq!(
        d["output"]["choices"][0]["message"]["content"],
        "Hello from the fake!"
    );
    assert_eq!(
        (d["prompt_tokens"].as_i64(), d["completion_tokens"].as_i64()),
        (Some(11), Some(7))
    );
    assert_eq!(d["provider"], "openai");
    assert_eq!(d["attempts_detail"][0]["status"], 200);
    assert!(
        !d.to_string().contains("sk-log-000000001") && !d.to_string().contains(&key),
        "no secrets in logs"
    );
    let (_, ds) = cp
        .api(
            "GET",
            &format!("/api/v1/projects/{}/logs/{stream_log}", cp.project_id),
            None,
        )
        .await;
    assert_eq!(ds["stream"], true);
    assert_eq!(
        ds["output"]["choices"][0]["message"]["content"], "Hello from the fake!",
        "the stream is assembled: {ds}"
    );
    assert_eq!(ds["completion_tokens"], 7, "streamed usage counted");
    assert!(ds["ttft_ms"].as_i64().is_some());
    // Metrics.
    let m = node.metrics().await;
    assert!(m.contains("gen_ai_client_token_usage{gen_ai_request_model=\"gpt-4o\",gen_ai_system=\"openai\",gen_ai_token_type=\"input\"} 33"), "{m}");
    assert!(m.contains("aiproxy_log_records_shipped_total"));
}

#[tokio::test]
async fn control_plane_outage_loses_and_doubles_nothing() {
    let (mut cp, node, _fake, key) = setup(&[]).await;
    let url = node.url("/v1/proxy/chat/completions");
    let http = reqwest::Client::new();
    let mut ok = 0;
    for i in 0..1000 {
        if i == 200 {
            cp.kill().await;
        }
        if i == 700 {
            cp.spawn().await;
        }
        let r = http
            .post(&url)
            .bearer_auth(&key)
            .json(&json!({"model": "gpt-4o", "messages": []}))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(
        ok, 1000,
        "traffic is unaffected by the control plane's outage"
    );
    let usage = cp.wait_requests(1000, Duration::from_secs(60)).await;
    assert_eq!(
        usage["totals"]["requests"], 1000,
        "every record arrives exactly once"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, again) = cp
        .api(
            "GET",
            &format!("/api/v1/orgs/{}/usage?from=0", cp.org_id),
            None,
        )
        .await;
    assert_eq!(
        again["totals"]["requests"], 1000,
        "no duplicates arrive later"
    );
}

#[tokio::test]
async fn spooled_records_survive_a_node_restart() {
    let (mut cp, mut node, _fake, key) = setup(&[]).await;
    cp.kill().await;
    for _ in 0..50 {
        let (s, _, _) = node.chat(&key, "gpt-4o", &[]).await;
        assert_eq!(s, StatusCode::OK);
    }
    // Graceful stop: what is queued goes to the spool.
    node.terminate();
    assert!(
        node.wait_exit(Duration::from_secs(30))
            .await
            .is_some_and(|s| s.success()),
        "{}",
        node.logs.text()
    );
    let spooled: u64 = std::fs::read_dir(node.cache_dir.path().join("spool"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".batch")?
                .split_once('-')?
                .1
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(spooled, 50, "{}", node.logs.text());
    // The node restarts (serving from its cache) and the control plane comes back.
    node.respawn().await;
    assert!(tests::stack::wait_http_ok(&node.url("/readyz"), Duration::from_secs(20)).await);
    cp.spawn().await;
    let usage = cp.wait_requests(50, Duration::from_secs(60)).await;
    assert_eq!(usage["totals"]["requests"], 50);
}

#[tokio::test]
async fn a_full_spool_drops_the_oldest_and_counts_them() {
    let (mut cp, node, _fake, key) = setup(&[("AIPROXY_SPOOL_MAX_BYTES", "2000")]).await;
    cp.kill().await;
    for _ in 0..3 {
        for _ in 0..10 {
            let (s, _, _) = node.chat(&key, "gpt-4o", &[]).await;
            assert_eq!(s, StatusCode::OK);
        }
        // Let each group become its own batch.
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let dropped = node
            .metric("aiproxy_log_records_dropped_total{reason=\"spool_full\"}")
            .await;
        if dropped > 0.0 {
            let spooled = node.metric("aiproxy_log_spool_records").await;
            assert!(
                spooled > 0.0 && spooled + dropped <= 30.0,
                "spooled {spooled}, dropped {dropped}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no drop counted:\n{}",
            node.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
