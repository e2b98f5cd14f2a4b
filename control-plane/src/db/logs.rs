//! Request logs and usage records: written in batches by log ingest (idempotent by record id),
//! read by the logs and usage APIs, trimmed by retention.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use sqlx::{Any, Arguments as _, Executor};

use super::{DbResult, i, os, s};

/// Latency histogram bucket of a duration (≈10% wide log buckets), stored with each row so usage
/// percentiles are computed from a GROUP BY, portable across SQLite and Postgres.
pub fn latency_bucket(ms: u64) -> i64 {
    ((ms as f64 + 1.0).ln() / 1.1f64.ln()).floor() as i64
}

/// A representative value (ms) of a bucket: its geometric middle.
pub fn bucket_value(b: i64) -> f64 {
    (1.1f64.powf(b as f64 + 0.5) - 1.0).max(0.0)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRow {
    pub id: String,
    pub org_id: String,
    pub project_id: Option<String>,
    pub api_key_id: Option<String>,
    pub model: String,
    pub provider_type: String,
    pub credential_name: String,
    pub route: String,
    pub status: i64,
    pub error_type: String,
    pub error_message: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_usd: f64,
    pub latency_ms: i64,
    pub ttft_ms: i64,
    pub attempts: i64,
    pub cache_hit: bool,
    pub stream: bool,
    pub started_at: i64,
    pub finished_at: i64,
    pub node_id: String,
    pub request_id: String,
    pub attempts_json: String,
    pub input: Option<String>,
    pub output: Option<String>,
}

const COLS: &str = "id, org_id, project_id, api_key_id, model, provider_type, credential_name, route, status, error_type, error_message, prompt_tokens, completion_tokens, \
    cached_tokens, cache_write_tokens, reasoning_tokens, cost_usd, latency_ms, ttft_ms, latency_bucket, ttft_bucket, attempts, cache_hit, stream, started_at, finished_at, node_id, \
    request_id, attempts_json, input, output";
const NCOLS: usize = 31;

/// SQLite: rows per multi-row INSERT, written as many statements inside one transaction. The
/// placeholders are anonymous (`?`): with numbered ones (`$N`) sqlx looks up every parameter's
/// name, which SQLite finds by walking the statement's parameter list, so binding cost grew with
/// the square of the parameters (measured through sqlx: 500 rows × 31 columns stored 1,465
/// rows/s; 8 rows 40,000+/s; the profile of an ingest spent a quarter of its time in
/// `sqlite3_bind_parameter_name`). 256 rows (7,936 parameters; SQLite allows 32,766) cost 18%
/// less control-plane CPU per ingested record than 32 (`BENCH_ONLY=ingest`, 3 interleaved
/// runs each: 13.6 vs 16.6 µs): fewer statements, each a round trip to sqlx's SQLite thread.
/// PostgreSQL's way (one JSON parameter per batch, unpacked with `json_each` and `->>`) cost
/// 2.5 times as much here: 24.1 against 9.5 µs per record (`BENCH_ONLY=ingest`, 200,000
/// records, 3 interleaved runs each), SQLite's JSON extraction being dearer than the binds.
pub const SQLITE_ROWS_PER_INSERT: usize = 256;

/// SQLite: the row counts an INSERT may have. A batch goes as whole chunks of 256 rows and its
/// remainder as the largest of the smaller sizes that fit, so at most 12 more statements and 5
/// statement shapes in all. sqlx prepares each shape once per connection and keeps it (100 at
/// most); a remainder of any size from 1 to 255 as one statement was a shape of its own, and
/// batches of varying sizes (a node sends what gathered in a second) kept preparing new ones
/// and evicting each other. Preparing a 208-row INSERT took ≈2.1 ms, more than executing it
/// (≈1.5 ms; SQLite timed through Python's `sqlite3` on the build machine).
const SQLITE_CHUNK_ROWS: [usize; 5] = [SQLITE_ROWS_PER_INSERT, 64, 16, 4, 1];

/// The shape of the next SQLite INSERT for `left` rows: an index into `SQLITE_CHUNK_ROWS` (how
/// many rows it takes) and `CHUNK_INSERT_SQL` (its statement).
fn sqlite_chunk(left: usize) -> usize {
    SQLITE_CHUNK_ROWS
        .iter()
        .position(|&c| c <= left)
        .unwrap_or(SQLITE_CHUNK_ROWS.len() - 1)
}

/// The SQLite INSERT statement for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO request_logs ({COLS}) VALUES ");
    for ri in 0..rows {
        if ri > 0 {
            sql.push(',');
        }
        sql.push('(');
        for ci in 0..NCOLS {
            if ci > 0 {
                sql.push(',');
            }
            sql.push('?');
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING");
    sql
}

/// SQLite: inserts a batch's rows as INSERTs of `SQLITE_CHUNK_ROWS` rows; rows whose id already
/// exists are skipped. Returns how many were stored. On log ingest's own connection
/// (`Db::sqlite_ingest`), not through `Any`.
pub async fn insert_sqlite(conn: &mut sqlx::SqliteConnection, rows: Vec<LogRow>) -> DbResult<u64> {
    let mut stored = 0;
    let mut rows = rows.into_iter();
    while rows.len() > 0 {
        let shape = sqlite_chunk(rows.len());
        let chunk = rows.by_ref().take(SQLITE_CHUNK_ROWS[shape]);
        stored += insert_statement(conn, &CHUNK_INSERT_SQL[shape], chunk).await?;
    }
    Ok(stored)
}

/// SQLite: inserts rows in one statement, `sql` (built for their number; see `insert_sqlite`).
async fn insert_statement(
    conn: &mut sqlx::SqliteConnection,
    sql: &'static str,
    rows: impl ExactSizeIterator<Item = LogRow>,
) -> DbResult<u64> {
    // The arguments are sized up front (7,936 of them for 256 rows: grown one by one, their
    // buffer was reallocated and copied a dozen times), and the rows' strings move into them
    // (no copy of the payloads here; SQLite makes its own when they are bound).
    let mut args = sqlx::sqlite::SqliteArguments::default();
    args.reserve(rows.len() * NCOLS, 0);
    for r in rows {
        add_row(&mut args, r).map_err(sqlx::Error::Encode)?;
    }
    let q = sqlx::query_with(sqlx::AssertSqlSafe(sql), args);
    Ok(q.execute(conn).await?.rows_affected())
}

/// The SQLite INSERT statements for the row counts of `SQLITE_CHUNK_ROWS`, in its order, built
/// once (20 KB of text for 256 rows).
static CHUNK_INSERT_SQL: LazyLock<[String; 5]> =
    LazyLock::new(|| SQLITE_CHUNK_ROWS.map(insert_sql));

/// One row's values, in `COLS` order, added to the arguments directly (`Query::bind` would move
/// the whole query in and out for each of the 31).
fn add_row(
    args: &mut sqlx::sqlite::SqliteArguments,
    r: LogRow,
) -> Result<(), sqlx::error::BoxDynError> {
    args.add(r.id)?;
    args.add(r.org_id)?;
    args.add(r.project_id)?;
    args.add(r.api_key_id)?;
    args.add(r.model)?;
    args.add(r.provider_type)?;
    args.add(r.credential_name)?;
    args.add(r.route)?;
    args.add(r.status)?;
    args.add(r.error_type)?;
    args.add(r.error_message)?;
    args.add(r.prompt_tokens)?;
    args.add(r.completion_tokens)?;
    args.add(r.cached_tokens)?;
    args.add(r.cache_write_tokens)?;
    args.add(r.reasoning_tokens)?;
    args.add(r.cost_usd)?;
    args.add(r.latency_ms)?;
    args.add(r.ttft_ms)?;
    args.add(latency_bucket(r.latency_ms.max(0) as u64))?;
    args.add(ttft_bucket(r.ttft_ms))?;
    args.add(r.attempts)?;
    args.add(i64::from(r.cache_hit))?;
    args.add(i64::from(r.stream))?;
    args.add(r.started_at)?;
    args.add(r.finished_at)?;
    args.add(r.node_id)?;
    args.add(r.request_id)?;
    args.add(r.attempts_json)?;
    args.add(r.input)?;
    args.add(r.output)?;
    Ok(())
}

fn ttft_bucket(ttft_ms: i64) -> i64 {
    if ttft_ms > 0 {
        latency_bucket(ttft_ms as u64)
    } else {
        -1
    }
}

/// PostgreSQL: bytes of rows (as JSON) per INSERT at most; a row larger than this goes alone.
const PG_STATEMENT_BYTES: usize = 4 << 20;

/// PostgreSQL: the rows go as one JSON array of arrays per statement (one parameter), unpacked
/// server-side, rather than as multi-row VALUES of 20 rows. sqlx 0.9.0 does not set
/// `TCP_NODELAY` (sqlx issue #4335) and over TLS writes a message larger than one TLS record
/// (16 KiB) in several sends: the last waited for the server's delayed ACK, 40 ms per
/// statement. Rows carrying payloads made most ingest statements that large (measured on the
/// build machine's PostgreSQL, TLS on by default: 452 records/s). One statement per batch (or
/// per `PG_STATEMENT_BYTES`) pays that wait at most once. Returns how many rows were stored.
pub async fn insert_json_pg(conn: &mut sqlx::AnyConnection, rows: &[LogRow]) -> DbResult<u64> {
    // Positional: (e->>N) by the order push_json_row writes.
    const SQL: &str = "INSERT INTO request_logs (id, org_id, project_id, api_key_id, model, provider_type, credential_name, route, status, \
        error_type, error_message, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, cost_usd, latency_ms, \
        ttft_ms, latency_bucket, ttft_bucket, attempts, cache_hit, stream, started_at, finished_at, node_id, request_id, attempts_json, input, output) \
        SELECT e->>0, e->>1, e->>2, e->>3, e->>4, e->>5, e->>6, e->>7, (e->>8)::bigint, e->>9, e->>10, (e->>11)::bigint, (e->>12)::bigint, \
        (e->>13)::bigint, (e->>14)::bigint, (e->>15)::bigint, (e->>16)::double precision, (e->>17)::bigint, (e->>18)::bigint, (e->>19)::bigint, \
        (e->>20)::bigint, (e->>21)::bigint, (e->>22)::bigint, (e->>23)::bigint, (e->>24)::bigint, (e->>25)::bigint, e->>26, e->>27, e->>28, \
        e->>29, e->>30 FROM jsonb_array_elements(CAST($1 AS jsonb)) AS t(e) ON CONFLICT (id) DO NOTHING";
    let mut stored = 0;
    let mut i = 0;
    while i < rows.len() {
        let mut buf: Vec<u8> = vec![b'['];
        while i < rows.len() && (buf.len() == 1 || buf.len() < PG_STATEMENT_BYTES) {
            if buf.len() > 1 {
                buf.push(b',');
            }
            push_json_row(&mut buf, &rows[i]);
            i += 1;
        }
        buf.push(b']');
        // Only JSON strings and numbers were written: valid UTF-8 (the fallback never runs).
        let json = String::from_utf8(buf)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        stored += sqlx::query(SQL)
            .bind(json)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(stored)
}

/// One row as a JSON array, in `insert_json_pg`'s column order.
fn push_json_row(out: &mut Vec<u8>, r: &LogRow) {
    use std::io::Write;
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
    };
    // Writing JSON into a Vec cannot fail.
    let mut text = |out: &mut Vec<u8>, v: Option<&str>| {
        sep(out);
        let _ = serde_json::to_writer(&mut *out, &v);
    };
    out.push(b'[');
    text(out, Some(&r.id));
    text(out, Some(&r.org_id));
    text(out, r.project_id.as_deref());
    text(out, r.api_key_id.as_deref());
    text(out, Some(&r.model));
    text(out, Some(&r.provider_type));
    text(out, Some(&r.credential_name));
    text(out, Some(&r.route));
    let nums = |out: &mut Vec<u8>, v: &[i64]| {
        for n in v {
            let _ = write!(out, ",{n}");
        }
    };
    nums(out, &[r.status]);
    text(out, Some(&r.error_type));
    text(out, Some(&r.error_message));
    nums(
        out,
        &[
            r.prompt_tokens,
            r.completion_tokens,
            r.cached_tokens,
            r.cache_write_tokens,
            r.reasoning_tokens,
        ],
    );
    out.push(b',');
    let _ = serde_json::to_writer(&mut *out, &r.cost_usd);
    nums(
        out,
        &[
            r.latency_ms,
            r.ttft_ms,
            latency_bucket(r.latency_ms.max(0) as u64),
            ttft_bucket(r.ttft_ms),
            r.attempts,
            i64::from(r.cache_hit),
            i64::from(r.stream),
            r.started_at,
            r.finished_at,
        ],
    );
    text(out, Some(&r.node_id));
    text(out, Some(&r.request_id));
    text(out, Some(&r.attempts_json));
    text(out, r.input.as_deref());
    text(out, r.output.as_deref());
    out.push(b']');
}

fn row(r: &sqlx::any::AnyRow, full: bool) -> DbResult<LogRow> {
    Ok(LogRow {
        id: s(r, "id")?,
        org_id: s(r, "org_id")?,
        project_id: os(r, "project_id")?,
        api_key_id: os(r, "api_key_id")?,
        model: s(r, "model")?,
        provider_type: s(r, "provider_type")?,
        credential_name: s(r, "credential_name")?,
        route: s(r, "route")?,
        status: i(r, "status")?,
        error_type: s(r, "error_type")?,
        error_message: s(r, "error_message")?,
        prompt_tokens: i(r, "prompt_tokens")?,
        completion_tokens: i(r, "completion_tokens")?,
        cached_tokens: i(r, "cached_tokens")?,
        cache_write_tokens: i(r, "cache_write_tokens")?,
        reasoning_tokens: i(r, "reasoning_tokens")?,
        cost_usd: super::f(r, "cost_usd")?,
        latency_ms: i(r, "latency_ms")?,
        ttft_ms: i(r, "ttft_ms")?,
        attempts: i(r, "attempts")?,
        cache_hit: i(r, "cache_hit")? != 0,
        stream: i(r, "stream")? != 0,
        started_at: i(r, "started_at")?,
        finished_at: i(r, "finished_at")?,
        node_id: s(r, "node_id")?,
        request_id: s(r, "request_id")?,
        attempts_json: s(r, "attempts_json")?,
        input: if full { os(r, "input")? } else { None },
        output: if full { os(r, "output")? } else { None },
    })
}

/// Filters of the logs listing.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub model: Option<String>,
    /// Inclusive status range.
    pub status: Option<(i64, i64)>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub api_key_id: Option<String>,
    /// Return rows with ids below this (newest first paging).
    pub before_id: Option<String>,
}

pub async fn list<'e, E: Executor<'e, Database = Any>>(
    e: E,
    project_id: &str,
    f: &LogFilter,
    limit: i64,
) -> DbResult<Vec<LogRow>> {
    let mut sql = format!("SELECT {COLS} FROM request_logs WHERE project_id = $1");
    let mut n = 2;
    let mut push = |cond: &str, sql: &mut String| {
        sql.push_str(&cond.replace('?', &format!("${n}")));
        n += 1;
    };
    if f.model.is_some() {
        push(" AND model = ?", &mut sql);
    }
    if f.status.is_some() {
        push(" AND status >= ?", &mut sql);
        push(" AND status <= ?", &mut sql);
    }
    if f.from.is_some() {
        push(" AND started_at >= ?", &mut sql);
    }
    if f.to.is_some() {
        push(" AND started_at < ?", &mut sql);
    }
    if f.api_key_id.is_some() {
        push(" AND api_key_id = ?", &mut sql);
    }
    if f.before_id.is_some() {
        push(" AND id < ?", &mut sql);
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${n}"));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(project_id.to_string());
    if let Some(m) = &f.model {
        q = q.bind(m.clone());
    }
    if let Some((lo, hi)) = f.status {
        q = q.bind(lo).bind(hi);
    }
    if let Some(v) = f.from {
        q = q.bind(v);
    }
    if let Some(v) = f.to {
        q = q.bind(v);
    }
    if let Some(v) = &f.api_key_id {
        q = q.bind(v.clone());
    }
    if let Some(v) = &f.before_id {
        q = q.bind(v.clone());
    }
    let rows = q.bind(limit).fetch_all(e).await?;
    rows.iter().map(|r| row(r, false)).collect()
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    e: E,
    project_id: &str,
    id: &str,
) -> DbResult<Option<LogRow>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM request_logs WHERE project_id = $1 AND id = $2"
    )))
    .bind(project_id.to_string())
    .bind(id.to_string())
    .fetch_optional(e)
    .await?;
    r.as_ref().map(|r| row(r, true)).transpose()
}

