//! The web admin: server-rendered pages under `/ui`, askama templates in `web-admin/templates`,
//! one stylesheet and one small script of our own in `web-admin/static` (no Node toolchain, no
//! inline script: the Content-Security-Policy allows only `'self'`). Handlers are thin: they
//! call the same `service::*` functions as the REST API, so permissions, validation and audit
//! are the REST API's. Plain HTML forms with POST-redirect-GET; a failed form re-renders its
//! page with the error next to the field the service named (`ApiError::field`).

// Handlers return `Result<Response, Response>`: both arms are pages, which is axum's idiom.
#![allow(clippy::result_large_err)]

pub mod dashboard;
pub mod org;
pub mod providers;
pub mod session;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::domain::{OrgId, OrgRole};
use crate::error::{ApiError, ErrorCode};
use crate::http::extract::{SESSION_COOKIE, cookie, read_limited};
use crate::service::{self, Principal, auth};
use crate::state::AppState;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui", get(home))
        .route("/ui/static/app.css", get(css))
        .route("/ui/static/app.js", get(js))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route(
            "/ui/invite/{token}",
            get(session::invite_page).post(session::accept_invite),
        )
        .route(
            "/ui/orgs/{org_id}/projects",
            get(org::projects).post(org::create_project),
        )
        .route("/ui/projects/{project_id}", post(org::project_action))
        .route(
            "/ui/orgs/{org_id}/providers",
            get(providers::org_page).post(providers::org_add),
        )
        .route(
            "/ui/projects/{project_id}/providers",
            get(providers::project_page).post(providers::project_add),
        )
        .route("/ui/providers/{id}", post(providers::provider_action))
        .route(
            "/ui/orgs/{org_id}/custom-providers",
            get(providers::custom_page).post(providers::custom_add),
        )
        .route(
            "/ui/orgs/{org_id}/api-keys",
            get(org::api_keys).post(org::create_key),
        )
        .route("/ui/api-keys/{id}/revoke", post(org::revoke_key))
        .route(
            "/ui/orgs/{org_id}/settings",
            get(org::settings).post(org::save_settings),
        )
        .route("/ui/orgs/{org_id}/settings/test", post(org::test_settings))
        .route(
            "/ui/orgs/{org_id}/members",
            get(org::members).post(org::add_member),
        )
        .route(
            "/ui/orgs/{org_id}/members/{user_id}",
            post(org::member_action),
        )
        .route("/ui/orgs/{org_id}/audit", get(org::audit))
        .route("/ui/orgs/{org_id}/dashboard", get(dashboard::dashboard))
        .route("/ui/projects/{project_id}/logs", get(dashboard::logs))
        .route(
            "/ui/projects/{project_id}/logs/{log_id}",
            get(dashboard::log_detail),
        )
        .layer(axum::middleware::map_response(ui_headers))
}

async fn ui_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn css() -> Response {
    static_asset(
        "text/css; charset=utf-8",
        include_str!("../../web-admin/static/app.css"),
    )
}

async fn js() -> Response {
    static_asset(
        "text/javascript; charset=utf-8",
        include_str!("../../web-admin/static/app.js"),
    )
}

fn static_asset(ct: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ct),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// `/ui`: the first organization's projects (or the sign-in page).
async fn home(st: axum::extract::State<AppState>, v: Viewer) -> Response {
    match service::orgs::list(&st, &v.who).await {
        Ok(orgs) => match orgs.first() {
            Some(o) => Redirect::to(&format!("/ui/orgs/{}/projects", o.id)).into_response(),
            None => error_page(
                StatusCode::OK,
                "No organization yet",
                "You are not a member of any organization. Ask an owner to add you.",
            ),
        },
        Err(e) => api_error_page(e),
    }
}

/// The signed-in user of a page request. Without a valid session: a redirect to sign-in.
pub struct Viewer {
    pub who: Principal,
    pub email: String,
    pub csrf: String,
    pub session_hash: String,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Viewer, Response> {
        let to_login = || Redirect::to("/ui/login").into_response();
        let Some(token) = cookie(parts, SESSION_COOKIE) else {
            return Err(to_login());
        };
        match auth::authenticate_session(st, token).await {
            Ok(s) => {
                let email = match &s.principal {
                    Principal::User { email, .. } => email.clone(),
                    Principal::ApiKey { name, .. } => name.clone(),
                };
                Ok(Viewer {
                    who: s.principal,
                    email,
                    csrf: s.csrf_token,
                    session_hash: s.id_hash,
                })
            }
            Err(e) if e.code == ErrorCode::Unauthenticated => Err(to_login()),
            Err(e) => Err(api_error_page(e)),
        }
    }
}

impl Viewer {
    /// Every state-changing form carries the session's CSRF token in `csrf`.
    pub fn check_csrf(&self, form: &Form) -> Result<(), Response> {
        if crate::crypto::tokens::ct_eq(form.get("csrf"), &self.csrf) {
            Ok(())
        } else {
            Err(error_page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form was missing its security token or it did not match your session. \
                 Go back, reload the page and try again.",
            ))
        }
    }
}

/// A submitted `application/x-www-form-urlencoded` body, as ordered pairs (repeated names
/// allowed: the custom-model table sends one set of fields per row).
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

