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
async fn ingest_stores_every_field_of_large_and_unusual_records() {
    // Rows of ≈1.8 MB each: on PostgreSQL they go in several statements (4 MiB of rows each).
    let app = TestApp::spawn().await;
    let st = &app.running.as_ref().unwrap().state;
    let now = st.now_ms();
    let big = |i: u64, c: char| {
        json!({"messages": [{"role": "user", "content": c.to_string().repeat(900_000)}], "n": i})
            .to_string()
    };
    let mut recs: Vec<UsageRecord> = (0..5)
        .map(|i| UsageRecord {
            input_json: big(i, 'a'),
            output_json: big(i, 'b'),
            ..record(&app, i, "gpt-4o", 200, now - 10 + i as i64)
        })
        .collect();
    // Every field set, text with quotes, backslashes, non-ASCII and a NUL (PostgreSQL's text
    // cannot hold one: it is stored as U+FFFD).
    let odd = UsageRecord {
        model: "gpt\0x-é".into(),
        api_key_id: String::new(),
        status: 429,
        error_type: "rate_limited".into(),
        error_message: "slow \"down\" \\ now 🐢".into(),
        prompt_tokens: 4_000_000_000, // over i32::MAX, under the cap
        completion_tokens: 7,
        cached_tokens: 5,
        cache_write_tokens: 3,
        reasoning_tokens: 2,
        cost_usd: 0.000_012_5,
        latency_ms: 4_321,
        ttft_ms: 0,
        attempts: 3,
        cache_hit: true,
        stream: true,
        request_id: "req-odd".into(),
        attempts_json: r#"[{"credential":"a","status":429}]"#.into(),
        input_json: r#"{"messages":[{"role":"user","content":"say \"hi\" \\ ünïcode"}]}"#.into(),
        output_json: String::new(),
        ..record(&app, 9, "gpt-4o", 429, now)
    };
    recs.push(odd.clone());
    let (stored, dup) = control_plane::grpc::logs::store(st, recs.clone())
        .await
        .unwrap();
    assert_eq!((stored, dup), (6, 0));
    let (stored, dup) = control_plane::grpc::logs::store(st, recs.clone())
        .await
        .unwrap();
    assert_eq!((stored, dup), (0, 6), "a resent batch stores nothing twice");
    for r in &recs {
        let got = control_plane::db::logs::get(st.db().pool(), &app.project_id, &r.id)
            .await
            .unwrap()
            .unwrap();
        let want = control_plane::grpc::logs::to_row(r.clone()).unwrap();
        assert_eq!(got, want, "record {}", r.request_id);
    }
    let got = control_plane::db::logs::get(st.db().pool(), &app.project_id, &odd.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.model, "gpt\u{FFFD}x-é");
    assert_eq!(got.api_key_id, None);
    assert_eq!(got.output, None);
    assert_eq!(got.prompt_tokens, 4_000_000_000);
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
    // Instants at the ends of i64: a clear 400, on the usage query and the logs listing.
    for q in [
        "to=-9223372036854775808",
        "to=9223372036854775807",
        "from=-9223372036854775807",
    ] {
        let field = &q[..q.find('=').unwrap()];
        for path in [
            format!("/api/v1/orgs/{}/usage?{q}", app.org_id),
            format!("/api/v1/projects/{}/logs?{q}", app.project_id),
        ] {
            let (s, e) = app.get(&path).await;
            assert_eq!(
                (s, e["error"]["field"].as_str()),
                (StatusCode::BAD_REQUEST, Some(field)),
                "{path}: {e}"
            );
        }
    }
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
async fn absurd_token_counts_are_capped_so_usage_sums_hold() {
    // An upstream that reports u64::MAX tokens: the node passes the number on; stored as is,
    // two such rows overflow the 64-bit sums of the usage query and the rollups.
    let app = TestApp::spawn().await;
    let st = &app.running.as_ref().unwrap().state;
    let now = st.now_ms();
    let day = 86_400_000;
    let recs: Vec<UsageRecord> = [now - 2 * day, now - 2 * day + 1, now - 1000, now - 999]
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let mut r = record(&app, i as u64, "gpt-4o", 200, t);
            r.prompt_tokens = u64::MAX;
            r.completion_tokens = u64::MAX - 1;
            r.cached_tokens = u64::MAX;
            r.reasoning_tokens = u64::MAX;
            r
        })
        .collect();
    control_plane::grpc::logs::store(st, recs).await.unwrap();
    let cap = control_plane::grpc::logs::MAX_RECORD_TOKENS as i64;
    let check = |u: &serde_json::Value| {
        let t = &u["totals"];
        assert_eq!(t["requests"], 4, "{u}");
        for f in [
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "reasoning_tokens",
        ] {
            assert_eq!(t[f].as_i64(), Some(4 * cap), "{f}: {u}");
        }
        assert_eq!(t["total_tokens"].as_i64(), Some(8 * cap), "{u}");
    };
    // From the logs, then with the ended day rolled up.
    for pass in 0..2 {
        if pass == 1 {
            control_plane::service::rollup::run_pass(st).await.unwrap();
        }
        for g in ["model", "day", "hour"] {
            let (s, u) = app
                .get(&format!(
                    "/api/v1/orgs/{}/usage?group_by={g}&from=0",
                    app.org_id
                ))
                .await;
            assert_eq!(s, StatusCode::OK, "{g}: {u}");
            check(&u);
        }
    }
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
    // Another org's logs: more old rows than one deletion chunk holds (2,000 on SQLite), and
    // one recent row. Retention goes org by org and chunk by chunk.
    let mut other: Vec<UsageRecord> = (0..2_500)
        .map(|i| UsageRecord {
            org_id: "org-b".into(),
            project_id: "project-b".into(),
            ..record(&app, i, "gpt-4o", 200, now - 2 * 86_400_000)
        })
        .collect();
    other.push(UsageRecord {
        org_id: "org-b".into(),
        project_id: "project-b".into(),
        ..record(&app, 9, "gpt-4o", 200, now)
    });
    for batch in other.chunks(1_000) {
        control_plane::grpc::logs::store(st, batch.to_vec())
            .await
            .unwrap();
    }
    let rows = |org: &'static str| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM request_logs WHERE org_id = $1",
        )
        .bind(org)
        .fetch_one(st.db().pool())
        .await
        .unwrap()
    };
    assert_eq!(rows("org-b").await, 2_501);
    control_plane::service::rollup::run_pass(st).await.unwrap();
    let rollups = || async {
        // The first org's only: the job running in the background may roll up org-b's too.
        sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM usage_rollup WHERE org_id = $1",
        )
        .bind(app.org_id.clone())
        .fetch_one(st.db().pool())
        .await
        .unwrap()
    };
    assert_eq!(rollups().await, 2, "the old log's hour and day");
    assert_eq!(
        control_plane::service::housekeeping::apply_retention(st).await,
        2_501
    );
    assert_eq!(rows("org-b").await, 1, "the other org's recent row stays");
    assert_eq!(rollups().await, 0, "rollups past retention go too");
    let (_, u) = app
        .get(&format!("/api/v1/orgs/{}/usage?group_by=model", app.org_id))
        .await;
    assert_eq!(u["totals"]["requests"], 1, "{u}");
    let (_, page) = app
        .get(&format!("/api/v1/projects/{}/logs", app.project_id))
        .await;
    assert_eq!(page["logs"].as_array().unwrap().len(), 1);
}

