//! The benchmark harness (`bench/run`): a fast fake upstream, a baseline pass-through proxy
//! (hyper, no parsing: the physical cost of one extra hop), and the real stack — a control
//! plane (`serve`, SQLite) and data-plane nodes in their production configuration (key auth,
//! routing, usage logging with `x-bt-parent`, metrics) — driven by a load driver (closed loop,
//! or open loop at a fixed rate) with HdrHistograms. Every scenario runs direct, via the
//! baseline and via the data plane in the same run, interleaved. Writes `bench/results/latest.{md,json}`.

mod scale;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, hyper::Error>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

const STREAM_CHUNKS: usize = 20;
const STREAM_GAP: Duration = Duration::from_millis(2);

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

// ---- fake upstream ---------------------------------------------------------------------------

fn chat_json() -> Bytes {
    Bytes::from(json!({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1735689600, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the benchmark upstream, a short answer."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 11, "total_tokens": 23}}).to_string())
}

fn openai_stream() -> Vec<Bytes> {
    let mut v = Vec::new();
    for i in 0..STREAM_CHUNKS {
        let c = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1735689600, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": format!("word{i} ")}, "finish_reason": null}]});
        v.push(Bytes::from(format!("data: {c}\n\n")));
    }
    let end = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1735689600, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}});
    v.push(Bytes::from(format!("data: {end}\n\ndata: [DONE]\n\n")));
    v
}

fn anthropic_stream() -> Vec<Bytes> {
    let ev = |name: &str, v: Value| Bytes::from(format!("event: {name}\ndata: {v}\n\n"));
    let mut v = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for i in 0..STREAM_CHUNKS {
        v.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("word{i} ")}})));
    }
    v.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    v.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 20}})));
    v.push(ev("message_stop", json!({"type": "message_stop"})));
    v
}

fn anthropic_json() -> Bytes {
    Bytes::from(json!({"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hello from the benchmark upstream, a short answer."}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 11}}).to_string())
}

fn stream_body(pieces: Vec<Bytes>) -> Body {
    let s = stream::unfold(pieces.into_iter(), |mut it| async move {
        let next = it.next()?;
        tokio::time::sleep(STREAM_GAP).await;
        Some((Ok::<_, hyper::Error>(hyper::body::Frame::data(next)), it))
    });
    http_body_util::StreamBody::new(s).boxed()
}

async fn upstream(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let needle = b"\"stream\":true";
    let streaming = body.windows(needle.len()).any(|w| w == needle);
    let (ct, b) = match (path.as_str(), streaming) {
        ("/v1/chat/completions", false) => ("application/json", full(chat_json())),
        ("/v1/chat/completions", true) => ("text/event-stream", stream_body(openai_stream())),
        ("/v1/messages", false) => ("application/json", full(anthropic_json())),
        ("/v1/messages", true) => ("text/event-stream", stream_body(anthropic_stream())),
        _ => ("text/plain", full("not found")),
    };
    let mut r = Response::new(b);
    if let Ok(v) = http::HeaderValue::from_str(ct) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    Ok(r)
}

async fn serve<F, Fut>(f: F) -> Result<SocketAddr, Error>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let _ = sock.set_nodelay(true);
            let f = f.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), service_fn(f))
                    .await;
            });
        }
    });
    Ok(addr)
}

// ---- baseline proxy --------------------------------------------------------------------------

/// Forwards every request to `target` as it is (no parsing), streaming the answer back.
async fn baseline(target: SocketAddr) -> Result<SocketAddr, Error> {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(conn);
    let client = Arc::new(client);
    serve(move |req: Request<Incoming>| {
        let client = client.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            let pq = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            parts.uri = match format!("http://{target}{pq}").parse() {
                Ok(u) => u,
                Err(_) => return Ok(Response::new(full("bad uri"))),
            };
            match client.request(Request::from_parts(parts, body)).await {
                Ok(r) => Ok(r.map(|b| b.boxed())),
                Err(e) => {
                    let mut r = Response::new(full(e.to_string()));
                    *r.status_mut() = http::StatusCode::BAD_GATEWAY;
                    Ok(r)
                }
            }
        }
    })
    .await
}

/// The baseline proxy runs in a process of its own, with the same runtime as the node (tokio's
/// default: one worker per core), so both pay the same cross-process hop and the same
/// wake-ups; in the driver's process it would ride on the driver's busy threads.
struct BaselineProcess {
    child: Child,
    addr: SocketAddr,
}

impl BaselineProcess {
    fn start(upstream: SocketAddr) -> Result<BaselineProcess, Error> {
        use std::io::BufRead;
        // BENCH_BASELINE_WRAP runs it under a tool, as BENCH_NODE_WRAP the node.
        let (mut cmd, _) = wrapped("BENCH_BASELINE_WRAP", &std::env::current_exe()?);
        let mut child = cmd
            .args(["--baseline", &upstream.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        let out = child.stdout.take().ok_or("baseline stdout")?;
        std::io::BufReader::new(out).read_line(&mut line)?;
        let addr = match line.trim().parse() {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                return Err(format!("baseline proxy did not start: {line:?}").into());
            }
        };
        Ok(BaselineProcess { child, addr })
    }
}

impl Drop for BaselineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- load driver -----------------------------------------------------------------------------

#[derive(Clone)]
struct Target {
    url: String,
    headers: Vec<(String, String)>,
}

struct Outcome {
    ok: u64,
    errors: u64,
    /// Open loop: requests sent after the time they were due (their connection was still
    /// waiting for the previous answer).
    late: u64,
    secs: f64,
    /// Total time per request (µs).
    total: Histogram<u64>,
    /// Time to first body byte (µs).
    ttfb: Histogram<u64>,
}

impl Outcome {
    /// Pools another run of the same scenario into this one.
    fn merge(&mut self, o: &Outcome) -> Result<(), Error> {
        self.ok += o.ok;
        self.errors += o.errors;
        self.late += o.late;
        self.secs += o.secs;
        self.total.add(&o.total)?;
        self.ttfb.add(&o.ttfb)?;
        Ok(())
    }
}

/// How many interleaved slices a compared point is cut into.
const SLICES: u32 = 4;

/// Slices of one path pooled: the outcome and (proxy, control plane) CPU seconds.
#[derive(Default)]
struct Pool(Option<(Outcome, (f64, f64))>);

impl Pool {
    fn add(&mut self, o: Outcome, spent: (f64, f64)) -> Result<(), Error> {
        match &mut self.0 {
            Some((a, (p, k))) => {
                a.merge(&o)?;
                *p += spent.0;
                *k += spent.1;
            }
            None => self.0 = Some((o, spent)),
        }
        Ok(())
    }

    fn take(self) -> Result<(Outcome, (f64, f64)), Error> {
        self.0.ok_or_else(|| "no slices".into())
    }
}

/// Connections of the open-loop points: enough that none of the paths runs out of them at
/// `BENCH_OPEN_RATE` (each connection's requests are due 6.4 ms apart at 10,000/s, well above
/// the timer's millisecond).
const OPEN_CONNECTIONS: usize = 64;

/// Requests per second of the fault run.
const FAULT_RATE: u32 = 1000;

/// One line on stderr as each part of the run ends, with the seconds since it began, so a
/// run's progress and where its time goes are visible (the report comes at the end).
fn progress(started: Instant, what: &str) {
    eprintln!("[{:6.1} s] {what}", started.elapsed().as_secs_f64());
}

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(d)
}

/// The scenario names of the configuration-at-scale comparison: the small configuration (the
/// reference), the node started at `projects` projects, the first node (running since the
/// bench started), and the node started at that size while the configuration changes
/// (`churn`), in the order [`scale_points`] returns their rows.
fn scale_scenarios(projects: u64) -> [String; 4] {
    let big = format!("chat at {projects} projects");
    let first = format!("{big}, first node");
    let churn = format!(
        "{big}, a project created every {} ms meanwhile",
        CHURN_EVERY.as_millis()
    );
    ["chat, small configuration".to_string(), big, first, churn]
}

