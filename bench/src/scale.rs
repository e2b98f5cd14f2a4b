//! The scenarios that need more than a load driver: the flapping-credential fault run, the usage
//! query over a million log rows, and the configuration at 10,000 projects / 50,000 API keys /
//! 20,000 credentials.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use proto::v1 as pb;
use serde_json::{Value, json};

use crate::{Body, Error, Outcome, Stack, Target, Until, full, load, serve, upstream};

// ---- fault run -------------------------------------------------------------------------------

pub struct FaultRun {
    pub requests: u64,
    pub ok: u64,
    pub healthy: Outcome,
    pub flapping: Outcome,
    /// Requests the flapping upstream answered with 503.
    pub refused: u64,
    pub flips: u64,
}

/// 3 credentials for one model in a project; one of them flaps between healthy and 503 every
/// `period`. `n` requests with all three healthy, then `n` while one flaps, both at `rate`
/// requests/s (so the flapping run spans many periods).
pub async fn fault_run(
    stack: &Stack,
    node: SocketAddr,
    healthy_up: SocketAddr,
    n: u64,
    rate: f64,
    period: Duration,
) -> Result<FaultRun, Error> {
    let down = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let (d, r) = (down.clone(), refused.clone());
    let flappy = serve(move |req: Request<Incoming>| {
        let (d, r) = (d.clone(), r.clone());
        async move {
            if d.load(Ordering::Relaxed) {
                r.fetch_add(1, Ordering::Relaxed);
                let mut resp: Response<Body> = Response::new(full(
                    json!({"error": {"message": "The server is overloaded.", "type": "server_error", "param": null, "code": null}}).to_string(),
                ));
                *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                return Ok::<_, Infallible>(resp);
            }
            upstream(req).await
        }
    })
    .await?;
    let project = stack
        .api(
            "POST",
            &format!("/api/v1/orgs/{}/projects", stack.org),
            Some(json!({"name": "fault-run"})),
        )
        .await?;
    let pid = project["id"].as_str().ok_or("no project id")?.to_string();
    for (i, up) in [healthy_up, healthy_up, flappy].iter().enumerate() {
        stack
            .api(
                "POST",
                &format!("/api/v1/projects/{pid}/providers"),
                Some(json!({"type": "openai", "name": format!("fault-key-{i}"), "secret": format!("sk-fault-{i}-0000000001"),
                    "metadata": {"api_base": format!("http://{up}/v1")}})),
            )
            .await?;
    }
    let key = stack
        .api(
            "POST",
            &format!("/api/v1/orgs/{}/api-keys", stack.org),
            Some(json!({"name": "fault-run", "role": "proxy", "project_id": pid})),
        )
        .await?;
    let key = key["key"].as_str().ok_or("no key")?.to_string();
    stack.wait_all_nodes_current().await?;
    let t = Target {
        url: format!("http://{node}/v1/proxy/chat/completions"),
        headers: vec![("authorization".into(), format!("Bearer {key}"))],
    };
    let body = Bytes::from(
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]})
            .to_string(),
    );
    let c = 16;
    let healthy = load(&t, &body, c, Until::Requests(n), Some(rate)).await?;
    let flips = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let (down, flips, stop) = (down.clone(), flips.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(period).await;
                down.fetch_xor(true, Ordering::Relaxed);
                flips.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Start in the failing state: the first seconds are the worst case.
    down.store(true, Ordering::Relaxed);
    let flapping = load(&t, &body, c, Until::Requests(n), Some(rate)).await?;
    stop.store(true, Ordering::Relaxed);
    flapper.abort();
    Ok(FaultRun {
        requests: n,
        ok: flapping.ok,
        healthy,
        flapping,
        refused: refused.load(Ordering::Relaxed),
        flips: flips.load(Ordering::Relaxed),
    })
}

// ---- usage query on 1,000,000 rows -----------------------------------------------------------

/// Unix time in ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug)]
pub struct UsageFigures {
    pub rows: u64,
    pub ingest_secs: f64,
    /// From the last acknowledgement until the rollup job had aggregated every ended hour.
    pub rollup_secs: f64,
    /// (group_by, median ms over the repetitions, rows returned)
    pub queries: Vec<(String, f64, usize)>,
}

