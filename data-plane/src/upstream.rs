//! Calling a provider: the upstream URL and headers for a credential, the request body in the
//! provider's shape, one attempt with connect / first-byte timeouts, and the classification of
//! its failure (may another candidate be tried?).

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use llm::vendor::AuthStyle;
use serde_json::Value;

use crate::error::ProxyError;
use crate::httpclient::HttpClient;
use crate::reqbody::RequestBody;
use crate::routing::{Candidate, RouteKind};
use crate::snapshot::Credential;

/// How a failed attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// No connection could be made (DNS, refused, TLS, destination policy).
    Connect(String),
    /// Connect, first byte or total timeout.
    Timeout(&'static str),
    /// The upstream answered with a non-2xx status.
    Status {
        status: StatusCode,
        headers: Box<HeaderMap>,
        body: Bytes,
    },
    /// The request could not even be built for this credential (misconfiguration).
    Config(String),
}

impl AttemptError {
    /// Failures that mean the upstream did not process the request, or asked us to retry:
    /// another candidate may be tried.
    pub fn retryable(&self) -> bool {
        match self {
            AttemptError::Connect(_) | AttemptError::Timeout(_) | AttemptError::Config(_) => true,
            AttemptError::Status { status, .. } => retryable_status(*status),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            AttemptError::Connect(e) => format!("connection failed: {e}"),
            AttemptError::Timeout(which) => format!("{which} timeout"),
            AttemptError::Status { status, .. } => format!("HTTP {}", status.as_u16()),
            AttemptError::Config(e) => format!("misconfigured: {e}"),
        }
    }

    pub fn status_code(&self) -> u16 {
        match self {
            AttemptError::Status { status, .. } => status.as_u16(),
            AttemptError::Timeout(_) => 504,
            _ => 502,
        }
    }
}

pub fn retryable_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 408 | 409 | 429 | 500 | 502 | 503 | 504 | 529)
}

/// What the data plane does with a successful response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Same format: bytes go to the client untouched (usage read on the side).
    PassThrough,
    /// Same format, but the proxy asked for stream usage the client did not: the usage-only
    /// chunk is held back from the client.
    PassThroughStripUsage,
    /// The provider cannot stream: it was called without streaming, and the answer is sent as
    /// one chunk plus `[DONE]`.
    FakeStream,
    /// Another wire format: the answer is translated (Anthropic, Gemini, Bedrock), or the
    /// client's Anthropic-format request went natively to Anthropic.
    Translate,
}

pub struct Prepared {
    pub request: Request<Full<Bytes>>,
    pub mode: Mode,
    /// The forced structured-output tool added to the request, if any.
    pub forced: Option<String>,
}

/// The wire format the client speaks (the Anthropic ingress route speaks Anthropic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFormat {
    OpenAi,
    Anthropic,
}

const USER_AGENT: &str = concat!("aiproxy/", env!("CARGO_PKG_VERSION"));

/// Client headers worth forwarding upstream (everything else — the caller's auth, cookies,
/// `x-bt-*`, hop-by-hop headers — stays here).
const FORWARDED: [HeaderName; 3] = [
    HeaderName::from_static("openai-beta"),
    HeaderName::from_static("anthropic-beta"),
    HeaderName::from_static("anthropic-version"),
];

/// Why a credential cannot be used when its secret cannot be sent in a header.
const SECRET_NOT_A_HEADER: &str = "the provider secret is not a valid header value";

fn secret_header(v: &str) -> Result<HeaderValue, AttemptError> {
    let mut h =
        HeaderValue::from_str(v).map_err(|_| AttemptError::Config(SECRET_NOT_A_HEADER.into()))?;
    h.set_sensitive(true);
    Ok(h)
}

/// The header that carries the credential's secret, if its auth style sends one.
fn auth_header(cred: &Credential) -> Result<Option<(HeaderName, HeaderValue)>, AttemptError> {
    let secret = cred.secret.expose();
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(match cred.auth {
        AuthStyle::Bearer => (AUTHORIZATION, secret_header(&format!("Bearer {secret}"))?),
        AuthStyle::ApiKeyHeader => (HeaderName::from_static("api-key"), secret_header(secret)?),
        AuthStyle::AuthorizationApiKey => {
            (AUTHORIZATION, secret_header(&format!("Api-Key {secret}"))?)
        }
        AuthStyle::XApiKey => (HeaderName::from_static("x-api-key"), secret_header(secret)?),
        AuthStyle::GoogApiKey => (
            HeaderName::from_static("x-goog-api-key"),
            secret_header(secret)?,
        ),
        AuthStyle::Aws | AuthStyle::None => return Ok(None),
    }))
}

