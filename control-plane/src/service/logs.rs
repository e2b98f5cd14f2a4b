//! Request logs of a project: newest first with filters and cursor paging, and one log in full
//! (input, output, attempts, timings). Members may read them; project-restricted keys only
//! their project's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::{self, logs::LogFilter, logs::LogRow};
use crate::domain::{LogId, ProjectId, time::parse_instant};
use crate::error::{ApiError, ApiResult};
use crate::service::{Principal, auth};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    pub model: Option<String>,
    /// `2xx`, `4xx`, `5xx`, `error` (≥ 400) or an exact status such as `429`.
    pub status: Option<String>,
    /// RFC 3339 or unix seconds.
    pub from: Option<String>,
    pub to: Option<String>,
    pub api_key_id: Option<String>,
    /// 1..=200, default 50.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogSummary {
    pub id: String,
    pub project_id: Option<String>,
    pub api_key_id: Option<String>,
    pub model: String,
    pub provider: String,
    pub credential_name: String,
    pub route: String,
    pub status: i64,
    pub error_type: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub attempts: i64,
    pub cache_hit: bool,
    pub stream: bool,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogPage {
    pub logs: Vec<LogSummary>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogDetail {
    #[serde(flatten)]
    pub summary: LogSummary,
    pub error_message: String,
    pub request_id: String,
    pub node_id: String,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub finished_at: i64,
    /// Every upstream attempt: credential, provider, status, error, latency.
    #[schema(value_type = Object)]
    pub attempts_detail: Value,
    /// The request (messages, parameters), when the call was logged with `x-bt-parent`.
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// The response (a stream assembled), when logged.
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
}

fn summary(r: &LogRow) -> LogSummary {
    LogSummary {
        id: r.id.clone(),
        project_id: r.project_id.clone(),
        api_key_id: r.api_key_id.clone(),
        model: r.model.clone(),
        provider: r.provider_type.clone(),
        credential_name: r.credential_name.clone(),
        route: r.route.clone(),
        status: r.status,
        error_type: r.error_type.clone(),
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
        cached_tokens: r.cached_tokens,
        cache_write_tokens: r.cache_write_tokens,
        reasoning_tokens: r.reasoning_tokens,
        total_tokens: r.prompt_tokens + r.completion_tokens,
        cost_usd: r.cost_usd,
        latency_ms: r.latency_ms,
        ttft_ms: (r.ttft_ms > 0).then_some(r.ttft_ms),
        attempts: r.attempts,
        cache_hit: r.cache_hit,
        stream: r.stream,
        started_at: r.started_at,
    }
}

pub fn parse_status(s: &str) -> ApiResult<(i64, i64)> {
    match s {
        "2xx" => Ok((200, 299)),
        "3xx" => Ok((300, 399)),
        "4xx" => Ok((400, 499)),
        "5xx" => Ok((500, 599)),
        "error" => Ok((400, 999)),
        n => n
            .parse::<i64>()
            .ok()
            .filter(|n| (100..=999).contains(n))
            .map(|n| (n, n))
            .ok_or_else(|| {
                ApiError::validation("status", "expected 2xx, 4xx, 5xx, error or a status code")
            }),
    }
}

pub async fn list(
    st: &AppState,
    who: &Principal,
    project_id: &ProjectId,
    q: LogQuery,
) -> ApiResult<LogPage> {
    let (p, a) = auth::project_access(st, who, project_id).await?;
    a.require_read()?;
    let limit = i64::from(q.limit.unwrap_or(50).clamp(1, 200));
    let filter = LogFilter {
        model: q.model.filter(|m| !m.is_empty()),
        status: q
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(parse_status)
            .transpose()?,
        from: q
            .from
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_instant("from", s))
            .transpose()?,
        to: q
            .to
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_instant("to", s))
            .transpose()?,
        api_key_id: q.api_key_id.filter(|s| !s.is_empty()),
        before_id: q
            .cursor
            .filter(|s| !s.is_empty())
            .map(|c| LogId::parse("cursor", &c).map(|l| l.0))
            .transpose()?,
    };
    let rows = db::logs::list(st.db().pool(), &p.id, &filter, limit).await?;
    let next_cursor = if rows.len() as i64 == limit {
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(LogPage {
        logs: rows.iter().map(summary).collect(),
        next_cursor,
    })
}

pub async fn get(
    st: &AppState,
    who: &Principal,
    project_id: &ProjectId,
    log_id: &LogId,
) -> ApiResult<LogDetail> {
    let (p, a) = auth::project_access(st, who, project_id).await?;
    a.require_read()?;
    let r = db::logs::get(st.db().pool(), &p.id, log_id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("log"))?;
    let parse = |s: &Option<String>| s.as_deref().and_then(|t| serde_json::from_str(t).ok());
    Ok(LogDetail {
        summary: summary(&r),
        error_message: r.error_message.clone(),
        request_id: r.request_id.clone(),
        node_id: r.node_id.clone(),
        finished_at: r.finished_at,
        attempts_detail: serde_json::from_str(&r.attempts_json).unwrap_or(Value::Array(vec![])),
        input: parse(&r.input),
        output: parse(&r.output),
    })
}
