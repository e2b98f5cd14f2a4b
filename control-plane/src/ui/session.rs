//! Sign-in, sign-out and accepting an invitation. The sign-in form is protected against
//! login CSRF with a double-submit token (cookie + hidden field); sign-in attempts share the
//! REST API's per-address rate limit and per-account lockout.

use askama::Template;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Form, Viewer, render, see_other};
use crate::crypto::tokens;
use crate::error::ErrorCode;
use crate::http::auth::{client_key, cookie_secure, session_cookie};
use crate::service::{auth, members};
use crate::state::AppState;

const LOGIN_CSRF_COOKIE: &str = "aiproxy_login_csrf";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    email: String,
    error: String,
    notice: String,
}

fn login_form(
    st: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    error: &str,
    notice: &str,
) -> Response {
    let csrf = tokens::random_token(24);
    let mut resp = render(
        status,
        &LoginPage {
            csrf: csrf.clone(),
            email: email.into(),
            error: error.into(),
            notice: notice.into(),
        },
    );
    let c = format!(
        "{LOGIN_CSRF_COOKIE}={csrf}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        if cookie_secure(st, headers) {
            "; Secure"
        } else {
            ""
        }
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub async fn login_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let notice = match q.get("done").map(String::as_str) {
        Some("signed-out") => "You are signed out.",
        Some("password-set") => "Password set. Sign in with it.",
        _ => "",
    };
    login_form(&st, &headers, StatusCode::OK, "", "", notice)
}

pub async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let email = form.get("email").trim().to_string();
    let sent_cookie =
        crate::http::extract::header_cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if sent_cookie.is_empty() || !tokens::ct_eq(sent_cookie, form.get("csrf")) {
        return login_form(
            &st,
            &headers,
            StatusCode::FORBIDDEN,
            &email,
            "The sign-in form expired. Try again.",
            "",
        );
    }
    if email.is_empty() || form.get("password").is_empty() {
        return login_form(
            &st,
            &headers,
            StatusCode::BAD_REQUEST,
            &email,
            "Enter your email and password.",
            "",
        );
    }
    let key = client_key(&headers, Some(peer));
    if st.0.login_limiter.check(&key, st.now_ms()).is_err() {
        return login_form(
            &st,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            &email,
            "Too many sign-in attempts. Wait a minute and try again.",
            "",
        );
    }
    match auth::login(&st, &email, form.get("password")).await {
        Ok(s) => {
            let mut resp = see_other("/ui");
            let c = session_cookie(
                &s.cookie_token,
                st.config().session_ttl_secs,
                cookie_secure(&st, &headers),
            );
            if let Ok(v) = HeaderValue::from_str(&c) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => {
            let status = e.code.http_status();
            let msg = if e.code == ErrorCode::Unauthenticated {
                "Wrong email or password.".to_string()
            } else {
                e.message
            };
            login_form(&st, &headers, status, &email, &msg, "")
        }
    }
}

pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    v: Viewer,
    form: Form,
) -> Response {
    if let Err(r) = v.check_csrf(&form) {
        return r;
    }
    let _ = auth::logout(&st, &v.session_hash).await;
    let mut resp = see_other("/ui/login?done=signed-out");
    if let Ok(h) = HeaderValue::from_str(&session_cookie("", 0, cookie_secure(&st, &headers))) {
        resp.headers_mut().append(header::SET_COOKIE, h);
    }
    resp
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    token: String,
    error: String,
}

pub async fn invite_page(Path(token): Path<String>) -> Response {
    render(
        StatusCode::OK,
        &InvitePage {
            token,
            error: String::new(),
        },
    )
}

/// The token in the URL is the credential here (unguessable, single use), so this form
/// needs no session or CSRF token.
pub async fn accept_invite(
    State(st): State<AppState>,
    Path(token): Path<String>,
    form: Form,
) -> Response {
    if form.get("password") != form.get("confirm") {
        return render(
            StatusCode::BAD_REQUEST,
            &InvitePage {
                token,
                error: "The two passwords differ.".into(),
            },
        );
    }
    match members::accept_invite(&st, &token, form.get("password")).await {
        Ok(_) => see_other("/ui/login?done=password-set"),
        Err(e) => render(
            e.code.http_status(),
            &InvitePage {
                token,
                error: e.message,
            },
        )
        .into_response(),
    }
}