/// Deletes an org's logs, rollups and rollup marks.
pub async fn delete_org(conn: &mut sqlx::AnyConnection, org_id: &str) -> DbResult<()> {
    for table in ["request_logs", "usage_rollup", "usage_dirty"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE org_id = $1"
        )))
        .bind(org_id.to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Deletes the rollups of periods that ended before `before` (retention), with their marks;
/// the period `before` falls in lost some of its rows and is marked to be rolled up again.
pub async fn delete_rollups_older_than<'e, E: Executor<'e, Database = Any> + Copy>(
    e: E,
    before: i64,
) -> DbResult<u64> {
    let mut n = 0;
    for level in Level::ALL {
        let period = before.div_euclid(level.period_ms());
        for table in ["usage_dirty", "usage_rollup"] {
            n += sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE level = $1 AND period < $2"
            )))
            .bind(level as i64)
            .bind(period)
            .execute(e)
            .await?
            .rows_affected();
        }
        sqlx::query(
            "INSERT INTO usage_dirty (org_id, level, period, gen) SELECT DISTINCT org_id, level, period, 1 FROM usage_rollup \
             WHERE level = $1 AND period = $2 ON CONFLICT (org_id, level, period) DO UPDATE SET gen = usage_dirty.gen + 1",
        )
        .bind(level as i64)
        .bind(period)
        .execute(e)
        .await?;
    }
    Ok(n)
}