/// The parts of a credential's upstream requests that are the same on every call, built on
/// first use and kept with the credential (for as long as a snapshot holds it: everything they
/// are built from is fixed when the credential is). Saves formatting and parsing the URL and
/// the auth header on every request. The header is marked sensitive, so it never prints; it is
/// one more copy of a secret the credential already holds in memory, where formatting it per
/// request left a freed copy behind on every call.
///
/// Boxed, and allocated on first use: inline it was ≈650 of a `Credential`'s ≈1,170 bytes, and a
/// snapshot of 20,000 credentials, most never called on a given node, touched 13 MB for it.
#[derive(Debug, Clone, Default)]
pub struct RequestMemo(OnceLock<Box<MemoParts>>);

#[derive(Debug, Clone, Default)]
struct MemoParts {
    /// The OpenAI-format URL per route kind, for credentials whose URL does not depend on the
    /// model (every one but an Azure deployment's). Only a URL that parsed is kept.
    uris: [OnceLock<Uri>; RouteKind::ALL.len()],
    /// The auth header, or the credential's secret is not a valid header value (`Err`).
    auth: OnceLock<Result<Option<(HeaderName, HeaderValue)>, ()>>,
}

impl RequestMemo {
    fn parts(&self) -> &MemoParts {
        self.0.get_or_init(Default::default)
    }
}

/// Adds the credential's auth and extra headers.
pub fn apply_auth(cred: &Credential, headers: &mut HeaderMap) -> Result<(), AttemptError> {
    let auth = cred
        .memo
        .parts()
        .auth
        .get_or_init(|| auth_header(cred).map_err(|_| ()));
    match auth {
        Ok(Some((name, value))) => {
            headers.insert(name.clone(), value.clone());
        }
        Ok(None) => {}
        Err(()) => return Err(AttemptError::Config(SECRET_NOT_A_HEADER.into())),
    }
    if let Some(org) = &cred.organization_id
        && let Ok(v) = HeaderValue::from_str(org)
    {
        headers.insert(HeaderName::from_static("openai-organization"), v);
    }
    for (k, v) in &cred.headers {
        let mut v = v.clone();
        v.set_sensitive(true);
        headers.insert(k.clone(), v);
    }
    Ok(())
}

/// The provider's base URL for this credential.
pub fn base_url(cred: &Credential) -> Result<String, AttemptError> {
    if let Some(b) = &cred.api_base {
        return Ok(b.clone());
    }
    let preset = llm::vendor::preset(&cred.provider_type).ok_or_else(|| {
        AttemptError::Config(format!("unknown provider type {}", cred.provider_type))
    })?;
    if preset.base_url.is_empty() {
        return Err(AttemptError::Config(format!(
            "a {} credential needs metadata.api_base",
            cred.provider_type
        )));
    }
    let region = cred.region.as_deref().unwrap_or("us-east-1");
    Ok(preset.base_url.replace("{region}", region))
}

/// The URL of an OpenAI-format call, parsed; kept in the credential's memo when it does not
/// depend on the model.
fn openai_uri(
    cred: &Credential,
    kind: RouteKind,
    upstream_model: &str,
) -> Result<Uri, AttemptError> {
    let slot = &cred.memo.parts().uris[kind as usize];
    if let Some(u) = slot.get() {
        return Ok(u.clone());
    }
    let url = openai_url(cred, kind, upstream_model)?;
    let uri: Uri = url
        .parse()
        .map_err(|e| AttemptError::Config(format!("invalid upstream URL {url:?}: {e}")))?;
    if cred.provider_type != "azure" {
        let _ = slot.set(uri.clone());
    }
    Ok(uri)
}

/// The full URL of an OpenAI-format call.
pub fn openai_url(
    cred: &Credential,
    kind: RouteKind,
    upstream_model: &str,
) -> Result<String, AttemptError> {
    let base = base_url(cred)?;
    if cred.provider_type == "azure" && !base.contains("/openai/v1") {
        let deployment = cred.deployment.as_deref().unwrap_or(upstream_model);
        let version = cred.api_version.as_deref().unwrap_or("2024-10-21");
        if kind == RouteKind::Responses {
            return Ok(format!("{base}/openai/responses?api-version={version}"));
        }
        return Ok(format!(
            "{base}/openai/deployments/{}{}?api-version={version}",
            encode_segment(deployment),
            kind.path()
        ));
    }
    Ok(format!("{base}{}", kind.path()))
}

