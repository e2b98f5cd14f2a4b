//! Log ingest (idempotent by record id), the logs listing with filters and paging, one log in
//! full, and usage aggregation.

use proto::v1::UsageRecord;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::TestApp;

fn record(app: &TestApp, i: u64, model: &str, status: u32, started: i64) -> UsageRecord {
    UsageRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: app.org_id.clone(),
        project_id: app.project_id.clone(),
        api_key_id: "k1".into(),
        model: model.into(),
        provider_type: if model.starts_with("claude") {
            "anthropic"
        } else {
            "openai"
        }
        .into(),
        credential_name: "OPENAI_API_KEY".into(),
        route: "chat_completions".into(),
        status,
        error_type: if status >= 400 {
            "upstream_error".into()
        } else {
            String::new()
        },
        prompt_tokens: 100 + i,
        completion_tokens: 10,
        cost_usd: 0.5,
        latency_ms: 100 * (i % 10 + 1),
        ttft_ms: 50,
        attempts: 1,
        started_at_ms: started,
        finished_at_ms: started + 100,
        node_id: "n1".into(),
        input_json: if i == 0 {
            json!({"messages": [{"role": "user", "content": "hello"}]}).to_string()
        } else {
            String::new()
        },
        output_json: if i == 0 {
            json!({"choices": [{"message": {"content": "hi"}}]}).to_string()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn ingest_is_idempotent_and_logs_page_and_filter() {
    let app = TestApp::spawn().await;
    let st = &app.running.as_ref().unwrap().state;
    let now = st.now_ms();
    let recs: Vec<UsageRecord> = (0..30)
        .map(|i| {
            record(
                &app,
                i,
                if i % 3 == 0 { "claude-x" } else { "gpt-4o" },
                if i % 5 == 0 { 502 } else { 200 },
                now - 1000 + i as i64,
            )
        })
        .collect();
    let (stored, dup) = control_plane::grpc::logs::store(st, recs.clone())
        .await
        .unwrap();
    assert_eq!((stored, dup), (30, 0));
    let (stored, dup) = control_plane::grpc::logs::store(st, recs[..10].to_vec())
        .await
        .unwrap();
    assert_eq!(
        (stored, dup),
        (0, 10),
        "a resent batch stores nothing twice"
    );
    let base = format!("/api/v1/projects/{}/logs", app.project_id);
    let (s, page) = app.get(&format!("{base}?limit=12")).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let logs = page["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 12);
    assert_eq!(logs[0]["id"], recs[29].id, "newest first");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, p2) = app.get(&format!("{base}?limit=12&cursor={cursor}")).await;
    assert_eq!(p2["logs"][0]["id"], recs[17].id);
    let (_, p3) = app
        .get(&format!(
            "{base}?limit=12&cursor={}",
            p2["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(p3["logs"].as_array().unwrap().len(), 6);
    assert!(p3["next_cursor"].is_null());
    let (_, f) = app.get(&format!("{base}?model=claude-x&limit=200")).await;
    assert_eq!(f["logs"].as_array().unwrap().len(), 10);
    let (_, f) = app.get(&format!("{base}?status=5xx&limit=200")).await;
    assert_eq!(f["logs"].as_array().unwrap().len(), 6);
    let (_, f) = app
        .get(&format!("{base}?status=200&model=gpt-4o&limit=200"))
        .await;
    assert_eq!(f["logs"].as_array().unwrap().len(), 16);
    let (s, e) = app.get(&format!("{base}?status=teapot")).await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("status"))
    );
    let (s, _) = app.get(&format!("{base}?unknown=1")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // One log in full, with its payloads.
    let (s, d) = app.get(&format!("{base}/{}", recs[0].id)).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["input"]["messages"][0]["content"], "hello");
    assert_eq!(d["output"]["choices"][0]["message"]["content"], "hi");
    assert_eq!(d["total_tokens"], 110);
    assert!(logs[0].get("input").is_none(), "listings carry no payloads");
    let (s, _) = app.get(&format!("{base}/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Members read logs.
    let m = app.member("reader@example.com", "member").await;
    let (s, _) = m.send(reqwest::Method::GET, &base, None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn usage_aggregates_by_group() {
    let app = TestApp::spawn().await;
    let st = &app.running.as_ref().unwrap().state;
    let now = st.now_ms();
    let day = 86_400_000;
    let mut recs = Vec::new();
    for i in 0..20 {
        recs.push(record(
            &app,
            i,
            "gpt-4o",
            if i < 2 { 500 } else { 200 },
            now - 2 * day + i as i64,
        ));
    }
    for i in 0..10 {
        recs.push(record(&app, i, "claude-x", 200, now - 1000 + i as i64));
    }
    control_plane::grpc::logs::store(st, recs).await.unwrap();
    let (s, u) = app
        .get(&format!("/api/v1/orgs/{}/usage?group_by=model", app.org_id))
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    let rows = u["rows"].as_array().unwrap();
    let gpt = rows.iter().find(|r| r["key"] == "gpt-4o").unwrap();
    assert_eq!(
        (gpt["requests"].as_i64(), gpt["errors"].as_i64()),
        (Some(20), Some(2))
    );
    let expected_prompt: i64 = (0..20).map(|i| 100 + i).sum();
    assert_eq!(gpt["prompt_tokens"].as_i64(), Some(expected_prompt));
    assert!((gpt["cost_usd"].as_f64().unwrap() - 10.0).abs() < 1e-9);
    let p50 = gpt["latency_p50_ms"].as_f64().unwrap();
    assert!(
        (450.0..=550.0).contains(&p50),
        "latencies 100..1000 ms: p50 ≈ 500, got {p50}"
    );
    assert!((45.0..=55.0).contains(&gpt["ttft_p50_ms"].as_f64().unwrap()));
    assert_eq!(u["totals"]["requests"], 30);
    let (_, by_day) = app
        .get(&format!("/api/v1/orgs/{}/usage?group_by=day", app.org_id))
        .await;
    let days = by_day["rows"].as_array().unwrap();
    assert!(days.len() >= 2, "{by_day}");
    assert!(days[0]["key"].as_str().unwrap().ends_with("T00:00:00Z"));
    let (_, proj) = app
        .get(&format!(
            "/api/v1/orgs/{}/usage?group_by=project",
            app.org_id
        ))
        .await;
    assert_eq!(proj["rows"][0]["key"], app.project_id.as_str());
    let from = control_plane::domain::time::rfc3339(now - 60_000);
    let (_, recent) = app
        .get(&format!(
            "/api/v1/orgs/{}/usage?group_by=provider&from={from}",
            app.org_id
        ))
        .await;
    assert_eq!(
        recent["totals"]["requests"], 10,
        "the time range filters: {recent}"
    );
    let (s, e) = app
        .get(&format!("/api/v1/orgs/{}/usage?group_by=color", app.org_id))
        .await;
    assert_eq!(
        (s, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("group_by"))
    );
    let (s, _) = app
        .get(&format!(
            "/api/v1/orgs/{}/usage?project_id={}",
            app.org_id,
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn retention_deletes_old_logs() {
    let mut app = TestApp::spawn().await;
    app.stop().await;
    let mut cfg = app.config.clone();
    cfg.log_retention_days = 1;
    let db = std::mem::replace(&mut app.db, control_plane::testing::TestDb::new().await);
    let app = TestApp::spawn_with(db, cfg, app.admin_key.clone()).await;
    let st = &app.running.as_ref().unwrap().state;
    let now = st.now_ms();
    let old = record(&app, 1, "gpt-4o", 200, now - 3 * 86_400_000);
    let new = record(&app, 2, "gpt-4o", 200, now);
    control_plane::grpc::logs::store(st, vec![old, new])
        .await
        .unwrap();
    assert_eq!(
        control_plane::service::housekeeping::apply_retention(st).await,
        1
    );
    let (_, page) = app
        .get(&format!("/api/v1/projects/{}/logs", app.project_id))
        .await;
    assert_eq!(page["logs"].as_array().unwrap().len(), 1);
}
