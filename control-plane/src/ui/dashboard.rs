//! Logs (per project: filtered, paged table and a detail view) and the usage dashboard
//! (requests, errors, tokens, cost and latency over time, and by model, provider, project and
//! key). Charts are SVG rendered here: no chart library, no script.

use std::collections::HashMap;
use std::fmt::Write as _;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Layout, Viewer, api_error_page, escape, fmt_time, layout, render};
use crate::domain::time::rfc3339;
use crate::domain::{LogId, OrgId, ProjectId};
use crate::service::logs::{self, LogQuery};
use crate::service::usage::{self, UsageQuery, UsageRow};
use crate::service::{api_keys, projects};
use crate::state::AppState;

type Page = Result<Response, Response>;

// ---- logs ----

#[derive(Debug, Default, Deserialize)]
pub struct LogFilters {
    #[serde(default)]
    model: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    cursor: String,
}

pub struct LogRowView {
    id: String,
    time: String,
    model: String,
    provider: String,
    status: i64,
    error: bool,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost: String,
    latency_ms: i64,
    stream: bool,
}

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    l: Layout,
    f: LogFilters,
    rows: Vec<LogRowView>,
    next: String,
    error: String,
    error_field: String,
}

/// `datetime-local` inputs send `2026-11-25T06:20`; the API wants RFC 3339.
fn instant(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.len() == 16 && s.as_bytes().get(10) == Some(&b'T') {
        return Some(format!("{s}:00Z"));
    }
    Some(s.to_string())
}

fn cost(c: f64) -> String {
    if c == 0.0 {
        "$0".into()
    } else if c < 0.01 {
        format!("${c:.6}")
    } else {
        format!("${c:.4}")
    }
}

pub async fn logs(
    State(st): State<AppState>,
    v: Viewer,
    Path(pid): Path<String>,
    Query(f): Query<LogFilters>,
) -> Page {
    let pid = ProjectId::parse("project_id", &pid).map_err(api_error_page)?;
    let p = projects::get(&st, &v.who, &pid)
        .await
        .map_err(api_error_page)?;
    let title = format!("Logs · {}", p.name);
    let l = layout(&st, &v, &OrgId(p.org_id.clone()), Some(&p), "logs", &title)
        .await
        .map_err(api_error_page)?;
    let q = LogQuery {
        model: Some(f.model.trim().to_string()).filter(|s| !s.is_empty()),
        status: Some(f.status.clone()).filter(|s| !s.is_empty()),
        from: instant(&f.from),
        to: instant(&f.to),
        api_key_id: None,
        limit: Some(50),
        cursor: Some(f.cursor.clone()).filter(|s| !s.is_empty()),
    };
    let (rows, next, error, error_field, status) = match logs::list(&st, &v.who, &pid, q).await {
        Ok(page) => (
            page.logs
                .iter()
                .map(|r| LogRowView {
                    id: r.id.clone(),
                    time: fmt_time(r.started_at),
                    model: r.model.clone(),
                    provider: r.provider.clone(),
                    status: r.status,
                    error: r.status >= 400 || r.status == 0,
                    prompt_tokens: r.prompt_tokens,
                    completion_tokens: r.completion_tokens,
                    cost: cost(r.cost_usd),
                    latency_ms: r.latency_ms,
                    stream: r.stream,
                })
                .collect(),
            page.next_cursor.unwrap_or_default(),
            String::new(),
            String::new(),
            StatusCode::OK,
        ),
        // A bad filter is the user's mistake: show it next to the filter, keep the page.
        Err(e) if e.code.http_status().is_client_error() => (
            Vec::new(),
            String::new(),
            e.message.clone(),
            e.field.clone().unwrap_or_default(),
            StatusCode::BAD_REQUEST,
        ),
        Err(e) => return Err(api_error_page(e)),
    };
    Ok(render(
        status,
        &LogsPage {
            l,
            f,
            rows,
            next,
            error,
            error_field,
        },
    ))
}

#[derive(Template)]
#[template(path = "log_detail.html")]
struct LogDetailPage {
    l: Layout,
    d: logs::LogDetail,
    started: String,
    finished: String,
    cost: String,
    input: String,
    output: String,
    attempts: String,
}