/// Percent-encodes one path segment (keeps unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request parameters the proxy needs to know about.
#[derive(Debug, Clone)]
pub struct CallShape {
    pub kind: RouteKind,
    pub requested_model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub client: ClientFormat,
}

/// The request's document for an attempt. Building one `RequestBody::parse` accepted does not
/// fail; if it did, the attempt fails as misconfigured rather than panicking.
pub(crate) fn body_doc(body: &RequestBody) -> Result<&Value, AttemptError> {
    body.doc()
        .map_err(|e| AttemptError::Config(format!("the request body: {}", e.message)))
}

/// Builds an OpenAI-format request for one candidate. The client's body bytes are forwarded
/// as they are unless the model id, a vendor quirk or stream options require a rewrite.
pub fn prepare_openai(
    cand: &Candidate,
    shape: &CallShape,
    body: &RequestBody,
    client_headers: &HeaderMap,
) -> Result<Prepared, AttemptError> {
    let cred = &cand.cred;
    let uri = openai_uri(cred, shape.kind, &cand.served.upstream_model)?;
    let preset = llm::vendor::preset(&cred.provider_type);
    // The document is built only when something must read or change more than the head.
    let doc = || body_doc(body);
    let mut rewritten: Option<Value> = None;
    let mut mode = Mode::PassThrough;
    let mut edit = |f: &mut dyn FnMut(&mut Value)| -> Result<(), AttemptError> {
        let v = match &mut rewritten {
            Some(v) => v,
            None => rewritten.insert(doc()?.clone()),
        };
        f(v);
        Ok(())
    };
    if cand.served.upstream_model != shape.requested_model {
        let m = cand.served.upstream_model.clone();
        edit(&mut |v| v["model"] = Value::String(m.clone()))?;
    }
    // The body's key sketch rules most requests out without building the document.
    if let Some(p) = preset
        && p.quirks.applies(body)
        && p.quirks.applies(doc()?)
    {
        edit(&mut |v| {
            p.quirks.apply(v);
        })?;
    }
    let can_stream_options = preset.is_none_or(|p| !p.quirks.drop_stream_options)
        && matches!(shape.kind, RouteKind::Chat | RouteKind::Completions);
    if shape.stream && !cred.supports_streaming {
        mode = Mode::FakeStream;
        edit(&mut |v| {
            if let Some(o) = v.as_object_mut() {
                o.insert("stream".into(), Value::Bool(false));
                o.remove("stream_options");
            }
        })?;
    } else if shape.stream && !shape.include_usage && can_stream_options {
        // Usage is recorded for every call: ask for it, and keep the extra chunk from the client.
        mode = Mode::PassThroughStripUsage;
        edit(&mut |v| {
            if let Some(o) = v.as_object_mut() {
                let so = o
                    .entry("stream_options")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(so) = so.as_object_mut() {
                    so.insert("include_usage".into(), Value::Bool(true));
                }
            }
        })?;
    }
    let bytes = match rewritten {
        Some(v) => {
            Bytes::from(serde_json::to_vec(&v).map_err(|e| AttemptError::Config(e.to_string()))?)
        }
        None => body.raw().clone(),
    };
    let mut req = Request::new(Full::new(bytes));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    if shape.stream && mode != Mode::FakeStream {
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
    }
    forward_client_headers(client_headers, h);
    apply_auth(cred, h)?;
    Ok(Prepared {
        request: req,
        mode,
        forced: None,
    })
}

pub fn forward_client_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in FORWARDED {
        for v in from.get_all(&name) {
            to.append(name.clone(), v.clone());
        }
    }
}

/// One attempt: connect (the connector's timeout) and wait for the response headers.
pub async fn send(
    client: &HttpClient,
    policy: &crate::netguard::NetPolicy,
    req: Request<Full<Bytes>>,
    first_byte: Duration,
) -> Result<Response<Incoming>, AttemptError> {
    crate::netguard::check_uri_host(policy, req.uri()).map_err(AttemptError::Connect)?;
    match tokio::time::timeout(first_byte, client.request(req)).await {
        Err(_) => Err(AttemptError::Timeout("first-byte")),
        Ok(Err(e)) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            if msg.contains("timed out") || msg.contains("deadline has elapsed") {
                Err(AttemptError::Timeout("connect"))
            } else {
                Err(AttemptError::Connect(msg))
            }
        }
        Ok(Ok(resp)) => Ok(resp),
    }
}