/// How often the configuration changes during the scale comparison's churn slices.
const CHURN_EVERY: Duration = Duration::from_millis(100);

/// Creates a project every `CHURN_EVERY` until `until` (each change reaches every node as a
/// delta at the configuration's full size); returns how many it created.
async fn churn(stack: &Stack, until: Instant) -> Result<u64, Error> {
    // Names unique across the slices' calls.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = format!("/api/v1/orgs/{}/projects", stack.org);
    let mut n = 0u64;
    while Instant::now() < until {
        let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stack
            .api("POST", &path, Some(json!({"name": format!("churn-{i}")})))
            .await?;
        n += 1;
        tokio::time::sleep(CHURN_EVERY).await;
    }
    Ok(n)
}

/// The node's chat route with auth, routing, and usage and payload logging into the default
/// project: most points' target.
fn logged_chat(node: SocketAddr, key: &str) -> Target {
    Target {
        url: format!("http://{node}/v1/proxy/chat/completions"),
        headers: vec![
            ("authorization".into(), format!("Bearer {key}")),
            ("x-bt-parent".into(), "project_name:default".into()),
        ],
    }
}

/// The configuration grown to `BENCH_PROJECTS` projects (see [`scale::config_at_scale`]), then
/// chat at c=16 on the node started at that size, compared with the same chat on a second stack
/// (its own control plane and node, the small configuration every stack starts with) started
/// for the comparison, and on the first node (running since the bench started). They are
/// measured in interleaved slices, pooled, as the other compared points are, so the machine's
/// drift over time falls on all alike; measured minutes apart, before and after the
/// configuration grew, the difference had swung between −32% and +39% from run to run.
/// Returns the rows: small configuration, node started at scale, first node.
async fn scale_points(
    stack: &mut Stack,
    cp_pid: u32,
    target: &Target,
    body: &Bytes,
    dur: Duration,
    upstream: SocketAddr,
) -> Result<(scale::ScaleFigures, [Row; 4]), Error> {
    let mut fig = scale::config_at_scale(stack, env_u64("BENCH_PROJECTS", 10_000)).await?;
    let mut small = Stack::start(&stack.bin_dir, upstream).await?;
    small.add_node().await?;
    let (new_proc, new_addr) = stack.nodes.last().ok_or("no node")?;
    let sides = [
        (
            logged_chat(small.nodes[0].1, &small.key),
            small.nodes[0].0.pid(),
            small.cp_pid(),
        ),
        (logged_chat(*new_addr, &stack.key), new_proc.pid(), cp_pid),
        (target.clone(), stack.nodes[0].0.pid(), cp_pid),
        // The node started at scale again, while the configuration changes (`churn`).
        (logged_chat(*new_addr, &stack.key), new_proc.pid(), cp_pid),
    ];
    const CHURN_SIDE: usize = 3;
    let mut quiet: Vec<u32> = stack.nodes.iter().map(|(p, _)| p.pid()).collect();
    quiet.extend([cp_pid, small.nodes[0].0.pid(), small.cp_pid()]);
    settle(&quiet, Duration::from_secs(20)).await;
    // Not measured: the new nodes' first requests, and the first node's first at its new size.
    for (t, _, _) in &sides {
        drive(t, body, 16, Duration::from_secs(1)).await?;
    }
    settle(&quiet, Duration::from_secs(20)).await;
    let mut pools: [Pool; 4] = Default::default();
    let mut changes = 0;
    for slice in 0..SLICES as usize {
        // The order rotates from slice to slice.
        for i in 0..sides.len() {
            let k = (slice + i) % sides.len();
            let (t, node_pid, cp) = &sides[k];
            let len = dur / SLICES;
            let m = CpuMark::start(*node_pid, *cp);
            let o = if k == CHURN_SIDE {
                let (o, created) =
                    tokio::join!(drive(t, body, 16, len), churn(stack, Instant::now() + len));
                changes += created?;
                o?
            } else {
                drive(t, body, 16, len).await?
            };
            pools[k].add(o, m.spent())?;
        }
    }
    let [small_pool, big_pool, first_pool, churn_pool] = pools;
    let [small_name, big_name, first_name, churn_name] = scale_scenarios(fig.projects);
    let row_of = |pool: Pool, name: &str| -> Result<Row, Error> {
        let (o, spent) = pool.take()?;
        Ok(row_cpu(name, "data plane", 16, &o, spent))
    };
    let rows = [
        row_of(small_pool, &small_name)?,
        row_of(big_pool, &big_name)?,
        row_of(first_pool, &first_name)?,
        row_of(churn_pool, &churn_name)?,
    ];
    fig.churn_changes = changes;
    Ok((fig, rows))
}

/// Waits (up to `max`) until none of `pids` uses more than a tenth of a core over 500 ms, so a
/// measurement starts in steady state rather than while a configuration change is still being
/// built, sent and applied.
async fn settle(pids: &[u32], max: Duration) {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        let before: Vec<f64> = pids.iter().map(|p| cpu_secs(*p)).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let busy = pids
            .iter()
            .zip(&before)
            .any(|(p, b)| cpu_secs(*p) - b > 0.05);
        if !busy {
            return;
        }
    }
}

fn hist() -> Result<Histogram<u64>, Error> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// One request: (total, time to first body byte) in µs, counted from `due` when the request is
/// sent after the time it was due (open loop, see [`load`]), else from the moment it is sent.
async fn one(
    client: &HttpClient,
    t: &Target,
    body: &Bytes,
    due: Option<Instant>,
) -> Result<(u64, u64), Error> {
    let mut b = Request::post(&t.url).header("content-type", "application/json");
    for (k, v) in &t.headers {
        b = b.header(k, v);
    }
    let req = b.body(Full::new(body.clone()))?;
    let start = due.unwrap_or_else(Instant::now);
    let resp = client.request(req).await?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()).into());
    }
    let mut body = resp.into_body();
    let mut first = None;
    while let Some(f) = body.frame().await {
        let f = f?;
        if first.is_none() && f.data_ref().is_some_and(|d| !d.is_empty()) {
            first = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    Ok((
        total.as_micros() as u64,
        first.unwrap_or(total).as_micros() as u64,
    ))
}

/// When a load run ends.
#[derive(Clone, Copy)]
enum Until {
    /// After this long (with a short warm-up first).
    Elapsed(Duration),
    /// After this many requests in all.
    Requests(u64),
}

/// Closed loop: `concurrency` workers send back to back for `dur`.
async fn drive(
    t: &Target,
    body: &Bytes,
    concurrency: usize,
    dur: Duration,
) -> Result<Outcome, Error> {
    load(t, body, concurrency, Until::Elapsed(dur), None).await
}

/// `concurrency` workers (one connection each) until `until`. Without `rate`, a closed loop:
/// each worker sends its next request when the last one is answered. With `rate`, an open loop
/// at that many requests/s in all, corrected for coordinated omission as wrk2 is: worker `k`'s
/// `j`-th request is due at `start + (j + k / concurrency) × concurrency / rate`, whatever
/// happened to the ones before it. A worker that is ready early waits for the due time and
/// times the request from when it is sent (tokio's timer fires up to a millisecond late, which
/// is the driver's delay, not the path's); one still waiting for the previous answer when the
/// next is due sends at once and times it from the due time, so a slow answer counts against
/// every request it held up, as it would for callers that do not wait for each other.
async fn load(
    t: &Target,
    body: &Bytes,
    concurrency: usize,
    until: Until,
    rate: Option<f64>,
) -> Result<Outcome, Error> {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency * 2)
        .build(conn);
    if let Until::Elapsed(_) = until {
        // Warm-up: open connections, fill caches.
        for _ in 0..concurrency.min(8) {
            let _ = one(&client, t, body, None).await;
        }
    }
    let start = Instant::now();
    let left = Arc::new(std::sync::atomic::AtomicU64::new(match until {
        Until::Requests(n) => n,
        Until::Elapsed(_) => u64::MAX,
    }));
    let deadline = match until {
        Until::Elapsed(d) => Some(start + d),
        Until::Requests(_) => None,
    };
    let period = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r));
    let mut tasks = Vec::new();
    for k in 0..concurrency {
        let (client, t, body, left) = (client.clone(), t.clone(), body.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            let (mut total, mut ttfb) = (hist()?, hist()?);
            let (mut ok, mut errors, mut late) = (0u64, 0u64, 0u64);
            let mut next_due = period.map(|p| start + p.mul_f64(k as f64 / concurrency as f64));
            while deadline.is_none_or(|d| Instant::now() < d)
                && left
                    .fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |v| v.checked_sub(1),
                    )
                    .is_ok()
            {
                let mut from = None;
                if let (Some(due), Some(p)) = (next_due, period) {
                    next_due = Some(due + p);
                    if Instant::now() < due {
                        tokio::time::sleep_until(due.into()).await;
                    } else {
                        late += 1;
                        from = Some(due);
                    }
                }
                match one(&client, &t, &body, from).await {
                    Ok((a, b)) => {
                        ok += 1;
                        total.record(a.max(1))?;
                        ttfb.record(b.max(1))?;
                    }
                    Err(_) => errors += 1,
                }
            }
            Ok::<_, Error>((ok, errors, late, total, ttfb))
        }));
    }
    let mut out = Outcome {
        ok: 0,
        errors: 0,
        late: 0,
        secs: 0.0,
        total: hist()?,
        ttfb: hist()?,
    };
    for t in tasks {
        let (ok, errors, late, total, ttfb) = t.await??;
        out.ok += ok;
        out.errors += errors;
        out.late += late;
        out.total.add(total)?;
        out.ttfb.add(ttfb)?;
    }
    out.secs = start.elapsed().as_secs_f64();
    Ok(out)
}