/// Usage read from the rollups equals usage read from the rows, for every grouping, a project
/// filter and ranges with partial periods; a record arriving late for a period already rolled
/// up counts at once and after the next rollup; the query reads whole periods from the rollup
/// table at both levels (hours, days); deleting the org deletes its rollups.
#[tokio::test]
async fn usage_from_rollups_matches_the_logs() {
    let app = TestApp::spawn().await;
    let st = &app.running.as_ref().unwrap().state;
    let (hour, day) = (3_600_000i64, 86_400_000i64);
    let now = st.now_ms();
    // Three whole days and today so far.
    let start = (now / day - 3) * day;
    let mut recs = Vec::new();
    for i in 0..300u64 {
        let mut r = record(
            &app,
            i,
            ["gpt-4o", "claude-x", "gpt-4o-mini"][(i % 3) as usize],
            if i % 11 == 0 { 429 } else { 200 },
            start + (i as i64 * 1_234_567) % (now - start),
        );
        r.api_key_id = format!("k{}", i % 4);
        r.ttft_ms = if i % 5 == 0 { 0 } else { 20 + i * 7 % 900 };
        r.cached_tokens = i % 7;
        r.reasoning_tokens = i % 13;
        r.cache_hit = i % 9 == 0;
        if i % 10 == 0 {
            r.project_id = String::new();
        }
        recs.push(r);
    }
    let ended_hours: std::collections::BTreeSet<i64> = recs
        .iter()
        .map(|r| r.started_at_ms / hour)
        .filter(|h| *h < now / hour)
        .collect();
    control_plane::grpc::logs::store(st, recs).await.unwrap();
    let org = &app.org_id;
    let queries: Vec<String> = ["model", "provider", "project", "api_key", "day", "hour"]
        .iter()
        .flat_map(|g| {
            let from = start + 17 * 60_000; // partial first hour and day
            let to = now - 1;
            [
                format!(
                    "/api/v1/orgs/{org}/usage?group_by={g}&from={}",
                    start / 1000
                ),
                format!(
                    "/api/v1/orgs/{org}/usage?group_by={g}&from={}&to={}",
                    from / 1000,
                    to / 1000
                ),
                format!(
                    "/api/v1/orgs/{org}/usage?group_by={g}&from={}&project_id={}",
                    start / 1000,
                    app.project_id
                ),
            ]
        })
        .collect();
    let read_all = || async {
        let mut out = Vec::new();
        for q in &queries {
            let (s, u) = app.get(q).await;
            assert_eq!(s, StatusCode::OK, "{q}: {u}");
            out.push(u);
        }
        out
    };
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(st.db().pool())
            .await
            .unwrap()
    };
    // This replica's own job may have run already: clear its work and mark every period again
    // so the first reading comes from the rows alone.
    sqlx::query("DELETE FROM usage_rollup")
        .execute(st.db().pool())
        .await
        .unwrap();
    for (level, unit) in [(1, hour), (2, day)] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO usage_dirty (org_id, level, period, gen) SELECT DISTINCT org_id, {level}, started_at / {unit}, 1 \
             FROM request_logs WHERE true ON CONFLICT (org_id, level, period) DO NOTHING"
        )))
        .execute(st.db().pool())
        .await
        .unwrap();
    }
    let from_rows = read_all().await;
    assert_eq!(from_rows[0]["totals"]["requests"], 300, "{}", from_rows[0]);
    control_plane::service::rollup::run_pass(st).await.unwrap();
    assert_eq!(
        count("SELECT CAST(COUNT(DISTINCT period) AS BIGINT) FROM usage_rollup WHERE level = 1")
            .await,
        ended_hours.len() as i64,
        "every ended hour with logs rolled up (the current one stays raw)"
    );
    assert_eq!(
        count("SELECT CAST(COUNT(DISTINCT period) AS BIGINT) FROM usage_rollup WHERE level = 2")
            .await,
        3,
        "the three ended days rolled up"
    );
    let from_rollups = read_all().await;
    for (q, (a, b)) in queries.iter().zip(from_rows.iter().zip(&from_rollups)) {
        assert_eq!(a["rows"], b["rows"], "{q}");
        assert_eq!(a["totals"], b["totals"], "{q}");
    }
    let (s, metrics) = app.send(reqwest::Method::GET, "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics.contains("aiproxy_usage_rollup_pending 0"),
        "{metrics}"
    );
    // A late record for an hour and a day already rolled up: counted at once (its periods are
    // read from the rows until the job runs), and the same after the job.
    let late = record(&app, 7, "gpt-4o", 200, start + 10 * 60_000);
    control_plane::grpc::logs::store(st, vec![late])
        .await
        .unwrap();
    for q in [&queries[0], &queries[12]] {
        let (_, u) = app.get(q).await;
        assert_eq!(u["totals"]["requests"], 301, "{q}: {u}");
    }
    control_plane::service::rollup::run_pass(st).await.unwrap();
    let ended_marks: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM usage_dirty WHERE (level = 1 AND period < $1) OR (level = 2 AND period < $2)",
    )
    .bind(now / hour)
    .bind(now / day)
    .fetch_one(st.db().pool())
    .await
    .unwrap();
    assert_eq!(ended_marks, 0, "only the current hour and day stay marked");
    let after = read_all().await;
    assert_eq!(after[0]["totals"]["requests"], 301);
    assert_eq!(after[12]["totals"]["requests"], 301);
    // Whole periods really come from the rollup table, at both levels: a change made there shows.
    for (level, q) in [(2, &queries[0]), (1, &queries[12])] {
        let changed = sqlx::query(
            "UPDATE usage_rollup SET requests = requests + 1000 WHERE level = $1 AND period = $2 AND project_id = ''",
        )
        .bind(level as i64)
        .bind(if level == 1 { start / hour } else { start / day })
        .execute(st.db().pool())
        .await
        .unwrap()
        .rows_affected() as i64;
        assert!(changed > 0, "level {level}");
        let (_, u) = app.get(q).await;
        assert_eq!(u["totals"]["requests"], 301 + 1000 * changed, "{q}: {u}");
    }
    // Deleting the org takes its rollups and marks with it.
    let owner = app.login_admin().await;
    let (s, body) = owner
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/orgs/{org}"),
            None,
        )
        .await;
    assert!(s.is_success(), "{s} {body}");
    for table in ["usage_rollup", "usage_dirty", "request_logs"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"
        )))
        .fetch_one(st.db().pool())
        .await
        .unwrap();
        assert_eq!(n, 0, "{table} after the org was deleted");
    }
}