/// Reads a whole body, bounded in size and time.
pub async fn read_body(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, AttemptError> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(AttemptError::Timeout("total")),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(AttemptError::Connect(format!(
            "response larger than {limit} bytes"
        ))),
        Ok(Err(e)) => Err(AttemptError::Connect(format!("response body: {e}"))),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Removes every occurrence of the credential's secrets from text the proxy is about to show a
/// client or write to a log (providers echo keys in auth errors).
pub fn scrub(cred: &Credential, text: &str) -> String {
    let mut out = text.to_string();
    for s in
        std::iter::once(cred.secret.expose()).chain(cred.session_token.as_ref().map(|t| t.expose()))
    {
        if s.len() >= 4 {
            out = out.replace(s, "[redacted]");
        }
    }
    out
}

/// The error returned to the client for an upstream answer that is final (a 4xx other than
/// the retryable ones): the provider's status and, for the same format, its body — scrubbed.
/// Authentication failures are reworded so no key fragment reaches the caller.
pub fn final_upstream_error(cred: &Credential, status: StatusCode, body: &Bytes) -> ProxyError {
    if matches!(status.as_u16(), 401 | 403) {
        return ProxyError {
            status: StatusCode::BAD_GATEWAY,
            ..ProxyError::upstream(
                StatusCode::BAD_GATEWAY,
                "provider_auth_failed",
                format!(
                    "The provider rejected the credential `{}` (HTTP {}). Check the key in the AI providers settings.",
                    cred.name,
                    status.as_u16()
                ),
                false,
            )
        };
    }
    let text = String::from_utf8_lossy(body);
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    let (message, kind, code, param) = match parsed.as_ref().and_then(|v| v.get("error")) {
        Some(e) if e.is_object() => (
            e.get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream error")
                .to_string(),
            e.get("type")
                .and_then(Value::as_str)
                .unwrap_or("invalid_request_error")
                .to_string(),
            e.get("code").and_then(|c| {
                c.as_str()
                    .map(str::to_string)
                    .or_else(|| c.as_i64().map(|n| n.to_string()))
            }),
            e.get("param").and_then(Value::as_str).map(str::to_string),
        ),
        Some(Value::String(s)) => (s.clone(), "invalid_request_error".into(), None, None),
        _ => (
            if text.len() > 2000 {
                format!(
                    "{}…",
                    &text[..text
                        .char_indices()
                        .nth(2000)
                        .map(|(i, _)| i)
                        .unwrap_or(text.len())]
                )
            } else {
                text.to_string()
            },
            "invalid_request_error".into(),
            None,
            None,
        ),
    };
    let kind: &'static str = match kind.as_str() {
        "invalid_request_error" => "invalid_request_error",
        "not_found_error" => "not_found_error",
        "permission_error" => "permission_error",
        "rate_limit_error" => "rate_limit_error",
        _ => "invalid_request_error",
    };
    ProxyError {
        status,
        kind,
        code: code.map(|c| scrub(cred, &c)),
        message: scrub(cred, &message),
        param,
        fault: crate::error::Fault::Upstream,
        retryable: false,
        retry_after: None,
    }
}

/// Response headers worth passing back to the client.
pub fn copy_response_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        let n = name.as_str();
        if n.starts_with("x-ratelimit-")
            || n.starts_with("anthropic-ratelimit-")
            || matches!(
                n,
                "retry-after" | "retry-after-ms" | "openai-processing-ms" | "openai-version"
            )
        {
            to.append(name.clone(), value.clone());
        }
    }
    const IDS: [HeaderName; 3] = [
        crate::proxy::X_REQUEST_ID,
        HeaderName::from_static("request-id"),
        HeaderName::from_static("apim-request-id"),
    ];
    if let Some(v) = IDS.iter().find_map(|n| from.get(n)) {
        to.insert(HeaderName::from_static("x-upstream-request-id"), v.clone());
    }
}