/// Sends `rows` usage records over `LogService.Ingest` (the nodes' path: batches with
/// acknowledgements), 30 days of traffic sent oldest first (as nodes would have sent it over
/// those days), over 8 models, 4 providers, 50 projects and 200 API keys; then times
/// `GET /api/v1/orgs/{id}/usage` for each grouping over the 30 days.
pub async fn usage_query(stack: &Stack, rows: u64) -> Result<UsageFigures, Error> {
    let now_ms = now_ms();
    let models = [
        ("gpt-4o", "openai"),
        ("gpt-4o-mini", "openai"),
        ("o3-mini", "openai"),
        ("claude-sonnet-4-5", "anthropic"),
        ("claude-haiku-4-5", "anthropic"),
        ("gemini-2.5-flash", "google"),
        ("gemini-2.5-pro", "google"),
        ("mistral-large-latest", "mistral"),
    ];
    let org = stack.org.clone();
    let ingest_secs = send_records(stack, rows, &batch_spec(), move |i| {
        // Keys, projects and models independent of time (a hash of i): about one request per
        // key and model per hour, the worst case for rollups.
        let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let key = h % 200;
        let (model, provider) = models[((h / 200) % 8) as usize];
        // Oldest first, evenly over the 30 days up to now. (Until 2026-12-03 each batch spread
        // over all 30 days: every batch marked every period, so the rollup job re-aggregated
        // periods that the next batch marked again, and each batch's inserts landed all over the
        // time-ordered index — 13,000–14,000 records/s where traffic in time order goes several
        // times faster. Nodes send records about when they happen.)
        let started = now_ms - 2_592_000_000 + (i * 2_592_000_000 / rows.max(1)) as i64;
        let latency = 50 + (i * 7919) % 4_000;
        let status = if i.is_multiple_of(97) { 429 } else { 200 };
        pb::UsageRecord {
            id: format!("00000000-0000-7000-8000-{i:012}"),
            org_id: org.clone(),
            project_id: format!("bench-project-{}", key % 50),
            api_key_id: format!("bench-key-{key}"),
            model: model.into(),
            provider_type: provider.into(),
            credential_name: provider.into(),
            route: "chat".into(),
            status,
            error_type: if status == 200 {
                String::new()
            } else {
                "rate_limited".into()
            },
            prompt_tokens: 100 + i % 900,
            completion_tokens: 20 + i % 300,
            cost_usd: 0.0001 * (i % 50) as f64,
            latency_ms: latency,
            ttft_ms: latency / 4,
            attempts: 1,
            started_at_ms: started,
            finished_at_ms: started + latency as i64,
            node_id: "bench".into(),
            request_id: format!("req-{i}"),
            attempts_json: "[]".into(),
            ..Default::default()
        }
    })
    .await?;
    let url = &stack.db_url;
    if url.starts_with("postgres") {
        // What autovacuum does after a bulk load (it is off on the build machine's PostgreSQL):
        // without statistics the planner expects a handful of rows and picks an index scan
        // with a million heap fetches and an on-disk sort (measured 2.3 s instead of 0.5 s).
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await?;
        sqlx::query("ANALYZE request_logs").execute(&pool).await?;
        pool.close().await;
    }
    // Dashboards read whole hours and days from the rollups: wait for the rollup job to work off
    // what was ingested — a pass ended after the last acknowledgement with nothing pending, then
    // confirmed in the database (that pass's count may have been read just before the last
    // batch committed). Waiting for a second pass instead cost up to the job's pause after a long
    // pass — as long as the pass — with nothing left to do.
    let t_roll = Instant::now();
    let metric = |text: &str, name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    let metrics = || async {
        reqwest::get(format!("http://{}/metrics", stack.http))
            .await?
            .text()
            .await
    };
    let passes0 = metric(&metrics().await?, "aiproxy_usage_rollup_passes_total ").unwrap_or(0);
    loop {
        let m = metrics().await?;
        let passes = metric(&m, "aiproxy_usage_rollup_passes_total ").unwrap_or(0);
        let pending = metric(&m, "aiproxy_usage_rollup_pending ").unwrap_or(u64::MAX);
        if passes > passes0 && pending == 0 && ended_marks(url).await? == 0 {
            break;
        }
        if t_roll.elapsed() > std::time::Duration::from_secs(600) {
            return Err(format!("usage rollup still {pending} periods behind after 600 s").into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let rollup_secs = t_roll.elapsed().as_secs_f64();
    let (queries, _) = time_usage_queries(stack, now_ms).await?;
    Ok(UsageFigures {
        rows,
        ingest_secs,
        rollup_secs,
        queries,
    })
}

/// Marks of ended periods still in `usage_dirty` (levels 1 and 2 of migration 0003: hours and
/// days before the current ones), read from the control plane's database directly.
async fn ended_marks(url: &str) -> Result<i64, Error> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await?;
    let now = now_ms();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM usage_dirty WHERE (level = 1 AND period < $1) OR (level = 2 AND period < $2)",
    )
    .bind(now.div_euclid(3_600_000))
    .bind(now.div_euclid(86_400_000))
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(n)
}

/// Times `GET /api/v1/orgs/{id}/usage` for each grouping over the 31 days before `now_ms`
/// (median of 3): (group_by, ms, groups) per grouping, and the requests the range held.
pub async fn time_usage_queries(
    stack: &Stack,
    now_ms: i64,
) -> Result<(Vec<(String, f64, usize)>, u64), Error> {
    let from = (now_ms / 1000) - 31 * 86_400;
    let mut queries = Vec::new();
    let mut requests = 0;
    for g in ["model", "provider", "project", "api_key", "day", "hour"] {
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let v = stack
                .api(
                    "GET",
                    &format!("/api/v1/orgs/{}/usage?group_by={g}&from={from}", stack.org),
                    None,
                )
                .await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            n = v["rows"].as_array().map(Vec::len).unwrap_or(0);
            requests = v["totals"]["requests"].as_u64().unwrap_or(0);
        }
        times.sort_by(f64::total_cmp);
        queries.push((g.to_string(), times[1], n));
    }
    Ok((queries, requests))
}