/// Deletes up to `limit` of `org_id`'s rows older than `before`; returns how many went.
pub async fn delete_older_than<'e, E: Executor<'e, Database = Any>>(
    e: E,
    org_id: &str,
    before: i64,
    limit: i64,
) -> DbResult<u64> {
    // Per org, so the `(org_id, started_at)` index finds the rows: with `started_at` alone the
    // inner select scanned the whole table, holding the write lock, however few rows were due.
    Ok(sqlx::query("DELETE FROM request_logs WHERE id IN (SELECT id FROM request_logs WHERE org_id = $1 AND started_at < $2 LIMIT $3)")
        .bind(org_id.to_string())
        .bind(before)
        .bind(limit)
        .execute(e)
        .await?
        .rows_affected())
}

/// The orgs that have request logs (the ones retention looks at). Found by stepping through
/// the `(org_id, …)` index from one org to the next (one seek per org): `SELECT DISTINCT`
/// read every row's entry, a cost growing with the table, every retention pass.
pub async fn log_org_ids<'e, E: Executor<'e, Database = Any>>(e: E) -> DbResult<Vec<String>> {
    sqlx::query(
        "WITH RECURSIVE o (org_id) AS ( \
           SELECT MIN(org_id) FROM request_logs \
           UNION ALL \
           SELECT (SELECT MIN(r.org_id) FROM request_logs r WHERE r.org_id > o.org_id) FROM o WHERE o.org_id IS NOT NULL \
         ) SELECT org_id FROM o WHERE org_id IS NOT NULL",
    )
        .fetch_all(e)
        .await?
        .iter()
        .map(|r| s(r, "org_id"))
        .collect()
}