fn json_request(
    url: &str,
    body: Vec<u8>,
    stream: bool,
) -> Result<Request<Full<Bytes>>, AttemptError> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| AttemptError::Config(format!("invalid upstream URL {url:?}: {e}")))?;
    let h = req.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    if stream {
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
    }
    Ok(req)
}

fn translate_err(e: llm::TranslateError) -> AttemptError {
    match e {
        // A request the provider's format cannot express: the client's problem, not the
        // credential's — surfaced as a final 400 (never retried elsewhere).
        llm::TranslateError::InvalidRequest { message, param } => AttemptError::Status {
            status: StatusCode::BAD_REQUEST,
            headers: Box::default(),
            body: Bytes::from(
                llm::openai::error_body(
                    &message,
                    "invalid_request_error",
                    Some("unsupported_by_provider"),
                    param.as_deref(),
                )
                .to_string(),
            ),
        },
        llm::TranslateError::BadUpstream(m) => AttemptError::Config(m),
    }
}

/// Builds a request in the credential's own format (Anthropic, Gemini or Bedrock) from the
/// OpenAI chat request; or, for an Anthropic-format client on an Anthropic credential, sends
/// the client's body natively (`native`).
pub fn prepare_translated(
    cand: &Candidate,
    shape: &CallShape,
    chat: &Value,
    native: Option<&Value>,
    client_headers: &HeaderMap,
) -> Result<Prepared, AttemptError> {
    let cred = &cand.cred;
    let base = base_url(cred)?;
    let spec_max = cand.served.spec.as_ref().and_then(|s| s.max_output_tokens);
    let ctx = llm::translate::RequestContext {
        upstream_model: &cand.served.upstream_model,
        max_output_tokens: spec_max,
        stream: shape.stream,
    };
    match cand.served.format {
        llm::Format::Anthropic => {
            let (body, forced) = match native {
                Some(n) => {
                    let mut b = n.clone();
                    b["model"] = Value::String(cand.served.upstream_model.clone());
                    (b, None)
                }
                None => llm::anthropic::request_from_chat(chat, &ctx).map_err(translate_err)?,
            };
            // Accept an api_base given with or without the version segment.
            let url = format!("{}/v1/messages", base.strip_suffix("/v1").unwrap_or(&base));
            let mut req = json_request(
                &url,
                serde_json::to_vec(&body).map_err(|e| AttemptError::Config(e.to_string()))?,
                shape.stream,
            )?;
            let h = req.headers_mut();
            forward_client_headers(client_headers, h);
            if !h.contains_key("anthropic-version") {
                h.insert(
                    HeaderName::from_static("anthropic-version"),
                    HeaderValue::from_static(llm::anthropic::VERSION),
                );
            }
            apply_auth(cred, h)?;
            Ok(Prepared {
                request: req,
                mode: Mode::Translate,
                forced,
            })
        }
        llm::Format::Google => {
            let body = llm::gemini::request_from_chat(chat, &ctx).map_err(translate_err)?;
            let url = format!(
                "{}{}",
                base.strip_suffix("/v1beta").unwrap_or(&base),
                llm::gemini::path(&cand.served.upstream_model, shape.stream)
            );
            let mut req = json_request(
                &url,
                serde_json::to_vec(&body).map_err(|e| AttemptError::Config(e.to_string()))?,
                shape.stream,
            )?;
            apply_auth(cred, req.headers_mut())?;
            Ok(Prepared {
                request: req,
                mode: Mode::Translate,
                forced: None,
            })
        }
        llm::Format::Bedrock => {
            let (body, forced) =
                llm::bedrock::request_from_chat(chat, &ctx).map_err(translate_err)?;
            let bytes =
                serde_json::to_vec(&body).map_err(|e| AttemptError::Config(e.to_string()))?;
            let url = format!(
                "{base}{}",
                llm::bedrock::path(&cand.served.upstream_model, shape.stream)
            );
            let mut req = json_request(&url, bytes.clone(), false)?;
            let h = req.headers_mut();
            if cred.auth_type.as_deref() == Some("api_key") || cred.provider_type == "custom" {
                apply_auth(cred, h)?;
                if cred.provider_type != "custom" {
                    h.insert(
                        AUTHORIZATION,
                        secret_header(&format!("Bearer {}", cred.secret.expose()))?,
                    );
                }
            } else {
                let region = cred.region.as_deref().unwrap_or("us-east-1");
                let keys = crate::sigv4::Keys {
                    access_key_id: cred.access_key_id.as_deref().ok_or_else(|| {
                        AttemptError::Config(
                            "a Bedrock IAM credential needs metadata.access_key_id".into(),
                        )
                    })?,
                    secret_access_key: cred.secret.expose(),
                    session_token: cred.session_token.as_ref().map(|t| t.expose()),
                };
                for (k, v) in crate::sigv4::sign(
                    &url,
                    "application/json",
                    &bytes,
                    region,
                    &keys,
                    std::time::SystemTime::now(),
                )
                .map_err(AttemptError::Config)?
                {
                    let name = HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| AttemptError::Config(e.to_string()))?;
                    h.insert(name, secret_header(&v)?);
                }
                for (k, v) in &cred.headers {
                    h.insert(k.clone(), v.clone());
                }
            }
            Ok(Prepared {
                request: req,
                mode: Mode::Translate,
                forced,
            })
        }
        llm::Format::Openai => Err(AttemptError::Config(
            "prepare_translated called for an OpenAI-format credential".into(),
        )),
    }
}