impl FromRequest<AppState> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Form, Response> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return Err(error_page(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported form",
                "This page accepts HTML form submissions only.",
            ));
        }
        let bytes = read_limited(req.into_body(), st.config().max_body_bytes)
            .await
            .map_err(api_error_page)?;
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .map(Form)
            .map_err(|_| {
                error_page(
                    StatusCode::BAD_REQUEST,
                    "Malformed form",
                    "The submitted form could not be read.",
                )
            })
    }
}

/// A failed form submission: which form, which field (empty: the form as a whole), and why.
#[derive(Debug, Clone, Default)]
pub struct FormError {
    pub form: String,
    pub field: String,
    pub message: String,
    pub status: u16,
}

impl FormError {
    pub fn from_api(form: &str, e: &ApiError) -> FormError {
        FormError {
            form: form.into(),
            field: e.field.clone().unwrap_or_default(),
            message: e.message.clone(),
            status: e.code.http_status().as_u16(),
        }
    }

    pub fn field(form: &str, field: &str, message: impl Into<String>) -> FormError {
        FormError {
            form: form.into(),
            field: field.into(),
            message: message.into(),
            status: 400,
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST)
    }
}

/// What templates ask about errors: the summary of a form, and the message for one field.
#[derive(Debug, Clone, Default)]
pub struct Errors(pub Option<FormError>);

impl Errors {
    /// The error of `form` (shown at the top of that form), or "".
    pub fn of(&self, form: impl AsRef<str>) -> &str {
        match &self.0 {
            Some(e) if e.form == form.as_ref() => &e.message,
            _ => "",
        }
    }

    /// The error for `field` of `form` (shown next to the field), or "".
    pub fn at(&self, form: impl AsRef<str>, field: impl AsRef<str>) -> &str {
        match &self.0 {
            Some(e) if e.form == form.as_ref() && e.field == field.as_ref() => &e.message,
            _ => "",
        }
    }

    pub fn status(&self) -> StatusCode {
        self.0
            .as_ref()
            .map(FormError::status)
            .unwrap_or(StatusCode::OK)
    }
}

/// Navigation and identity shared by every signed-in page.
pub struct Layout {
    pub title: String,
    pub email: String,
    pub csrf: String,
    pub orgs: Vec<service::orgs::Org>,
    pub org_id: String,
    pub org_name: String,
    pub can_manage: bool,
    pub projects: Vec<service::projects::Project>,
    pub project_id: String,
    pub project_name: String,
    pub active: &'static str,
    pub notice: String,
}

pub async fn layout(
    st: &AppState,
    v: &Viewer,
    org_id: &OrgId,
    project: Option<&service::projects::Project>,
    active: &'static str,
    title: &str,
) -> Result<Layout, ApiError> {
    let org = service::orgs::get(st, &v.who, org_id).await?;
    let orgs = service::orgs::list(st, &v.who).await?;
    let projects = service::projects::list(st, &v.who, org_id).await?;
    Ok(Layout {
        title: title.into(),
        email: v.email.clone(),
        csrf: v.csrf.clone(),
        orgs,
        can_manage: matches!(org.role, Some(OrgRole::Owner | OrgRole::Admin)),
        org_id: org.id,
        org_name: org.name,
        projects,
        project_id: project.map(|p| p.id.clone()).unwrap_or_default(),
        project_name: project.map(|p| p.name.clone()).unwrap_or_default(),
        active,
        notice: String::new(),
    })
}

/// Success notices travel as a fixed code in `?done=` (never free text from the URL).
pub fn notice(code: &str) -> &'static str {
    match code {
        "project-created" => "Project created.",
        "project-renamed" => "Project renamed.",
        "project-deleted" => "Project deleted.",
        "provider-added" => "Key saved.",
        "provider-updated" => "Key updated.",
        "provider-removed" => "Key removed.",
        "custom-saved" => "Custom provider saved.",
        "key-revoked" => "API key revoked.",
        "settings-saved" => "Settings saved.",
        "member-updated" => "Member updated.",
        "member-removed" => "Member removed.",
        _ => "",
    }
}

pub fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, &ErrorPage { title, message })
}

pub fn api_error_page(e: ApiError) -> Response {
    let title = match e.code.http_status() {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
        s if s.is_server_error() => "Something went wrong",
        _ => "Cannot do that",
    };
    error_page(e.code.http_status(), title, &e.message)
}

pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// `ms` since the epoch as `2026-11-25 06:20 UTC`.
pub fn fmt_time(ms: i64) -> String {
    let s = crate::domain::time::rfc3339(ms);
    let (date, rest) = s.split_once('T').unwrap_or((&s, ""));
    format!("{date} {} UTC", rest.get(..8).unwrap_or(rest))
}

/// Escapes text for use inside hand-built SVG/HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_land_on_their_form_and_field() {
        let e = Errors(Some(FormError::field("add-openai", "secret", "required")));
        assert_eq!(e.of("add-openai"), "required");
        assert_eq!(e.at("add-openai", "secret"), "required");
        assert_eq!(e.at("add-openai", "name"), "");
        assert_eq!(e.of("add-azure"), "");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(Errors::default().status(), StatusCode::OK);
    }

    #[test]
    fn escape_and_time() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(notice("<script>"), "");
    }
}
