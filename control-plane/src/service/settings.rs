//! Organization settings: the URLs clients use (API, proxy, realtime), shown in the web admin's
//! snippets, with a connectivity test that will not reach link-local or metadata addresses.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::db::{self, settings::SettingsRow};
use crate::domain::OrgId;
use crate::error::{ApiError, ApiResult};
use crate::service::{Principal, audit, auth, commit};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Settings {
    pub org_id: String,
    pub api_url: String,
    pub proxy_url: String,
    pub realtime_url: String,
    #[serde(serialize_with = "crate::service::ser_opt_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<i64>,
    pub updated_by: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSettings {
    #[serde(default)]
    pub api_url: String,
    #[serde(default)]
    pub proxy_url: String,
    #[serde(default)]
    pub realtime_url: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UrlCheck {
    /// `api_url`, `proxy_url` or `realtime_url`.
    pub name: String,
    pub url: String,
    /// An HTTP answer came back (any status).
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestResult {
    pub results: Vec<UrlCheck>,
}

pub async fn get(st: &AppState, who: &Principal, org_id: &OrgId) -> ApiResult<Settings> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_read()?;
    let row = db::settings::get(st.db().pool(), org_id.as_str()).await?;
    Ok(match row {
        Some(r) => Settings {
            org_id: r.org_id,
            api_url: r.api_url,
            proxy_url: r.proxy_url,
            realtime_url: r.realtime_url,
            updated_at: Some(r.updated_at),
            updated_by: Some(r.updated_by),
        },
        None => Settings {
            org_id: org_id.0.clone(),
            api_url: String::new(),
            proxy_url: String::new(),
            realtime_url: String::new(),
            updated_at: None,
            updated_by: None,
        },
    })
}

fn check_url(field: &str, s: &str, schemes: &[&str]) -> ApiResult<String> {
    let s = s.trim().trim_end_matches('/');
    if s.is_empty() {
        return Ok(String::new());
    }
    if s.len() > 2048 {
        return Err(ApiError::validation(
            field,
            "must be at most 2048 characters",
        ));
    }
    let uri: http::Uri = s
        .parse()
        .map_err(|_| ApiError::validation(field, "not a valid URL"))?;
    if !uri.scheme_str().is_some_and(|sc| schemes.contains(&sc)) {
        return Err(ApiError::validation(
            field,
            format!(
                "must start with {}",
                schemes
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ApiError::validation(field, "must include a host"));
    }
    Ok(s.to_string())
}

pub async fn put(
    st: &AppState,
    who: &Principal,
    org_id: &OrgId,
    input: PutSettings,
) -> ApiResult<Settings> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_manage()?;
    let row = SettingsRow {
        org_id: org_id.0.clone(),
        api_url: check_url("api_url", &input.api_url, &["http", "https"])?,
        proxy_url: check_url("proxy_url", &input.proxy_url, &["http", "https"])?,
        realtime_url: check_url(
            "realtime_url",
            &input.realtime_url,
            &["ws", "wss", "http", "https"],
        )?,
        updated_at: st.now_ms(),
        updated_by: who.actor(),
    };
    let mut tx = st.db().begin().await?;
    db::settings::put(&mut *tx, &row).await?;
    audit::record(&mut tx, st, who, Some(org_id.as_str()), "settings.update", ("org", org_id.as_str()), serde_json::json!({"api_url": row.api_url, "proxy_url": row.proxy_url, "realtime_url": row.realtime_url}))
        .await?;
    commit(st, tx, false).await?;
    Ok(Settings {
        org_id: row.org_id,
        api_url: row.api_url,
        proxy_url: row.proxy_url,
        realtime_url: row.realtime_url,
        updated_at: Some(row.updated_at),
        updated_by: Some(row.updated_by),
    })
}

/// Checks each configured URL: one GET with a short timeout, reporting status and latency. The
/// destination policy applies (link-local and cloud-metadata addresses are refused).
pub async fn test(st: &AppState, who: &Principal, org_id: &OrgId) -> ApiResult<TestResult> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_manage()?;
    let s = get(st, who, org_id).await?;
    let client = data_plane::httpclient::build(
        st.0.upstream_policy.clone(),
        &data_plane::httpclient::ClientOptions {
            connect_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    );
    let mut results = Vec::new();
    for (name, url) in [
        ("api_url", s.api_url),
        ("proxy_url", s.proxy_url),
        ("realtime_url", s.realtime_url),
    ] {
        if url.is_empty() {
            continue;
        }
        results.push(check_one(st, &client, name, &url).await);
    }
    Ok(TestResult { results })
}

async fn check_one(
    st: &AppState,
    client: &data_plane::httpclient::HttpClient,
    name: &str,
    url: &str,
) -> UrlCheck {
    let http_url = if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_string()
    };
    let fail = |e: String| UrlCheck {
        name: name.into(),
        url: url.into(),
        ok: false,
        status: None,
        latency_ms: None,
        error: Some(e),
    };
    let uri: http::Uri = match http_url.parse() {
        Ok(u) => u,
        Err(_) => return fail("not a valid URL".into()),
    };
    if let Err(e) = data_plane::netguard::check_uri_host(&st.0.upstream_policy, &uri) {
        return fail(e);
    }
    let req = match http::Request::get(uri)
        .header("user-agent", "aiproxy-connectivity-test")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
    {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let started = Instant::now();
    match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
        Ok(Ok(resp)) => UrlCheck {
            name: name.into(),
            url: url.into(),
            ok: true,
            status: Some(resp.status().as_u16()),
            latency_ms: Some(started.elapsed().as_millis() as u64),
            error: None,
        },
        Ok(Err(e)) => fail(describe_client_error(&e)),
        Err(_) => fail("timed out after 10 s".into()),
    }
}

fn describe_client_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}