/// The batch sizes `BENCH_INGEST_BATCH` asks for (see `batch_sizes`); 2,000 if unset.
pub fn batch_spec() -> String {
    std::env::var("BENCH_INGEST_BATCH").unwrap_or_else(|_| "2000".into())
}

/// Batch sizes for `rows` records: `spec` is one size (2,000 is what a busy node sends) or
/// `MIN-MAX`, sizes taken evenly from that range in a fixed pseudo-random order (what nodes at a
/// few hundred requests per second send: whatever gathered in a second).
fn batch_sizes(rows: u64, spec: &str) -> Result<Vec<u64>, Error> {
    let bad = || format!("BENCH_INGEST_BATCH={spec}: want N or MIN-MAX within 1..=5000");
    let parse = |v: &str| v.trim().parse::<u64>().map_err(|_| bad());
    let (lo, hi) = match spec.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(spec)?, parse(spec)?),
    };
    if lo == 0 || hi < lo || hi > 5_000 {
        return Err(bad().into());
    }
    let mut sizes = Vec::new();
    let (mut left, mut x) = (rows, 0x2545_f491_4f6c_dd1d_u64);
    while left > 0 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = (lo + (x >> 33) % (hi - lo + 1)).min(left);
        sizes.push(n);
        left -= n;
    }
    Ok(sizes)
}

/// Sends `rows` records made by `make(i)` over `LogService.Ingest` in batches of the sizes
/// `batches` asks for (`batch_sizes`), as a node does, and waits for every acknowledgement;
/// returns the seconds taken.
async fn send_records(
    stack: &Stack,
    rows: u64,
    batches: &str,
    make: impl Fn(u64) -> pb::UsageRecord + Send + 'static,
) -> Result<f64, Error> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", stack.grpc))?
        .connect()
        .await?;
    let mut client = pb::log_service_client::LogServiceClient::new(channel);
    let sizes = batch_sizes(rows, batches)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::LogBatch>(4);
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {}", stack.token).parse()?);
    let t0 = Instant::now();
    let mut acks = client.ingest(req).await?.into_inner();
    let to_send = sizes.clone();
    let producer = tokio::spawn(async move {
        let mut i: u64 = 0;
        for n in to_send {
            let records = (i..i + n).map(&make).collect();
            i += n;
            let b = pb::LogBatch {
                batch_id: format!("bench-batch-{i}"),
                node_id: "bench".into(),
                records,
            };
            if tx.send(b).await.is_err() {
                break;
            }
        }
    });
    for n in sizes {
        match acks.next().await {
            Some(Ok(a)) => {
                if a.stored as u64 + a.duplicates as u64 != n {
                    return Err(format!("ingest stored {} of a batch of {n}", a.stored).into());
                }
            }
            Some(Err(s)) => return Err(format!("ingest: {}", s.message()).into()),
            None => return Err("ingest stream ended early".into()),
        }
    }
    producer.await?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Control-plane cost of ingest alone: `rows` records shaped like the chat points' (the