/// One group of the usage aggregation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageGroup {
    pub key: String,
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_usd: f64,
    pub cache_hits: i64,
    /// Latency and TTFT histograms: bucket → requests.
    pub latency: BTreeMap<i64, i64>,
    pub ttft: BTreeMap<i64, i64>,
}

/// What the usage query groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageKey {
    Model,
    Provider,
    Project,
    ApiKey,
    Day,
    Hour,
}

impl UsageKey {
    pub fn parse(s: &str) -> Option<UsageKey> {
        Some(match s {
            "model" => UsageKey::Model,
            "provider" => UsageKey::Provider,
            "project" => UsageKey::Project,
            "api_key" => UsageKey::ApiKey,
            "day" => UsageKey::Day,
            "hour" => UsageKey::Hour,
            _ => return None,
        })
    }

    /// The group as text over `request_logs` (a fixed expression, never user input).
    fn raw(self) -> &'static str {
        match self {
            UsageKey::Model => "model",
            UsageKey::Provider => "provider_type",
            UsageKey::Project => "COALESCE(project_id, '')",
            UsageKey::ApiKey => "COALESCE(api_key_id, '')",
            UsageKey::Day => "CAST(started_at / 86400000 AS TEXT)",
            UsageKey::Hour => "CAST(started_at / 3600000 AS TEXT)",
        }
    }

    /// The rollup level that answers this grouping for whole periods.
    fn level(self) -> Level {
        match self {
            UsageKey::Project | UsageKey::Day | UsageKey::Hour => Level::HourByProject,
            UsageKey::Model | UsageKey::Provider | UsageKey::ApiKey => Level::DayByAll,
        }
    }

    /// The same group over `usage_rollup` (at `self.level()`).
    fn rolled(self) -> &'static str {
        match self {
            UsageKey::Model => "model",
            UsageKey::Provider => "provider_type",
            UsageKey::Project => "project_id",
            UsageKey::ApiKey => "api_key_id",
            UsageKey::Day => "CAST(period / 24 AS TEXT)",
            UsageKey::Hour => "CAST(period AS TEXT)",
        }
    }
}

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// Levels of `usage_rollup` (migration 0003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Per hour and project: usage by hour, day or project.
    HourByProject = 1,
    /// Per day, project, API key, model and provider: usage by model, provider or API key.
    DayByAll = 2,
}

impl Level {
    pub const ALL: [Level; 2] = [Level::HourByProject, Level::DayByAll];

    pub fn from_i64(n: i64) -> Option<Level> {
        Level::ALL.into_iter().find(|l| *l as i64 == n)
    }

    pub fn period_ms(self) -> i64 {
        match self {
            Level::HourByProject => HOUR_MS,
            Level::DayByAll => DAY_MS,
        }
    }

    /// The dimensions kept, as `p, k, m, v` over `request_logs`.
    fn dims(self) -> &'static str {
        match self {
            Level::HourByProject => "COALESCE(project_id, '') AS p, '' AS k, '' AS m, '' AS v",
            Level::DayByAll => {
                "COALESCE(project_id, '') AS p, COALESCE(api_key_id, '') AS k, model AS m, provider_type AS v"
            }
        }
    }
}

/// Text aggregation: SQLite's `group_concat`, PostgreSQL's `string_agg`.
fn concat_fn(backend: super::Backend) -> &'static str {
    match backend {
        super::Backend::Sqlite => "group_concat",
        super::Backend::Postgres => "string_agg",
    }
}

/// The periods `rows` fall in, at every level, in key order: (org, level, period).
pub fn period_marks(rows: &[LogRow]) -> Vec<(String, i64, i64)> {
    let marks: std::collections::BTreeSet<(&str, i64, i64)> = rows
        .iter()
        .flat_map(|r| {
            Level::ALL.map(|l| {
                (
                    r.org_id.as_str(),
                    l as i64,
                    r.started_at.div_euclid(l.period_ms()),
                )
            })
        })
        .collect();
    marks
        .into_iter()
        .map(|(org, level, period)| (org.to_string(), level, period))
        .collect()
}

