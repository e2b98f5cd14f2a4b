//! Times the usage query (`db::logs::usage`, what `GET /api/v1/orgs/{id}/usage` runs) on an
//! existing database, in-process, for every grouping over the last 31 days, as the bench does;
//! run under `perf record` or `valgrind --tool=callgrind` to see where its time goes. Copy a
//! bench run's database first (`sqlite3 /tmp/.tmpXXXXXX/bench.db ".backup /tmp/usage.db"` while
//! `BENCH_ONLY=scale` is past its usage figures).
//! `cargo run --release -p control-plane --example usage_query -- sqlite:///tmp/usage.db`
//! (`ROUNDS`, default 3; `GROUP_BY` to time one grouping).

use std::time::Instant;

use control_plane::clock::{Clock, SystemClock};
use control_plane::db::{self, logs::UsageKey};

// The control plane's allocator (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), String> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: usage_query <database url>")?;
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let only = std::env::var("GROUP_BY").ok();
    let db = db::Db::connect(&url).await?;
    let org: String = sqlx::query_scalar("SELECT org_id FROM request_logs LIMIT 1")
        .fetch_one(db.pool())
        .await
        .map_err(|e| e.to_string())?;
    // As the service's default `to`: now, inclusive.
    let to = SystemClock.now_ms() + 1;
    let from = to - 31 * db::logs::DAY_MS;
    for g in ["model", "provider", "project", "api_key", "day", "hour"] {
        if only.as_deref().is_some_and(|o| o != g) {
            continue;
        }
        let key = UsageKey::parse(g).ok_or("grouping")?;
        let mut times = Vec::new();
        let mut groups = 0;
        let mut requests = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let v = db::logs::usage(&db, &org, None, from, to, key)
                .await
                .map_err(|e| e.to_string())?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            groups = v.len();
            requests = v.iter().map(|g| g.requests).sum::<i64>();
        }
        let ms: Vec<String> = times.iter().map(|t| format!("{t:.0}")).collect();
        println!(
            "{g:>8}: {} ms ({groups} groups, {requests} requests)",
            ms.join(", ")
        );
    }
    Ok(())
}