/// On SQLite the bulk writers (ingest, the rollup job) take turns at the one write lock, first
/// come first served, instead of retrying against it: a turn held keeps the next writer waiting
/// and hands over when released. PostgreSQL queues writers itself: no turn is taken.
#[tokio::test]
async fn bulk_writers_take_turns_on_sqlite() {
    let app = TestApp::spawn().await;
    let st = app.running.as_ref().unwrap().state.clone();
    let db = st.db().clone();
    let held = db.write_turn().await;
    if app.db.backend == "postgres" {
        assert!(held.is_none());
        return;
    }
    assert!(held.is_some());
    let now = st.now_ms();
    let recs = vec![record(&app, 1, "gpt-4o", 200, now - 1000)];
    let ingest = tokio::spawn({
        let st = st.clone();
        async move { control_plane::grpc::logs::store(&st, recs).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !ingest.is_finished(),
        "ingest wrote while another turn was held"
    );
    drop(held);
    let (stored, dup) = tokio::time::timeout(std::time::Duration::from_secs(10), ingest)
        .await
        .expect("ingest did not get its turn")
        .unwrap()
        .unwrap();
    assert_eq!((stored, dup), (1, 0));
}

/// One period rolled up as the rollup job does (`aggregate`, then `store_rollup`); false when
/// its mark was gone or was marked again meanwhile.
async fn roll_up(
    db: &control_plane::db::Db,
    org: &str,
    level: control_plane::db::logs::Level,
    period: i64,
) -> control_plane::db::DbResult<bool> {
    use control_plane::db::logs;
    match logs::aggregate(db, org, level, period).await? {
        Some(r) => logs::store_rollup(db, &r).await,
        None => Ok(false),
    }
}

/// The rollup job aggregates a period without holding the write lock, and stores the result only
/// if the period's mark is unchanged since: a record stored meanwhile, or a mark removed (another
/// replica rolled the period up) and made again by ingest, keeps the stale aggregation out; the
/// next rollup (or the job's fallback inside the write transaction) counts every record.
#[tokio::test]
async fn a_rollup_is_stored_only_if_its_period_was_not_marked_again() {
    use control_plane::db::logs::{self, Level};
    let app = TestApp::spawn().await;
    let st = &app.running.as_ref().unwrap().state;
    let db = st.db();
    let org = app.org_id.clone();
    let hour = Level::HourByProject.period_ms();
    let period = st.now_ms() / hour - 3;
    let at = period * hour + 60_000;
    let store = |i: u64| {
        let r = record(&app, i, "gpt-4o", 200, at + i as i64);
        async move {
            control_plane::grpc::logs::store(st, vec![r]).await.unwrap();
        }
    };
    // What usage_rollup holds for the period (the job running in the background may roll it up
    // at any point; it too stores only what the logs hold).
    let rolled = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COALESCE(SUM(requests), 0) AS BIGINT) FROM usage_rollup WHERE org_id = $1 AND level = 1 AND period = $2",
        )
        .bind(org.clone())
        .bind(period)
        .fetch_one(db.pool())
        .await
        .unwrap()
    };
    store(1).await;

    // The aggregation reads while a writer holds the write lock (SQLite) or the mark's row lock
    // (PostgreSQL).
    let mut tx = db.begin().await.unwrap();
    sqlx::query("UPDATE usage_dirty SET gen = gen WHERE org_id = $1")
        .bind(org.clone())
        .execute(&mut *tx)
        .await
        .unwrap();
    let stale = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        logs::aggregate(db, &org, Level::HourByProject, period),
    )
    .await
    .expect("the aggregation waited for a writer")
    .unwrap()
    .expect("the period is marked");
    tx.rollback().await.unwrap();
    assert_eq!(stale.requests(), 1);

    // A record stored after the aggregation read the period.
    store(2).await;
    // The job may have rolled the period up with its one record before that; clear it, so a
    // 1 below can only be the stale aggregation (any aggregation the job made before the
    // record is refused like it, and any made since counts 2).
    sqlx::query("DELETE FROM usage_rollup WHERE org_id = $1 AND level = 1 AND period = $2")
        .bind(org.clone())
        .bind(period)
        .execute(db.pool())
        .await
        .unwrap();
    assert!(!logs::store_rollup(db, &stale).await.unwrap());
    assert_ne!(rolled().await, 1, "the stale aggregation was stored");
    // The job's fallback for a period marked again pass after pass: aggregated inside the write
    // transaction.
    logs::roll_up_locked(db, &org, Level::HourByProject, period)
        .await
        .unwrap();
    assert_eq!(rolled().await, 2);

    // The mark removed and made again between the aggregation and its storing.
    store(3).await;
    let old = logs::aggregate(db, &org, Level::HourByProject, period)
        .await
        .unwrap()
        .expect("the period is marked again");
    assert_eq!(old.requests(), 3);
    roll_up(db, &org, Level::HourByProject, period)
        .await
        .unwrap();
    assert_eq!(rolled().await, 3);
    store(4).await;
    assert!(
        !logs::store_rollup(db, &old).await.unwrap(),
        "a new mark looked like the one the aggregation read"
    );
    roll_up(db, &org, Level::HourByProject, period)
        .await
        .unwrap();
    assert_eq!(rolled().await, 4);
    let ended_marks: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM usage_dirty WHERE org_id = $1 AND level = 1 AND period = $2",
    )
    .bind(org.clone())
    .bind(period)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(ended_marks, 0);
}

/// A period with more groups than one INSERT of rollup rows holds (64 on SQLite; about 12 KiB on
/// PostgreSQL) is written whole.
#[tokio::test]
async fn a_period_with_many_groups_is_rolled_up_whole() {
    use control_plane::db::logs::Level;
    let app = TestApp::spawn().await;
    let st = &app.running.as_ref().unwrap().state;
    let db = st.db();
    let day = Level::DayByAll.period_ms();
    let period = st.now_ms() / day - 2;
    let recs: Vec<UsageRecord> = (0..150)
        .map(|i| UsageRecord {
            api_key_id: format!("key-{i:03}"),
            ..record(&app, i, "gpt-4o", 200, period * day + 1000 + i as i64)
        })
        .collect();
    control_plane::grpc::logs::store(st, recs).await.unwrap();
    // The job running in the background may have rolled it up first; either way it is whole.
    roll_up(db, &app.org_id, Level::DayByAll, period)
        .await
        .unwrap();
    let (groups, requests): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT), CAST(SUM(requests) AS BIGINT) FROM usage_rollup WHERE org_id = $1 AND level = 2 AND period = $2",
    )
    .bind(app.org_id.clone())
    .bind(period)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((groups, requests), (150, 150));
}