/// Marks periods (`period_marks`) for the rollup job; called in the ingest transaction, so
/// marks and rows commit together. Marks are upserted in key order (no lock-order deadlock
/// between concurrent ingests on PostgreSQL). Each marking changes the mark's `gen`: a new mark
/// starts at a random one (below 2⁶², so increments never overflow) rather than at 1, so that a
/// mark the job removed and ingest then made again does not look unchanged to a rollup that read
/// the old one (`store_rollup` compares them).
pub async fn mark_periods<DB>(
    conn: &mut DB::Connection,
    marks: &[(String, i64, i64)],
) -> DbResult<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    for chunk in marks.chunks(100) {
        let mut sql = String::from("INSERT INTO usage_dirty (org_id, level, period, gen) VALUES ");
        let first_gen = 3 * chunk.len() + 1;
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${first_gen})",
                3 * i + 1,
                3 * i + 2,
                3 * i + 3
            ));
        }
        sql.push_str(
            " ON CONFLICT (org_id, level, period) DO UPDATE SET gen = usage_dirty.gen + 1",
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (org, level, period) in chunk {
            q = q.bind(org.clone()).bind(*level).bind(*period);
        }
        q = q.bind((rand::random::<u64>() >> 2) as i64);
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `sql` with `{ENDED}` replaced by the condition "the marked period has ended by `now`" (ms),
/// its two parameters ($1, $2) bound.
fn ended(sql: &str, now: i64) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
    let cond = format!(
        "((level = {} AND period < $1) OR (level = {} AND period < $2))",
        Level::HourByProject as i64,
        Level::DayByAll as i64
    );
    sqlx::query(sqlx::AssertSqlSafe(sql.replace("{ENDED}", &cond)))
        .bind(now.div_euclid(Level::HourByProject.period_ms()))
        .bind(now.div_euclid(Level::DayByAll.period_ms()))
}

/// Marked periods that have ended by `now` (ms), after `after` in the order (level, period,
/// org) — `None` from the start — and at most `limit`: (org, level, period).
pub async fn dirty_periods(
    db: &super::Db,
    now: i64,
    after: Option<&(String, Level, i64)>,
    limit: i64,
) -> DbResult<Vec<(String, Level, i64)>> {
    let (org, level, period) = match after {
        Some((org, level, period)) => (org.clone(), *level as i64, *period),
        None => (String::new(), 0, i64::MIN),
    };
    let rows = ended(
        "SELECT org_id, level, period FROM usage_dirty WHERE {ENDED} \
         AND (level > $3 OR (level = $3 AND (period > $4 OR (period = $4 AND org_id > $5)))) \
         ORDER BY level, period, org_id LIMIT $6",
        now,
    )
    .bind(level)
    .bind(period)
    .bind(org)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        if let Some(level) = Level::from_i64(i(r, "level")?) {
            out.push((s(r, "org_id")?, level, i(r, "period")?));
        }
    }
    Ok(out)
}

/// How many ended periods await the rollup job.
pub async fn count_dirty(db: &super::Db, now: i64) -> DbResult<i64> {
    let r = ended("SELECT COUNT(*) AS n FROM usage_dirty WHERE {ENDED}", now)
        .fetch_one(db.pool())
        .await?;
    i(&r, "n")
}

/// One period of an org aggregated from `request_logs` (`aggregate`), to be written to
/// `usage_rollup` if the period was not marked again meanwhile (`store_rollup`).
#[derive(Debug)]
pub struct PeriodRollup {
    org_id: String,
    level: Level,
    period: i64,
    /// The mark's `gen`, read before the rows were.
    generation: i64,
    groups: Vec<RollupGroup>,
}

impl PeriodRollup {
    /// Requests the aggregation counted.
    pub fn requests(&self) -> i64 {
        self.groups.iter().map(|g| g.sums[0]).sum()
    }
}

#[derive(Debug)]
struct RollupGroup {
    p: String,
    k: String,
    m: String,
    v: String,
    /// requests, errors, prompt, completion, cached and reasoning tokens, cache hits
    sums: [i64; 7],
    cost: f64,
    latency_hist: String,
    ttft_hist: String,
}

/// Aggregates one marked period of an org from `request_logs`, without taking the write lock:
/// reads only, so on SQLite ingest and the admin API go on writing meanwhile (the aggregation
/// of a busy hour or day reads every row in it; done inside the write transaction it held the
/// one write lock for as long). `None` when the period is not marked.
pub async fn aggregate(
    db: &super::Db,
    org_id: &str,
    level: Level,
    period: i64,
) -> DbResult<Option<PeriodRollup>> {
    // The mark first, then the rows: rows committed after this read come with a new `gen`, so
    // `store_rollup` refuses an aggregation that might have missed some.
    let Some(r) =
        sqlx::query("SELECT gen FROM usage_dirty WHERE org_id = $1 AND level = $2 AND period = $3")
            .bind(org_id.to_string())
            .bind(level as i64)
            .bind(period)
            .fetch_optional(db.pool())
            .await?
    else {
        return Ok(None);
    };
    let generation = i(&r, "gen")?;
    let groups = aggregate_groups(db.pool(), db.backend(), org_id, level, period).await?;
    Ok(Some(PeriodRollup {
        org_id: org_id.to_string(),
        level,
        period,
        generation,
        groups,
    }))
}