// ---- processes -------------------------------------------------------------------------------

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(") ").next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident set size in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn wait_ok(url: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// SQLite in the run's temporary directory, or — with `BENCH_POSTGRES_URL` — a fresh schema
/// in that PostgreSQL database.
async fn database_url(dir: &std::path::Path) -> Result<String, Error> {
    match std::env::var("BENCH_POSTGRES_URL") {
        Ok(admin) if !admin.is_empty() => {
            let schema = format!("bench_{}", rand::random::<u32>());
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&admin).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&pool)
                .await?;
            pool.close().await;
            let sep = if admin.contains('?') { '&' } else { '?' };
            Ok(format!("{admin}{sep}options=-c%20search_path%3D{schema}"))
        }
        _ => Ok(format!("sqlite://{}/bench.db?mode=rwc", dir.display())),
    }
}

fn database_name() -> &'static str {
    match std::env::var("BENCH_POSTGRES_URL") {
        Ok(v) if !v.is_empty() => "PostgreSQL",
        _ => "SQLite",
    }
}

/// Milliseconds as "a, b and c ms".
fn ms_list(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.0}")).collect();
    match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last} ms", rest.join(", ")),
        Some((last, _)) => format!("{last} ms"),
        None => "none".into(),
    }
}

/// A command running `bin`, under the tool the environment variable `var` names if it is set
/// (e.g. `BENCH_NODE_WRAP="valgrind --tool=callgrind"`); true when wrapped.
fn wrapped(var: &str, bin: &std::path::Path) -> (Command, bool) {
    let wrap: Vec<String> = std::env::var(var)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    match wrap.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(bin);
            (c, true)
        }
        None => (Command::new(bin), false),
    }
}