fn pretty(v: &Option<serde_json::Value>) -> String {
    match v {
        None => String::new(),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

pub async fn log_detail(
    State(st): State<AppState>,
    v: Viewer,
    Path((pid, lid)): Path<(String, String)>,
) -> Page {
    let pid = ProjectId::parse("project_id", &pid).map_err(api_error_page)?;
    let lid = LogId::parse("log_id", &lid).map_err(api_error_page)?;
    let p = projects::get(&st, &v.who, &pid)
        .await
        .map_err(api_error_page)?;
    let d = logs::get(&st, &v.who, &pid, &lid)
        .await
        .map_err(api_error_page)?;
    let l = layout(
        &st,
        &v,
        &OrgId(p.org_id.clone()),
        Some(&p),
        "logs",
        "Request",
    )
    .await
    .map_err(api_error_page)?;
    Ok(render(
        StatusCode::OK,
        &LogDetailPage {
            started: fmt_time(d.summary.started_at),
            finished: fmt_time(d.finished_at),
            cost: cost(d.summary.cost_usd),
            input: pretty(&d.input),
            output: pretty(&d.output),
            attempts: serde_json::to_string_pretty(&d.attempts_detail).unwrap_or_default(),
            l,
            d,
        },
    ))
}

// ---- dashboard ----

#[derive(Debug, Default, Deserialize)]
pub struct DashQuery {
    #[serde(default)]
    range: String,
    #[serde(default)]
    project_id: String,
}

pub struct Breakdown {
    title: &'static str,
    rows: Vec<Stat>,
}

/// One row of figures, formatted for display.
pub struct Stat {
    name: String,
    requests: i64,
    errors: i64,
    tokens: i64,
    cost: String,
    p50: String,
    p95: String,
}

impl Stat {
    fn of(name: String, r: &UsageRow) -> Stat {
        Stat {
            name,
            requests: r.requests,
            errors: r.errors,
            tokens: r.total_tokens,
            cost: cost(r.cost_usd),
            p50: ms(r.latency_p50_ms),
            p95: ms(r.latency_p95_ms),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    l: Layout,
    range: String,
    project_id: String,
    totals: Stat,
    /// (caption, SVG) per chart.
    charts: Vec<(&'static str, String)>,
    breakdowns: Vec<Breakdown>,
}

fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.0} ms"))
        .unwrap_or_else(|| "–".into())
}

/// One bar chart: a bar per bucket, an optional second series drawn over it (errors over
/// requests, p95 over p50), the maximum on the axis, first and last bucket labels.
fn bar_chart(
    title: &str,
    labels: &[String],
    main: &[f64],
    over: Option<&[f64]>,
    unit: &str,
) -> String {
    let (w, h, pad) = (640.0_f64, 160.0_f64, 28.0_f64);
    let max = main
        .iter()
        .chain(over.unwrap_or(&[]).iter())
        .copied()
        .fold(0.0_f64, f64::max);
    let n = main.len().max(1) as f64;
    let slot = (w - pad) / n;
    let bar = (slot * 0.8).max(1.0);
    let y = |v: f64| if max > 0.0 { (h - pad) * v / max } else { 0.0 };
    let mut s = String::new();
    let total: f64 = main.iter().sum();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}: {total:.2} {u} in range"><title>{t}</title>"#,
        t = escape(title),
        u = escape(unit)
    );
    let _ = write!(
        s,
        r#"<line class="axis" x1="{pad}" y1="{b}" x2="{w}" y2="{b}"/><text class="tick" x="0" y="12">{m}</text><text class="tick" x="0" y="{b}">0</text>"#,
        b = h - pad,
        m = compact(max)
    );
    for (i, v) in main.iter().enumerate() {
        let x = pad + slot * i as f64 + (slot - bar) / 2.0;
        let bh = y(*v);
        let _ = write!(
            s,
            r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}"><title>{}: {} {}</title></rect>"#,
            h - pad - bh,
            escape(labels.get(i).map(String::as_str).unwrap_or("")),
            compact(*v),
            escape(unit)
        );
        if let Some(o) = over.and_then(|o| o.get(i)).filter(|o| **o > 0.0) {
            let oh = y(*o);
            let _ = write!(
                s,
                r#"<rect class="bar over" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{oh:.1}"/>"#,
                h - pad - oh
            );
        }
    }
    if let (Some(first), Some(last)) = (labels.first(), labels.last()) {
        let _ = write!(
            s,
            r#"<text class="tick" x="{pad}" y="{h}">{}</text><text class="tick end" x="{w}" y="{h}">{}</text>"#,
            escape(first),
            escape(last)
        );
    }
    s.push_str("</svg>");
    s
}