/// The period's groups, read from `request_logs` over `e`.
async fn aggregate_groups<'e, E: Executor<'e, Database = Any>>(
    e: E,
    backend: super::Backend,
    org_id: &str,
    level: Level,
    period: i64,
) -> DbResult<Vec<RollupGroup>> {
    let agg = concat_fn(backend);
    let dims = level.dims();
    let range = "org_id = $1 AND started_at >= $2 AND started_at < $3";
    // Sums are cast back to BIGINT: PostgreSQL's SUM over BIGINT is NUMERIC.
    let sql = format!(
        "SELECT a.p, a.k, a.m, a.v, CAST(a.n AS BIGINT) AS n, CAST(a.e AS BIGINT) AS e, CAST(a.pt AS BIGINT) AS pt, \
           CAST(a.ct AS BIGINT) AS ct, CAST(a.ca AS BIGINT) AS ca, CAST(a.rt AS BIGINT) AS rt, a.cost, \
           CAST(a.hits AS BIGINT) AS hits, a.h AS lh, COALESCE(t.h, '') AS th FROM ( \
           SELECT p, k, m, v, SUM(n) AS n, SUM(e) AS e, SUM(pt) AS pt, SUM(ct) AS ct, SUM(ca) AS ca, SUM(rt) AS rt, SUM(cost) AS cost, SUM(hits) AS hits, \
             {agg}(CAST(b AS TEXT) || ':' || CAST(n AS TEXT), ' ') AS h FROM ( \
             SELECT {dims}, latency_bucket AS b, COUNT(*) AS n, SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS e, SUM(prompt_tokens) AS pt, \
               SUM(completion_tokens) AS ct, SUM(cached_tokens) AS ca, SUM(reasoning_tokens) AS rt, SUM(cost_usd) AS cost, SUM(cache_hit) AS hits \
             FROM request_logs WHERE {range} GROUP BY 1, 2, 3, 4, 5) l GROUP BY 1, 2, 3, 4) a \
         LEFT JOIN ( \
           SELECT p, k, m, v, {agg}(CAST(b AS TEXT) || ':' || CAST(n AS TEXT), ' ') AS h FROM ( \
             SELECT {dims}, ttft_bucket AS b, COUNT(*) AS n FROM request_logs WHERE {range} AND ttft_bucket >= 0 GROUP BY 1, 2, 3, 4, 5) x \
           GROUP BY 1, 2, 3, 4) t \
         ON t.p = a.p AND t.k = a.k AND t.m = a.m AND t.v = a.v"
    );
    let p = level.period_ms();
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org_id.to_string())
        .bind(period * p)
        .bind((period + 1) * p)
        .fetch_all(e)
        .await?;
    let mut groups = Vec::with_capacity(rows.len());
    for r in &rows {
        groups.push(RollupGroup {
            p: s(r, "p")?,
            k: s(r, "k")?,
            m: s(r, "m")?,
            v: s(r, "v")?,
            sums: [
                i(r, "n")?,
                i(r, "e")?,
                i(r, "pt")?,
                i(r, "ct")?,
                i(r, "ca")?,
                i(r, "rt")?,
                i(r, "hits")?,
            ],
            cost: super::of(r, "cost")?.unwrap_or(0.0),
            latency_hist: s(r, "lh")?,
            ttft_hist: s(r, "th")?,
        });
    }
    Ok(groups)
}

/// Groups per INSERT when a period's rollup rows are written, at most.
const ROLLUP_ROWS_PER_INSERT: usize = 64;
/// On PostgreSQL, bytes of a rollup INSERT at most (estimated): a statement over one TLS record
/// (16 KiB) waits for the server's delayed ACK (see `PG_STATEMENT_BYTES`).
const PG_ROLLUP_STATEMENT_BYTES: usize = 12 << 10;

/// Writes an aggregation (`aggregate`) in place of the period's rollup rows and removes its mark,
/// in one transaction, if the mark's `gen` is still the one read before the rows; otherwise
/// (marked again since, or gone) writes nothing and returns false.
pub async fn store_rollup(db: &super::Db, r: &PeriodRollup) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    if !write_rollup(&mut tx, db.backend(), r).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// Rolls one period up with its aggregation inside the write transaction, as the job did before
/// it aggregated outside it: the write lock (SQLite) or the mark's row lock (PostgreSQL) is held
/// while the rows are read, so ingest cannot mark the period meanwhile and the result is always
/// stored. For a period marked again during every attempt of `aggregate` and `store_rollup`
/// (the job's fallback, so a period that keeps receiving records is still rolled up). False when
/// the mark was gone.
pub async fn roll_up_locked(
    db: &super::Db,
    org_id: &str,
    level: Level,
    period: i64,
) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    // A write first: on PostgreSQL it takes the mark's row lock (on SQLite `begin` already holds
    // the write lock).
    let Some(row) = sqlx::query(
        "UPDATE usage_dirty SET gen = gen WHERE org_id = $1 AND level = $2 AND period = $3 RETURNING gen",
    )
    .bind(org_id.to_string())
    .bind(level as i64)
    .bind(period)
    .fetch_optional(&mut *tx)
    .await?
    else {
        tx.rollback().await?;
        return Ok(false);
    };
    let r = PeriodRollup {
        org_id: org_id.to_string(),
        level,
        period,
        generation: i(&row, "gen")?,
        groups: aggregate_groups(&mut *tx, db.backend(), org_id, level, period).await?,
    };
    let stored = write_rollup(&mut tx, db.backend(), &r).await?;
    tx.commit().await?;
    Ok(stored)
}