/// Stops a process with SIGTERM (so a tool it runs under writes its totals) and waits up to a
/// minute for it to exit.
async fn terminate(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
    for _ in 0..600 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Stack {
    _dir: tempfile::TempDir,
    db_url: String,
    _cp: Proc,
    nodes: Vec<(Proc, SocketAddr)>,
    /// Nodes started so far, stopped ones included: the next node's number.
    started: usize,
    http: SocketAddr,
    grpc: SocketAddr,
    key: String,
    org: String,
    bin_dir: std::path::PathBuf,
    token: String,
    /// Where this stack's logs go (`BENCH_CP_LOG`): the control plane's at this path, each
    /// node's at `<path>.node-<n>`.
    log_path: Option<String>,
}

/// Stacks started so far: the first one logs at `BENCH_CP_LOG` itself, a later one at
/// `<BENCH_CP_LOG>.stack-<k>`, so that it does not overwrite the first one's logs.
static STACKS_STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A child's stderr: the file at `path` (created anew), or nowhere.
fn log_file(path: Option<String>) -> std::io::Result<Stdio> {
    Ok(match path {
        Some(p) => Stdio::from(std::fs::File::create(p)?),
        None => Stdio::null(),
    })
}

impl Stack {
    async fn start(bin_dir: &std::path::Path, upstream: SocketAddr) -> Result<Stack, Error> {
        let dir = tempfile::tempdir()?;
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let key = format!("aip_bench_{}", rand::random::<u64>());
        let token = format!("bench-node-token-{}", rand::random::<u64>());
        let master = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            rand::random::<[u8; 32]>(),
        );
        let db_url = database_url(dir.path()).await?;
        let log_path = std::env::var("BENCH_CP_LOG").ok().map(|path| {
            match STACKS_STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
                0 => path,
                k => format!("{path}.stack-{k}"),
            }
        });
        // BENCH_CP_WRAP runs the control plane under a tool, as BENCH_NODE_WRAP the node.
        let (mut cp, cp_wrapped) = wrapped("BENCH_CP_WRAP", &bin_dir.join("aiproxy-control-plane"));
        let cp = cp
            .arg("serve")
            .env("AIPROXY_DATABASE_URL", &db_url)
            .env("AIPROXY_MASTER_KEY", master)
            .env("AIPROXY_NODE_TOKEN", &token)
            .env("AIPROXY_BOOTSTRAP_ADMIN_EMAIL", "bench@example.com")
            .env(
                "AIPROXY_BOOTSTRAP_ADMIN_PASSWORD",
                "Correct-horse-battery-42!",
            )
            .env("AIPROXY_BOOTSTRAP_API_KEY", &key)
            .env("AIPROXY_HTTP_ADDR", http.to_string())
            .env("AIPROXY_GRPC_ADDR", grpc.to_string())
            .env("AIPROXY_UPSTREAM_ALLOW_PRIVATE", "true")
            .env(
                "AIPROXY_LOG_LEVEL",
                std::env::var("BENCH_CP_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log_file(log_path.clone())?)
            .spawn()?;
        let cp = Proc(cp);
        let ready_within = Duration::from_secs(if cp_wrapped { 300 } else { 30 });
        if !wait_ok(&format!("http://{http}/readyz"), ready_within).await {
            return Err("the control plane did not start".into());
        }
        let mut s = Stack {
            _dir: dir,
            db_url,
            _cp: cp,
            nodes: Vec::new(),
            started: 0,
            http,
            grpc,
            key,
            org: String::new(),
            bin_dir: bin_dir.to_path_buf(),
            token,
            log_path,
        };
        let orgs = s.api("GET", "/api/v1/orgs", None).await?;
        s.org = orgs[0]["id"].as_str().ok_or("no org")?.to_string();
        let base = format!("http://{upstream}");
        s.api("POST", &format!("/api/v1/orgs/{}/providers", s.org), Some(json!({"type": "openai", "secret": "sk-bench-0000000000001", "metadata": {"api_base": format!("{base}/v1")}}))).await?;
        s.api("POST", &format!("/api/v1/orgs/{}/providers", s.org), Some(json!({"type": "anthropic", "secret": "sk-ant-bench-000000001", "metadata": {"api_base": base}}))).await?;
        Ok(s)
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Error> {
        let mut r = reqwest::Client::new()
            .request(
                reqwest::Method::from_bytes(method.as_bytes())?,
                format!("http://{}{path}", self.http),
            )
            .bearer_auth(&self.key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {v}").into());
        }
        Ok(v)
    }

    fn cp_pid(&self) -> u32 {
        self._cp.pid()
    }

    /// Waits until every node serves the control plane's current configuration version.
    async fn wait_all_nodes_current(&self) -> Result<(), Error> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let nodes = self.api("GET", "/api/v1/nodes", None).await?;
            let target = nodes
                .as_array()
                .and_then(|a| a.first())
                .and_then(|n| n["current_version"].as_u64())
                .unwrap_or(0);
            let mut all = target > 0;
            for (_, a) in &self.nodes {
                if node_version(&http, *a).await < target {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("nodes did not reach the current configuration version".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn add_node(&mut self) -> Result<usize, Error> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        // Its own cache directory, never one a stopped node left behind: a node starts from the
        // snapshot cached there, and the scale figures time new nodes' first, whole applies.
        let n = self.started;
        self.started += 1;
        let cache = self._dir.path().join(format!("node-{n}"));
        std::fs::create_dir_all(&cache)?;
        let (mut cmd, node_wrapped) =
            wrapped("BENCH_NODE_WRAP", &self.bin_dir.join("aiproxy-data-plane"));
        let ready_within = Duration::from_secs(if node_wrapped { 300 } else { 30 });
        let child = cmd
            .env("AIPROXY_CONTROL_PLANE_URL", format!("http://{}", self.grpc))
            .env("AIPROXY_NODE_TOKEN", &self.token)
            .env("AIPROXY_PROXY_ADDR", addr.to_string())
            .env("AIPROXY_CACHE_DIR", cache)
            .env("AIPROXY_UPSTREAM_ALLOW_PRIVATE", "true")
            .env(
                "AIPROXY_LOG_LEVEL",
                std::env::var("BENCH_CP_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log_file(
                self.log_path.as_ref().map(|p| format!("{p}.node-{n}")),
            )?)
            .spawn()?;
        let p = Proc(child);
        if !wait_ok(&format!("http://{addr}/readyz"), ready_within).await {
            return Err("a data-plane node did not become ready".into());
        }
        self.nodes.push((p, addr));
        Ok(self.nodes.len() - 1)
    }
}

/// The version a node serves, from `/readyz` ("ready (config version N)").
async fn node_version(client: &reqwest::Client, addr: SocketAddr) -> u64 {
    let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await else {
        return 0;
    };
    let t = r.text().await.unwrap_or_default();
    t.rsplit(' ')
        .next()
        .and_then(|s| s.trim_end_matches(')').parse().ok())
        .unwrap_or(0)
}

// ---- scenarios and report --------------------------------------------------------------------

struct Row {
    scenario: String,
    path: &'static str,
    concurrency: usize,
    rps: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    ttfb_p50: u64,
    ttfb_p99: u64,
    errors: u64,
    /// CPU of the proxy under test (the baseline proxy or the node) per request.
    cpu_us_per_req: Option<f64>,
    /// CPU of the control plane per request during the same point (ingesting usage records).
    cp_cpu_us_per_req: Option<f64>,
}

/// CPU seconds the proxy under test and the control plane spent since `start`.
#[derive(Clone, Copy)]
struct CpuMark {
    proxy: (u32, f64),
    cp: (u32, f64),
}

impl CpuMark {
    fn start(proxy: u32, cp: u32) -> CpuMark {
        CpuMark {
            proxy: (proxy, cpu_secs(proxy)),
            cp: (cp, cpu_secs(cp)),
        }
    }

    /// (proxy, control plane) CPU seconds so far.
    fn spent(&self) -> (f64, f64) {
        (
            cpu_secs(self.proxy.0) - self.proxy.1,
            cpu_secs(self.cp.0) - self.cp.1,
        )
    }
}

fn row(scenario: &str, path: &'static str, c: usize, o: &Outcome, cpu: Option<f64>) -> Row {
    Row {
        scenario: scenario.into(),
        path,
        concurrency: c,
        rps: o.ok as f64 / o.secs.max(1e-9),
        p50: o.total.value_at_quantile(0.5),
        p99: o.total.value_at_quantile(0.99),
        p999: o.total.value_at_quantile(0.999),
        ttfb_p50: o.ttfb.value_at_quantile(0.5),
        ttfb_p99: o.ttfb.value_at_quantile(0.99),
        errors: o.errors,
        cpu_us_per_req: cpu.map(|c| c * 1e6 / (o.ok.max(1) as f64)),
        cp_cpu_us_per_req: None,
    }
}

/// A row with the CPU seconds the proxy and the control plane spent on it.
fn row_cpu(scenario: &str, path: &'static str, c: usize, o: &Outcome, spent: (f64, f64)) -> Row {
    let mut r = row(scenario, path, c, o, Some(spent.0));
    r.cp_cpu_us_per_req = Some(spent.1 * 1e6 / (o.ok.max(1) as f64));
    r
}

/// A path of the open-loop point: its name in the report, its target, and the process whose
/// CPU it is charged (none for direct).
type OpenPath<'a> = (&'static str, &'a Target, Option<u32>);

/// The open-loop point at `rate` requests/s over `OPEN_CONNECTIONS`: every path in `SLICES`
/// interleaved slices of `slice`, pooled per path, so drift in the machine's speed falls on all
/// of them alike. Each path's row under `scenario`, with its requests sent after their due time
/// and its requests sent.
async fn open_point(
    scenario: &str,
    paths: &[OpenPath<'_>],
    body: &Bytes,
    rate: f64,
    slice: Duration,
    cp_pid: u32,
) -> Result<Vec<(Row, u64, u64)>, Error> {
    let mut pools: Vec<Pool> = paths.iter().map(|_| Pool::default()).collect();
    for _ in 0..SLICES {
        for ((_, t, pid), pool) in paths.iter().zip(pools.iter_mut()) {
            let m = pid.map(|pid| CpuMark::start(pid, cp_pid));
            let o = load(t, body, OPEN_CONNECTIONS, Until::Elapsed(slice), Some(rate)).await?;
            pool.add(o, m.map(|m| m.spent()).unwrap_or((0.0, 0.0)))?;
        }
    }
    let mut out = Vec::new();
    for ((path, _, pid), pool) in paths.iter().zip(pools) {
        let (o, spent) = pool.take()?;
        let r = match pid {
            Some(_) => row_cpu(scenario, path, OPEN_CONNECTIONS, &o, spent),
            None => row(scenario, path, OPEN_CONNECTIONS, &o, None),
        };
        out.push((r, o.late, o.ok + o.errors));
    }
    Ok(out)
}

/// `late` of `sent` requests, as a percentage.
fn late_share(late: u64, sent: u64) -> f64 {
    late as f64 * 100.0 / sent.max(1) as f64
}

fn scenario_table(rows: &[Row]) -> String {
    let us = |c: Option<f64>| c.map(|c| format!("{c:.0}")).unwrap_or_default();
    let mut md = String::from(
        "| scenario | path | conc. | req/s | p50 µs | p99 µs | p99.9 µs | TTFB p50 µs | TTFB p99 µs | errors | proxy CPU µs/req | control-plane CPU µs/req |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.path,
            r.concurrency,
            r.rps,
            r.p50,
            r.p99,
            r.p999,
            r.ttfb_p50,
            r.ttfb_p99,
            r.errors,
            us(r.cpu_us_per_req),
            us(r.cp_cpu_us_per_req),
        ));
    }
    md
}

fn pct(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    s[((s.len() as f64 - 1.0) * q).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--baseline") {
        // The baseline proxy as its own process (see `BaselineProcess`).
        let target: SocketAddr = args.get(2).ok_or("--baseline <upstream>")?.parse()?;
        let addr = baseline(target).await?;
        println!("{addr}");
        std::future::pending::<()>().await;
    }
    let bin_dir = std::path::PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "target/release".into()),
    );
    let out_dir = std::path::PathBuf::from(
        args.get(2)
            .cloned()
            .unwrap_or_else(|| "bench/results".into()),
    );
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let dur = Duration::from_secs(secs);
    let started = Instant::now();

    let up = serve(upstream).await?;
    let baseline_proc = BaselineProcess::start(up)?;
    let base = baseline_proc.addr;
    let mut stack = Stack::start(&bin_dir, up).await?;
    stack.add_node().await?;
    let node_pid = stack.nodes[0].0.pid();
    let cp_pid = stack.cp_pid();
    let base_pid = baseline_proc.child.id();
    let node = stack.nodes[0].1;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_mib(node_pid);

    let key = stack.key.clone();
    let direct = Target {
        url: format!("http://{up}/v1/chat/completions"),
        headers: vec![],
    };
    let via_base = Target {
        url: format!("http://{base}/v1/chat/completions"),
        headers: vec![],
    };
    let logged_chat = logged_chat(node, &key);
    let chat = Bytes::from(
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]})
            .to_string(),
    );
    let chat_stream = Bytes::from(json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Say hello"}]}).to_string());
    let claude_stream = Bytes::from(json!({"model": "claude-sonnet-4-5", "stream": true, "messages": [{"role": "user", "content": "Say hello"}]}).to_string());

    // The data plane without `x-bt-parent`: usage records only, no payloads.
    let mut unlogged = logged_chat.clone();
    unlogged.headers.retain(|(k, _)| k != "x-bt-parent");

    if std::env::var("BENCH_ONLY").as_deref() == Ok("open") {
        // Quick iteration on tail latency: the open-loop point only, at each rate of
        // `BENCH_OPEN_RATES`, with the data plane also without `x-bt-parent`; prints the table,
        // writes no report files. The pids are for `perf record -p` during the run.
        eprintln!("pids: node {node_pid}, control plane {cp_pid}, baseline proxy {base_pid}");
        let paths = [
            ("direct", &direct, None),
            ("baseline proxy", &via_base, Some(base_pid)),
            ("data plane", &logged_chat, Some(node_pid)),
            ("data plane, no x-bt-parent", &unlogged, Some(node_pid)),
        ];
        let rates = std::env::var("BENCH_OPEN_RATES").unwrap_or_else(|_| "2000,10000".into());
        let (mut rows, mut late) = (Vec::new(), Vec::new());
        for r in rates.split(',') {
            let rate: f64 = r
                .trim()
                .parse()
                .ok()
                .filter(|r: &f64| *r >= 1.0)
                .ok_or_else(|| format!("BENCH_OPEN_RATES: {r:?} is not a rate (requests/s)"))?;
            let name = format!("chat, open loop at {rate:.0}/s");
            for (row, l, sent) in
                open_point(&name, &paths, &chat, rate, dur / SLICES, cp_pid).await?
            {
                late.push(format!(
                    "{} at {rate:.0}/s {:.1}%",
                    row.path,
                    late_share(l, sent)
                ));
                rows.push(row);
            }
        }
        println!("{}", scenario_table(&rows));
        println!("Sent after their due time: {}.", late.join(", "));
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("count") {
        // Repeatable cost: exactly BENCH_COUNT logged chat requests at c=4, then the node is
        // stopped (SIGTERM) so a tool it runs under (BENCH_NODE_WRAP) writes its totals. Two
        // runs with different counts give instructions per request by difference.
        let n = env_u64("BENCH_COUNT", 2000);
        // BENCH_COUNT_CONCURRENCY (default 4); BENCH_COUNT_VIA=baseline sends them through the
        // baseline proxy instead (for tools attached to its process, e.g. `perf stat -p`), and
        // BENCH_COUNT_VIA=unlogged to the node without `x-bt-parent` (the logging A/B's other side).
        let c = env_u64("BENCH_COUNT_CONCURRENCY", 4).max(1) as usize;
        let target = match std::env::var("BENCH_COUNT_VIA").as_deref() {
            Ok("baseline") => &via_base,
            Ok("unlogged") => &unlogged,
            _ => &logged_chat,
        };
        println!("node pid {node_pid}, baseline pid {base_pid}");
        let o = load(target, &chat, c, Until::Requests(n), None).await?;
        // Let the shipper send its last batch before the node stops.
        tokio::time::sleep(Duration::from_millis(500)).await;
        terminate(node_pid).await;
        if std::env::var_os("BENCH_BASELINE_WRAP").is_some() {
            terminate(base_pid).await;
        }
        if std::env::var_os("BENCH_CP_WRAP").is_some() {
            // The control plane's cost of storing those requests' records, the same way.
            tokio::time::sleep(Duration::from_millis(500)).await;
            terminate(cp_pid).await;
        }
        println!(
            "sent {n}: {} ok, {} errors; {:.0} req/s, p50 {} µs, p99 {} µs, p99.9 {} µs",
            o.ok,
            o.errors,
            o.ok as f64 / o.secs.max(1e-9),
            o.total.value_at_quantile(0.5),
            o.total.value_at_quantile(0.99),
            o.total.value_at_quantile(0.999)
        );
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("ingest") {
        // The control plane's cost of ingesting usage records alone (no proxy traffic).
        let rows = env_u64("BENCH_USAGE_ROWS", 200_000);
        let (rate, cpu) = scale::ingest_cost(&stack, cp_pid, rows, &scale::batch_spec()).await?;
        println!(
            "ingested {rows} chat-shaped records: {rate:.0} records/s, control-plane CPU {cpu:.1} µs/record"
        );
        // Under a tool (BENCH_CP_WRAP), stop the control plane so the tool writes its totals:
        // two runs with different BENCH_USAGE_ROWS give its cost per record by difference.
        if std::env::var_os("BENCH_CP_WRAP").is_some() {
            terminate(cp_pid).await;
        }
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("usage") {
        // Quick iteration on the usage-query figures: the million-row load, the rollup job's
        // catch-up and the queries; no report files.
        let rows = env_u64("BENCH_USAGE_ROWS", 1_000_000);
        println!("{:#?}", scale::usage_query(&stack, rows).await?);
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("scale") {
        // Quick iteration on the configuration-at-scale figures: usage rows first (as in the
        // full run, so the database is the same size), then the scale points; no report files.
        let rows = env_u64("BENCH_USAGE_ROWS", 1_000_000);
        if rows > 0 {
            println!("{:#?}", scale::usage_query(&stack, rows).await?);
        }
        let (fig, scale_rows) =
            scale_points(&mut stack, cp_pid, &logged_chat, &chat, dur, up).await?;
        println!("{}", scenario_table(&scale_rows));
        println!("{fig:#?}");
        return Ok(());
    }
    // Usage query on a million log rows (ingested over LogService.Ingest), first, while the
    // org holds those rows only: the points below log every request into the same org, mostly
    // into the current hour, which the query reads from the logs (timed again after them).
    progress(
        started,
        "stack up (fake upstream, baseline proxy, control plane, node)",
    );
    let usage = scale::usage_query(&stack, env_u64("BENCH_USAGE_ROWS", 1_000_000)).await?;
    progress(started, "usage load, rollups and usage queries");
    let mut rows = Vec::new();
    let mut rss_load: f64 = 0.0;
    // The node's log queue depth at the moment RSS is read (queued records hold memory).
    let mut queue_at_rss: u64 = 0;
    let queue_depth = || async move {
        let text = reqwest::get(format!("http://{node}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix("aiproxy_log_queue_depth ")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|v| v as u64)
    };
    for c in [1usize, 16, 64] {
        // Interleaved in slices — direct, baseline, data plane, four times — and pooled, so a
        // change in the machine's speed during the point falls on all three paths alike (one
        // whole point per path let a slow second land on one path only: the baseline's p99 at
        // c=1 ranged 197–1,572 µs between runs on 2026-12-02).
        let slice = dur / SLICES;
        let (mut d, mut b, mut n) = (Pool::default(), Pool::default(), Pool::default());
        for _ in 0..SLICES {
            d.add(drive(&direct, &chat, c, slice).await?, (0.0, 0.0))?;
            let m = CpuMark::start(base_pid, cp_pid);
            let o = drive(&via_base, &chat, c, slice).await?;
            b.add(o, m.spent())?;
            let m = CpuMark::start(node_pid, cp_pid);
            let load = drive(&logged_chat, &chat, c, slice);
            let (o, (rss, depth)) = tokio::join!(load, async {
                tokio::time::sleep(slice / 2).await;
                (rss_mib(node_pid), queue_depth().await.unwrap_or(0))
            });
            if rss > rss_load {
                rss_load = rss;
                queue_at_rss = depth;
            }
            n.add(o?, m.spent())?;
        }
        let (o, _) = d.take()?;
        rows.push(row("chat", "direct", c, &o, None));
        let (o, spent) = b.take()?;
        rows.push(row_cpu("chat", "baseline proxy", c, &o, spent));
        let (o, spent) = n.take()?;
        rows.push(row_cpu("chat", "data plane", c, &o, spent));
    }
    // Open loop: the same three paths at a fixed rate below every path's limit (callers that do
    // not wait for each other, as in production), interleaved in slices as above; latency from
    // each request's due time once a path falls behind (see `load`).
    let open_rate = env_u64("BENCH_OPEN_RATE", 10_000).max(1) as f64;
    let open_name = format!("chat, open loop at {open_rate:.0}/s");
    let paths = [
        ("direct", &direct, None),
        ("baseline proxy", &via_base, Some(base_pid)),
        ("data plane", &logged_chat, Some(node_pid)),
    ];
    let mut open_late = Vec::new();
    for (row, late, sent) in
        open_point(&open_name, &paths, &chat, open_rate, dur / SLICES, cp_pid).await?
    {
        open_late.push((row.path, late, sent));
        rows.push(row);
    }
    progress(started, "chat points (c=1, 16, 64; open loop)");
    // Logging cost: the same load with and without `x-bt-parent` (without it, usage records
    // only, no payloads).
    let c = 16;
    // Interleaved in four slices each (with, without, with, …) and pooled, so drift in the
    // machine's speed falls on both sides alike.
    let slice = dur / SLICES;
    let (mut with, mut without) = (Pool::default(), Pool::default());
    for _ in 0..SLICES {
        for (t, acc) in [(&logged_chat, &mut with), (&unlogged, &mut without)] {
            let m = CpuMark::start(node_pid, cp_pid);
            let o = drive(t, &chat, c, slice).await?;
            acc.add(o, m.spent())?;
        }
    }
    for (name, acc) in [
        ("chat, x-bt-parent (A/B)", with),
        ("chat, no x-bt-parent (A/B)", without),
    ] {
        let (o, spent) = acc.take()?;
        rows.push(row_cpu(name, "data plane", c, &o, spent));
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("chat") {
        // Quick iteration: the chat points only, no report files.
        println!("{}", scenario_table(&rows));
        return Ok(());
    }
    progress(started, "logging A/B");
    let direct_s = Target {
        url: direct.url.clone(),
        headers: vec![],
    };
    let o = drive(&direct_s, &chat_stream, c, dur).await?;
    rows.push(row("stream (20 chunks)", "direct", c, &o, None));
    let o = drive(&via_base, &chat_stream, c, dur).await?;
    rows.push(row("stream (20 chunks)", "baseline proxy", c, &o, None));
    let cpu0 = cpu_secs(node_pid);
    let o = drive(&logged_chat, &chat_stream, c, dur).await?;
    let same_cpu = cpu_secs(node_pid) - cpu0;
    rows.push(row(
        "stream (20 chunks)",
        "data plane",
        c,
        &o,
        Some(same_cpu),
    ));
    let same_cpu_per = same_cpu / o.ok.max(1) as f64;
    let direct_a = Target {
        url: format!("http://{up}/v1/messages"),
        headers: vec![],
    };
    let o = drive(&direct_a, &claude_stream, c, dur).await?;
    rows.push(row(
        "OpenAI→Anthropic stream",
        "direct (Anthropic)",
        c,
        &o,
        None,
    ));
    let cpu0 = cpu_secs(node_pid);
    let o = drive(&logged_chat, &claude_stream, c, dur).await?;
    let tr_cpu = cpu_secs(node_pid) - cpu0;
    rows.push(row(
        "OpenAI→Anthropic stream",
        "data plane",
        c,
        &o,
        Some(tr_cpu),
    ));
    let tr_cpu_per = tr_cpu / o.ok.max(1) as f64;

    progress(started, "streams and translation");
    // Propagation with 3 nodes: a change through the REST API until every node applied it.
    stack.add_node().await?;
    stack.add_node().await?;
    let http = reqwest::Client::new();
    let mut prop = Vec::new();
    for i in 0..100 {
        let t0 = Instant::now();
        stack
            .api(
                "POST",
                &format!("/api/v1/orgs/{}/projects", stack.org),
                Some(json!({"name": format!("bench-{i}")})),
            )
            .await?;
        let target: u64 = {
            let nodes = stack.api("GET", "/api/v1/nodes", None).await?;
            nodes
                .as_array()
                .and_then(|a| a.first())
                .and_then(|n| n["current_version"].as_u64())
                .unwrap_or(0)
        };
        let deadline = t0 + Duration::from_secs(10);
        loop {
            let mut all = true;
            for (_, a) in &stack.nodes {
                if node_version(&http, *a).await < target {
                    all = false;
                    break;
                }
            }
            if all || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        prop.push(t0.elapsed().as_micros() as u64);
    }
    let (prop_p50, prop_p99) = (pct(&prop, 0.5), pct(&prop, 0.99));

    progress(started, "propagation to 3 nodes");
    // Fault run: 3 credentials, one flapping between healthy and 503 every 2 s; FAULT_RATE
    // req/s, so 10,000 requests span 10 s (5 flips; 500/s and 10 flips until 2026-12-03, which
    // took 20 s more of the run).
    let fault_n = env_u64("BENCH_FAULT_REQUESTS", 10_000);
    let fault = scale::fault_run(
        &stack,
        node,
        up,
        fault_n,
        FAULT_RATE as f64,
        Duration::from_secs(2),
    )
    .await?;
    progress(started, "fault run");
    // The same usage queries with the requests logged since in the org (reported, no target).
    let (busy_queries, busy_requests) = scale::time_usage_queries(&stack, scale::now_ms()).await?;
    // The control plane's ingest alone (after the usage queries: its records land in the
    // current hour, which the queries read from the logs).
    const INGEST_ROWS: u64 = 200_000;
    let (ingest_rate, ingest_cpu) = scale::ingest_cost(&stack, cp_pid, INGEST_ROWS, "2000").await?;
    // The same in the batches of a node at a few hundred requests per second.
    const INGEST_VARIED_ROWS: u64 = 100_000;
    const INGEST_VARIED_BATCHES: &str = "100-700";
    let (varied_rate, varied_cpu) =
        scale::ingest_cost(&stack, cp_pid, INGEST_VARIED_ROWS, INGEST_VARIED_BATCHES).await?;
    progress(started, "usage queries again, ingest cost");
    let (scale_fig, scale_rows) =
        scale_points(&mut stack, cp_pid, &logged_chat, &chat, dur, up).await?;
    rows.extend(scale_rows);

    progress(started, "configuration at scale");
    // Targets.
    let find = |s: &str, p: &str, c: usize| {
        rows.iter()
            .find(|r| r.scenario == s && r.path == p && r.concurrency == c)
    };
    // (target, measured, met); `None` for a figure reported without a target.
    let mut checks: Vec<(String, String, Option<bool>)> = Vec::new();
    if let (Some(b), Some(d)) = (
        find("chat", "baseline proxy", 64),
        find("chat", "data plane", 64),
    ) {
        let r = d.rps / b.rps.max(1e-9);
        checks.push((
            "throughput at c=64 ≥ 80% of baseline".into(),
            format!("{:.0} vs {:.0} req/s ({:.0}%)", d.rps, b.rps, r * 100.0),
            Some(r >= 0.8),
        ));
    }
    for c in [1usize, 16] {
        if let (Some(x), Some(b), Some(d)) = (
            find("chat", "direct", c),
            find("chat", "baseline proxy", c),
            find("chat", "data plane", c),
        ) {
            let added_b = b.p99.saturating_sub(x.p99);
            let added_d = d.p99.saturating_sub(x.p99);
            checks.push((
                format!("added p99 at c={c} ≤ 1.5× baseline's"),
                format!("data plane +{added_d} µs, baseline +{added_b} µs"),
                Some((added_d as f64) <= 1.5 * (added_b.max(1) as f64)),
            ));
        }
    }
    if let (Some(x), Some(b), Some(d)) = (
        find(&open_name, "direct", OPEN_CONNECTIONS),
        find(&open_name, "baseline proxy", OPEN_CONNECTIONS),
        find(&open_name, "data plane", OPEN_CONNECTIONS),
    ) {
        let added = |r: &Row, q: fn(&Row) -> u64| q(r).saturating_sub(q(x));
        let late: Vec<String> = open_late
            .iter()
            .map(|(p, late, sent)| format!("{p} {:.1}%", late_share(*late, *sent)))
            .collect();
        checks.push((
            format!("added latency, open loop at {open_rate:.0} requests/s (reported)"),
            format!(
                "data plane p50 +{} µs, p99 +{} µs, p99.9 +{} µs; baseline p50 +{} µs, p99 +{} µs, p99.9 +{} µs (sent after their due time: {})",
                added(d, |r| r.p50),
                added(d, |r| r.p99),
                added(d, |r| r.p999),
                added(b, |r| r.p50),
                added(b, |r| r.p99),
                added(b, |r| r.p999),
                late.join(", ")
            ),
            None,
        ));
    }
    if let (Some(on), Some(off)) = (
        find("chat, x-bt-parent (A/B)", "data plane", 16),
        find("chat, no x-bt-parent (A/B)", "data plane", 16),
    ) {
        let d = on.p99 as f64 / off.p99.max(1) as f64 - 1.0;
        checks.push((
            "payload logging p99 cost at c=16 < 5%".into(),
            format!(
                "p99 {} µs with, {} µs without ({:+.1}%)",
                on.p99,
                off.p99,
                d * 100.0
            ),
            Some(d < 0.05),
        ));
    }
    checks.push((
        "translation CPU/req ≤ 2× pass-through stream".into(),
        format!("{:.0} µs vs {:.0} µs", tr_cpu_per * 1e6, same_cpu_per * 1e6),
        Some(tr_cpu_per <= 2.0 * same_cpu_per),
    ));
    checks.push((
        format!(
            "fault run: 100% success ({} requests at {FAULT_RATE}/s, 1 of 3 credentials flapping 503 every 2 s)",
            fault.requests
        ),
        format!(
            "{} ok, {} failed ({:.3}%); the flapping key refused {} attempts over {} flips",
            fault.ok,
            fault.flapping.errors,
            fault.ok as f64 * 100.0 / fault.requests.max(1) as f64,
            fault.refused,
            fault.flips
        ),
        Some(fault.ok == fault.requests),
    ));
    let fault_added = fault
        .flapping
        .total
        .value_at_quantile(0.99)
        .saturating_sub(fault.healthy.total.value_at_quantile(0.99));
    checks.push((
        "fault run: added p99 vs all healthy (reported)".into(),
        format!(
            "+{fault_added} µs (p99 {} µs flapping vs {} µs healthy; p50 {} vs {} µs)",
            fault.flapping.total.value_at_quantile(0.99),
            fault.healthy.total.value_at_quantile(0.99),
            fault.flapping.total.value_at_quantile(0.5),
            fault.healthy.total.value_at_quantile(0.5)
        ),
        None,
    ));
    let slowest = usage.queries.iter().map(|q| q.1).fold(0.0f64, f64::max);
    checks.push((
        format!(
            "usage query on {} rows ≤ 1 s (every grouping, 30 days)",
            usage.rows
        ),
        format!(
            "slowest {slowest:.0} ms ({})",
            usage
                .queries
                .iter()
                .map(|(g, ms, _)| format!("{g} {ms:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(slowest <= 1000.0),
    ));
    checks.push((
        format!(
            "snapshot apply ≤ 200 ms at {} projects / {} keys / {} credentials",
            scale_fig.projects, scale_fig.api_keys, scale_fig.credentials
        ),
        format!(
            "apply {:.0} ms (median of new nodes' {}, each started after 4 s idle; one started right after a stop: {:.0} ms), build {:.0} ms, {:.1} MiB",
            scale_fig.apply_ms,
            ms_list(&scale_fig.apply_samples_ms),
            scale_fig.warm_apply_ms,
            scale_fig.build_ms,
            scale_fig.snapshot_bytes / 1048576.0
        ),
        Some(scale_fig.apply_ms <= 200.0),
    ));
    checks.push((
        format!("propagation p99 ≤ 1 s at {} projects", scale_fig.projects),
        format!(
            "p50 {:.0} ms, p99 {:.0} ms",
            scale_fig.propagation_p50_ms, scale_fig.propagation_p99_ms
        ),
        Some(scale_fig.propagation_p99_ms <= 1000.0),
    ));
    let [small_name, big_name, first_name, churn_name] = scale_scenarios(scale_fig.projects);
    if let (Some(big), Some(churn)) = (
        rows.iter().find(|r| r.scenario == big_name),
        rows.iter().find(|r| r.scenario == churn_name),
    ) {
        checks.push((
            format!(
                "request latency while the configuration changes at {} projects (c=16, reported)",
                scale_fig.projects
            ),
            format!(
                "{} projects created in the churn slices ({:.1}/s): p50 {} vs {} µs quiet, p99 {} vs {} µs, p99.9 {} vs {} µs",
                scale_fig.churn_changes,
                scale_fig.churn_changes as f64 / secs as f64,
                churn.p50,
                big.p50,
                churn.p99,
                big.p99,
                churn.p999,
                big.p999,
            ),
            None,
        ));
    }
    if let (Some(small), Some(big), Some(first)) = (
        rows.iter().find(|r| r.scenario == small_name),
        rows.iter().find(|r| r.scenario == big_name),
        rows.iter().find(|r| r.scenario == first_name),
    ) {
        let r50 = big.p50 as f64 / small.p50.max(1) as f64;
        let f50 = first.p50 as f64 / small.p50.max(1) as f64;
        checks.push((
            format!(
                "request latency unchanged at {} projects (c=16 p50 within 15%)",
                scale_fig.projects
            ),
            format!(
                "node started at that size: p50 {} vs {} µs ({:+.0}%), p99 {} vs {} µs; the first node (running since the bench started): p50 {} µs ({:+.0}%)",
                big.p50,
                small.p50,
                (r50 - 1.0) * 100.0,
                big.p99,
                small.p99,
                first.p50,
                (f50 - 1.0) * 100.0,
            ),
            Some(r50 <= 1.15),
        ));
    }
    checks.push((
        "RSS idle ≤ 30 MB".into(),
        format!("{rss_idle:.1} MiB"),
        Some(rss_idle <= 30.0),
    ));
    checks.push((
        "RSS under c=64 load ≤ 80 MB".into(),
        format!("{rss_load:.1} MiB"),
        Some(rss_load <= 80.0),
    ));
    checks.push((
        "propagation p99 ≤ 1 s (3 nodes, 100 changes)".into(),
        format!(
            "p50 {:.1} ms, p99 {:.1} ms",
            prop_p50 as f64 / 1000.0,
            prop_p99 as f64 / 1000.0
        ),
        Some(prop_p99 <= 1_000_000),
    ));

    // Report.
    let mut md = String::new();
    md.push_str("# Benchmark report\n\n");
    md.push_str(&format!("Control-plane database: {}. ", database_name()));
    md.push_str(&format!("Loopback, one data-plane node (auth, routing, usage logging via `x-bt-parent`, metrics on), {secs} s per point, closed loop except the open-loop point (requests due at a fixed rate, each timed from its due time when its connection was still busy: corrected for coordinated omission); the non-streaming chat points, the open-loop point, the logging A/B and the configuration-at-scale comparison cut into {SLICES} slices, interleaved across paths and pooled. Machine: {} cores. Total run {:.0} s.\n\n", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), started.elapsed().as_secs_f64()));
    md.push_str("## Targets\n\n| target | measured | met |\n|---|---|---|\n");
    for (t, m, ok) in &checks {
        md.push_str(&format!(
            "| {t} | {m} | {} |\n",
            match ok {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "reported",
            }
        ));
    }
    md.push_str("\n## Scenarios\n\n");
    md.push_str(&scenario_table(&rows));
    md.push_str("\nProxy CPU is the baseline proxy's or the node's; control-plane CPU is what the control plane spent during the same point (ingesting the node's usage records), both per request.\n");
    md.push_str(&format!("\nNode RSS: idle {rss_idle:.1} MiB, under load {rss_load:.1} MiB (usage records queued for the control plane at that moment: {queue_at_rss}). Config propagation to 3 nodes over 100 changes: p50 {:.1} ms, p99 {:.1} ms.\n", prop_p50 as f64 / 1000.0, prop_p99 as f64 / 1000.0));
    md.push_str(&format!("\n## Fault run\n\n{} requests over 16 connections, open loop at {FAULT_RATE}/s (timed from their due time when sent late), over 3 project credentials for one model (two healthy, one flapping between healthy and 503 every 2 s, starting in the failing state), after the same number with all three healthy.\n\n| run | ok | failed | p50 µs | p99 µs | p99.9 µs |\n|---|---|---|---|---|---|\n", fault.requests));
    for (name, o) in [
        ("all healthy", &fault.healthy),
        ("one flapping", &fault.flapping),
    ] {
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} |\n",
            o.ok,
            o.errors,
            o.total.value_at_quantile(0.5),
            o.total.value_at_quantile(0.99),
            o.total.value_at_quantile(0.999)
        ));
    }
    md.push_str(&format!("\n## Usage query\n\n{} usage records ingested over `LogService.Ingest` (batches of 2,000, acknowledged) in {:.1} s ({:.0} records/s) into {}; the rollup job had aggregated every ended hour and day {:.1} s after the last acknowledgement; then `GET /api/v1/orgs/{{id}}/usage` over 31 days, median of 3, before the chat points (the org holding those rows only: the target). Timed again after the chat points and the fault run, which log every request into the same org, nearly all in the current hour: the range then held {busy_requests} requests, and the current hour and day are read from the logs, not the rollups (reported):\n\n| group_by | ms | groups | ms after the chat points | groups |\n|---|---|---|---|---|\n", usage.rows, usage.ingest_secs, usage.rows as f64 / usage.ingest_secs.max(1e-9), database_name(), usage.rollup_secs));
    for ((g, ms, n), (_, busy_ms, busy_n)) in usage.queries.iter().zip(&busy_queries) {
        md.push_str(&format!(
            "| {g} | {ms:.0} | {n} | {busy_ms:.0} | {busy_n} |\n"
        ));
    }
    md.push_str(&format!("\n## Ingest\n\n{INGEST_ROWS} usage records shaped like the chat points' (current time, request and response payloads logged), sent over `LogService.Ingest` as a node sends them, with no proxy traffic, in batches of 2,000 (a busy node's): {ingest_rate:.0} records/s, control-plane CPU {ingest_cpu:.1} µs per record. {INGEST_VARIED_ROWS} more in batches of {INGEST_VARIED_BATCHES} records (a node at a few hundred requests per second sends what gathered in a second): {varied_rate:.0} records/s, {varied_cpu:.1} µs per record.\n"));
    md.push_str(&format!("\n## Configuration at scale\n\n{} projects, {} project API keys and {} project credentials created through the REST API (8 clients) in {:.0} s. Snapshot build {:.0} ms (control plane), {:.1} MiB encoded; a new node connects, downloads, validates, indexes and serves it in {:.0} ms (apply {:.0} ms; medians of {} nodes started one after the other, each after 4 s of idle, applies {}; one more started right after the last stopped, on memory still mapped by the VM's host: ready in {:.0} ms, apply {:.0} ms — see bench/README.md); a running node applies one change in {:.0} ms (unchanged credentials kept). One change at this size reaches all nodes in p50 {:.0} ms / p99 {:.0} ms (20 changes). RSS: node {:.1} MiB, control plane {:.1} MiB.\n", scale_fig.projects, scale_fig.api_keys, scale_fig.credentials, scale_fig.seed_secs, scale_fig.build_ms, scale_fig.snapshot_bytes / 1048576.0, scale_fig.new_node_ready_ms, scale_fig.apply_ms, scale_fig.apply_samples_ms.len(), ms_list(&scale_fig.apply_samples_ms), scale_fig.warm_ready_ms, scale_fig.warm_apply_ms, scale_fig.change_apply_ms, scale_fig.propagation_p50_ms, scale_fig.propagation_p99_ms, scale_fig.node_rss_mib, scale_fig.cp_rss_mib));
    md.push_str("\nThe driver and the fake upstream share one process; the baseline proxy and the node run as processes of their own (tokio's default runtime each); all share the machine's 2 cores, so ratios are indicative.\n");
    let js = json!({
        "seconds_per_point": secs,
        "rss_idle_mib": rss_idle, "rss_load_mib": rss_load, "log_queue_at_rss_load": queue_at_rss,
        "propagation_us": {"p50": prop_p50, "p99": prop_p99, "samples": prop.len()},
        "fault_run": {"requests": fault.requests, "ok": fault.ok, "failed": fault.flapping.errors, "refused_by_flapping_key": fault.refused, "flips": fault.flips,
            "healthy_p50_us": fault.healthy.total.value_at_quantile(0.5), "healthy_p99_us": fault.healthy.total.value_at_quantile(0.99),
            "flapping_p50_us": fault.flapping.total.value_at_quantile(0.5), "flapping_p99_us": fault.flapping.total.value_at_quantile(0.99)},
        "ingest": {"records": INGEST_ROWS, "records_per_sec": ingest_rate, "cp_cpu_us_per_record": ingest_cpu,
            "varied_batches": {"records": INGEST_VARIED_ROWS, "batch_sizes": INGEST_VARIED_BATCHES, "records_per_sec": varied_rate, "cp_cpu_us_per_record": varied_cpu}},
        "usage_query": {"rows": usage.rows, "ingest_secs": usage.ingest_secs, "rollup_secs": usage.rollup_secs, "queries_ms": usage.queries.iter().map(|(g, ms, n)| json!({"group_by": g, "median_ms": ms, "groups": n})).collect::<Vec<_>>(),
            "after_chat_points": {"requests_in_range": busy_requests, "queries_ms": busy_queries.iter().map(|(g, ms, n)| json!({"group_by": g, "median_ms": ms, "groups": n})).collect::<Vec<_>>()}},
        "config_scale": {"projects": scale_fig.projects, "api_keys": scale_fig.api_keys, "credentials": scale_fig.credentials, "seed_secs": scale_fig.seed_secs,
            "build_ms": scale_fig.build_ms, "snapshot_bytes": scale_fig.snapshot_bytes, "apply_ms": scale_fig.apply_ms, "apply_samples_ms": scale_fig.apply_samples_ms, "warm_apply_ms": scale_fig.warm_apply_ms, "warm_ready_ms": scale_fig.warm_ready_ms, "change_apply_ms": scale_fig.change_apply_ms, "new_node_ready_ms": scale_fig.new_node_ready_ms,
            "propagation_p50_ms": scale_fig.propagation_p50_ms, "propagation_p99_ms": scale_fig.propagation_p99_ms, "node_rss_mib": scale_fig.node_rss_mib, "cp_rss_mib": scale_fig.cp_rss_mib},
        "targets": checks.iter().map(|(t, m, ok)| json!({"target": t, "measured": m, "met": ok})).collect::<Vec<_>>(),
        "scenarios": rows.iter().map(|r| json!({"scenario": r.scenario, "path": r.path, "concurrency": r.concurrency, "rps": r.rps,
            "p50_us": r.p50, "p99_us": r.p99, "p999_us": r.p999, "ttfb_p50_us": r.ttfb_p50, "ttfb_p99_us": r.ttfb_p99, "errors": r.errors, "proxy_cpu_us_per_req": r.cpu_us_per_req, "control_plane_cpu_us_per_req": r.cp_cpu_us_per_req})).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("latest.md"), &md)?;
    std::fs::write(
        out_dir.join("latest.json"),
        serde_json::to_string_pretty(&js)?,
    )?;
    println!("{md}");
    Ok(())
}