fn compact(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

pub async fn dashboard(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    Query(q): Query<DashQuery>,
) -> Page {
    let org = OrgId::parse("org_id", &org).map_err(api_error_page)?;
    let l = layout(&st, &v, &org, None, "dashboard", "Dashboard")
        .await
        .map_err(api_error_page)?;
    let (range, span_ms, unit_ms, group) = match q.range.as_str() {
        "24h" => ("24h", 86_400_000_i64, 3_600_000_i64, "hour"),
        "30d" => ("30d", 30 * 86_400_000, 86_400_000, "day"),
        _ => ("7d", 7 * 86_400_000, 86_400_000, "day"),
    };
    let now = st.now_ms();
    // Whole buckets: from the start of the oldest bucket to now.
    let to = now + 1;
    let from = (now - span_ms + unit_ms) / unit_ms * unit_ms;
    let query = |g: &str| UsageQuery {
        from: Some(rfc3339(from)),
        to: Some(rfc3339(to)),
        group_by: Some(g.into()),
        project_id: Some(q.project_id.clone()).filter(|s| !s.is_empty()),
    };
    let series = usage::query(&st, &v.who, &org, query(group))
        .await
        .map_err(api_error_page)?;
    let by_time: HashMap<&str, &UsageRow> =
        series.rows.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut labels = Vec::new();
    let mut cols: [Vec<f64>; 6] = Default::default();
    let mut b = from;
    while b < to {
        let key = rfc3339(b);
        let r = by_time.get(key.as_str());
        labels.push(if group == "hour" {
            key.get(11..16).unwrap_or("").to_string()
        } else {
            key.get(..10).unwrap_or("").to_string()
        });
        let vals = [
            r.map_or(0.0, |r| r.requests as f64),
            r.map_or(0.0, |r| r.errors as f64),
            r.map_or(0.0, |r| r.total_tokens as f64),
            r.map_or(0.0, |r| r.cost_usd),
            r.and_then(|r| r.latency_p50_ms).unwrap_or(0.0),
            r.and_then(|r| r.latency_p95_ms).unwrap_or(0.0),
        ];
        for (c, v) in cols.iter_mut().zip(vals) {
            c.push(v);
        }
        b += unit_ms;
    }
    let charts = [
        (
            "Requests (errors in red)",
            &cols[0],
            Some(&cols[1][..]),
            "requests",
        ),
        ("Tokens", &cols[2], None, "tokens"),
        ("Cost (USD)", &cols[3], None, "USD"),
        (
            "Latency p95 (p50 in red)",
            &cols[5],
            Some(&cols[4][..]),
            "ms",
        ),
    ]
    .into_iter()
    .map(|(t, main, over, unit)| (t, bar_chart(t, &labels, main, over, unit)))
    .collect();
    let keys = api_keys::list(&st, &v.who, &org).await.unwrap_or_default();
    let mut breakdowns = Vec::new();
    for (g, title) in [
        ("model", "By model"),
        ("provider", "By provider"),
        ("project", "By project"),
        ("api_key", "By API key"),
    ] {
        let r = usage::query(&st, &v.who, &org, query(g))
            .await
            .map_err(api_error_page)?;
        let rows = r
            .rows
            .into_iter()
            .map(|row| {
                let name = match g {
                    "project" => l
                        .projects
                        .iter()
                        .find(|p| p.id == row.key)
                        .map(|p| p.name.clone()),
                    "api_key" => keys
                        .iter()
                        .find(|k| k.id == row.key)
                        .map(|k| format!("{} ({})", k.name, k.preview)),
                    _ => None,
                }
                .unwrap_or_else(|| {
                    if row.key.is_empty() {
                        "—".into()
                    } else {
                        row.key.clone()
                    }
                });
                Stat::of(name, &row)
            })
            .collect();
        breakdowns.push(Breakdown { title, rows });
    }
    Ok(render(
        StatusCode::OK,
        &DashboardPage {
            totals: Stat::of("total".into(), &series.totals),
            range: range.into(),
            project_id: q.project_id,
            charts,
            breakdowns,
            l,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_labels_and_scale() {
        let svg = bar_chart(
            "T<x>",
            &["<a>".into(), "b".into()],
            &[1.0, 3.0],
            Some(&[0.0, 1.0]),
            "req",
        );
        assert!(svg.contains("T&lt;x&gt;") && !svg.contains("<a>"), "{svg}");
        assert_eq!(svg.matches("class=\"bar\"").count(), 2);
        assert_eq!(svg.matches("class=\"bar over\"").count(), 1);
        assert!(svg.contains(">3<"), "the axis shows the maximum: {svg}");
        assert_eq!(
            instant("2026-11-25T06:20").as_deref(),
            Some("2026-11-25T06:20:00Z")
        );
        assert_eq!(instant(" "), None);
    }
}