/// An upstream error body in OpenAI shape (and the status OpenAI clients should see).
pub fn error_to_openai(
    format: llm::Format,
    status: StatusCode,
    headers: &HeaderMap,
    body: &Bytes,
) -> (StatusCode, Bytes) {
    let (s, v) = match format {
        llm::Format::Anthropic => llm::anthropic::error_to_openai(status.as_u16(), body),
        llm::Format::Google => llm::gemini::error_to_openai(status.as_u16(), body),
        llm::Format::Bedrock => llm::bedrock::error_to_openai(
            status.as_u16(),
            headers
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok()),
            body,
        ),
        llm::Format::Openai => return (status, body.clone()),
    };
    (
        StatusCode::from_u16(s).unwrap_or(status),
        Bytes::from(v.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for s in [408, 409, 429, 500, 502, 503, 504, 529] {
            assert!(retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    /// The memo gives the URL and auth header a fresh build gives, keeps a model-independent
    /// URL per route kind (an Azure deployment's URL depends on the model: never kept), and
    /// keeps refusing a secret that cannot be a header.
    #[test]
    fn memo_gives_what_a_fresh_build_gives() {
        for (i, k) in RouteKind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i);
        }
        let mut openai = (*crate::balance::tests::cred("a", 1.0)).clone();
        openai.api_base = Some("http://127.0.0.1:9/v1".into());
        for kind in RouteKind::ALL {
            let fresh: Uri = openai_url(&openai, kind, "m").unwrap().parse().unwrap();
            assert_eq!(openai_uri(&openai, kind, "m").unwrap(), fresh);
            assert_eq!(openai.memo.parts().uris[kind as usize].get(), Some(&fresh));
            assert_eq!(openai_uri(&openai, kind, "other").unwrap(), fresh);
        }
        assert_eq!(
            openai_uri(&openai, RouteKind::Chat, "m")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:9/v1/chat/completions"
        );

        let mut azure = (*crate::balance::tests::cred("z", 1.0)).clone();
        azure.provider_type = "azure".into();
        azure.api_base = Some("https://r.openai.azure.com".into());
        let one = openai_uri(&azure, RouteKind::Chat, "gpt-4o").unwrap();
        let two = openai_uri(&azure, RouteKind::Chat, "gpt-4o-mini").unwrap();
        assert_eq!(
            one.to_string(),
            "https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert_ne!(one, two);
        assert!(
            azure.memo.parts().uris[RouteKind::Chat as usize]
                .get()
                .is_none()
        );

        for _ in 0..2 {
            let mut h = HeaderMap::new();
            apply_auth(&openai, &mut h).unwrap();
            assert_eq!(h[AUTHORIZATION], "Bearer s");
            assert!(h[AUTHORIZATION].is_sensitive());
        }
        let mut bad = (*crate::balance::tests::cred("b", 1.0)).clone();
        bad.secret = crate::secret::Secret::new("sk-\nline");
        for _ in 0..2 {
            let e = apply_auth(&bad, &mut HeaderMap::new()).unwrap_err();
            assert!(
                matches!(&e, AttemptError::Config(m) if m == "the provider secret is not a valid header value"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(
            encode_segment("anthropic.claude-3-haiku-20240307-v1:0"),
            "anthropic.claude-3-haiku-20240307-v1%3A0"
        );
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