/// In `tx`: removes the period's mark if its `gen` is still the aggregation's and then replaces
/// the period's rollup rows; false (nothing written) when the mark changed or is gone.
async fn write_rollup(
    tx: &mut super::Tx,
    backend: super::Backend,
    r: &PeriodRollup,
) -> DbResult<bool> {
    // The mark goes first, and only if unchanged. On PostgreSQL its row lock makes an ingest
    // marking this period meanwhile wait for this commit and then make a new mark; on SQLite
    // `begin` already holds the write lock.
    let unchanged = sqlx::query(
        "DELETE FROM usage_dirty WHERE org_id = $1 AND level = $2 AND period = $3 AND gen = $4",
    )
    .bind(r.org_id.clone())
    .bind(r.level as i64)
    .bind(r.period)
    .bind(r.generation)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !unchanged {
        return Ok(false);
    }
    sqlx::query("DELETE FROM usage_rollup WHERE org_id = $1 AND level = $2 AND period = $3")
        .bind(r.org_id.clone())
        .bind(r.level as i64)
        .bind(r.period)
        .execute(&mut **tx)
        .await?;
    let max_bytes = match backend {
        super::Backend::Sqlite => usize::MAX,
        super::Backend::Postgres => PG_ROLLUP_STATEMENT_BYTES,
    };
    let mut rest = &r.groups[..];
    while !rest.is_empty() {
        // Up to ROLLUP_ROWS_PER_INSERT groups, within max_bytes (at least one group): per group
        // about 100 bytes of SQL text, 14 parameters' lengths (4 bytes each) and 10 numbers
        // (8 bytes each), and its texts.
        let mut n = 0;
        let mut bytes = 0;
        while n < rest.len() && n < ROLLUP_ROWS_PER_INSERT {
            let g = &rest[n];
            let row = 256
                + g.p.len()
                + g.k.len()
                + g.m.len()
                + g.v.len()
                + g.latency_hist.len()
                + g.ttft_hist.len();
            if n > 0 && bytes + row > max_bytes {
                break;
            }
            bytes += row;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        // The org is $1 in every row; level and period are integers of ours.
        let mut sql = String::from(
            "INSERT INTO usage_rollup (org_id, level, period, project_id, api_key_id, model, provider_type, requests, errors, \
             prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cache_hits, cost_usd, latency_hist, ttft_hist) VALUES ",
        );
        for gi in 0..chunk.len() {
            if gi > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("($1, {}, {}", r.level as i64, r.period));
            for c in 0..14 {
                sql.push_str(&format!(", ${}", 2 + gi * 14 + c));
            }
            sql.push(')');
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(r.org_id.clone());
        for g in chunk {
            q = q
                .bind(g.p.clone())
                .bind(g.k.clone())
                .bind(g.m.clone())
                .bind(g.v.clone());
            for n in g.sums {
                q = q.bind(n);
            }
            q = q
                .bind(g.cost)
                .bind(g.latency_hist.clone())
                .bind(g.ttft_hist.clone());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(true)
}

/// Adds `bucket:count` pairs (space separated) to a histogram.
fn add_hist(h: &mut BTreeMap<i64, i64>, text: &str) {
    for pair in text.split_ascii_whitespace() {
        if let Some((b, n)) = pair.split_once(':')
            && let (Ok(b), Ok(n)) = (b.parse::<i64>(), n.parse::<i64>())
            && b >= 0
        {
            *h.entry(b).or_default() += n;
        }
    }
}

/// Adds a usage row's sums (columns errors, p, c, ca, r, cost, hits) to its group.
fn add_sums(g: &mut UsageGroup, r: &sqlx::any::AnyRow) -> DbResult<()> {
    g.errors += super::oi(r, "errors")?.unwrap_or(0);
    g.prompt_tokens += super::oi(r, "p")?.unwrap_or(0);
    g.completion_tokens += super::oi(r, "c")?.unwrap_or(0);
    g.cached_tokens += super::oi(r, "ca")?.unwrap_or(0);
    g.reasoning_tokens += super::oi(r, "r")?.unwrap_or(0);
    g.cost_usd += super::of(r, "cost")?.unwrap_or(0.0);
    g.cache_hits += super::oi(r, "hits")?.unwrap_or(0);
    Ok(())
}

fn group(groups: &mut BTreeMap<String, UsageGroup>, key: String) -> &mut UsageGroup {
    match groups.entry(key) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(e) => {
            let key = e.key().clone();
            e.insert(UsageGroup {
                key,
                ..Default::default()
            })
        }
    }
}

/// ` AND project_id = $n` when the query is scoped to a project.
fn project_scope(project_id: Option<&str>, n: usize) -> String {
    project_id
        .map(|_| format!(" AND project_id = ${n}"))
        .unwrap_or_default()
}

/// Usage of an org (or one of its projects) over `[from, to)` (ms), per group, with latency
/// and TTFT histograms. Whole periods of the grouping's rollup level (hours or days) come from
/// `usage_rollup`; the partial periods at the edges and periods the rollup job has not caught
/// up with (still marked) from `request_logs`.
pub async fn usage(
    db: &super::Db,
    org_id: &str,
    project_id: Option<&str>,
    from: i64,
    to: i64,
    key: UsageKey,
) -> DbResult<Vec<UsageGroup>> {
    let mut groups: BTreeMap<String, UsageGroup> = BTreeMap::new();
    let level = key.level();
    let p = level.period_ms();
    // Whole periods inside the range: [first, end).
    let first = from.div_euclid(p) + i64::from(from.rem_euclid(p) != 0);
    let end = to.div_euclid(p);
    let mut raw: Vec<(i64, i64)> = Vec::new();
    if first >= end {
        raw.push((from, to));
    } else {
        let dirty: Vec<i64> = sqlx::query(
            "SELECT period FROM usage_dirty WHERE org_id = $1 AND level = $2 AND period >= $3 AND period < $4 ORDER BY period",
        )
        .bind(org_id.to_string())
        .bind(level as i64)
        .bind(first)
        .bind(end)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| i(r, "period"))
        .collect::<DbResult<_>>()?;
        let mut push = |a: i64, b: i64| match raw.last_mut() {
            Some(last) if last.1 == a => last.1 = b,
            _ if a < b => raw.push((a, b)),
            _ => {}
        };
        push(from, first * p);
        for d in &dirty {
            push(d * p, (d + 1) * p);
        }
        push(end * p, to);
        rolled_usage(
            db,
            org_id,
            project_id,
            level,
            (first, end),
            &dirty,
            key,
            &mut groups,
        )
        .await?;
    }
    for (a, b) in raw {
        raw_usage(db, org_id, project_id, a, b, key, &mut groups).await?;
    }
    Ok(groups.into_values().collect())
}

#[allow(clippy::too_many_arguments)]
async fn rolled_usage(
    db: &super::Db,
    org_id: &str,
    project_id: Option<&str>,
    level: Level,
    (first, end): (i64, i64),
    skip: &[i64],
    key: UsageKey,
    groups: &mut BTreeMap<String, UsageGroup>,
) -> DbResult<()> {
    let scope = project_scope(project_id, 5);
    // Integers read back from the database: safe to inline.
    let skip = if skip.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = skip.iter().map(i64::to_string).collect();
        format!(" AND period NOT IN ({})", list.join(","))
    };
    let agg = concat_fn(db.backend());
    let k = key.rolled();
    let sql = format!(
        "SELECT {k} AS k, CAST(SUM(requests) AS BIGINT) AS requests, CAST(SUM(errors) AS BIGINT) AS errors, CAST(SUM(prompt_tokens) AS BIGINT) AS p, \
         CAST(SUM(completion_tokens) AS BIGINT) AS c, CAST(SUM(cached_tokens) AS BIGINT) AS ca, CAST(SUM(reasoning_tokens) AS BIGINT) AS r, \
         SUM(cost_usd) AS cost, CAST(SUM(cache_hits) AS BIGINT) AS hits, {agg}(latency_hist, ' ') AS lh, {agg}(ttft_hist, ' ') AS th \
         FROM usage_rollup WHERE org_id = $1 AND level = $2 AND period >= $3 AND period < $4{scope}{skip} GROUP BY 1"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org_id.to_string())
        .bind(level as i64)
        .bind(first)
        .bind(end);
    if let Some(p) = project_id {
        q = q.bind(p.to_string());
    }
    for r in q.fetch_all(db.pool()).await? {
        let g = group(groups, s(&r, "k")?);
        g.requests += i(&r, "requests")?;
        add_sums(g, &r)?;
        add_hist(&mut g.latency, &os(&r, "lh")?.unwrap_or_default());
        add_hist(&mut g.ttft, &os(&r, "th")?.unwrap_or_default());
    }
    Ok(())
}