/// current time, one project and key, request and response payloads logged), sent as a node
/// sends them in batches of the sizes `batches` asks for (`batch_sizes`); returns (records per
/// second, control-plane CPU µs per record).
pub async fn ingest_cost(
    stack: &Stack,
    cp_pid: u32,
    rows: u64,
    batches: &str,
) -> Result<(f64, f64), Error> {
    let now_ms = now_ms();
    let org = stack.org.clone();
    let input =
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]})
            .to_string();
    let output = String::from_utf8_lossy(&crate::chat_json()).into_owned();
    // Time-ordered ids, as a node's (UUIDv7), unique to this run.
    let prefix = format!("{:08x}", (now_ms / 1000) as u32);
    let cpu0 = crate::cpu_secs(cp_pid);
    let secs = send_records(stack, rows, batches, move |i| {
        let started = now_ms + (i / 20) as i64;
        pb::UsageRecord {
            id: format!("{prefix}-0000-7000-8000-{i:012}"),
            org_id: org.clone(),
            project_id: "bench-project".into(),
            api_key_id: "bench-key".into(),
            model: "gpt-4o-mini".into(),
            provider_type: "openai".into(),
            credential_name: "openai".into(),
            route: "chat".into(),
            status: 200,
            prompt_tokens: 9,
            completion_tokens: 12,
            cost_usd: 0.00001,
            latency_ms: 1,
            ttft_ms: 1,
            attempts: 1,
            started_at_ms: started,
            finished_at_ms: started + 1,
            node_id: "bench".into(),
            request_id: format!("req-{i}"),
            attempts_json: r#"[{"credential":"openai","provider":"openai","status":200,"error":"","latency_ms":1}]"#.into(),
            input_json: input.clone(),
            output_json: output.clone(),
            ..Default::default()
        }
    })
    .await?;
    let cpu = crate::cpu_secs(cp_pid) - cpu0;
    Ok((rows as f64 / secs, cpu * 1e6 / rows as f64))
}

// ---- configuration at scale ------------------------------------------------------------------

#[derive(Debug)]
pub struct ScaleFigures {
    pub projects: u64,
    pub api_keys: u64,
    pub credentials: u64,
    pub seed_secs: f64,
    pub build_ms: f64,
    pub snapshot_bytes: f64,
    /// Median of the new nodes' applies, each started after a pause (cold memory);
    /// `apply_samples_ms` holds each, in start order.
    pub apply_ms: f64,
    pub apply_samples_ms: Vec<f64>,
    /// Median of the same nodes' times from start to serving.
    pub new_node_ready_ms: f64,
    /// One more new node started right after the last of those stopped (warm memory).
    pub warm_apply_ms: f64,
    pub warm_ready_ms: f64,
    /// A running node's apply of one change (previous snapshot reused where unchanged).
    pub change_apply_ms: f64,
    pub propagation_p50_ms: f64,
    pub propagation_p99_ms: f64,
    pub node_rss_mib: f64,
    pub cp_rss_mib: f64,
    /// Projects created during the churn slices of the scale comparison (`scale_points`).
    pub churn_changes: u64,
}

