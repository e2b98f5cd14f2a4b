//! Usage of an organization over a time range, grouped by model, provider, project, API key,
//! day or hour: requests, errors, tokens, cost, latency p50/p95 and time-to-first-token p50.
//! Percentiles come from per-row latency buckets (≈10% resolution), aggregated in SQL. Whole
//! hours or days are read from the rollups (`service::rollup`), the rest from the logs.

use serde::{Deserialize, Serialize};

use crate::db;
use crate::domain::{OrgId, ProjectId, time::parse_instant, time::rfc3339};
use crate::error::{ApiError, ApiResult};
use crate::service::{Principal, auth};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// RFC 3339 or unix seconds; default: 7 days before `to`.
    pub from: Option<String>,
    /// Default: now.
    pub to: Option<String>,
    /// `model`, `provider`, `project`, `api_key`, `day` (default) or `hour`.
    pub group_by: Option<String>,
    pub project_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    /// The group: a model, provider, project id, API key id, or the start of the day/hour.
    pub key: String,
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub cache_hits: i64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub from: String,
    pub to: String,
    pub group_by: String,
    pub rows: Vec<UsageRow>,
    pub totals: UsageRow,
}

fn percentile(hist: &[(i64, i64)], p: f64) -> Option<f64> {
    let total: i64 = hist.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let mut sorted = hist.to_vec();
    sorted.sort();
    let target = (p * total as f64).ceil().max(1.0) as i64;
    let mut cum = 0;
    for (b, n) in sorted {
        cum += n;
        if cum >= target {
            return Some((db::logs::bucket_value(b) * 10.0).round() / 10.0);
        }
    }
    None
}

pub async fn query(
    st: &AppState,
    who: &Principal,
    org_id: &OrgId,
    q: UsageQuery,
) -> ApiResult<UsageReport> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_read()?;
    let to = match q.to.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => parse_instant("to", s)?,
        None => st.now_ms() + 1,
    };
    let from = match q.from.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => parse_instant("from", s)?,
        None => to - 7 * 86_400_000,
    };
    if from >= to {
        return Err(ApiError::validation("from", "must be before `to`"));
    }
    let group_by = q.group_by.unwrap_or_else(|| "day".into());
    let Some(key) = db::logs::UsageKey::parse(&group_by) else {
        return Err(ApiError::validation(
            "group_by",
            "must be model, provider, project, api_key, day or hour",
        ));
    };
    let mut project = q
        .project_id
        .filter(|p| !p.is_empty())
        .map(|p| ProjectId::parse("project_id", &p))
        .transpose()?;
    if let Some(scope) = &a.project_scope {
        if project.as_ref().is_some_and(|p| p != scope) {
            return Err(ApiError::not_found("project"));
        }
        project = Some(scope.clone());
    }
    if let Some(p) = &project {
        let row = db::projects::get(st.db().pool(), p.as_str()).await?;
        if row.is_none_or(|r| r.org_id != org_id.0) {
            return Err(ApiError::not_found("project"));
        }
    }
    let groups = db::logs::usage(
        st.db(),
        org_id.as_str(),
        project.as_ref().map(|p| p.as_str()),
        from,
        to,
        key,
    )
    .await?;
    let unit = match key {
        db::logs::UsageKey::Day => Some(db::logs::DAY_MS),
        db::logs::UsageKey::Hour => Some(db::logs::HOUR_MS),
        _ => None,
    };
    let mut totals = UsageRow {
        key: "total".into(),
        requests: 0,
        errors: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        cached_tokens: 0,
        reasoning_tokens: 0,
        total_tokens: 0,
        cost_usd: 0.0,
        cache_hits: 0,
        latency_p50_ms: None,
        latency_p95_ms: None,
        ttft_p50_ms: None,
    };
    let mut all_lat: Vec<(i64, i64)> = Vec::new();
    let mut all_ttft: Vec<(i64, i64)> = Vec::new();
    let mut rows = Vec::new();
    for g in groups {
        let l: Vec<(i64, i64)> = g.latency.into_iter().collect();
        let t: Vec<(i64, i64)> = g.ttft.into_iter().collect();
        all_lat.extend(&l);
        all_ttft.extend(&t);
        totals.requests += g.requests;
        totals.errors += g.errors;
        totals.prompt_tokens += g.prompt_tokens;
        totals.completion_tokens += g.completion_tokens;
        totals.cached_tokens += g.cached_tokens;
        totals.reasoning_tokens += g.reasoning_tokens;
        totals.cost_usd += g.cost_usd;
        totals.cache_hits += g.cache_hits;
        let key = match unit {
            Some(u) => g
                .key
                .parse::<i64>()
                .map(|n| rfc3339(n * u))
                .unwrap_or(g.key.clone()),
            None => g.key.clone(),
        };
        rows.push(UsageRow {
            key,
            requests: g.requests,
            errors: g.errors,
            prompt_tokens: g.prompt_tokens,
            completion_tokens: g.completion_tokens,
            cached_tokens: g.cached_tokens,
            reasoning_tokens: g.reasoning_tokens,
            total_tokens: g.prompt_tokens + g.completion_tokens,
            cost_usd: g.cost_usd,
            cache_hits: g.cache_hits,
            latency_p50_ms: percentile(&l, 0.5),
            latency_p95_ms: percentile(&l, 0.95),
            ttft_p50_ms: percentile(&t, 0.5),
        });
    }
    totals.total_tokens = totals.prompt_tokens + totals.completion_tokens;
    totals.latency_p50_ms = percentile(&all_lat, 0.5);
    totals.latency_p95_ms = percentile(&all_lat, 0.95);
    totals.ttft_p50_ms = percentile(&all_ttft, 0.5);
    Ok(UsageReport {
        from: rfc3339(from),
        to: rfc3339(to),
        group_by,
        rows,
        totals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_buckets() {
        let b = |ms: u64| db::logs::latency_bucket(ms);
        let hist = vec![(b(100), 50), (b(200), 45), (b(1000), 5)];
        let p50 = percentile(&hist, 0.5).unwrap();
        let p95 = percentile(&hist, 0.95).unwrap();
        assert!((90.0..=110.0).contains(&p50), "{p50}");
        assert!((180.0..=220.0).contains(&p95), "{p95}");
        assert_eq!(percentile(&[], 0.5), None);
    }
}