async fn raw_usage(
    db: &super::Db,
    org_id: &str,
    project_id: Option<&str>,
    from: i64,
    to: i64,
    key: UsageKey,
    groups: &mut BTreeMap<String, UsageGroup>,
) -> DbResult<()> {
    let scope = project_scope(project_id, 4);
    let k = key.raw();
    // Two scans: sums per (group, latency bucket) — added up per group here, and the buckets
    // are the latency histogram — then the TTFT histogram. On SQLite both are answered from the
    // covering index `request_logs_usage` (migration 0002).
    let sums = format!(
        // CAST: PostgreSQL sums BIGINT columns as NUMERIC, which the Any driver cannot decode.
        "SELECT {k} AS k, latency_bucket AS b, COUNT(*) AS requests, CAST(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS BIGINT) AS errors, CAST(SUM(prompt_tokens) AS BIGINT) AS p, \
         CAST(SUM(completion_tokens) AS BIGINT) AS c, CAST(SUM(cached_tokens) AS BIGINT) AS ca, CAST(SUM(reasoning_tokens) AS BIGINT) AS r, SUM(cost_usd) AS cost, \
         CAST(SUM(cache_hit) AS BIGINT) AS hits \
         FROM request_logs WHERE org_id = $1 AND started_at >= $2 AND started_at < $3{scope} GROUP BY 1, 2"
    );
    let ttft_sql = format!(
        "SELECT {k} AS k, ttft_bucket AS b, COUNT(*) AS n FROM request_logs WHERE org_id = $1 AND started_at >= $2 AND started_at < $3{scope} AND ttft_bucket >= 0 GROUP BY 1, 2"
    );
    let bind = |sql: String| {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(org_id.to_string())
            .bind(from)
            .bind(to);
        if let Some(p) = project_id {
            q = q.bind(p.to_string());
        }
        q
    };
    for r in bind(sums).fetch_all(db.pool()).await? {
        let g = group(groups, s(&r, "k")?);
        let n = i(&r, "requests")?;
        let b = i(&r, "b")?;
        if b >= 0 {
            *g.latency.entry(b).or_default() += n;
        }
        g.requests += n;
        add_sums(g, &r)?;
    }
    for r in bind(ttft_sql).fetch_all(db.pool()).await? {
        let g = group(groups, s(&r, "k")?);
        *g.ttft.entry(i(&r, "b")?).or_default() += i(&r, "n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_about_ten_percent_wide() {
        for ms in [1u64, 10, 100, 1000, 12_345, 600_000] {
            let v = bucket_value(latency_bucket(ms));
            assert!(
                (v - ms as f64).abs() <= ms as f64 * 0.1 + 1.0,
                "{ms} -> {v}"
            );
        }
        assert!(latency_bucket(0) >= 0);
    }

    /// Every batch size splits into statements of the few prepared shapes, whole chunks first,
    /// with at most 12 statements beyond the whole chunks.
    #[test]
    fn batches_split_into_a_few_statement_shapes() {
        for n in 1..=2_000usize {
            let (mut left, mut sizes) = (n, Vec::new());
            while left > 0 {
                let c = SQLITE_CHUNK_ROWS[sqlite_chunk(left)];
                assert!(
                    SQLITE_CHUNK_ROWS.contains(&c) && c <= left,
                    "{n}: {c} of {left}"
                );
                sizes.push(c);
                left -= c;
            }
            assert!(sizes.is_sorted_by(|a, b| a >= b), "{n}: {sizes:?}");
            let whole = n / SQLITE_ROWS_PER_INSERT;
            assert_eq!(
                sizes
                    .iter()
                    .filter(|&&c| c == SQLITE_ROWS_PER_INSERT)
                    .count(),
                whole
            );
            assert!(sizes.len() - whole <= 12, "{n}: {sizes:?}");
        }
        assert_eq!(SQLITE_CHUNK_ROWS[sqlite_chunk(255)], 64);
        assert_eq!(SQLITE_CHUNK_ROWS[sqlite_chunk(3)], 1);
    }
}