/// A metric's value from a Prometheus text page.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Creates `projects` projects, 5 project keys and 2 project credentials per project (through
/// the REST API, 8 at a time), then measures the control plane's build, a new node's full
/// download and apply, and propagation of single changes at that size.
pub async fn config_at_scale(stack: &mut Stack, projects: u64) -> Result<ScaleFigures, Error> {
    // Only the first node (the one every point measured) watches the seeding: each node applies
    // every version the 80,000 creations publish, and with the propagation scenario's two extra
    // nodes up, unmeasured meanwhile, the creations took 135 s against 83–93 s without them
    // (bench/README). A node is started again after it, so that single changes at this size
    // reach 3 nodes, as in the propagation figure.
    stack.nodes.truncate(1);
    let t0 = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (next, http, key, org) = (
            next.clone(),
            stack.http,
            stack.key.clone(),
            stack.org.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let post = |path: String, body: Value| {
                let c = c.clone();
                let key = key.clone();
                async move {
                    let r = c
                        .post(format!("http://{http}{path}"))
                        .bearer_auth(key)
                        .json(&body)
                        .send()
                        .await?;
                    let s = r.status();
                    let v: Value = r.json().await?;
                    if !s.is_success() {
                        return Err::<Value, Error>(format!("{path}: {s} {v}").into());
                    }
                    Ok(v)
                }
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= projects {
                    return Ok::<_, Error>(());
                }
                let p = post(
                    format!("/api/v1/orgs/{org}/projects"),
                    json!({"name": format!("scale-{i:05}")}),
                )
                .await?;
                let pid = p["id"].as_str().ok_or("no id")?.to_string();
                for k in 0..5 {
                    post(
                        format!("/api/v1/orgs/{org}/api-keys"),
                        json!({"name": format!("scale-{i}-{k}"), "role": "proxy", "project_id": pid}),
                    )
                    .await?;
                }
                for (k, ty) in ["openai", "anthropic"].iter().enumerate() {
                    post(
                        format!("/api/v1/projects/{pid}/providers"),
                        json!({"type": ty, "name": format!("scale-{k}"), "secret": format!("sk-scale-{i}-{k}-00000001"),
                            "metadata": {"api_base": "https://api.example.com/v1"}}),
                    )
                    .await?;
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let seed_secs = t0.elapsed().as_secs_f64();
    stack.wait_all_nodes_current().await?;
    stack.add_node().await?;
    // The last build covered the whole configuration once the version stopped moving.
    let cp_metrics = reqwest::get(format!("http://{}/metrics", stack.http))
        .await?
        .text()
        .await?;
    let build_ms = metric(&cp_metrics, "aiproxy_snapshot_build_seconds") * 1000.0;
    let snapshot_bytes = metric(&cp_metrics, "aiproxy_snapshot_bytes");
    // A new node: connect, download the whole snapshot, apply, serve. Each of NEW_NODES nodes
    // starts after COLD_PAUSE of idle, one after the other, and the median is the figure (all
    // are reported). The pause matters on this kind of machine: its VM reports free guest
    // memory to the host (virtio-balloon free page reporting, about 2 s after it is freed), so
    // a process touching memory for the first time then pays a host page fault per page, as
    // the measurements fit (bench/README.md); that is a new node's usual case. Started right after
    // another node freed its memory, the same apply is much cheaper (2026-12-03, 10,000
    // projects: 190–211 ms after 10 s of idle, against 69–70 ms right after a stop). One more
    // node started that way is reported as the warm figure. The last one stays up for what
    // follows.
    const NEW_NODES: usize = 3;
    const COLD_PAUSE: std::time::Duration = std::time::Duration::from_secs(4);
    // In µs (the node reports its apply to the µs), for `pct`.
    let (mut apply_us, mut ready_us) = (Vec::new(), Vec::new());
    let mut idx = 0;
    for i in 0..=NEW_NODES {
        if i < NEW_NODES {
            tokio::time::sleep(COLD_PAUSE).await;
        }
        let t = Instant::now();
        idx = stack.add_node().await?;
        ready_us.push(t.elapsed().as_micros() as u64);
        let m = reqwest::get(format!("http://{}/metrics", stack.nodes[idx].1))
            .await?
            .text()
            .await?;
        apply_us.push((metric(&m, "aiproxy_config_apply_seconds") * 1e6).round() as u64);
        if i < NEW_NODES {
            // Dropping its process handle stops it.
            stack.nodes.remove(idx);
        }
    }
    let warm_apply_ms = apply_us[NEW_NODES] as f64 / 1000.0;
    let warm_ready_ms = ready_us[NEW_NODES] as f64 / 1000.0;
    let (apply_us, ready_us) = (&apply_us[..NEW_NODES], &ready_us[..NEW_NODES]);
    let addr = stack.nodes[idx].1;
    let median_ms = |v: &[u64]| crate::pct(v, 0.5) as f64 / 1000.0;
    let (apply_ms, new_node_ready_ms) = (median_ms(apply_us), median_ms(ready_us));
    // Single changes at this size.
    let mut prop = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        stack
            .api(
                "POST",
                &format!("/api/v1/orgs/{}/projects", stack.org),
                Some(json!({"name": format!("scale-change-{i}")})),
            )
            .await?;
        stack.wait_all_nodes_current().await?;
        prop.push(t.elapsed().as_micros() as u64);
    }
    // The same node's last apply: one change, with the previous snapshot to reuse from.
    let m = reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?;
    let change_apply_ms = metric(&m, "aiproxy_config_apply_seconds") * 1000.0;
    let node_rss_mib = crate::rss_mib(stack.nodes[idx].0.pid());
    let cp_rss_mib = crate::rss_mib(stack.cp_pid());
    Ok(ScaleFigures {
        projects,
        api_keys: projects * 5,
        credentials: projects * 2,
        seed_secs,
        build_ms,
        snapshot_bytes,
        apply_ms,
        apply_samples_ms: apply_us.iter().map(|us| *us as f64 / 1000.0).collect(),
        change_apply_ms,
        new_node_ready_ms,
        warm_apply_ms,
        warm_ready_ms,
        propagation_p50_ms: crate::pct(&prop, 0.5) as f64 / 1000.0,
        propagation_p99_ms: crate::pct(&prop, 0.99) as f64 / 1000.0,
        node_rss_mib,
        cp_rss_mib,
        churn_changes: 0,
    })
}
