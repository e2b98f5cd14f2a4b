//! Web admin handlers through the real server: pages need a session, every form needs its
//! CSRF token, bad input comes back next to its field with nothing saved, members cannot edit
//! providers, user content is escaped, invitations work once.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::harness::{Session, TestApp};

struct Ui {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Ui {
    fn new(app: &TestApp, s: Option<&Session>) -> Ui {
        Ui {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
            cookie: s
                .map(|s| s.cookie.split(';').next().unwrap().to_string())
                .unwrap_or_default(),
            csrf: s.map(|s| s.csrf.clone()).unwrap_or_default(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status(), r.headers().clone(), r.text().await.unwrap())
    }

    /// Posts a form; `with_csrf` adds the session's token.
    async fn post(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        with_csrf: bool,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut f: Vec<(&str, &str)> = fields.to_vec();
        if with_csrf {
            f.push(("csrf", &self.csrf));
        }
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&f).unwrap())
            .send()
            .await
            .unwrap();
        (r.status(), r.headers().clone(), r.text().await.unwrap())
    }
}

#[tokio::test]
async fn pages_need_a_session_and_send_a_strict_csp() {
    let app = TestApp::spawn().await;
    let anon = Ui::new(&app, None);
    for path in [
        format!("/ui/orgs/{}/projects", app.org_id),
        format!("/ui/orgs/{}/providers", app.org_id),
        format!("/ui/projects/{}/logs", app.project_id),
        "/ui".to_string(),
    ] {
        let (s, h, _) = anon.get(&path).await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(h[LOCATION], "/ui/login", "{path}");
    }
    let (s, h, body) = anon.get("/ui/login").await;
    assert_eq!(s, StatusCode::OK);
    let csp = h[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !body.contains("<script>") && !body.contains(" style="),
        "no inline script or style"
    );
    assert!(body.contains(r#"name="csrf""#));
    // A forged session cookie is no session.
    let mut forged = Ui::new(&app, None);
    forged.cookie = "aiproxy_session=forged".into();
    let (s, _, _) = forged
        .get(&format!("/ui/orgs/{}/projects", app.org_id))
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn sign_in_form_needs_its_token_and_sets_a_hardened_cookie() {
    let app = TestApp::spawn().await;
    let anon = Ui::new(&app, None);
    let creds = [
        ("email", control_plane::testing::TEST_ADMIN_EMAIL),
        ("password", control_plane::testing::TEST_ADMIN_PASSWORD),
    ];
    // Without the login-CSRF cookie: refused, no session cookie set.
    let mut f = creds.to_vec();
    f.push(("csrf", "guess"));
    let (s, h, body) = anon.post("/ui/login", &f, false).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains("expired"), "{body}");
    assert!(
        !h.get_all(SET_COOKIE)
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("aiproxy_session=")),
        "no session without the token"
    );
    // With it: a wrong password is a form error; the right one a hardened session cookie.
    let (_, h, page) = anon.get("/ui/login").await;
    let token = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let login_cookie = h[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let post = |pw: &'static str| {
        let (http, base, token, login_cookie) = (
            anon.http.clone(),
            app.base.clone(),
            token.clone(),
            login_cookie.clone(),
        );
        async move {
            http.post(format!("{base}/ui/login"))
                .header(COOKIE, login_cookie)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(
                    serde_urlencoded::to_string([
                        ("email", control_plane::testing::TEST_ADMIN_EMAIL),
                        ("password", pw),
                        ("csrf", &token),
                    ])
                    .unwrap(),
                )
                .send()
                .await
                .unwrap()
        }
    };
    let r = post("wrong-password-123").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("Wrong email or password."));
    let r = post(control_plane::testing::TEST_ADMIN_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let c = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .find(|c| c.starts_with("aiproxy_session="))
        .unwrap();
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");
}

#[tokio::test]
async fn every_form_needs_the_csrf_token() {
    let app = TestApp::spawn().await;
    let s = app.login_admin().await;
    let ui = Ui::new(&app, Some(&s));
    let org = app.org_id.clone();
    let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            format!("/ui/orgs/{org}/projects"),
            vec![("name", "csrf-less")],
        ),
        (
            format!("/ui/orgs/{org}/providers"),
            vec![("type", "openai"), ("secret", "sk-csrf-000000000001")],
        ),
        (
            format!("/ui/orgs/{org}/api-keys"),
            vec![("name", "k"), ("role", "proxy")],
        ),
        (
            format!("/ui/orgs/{org}/members"),
            vec![("email", "x@example.com"), ("role", "member")],
        ),
        (
            format!("/ui/orgs/{org}/settings"),
            vec![("proxy_url", "https://p.example.com")],
        ),
        (
            format!("/ui/projects/{}", app.project_id),
            vec![("action", "delete"), ("confirm", "default")],
        ),
        ("/ui/logout".to_string(), vec![]),
    ];
    for (path, fields) in &forms {
        let (st, _, body) = ui.post(path, fields, false).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(body.contains("security token"), "{path}: {body}");
        // A wrong token is the same as none.
        let mut f = fields.clone();
        f.push(("csrf", "not-the-token"));
        let (st, _, _) = ui.post(path, &f, false).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}");
    }
    // Nothing was changed.
    let (_, projects) = app.get(&format!("/api/v1/orgs/{org}/projects")).await;
    assert_eq!(projects.as_array().unwrap().len(), 1, "{projects}");
    let (_, providers) = app.get(&format!("/api/v1/orgs/{org}/providers")).await;
    assert_eq!(providers.as_array().unwrap().len(), 0);
    // The session still works, and with the token the form does its job.
    let (st, h, _) = ui
        .post(
            &format!("/ui/orgs/{org}/projects"),
            &[("name", "with-token")],
            true,
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert!(
        h[LOCATION]
            .to_str()
            .unwrap()
            .ends_with("done=project-created")
    );
}

#[tokio::test]
async fn bad_input_is_shown_next_to_its_field_and_nothing_is_saved() {
    let app = TestApp::spawn().await;
    let s = app.login_admin().await;
    let ui = Ui::new(&app, Some(&s));
    let path = format!("/ui/orgs/{}/providers", app.org_id);
    // A weight that is not a number.
    let (st, _, body) = ui
        .post(
            &path,
            &[
                ("type", "openai"),
                ("secret", "sk-bad-0000000000001"),
                ("metadata.weight", "heavy"),
            ],
            true,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains("Not saved: must be a number"), "{body}");
    assert!(
        body.contains(r#"id="openai-metadata.weight" name="metadata.weight" type="text" inputmode="decimal" aria-invalid="true""#),
        "the field is marked invalid"
    );
    // Azure without its endpoint: the service's field error lands on the endpoint input.
    let (st, _, body) = ui
        .post(
            &path,
            &[("type", "azure"), ("secret", "azure-key-000000000001")],
            true,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("required for azure"), "{body}");
    assert!(body.contains(r#"id="azure-metadata.api_base" name="metadata.api_base" type="url" required aria-invalid="true""#), "{body}");
    // A cloud-metadata base URL is refused (SSRF guard), as in the REST API.
    let (st, _, body) = ui
        .post(
            &path,
            &[
                ("type", "openai"),
                ("secret", "sk-bad-0000000000001"),
                ("metadata.api_base", "http://169.254.169.254/v1"),
            ],
            true,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    // Empty project name, unknown role, wrong delete confirmation.
    let (st, _, body) = ui
        .post(
            &format!("/ui/orgs/{}/projects", app.org_id),
            &[("name", "  ")],
            true,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains(r#"role="alert""#));
    let (st, _, body) = ui
        .post(
            &format!("/ui/orgs/{}/api-keys", app.org_id),
            &[("name", "k"), ("role", "root")],
            true,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("Not created"), "{body}");
    let (st, _, body) = ui
        .post(
            &format!("/ui/projects/{}", app.project_id),
            &[("action", "delete"), ("confirm", "wrong")],
            true,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("Type the project name (default) to confirm."),
        "{body}"
    );
    // A malformed id in the path is a page, not a 500 or JSON.
    let (st, h, body) = ui.get("/ui/projects/not-an-id/logs").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        h["content-type"].to_str().unwrap().starts_with("text/html"),
        "{body}"
    );
    // A bad log filter keeps the page and names the filter.
    let (st, _, body) = ui
        .get(&format!(
            "/ui/projects/{}/logs?from=yesterday",
            app.project_id
        ))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body.contains(
            r#"id="f-from" name="from" type="datetime-local" value="yesterday" aria-invalid="true""#
        ),
        "{body}"
    );
    // Nothing was saved along the way.
    let (_, providers) = app
        .get(&format!("/api/v1/orgs/{}/providers", app.org_id))
        .await;
    assert_eq!(providers.as_array().unwrap().len(), 0, "{providers}");
    let (_, projects) = app
        .get(&format!("/api/v1/orgs/{}/projects", app.org_id))
        .await;
    assert_eq!(projects.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn members_see_providers_but_cannot_change_them() {
    let app = TestApp::spawn().await;
    let (st, _) = app
        .post(
            &format!("/api/v1/orgs/{}/providers", app.org_id),
            json!({"type": "openai", "secret": "sk-member-view-00000001"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let member = app.member("reader@example.com", "member").await;
    let ui = Ui::new(&app, Some(&member));
    let path = format!("/ui/orgs/{}/providers", app.org_id);
    let (st, _, body) = ui.get(&path).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("sk-…0001"), "members see the masked key");
    assert!(!body.contains("sk-member-view-00000001"));
    assert!(
        !body.contains("Add a key") && !body.contains("Replace or remove"),
        "no edit forms"
    );
    let (st, _, body) = ui
        .post(
            &path,
            &[("type", "anthropic"), ("secret", "sk-ant-member-000001")],
            true,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let (_, list) = app
        .get(&format!("/api/v1/orgs/{}/providers", app.org_id))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1, "nothing added: {list}");
    let id = list[0]["id"].as_str().unwrap();
    let (st, _, _) = ui
        .post(
            &format!("/ui/providers/{id}"),
            &[("action", "delete")],
            true,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // And another org's pages are not found, not leaked.
    let (other_org, _) = app.other_org("elsewhere").await;
    let (st, _, _) = ui.get(&format!("/ui/orgs/{other_org}/providers")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn user_content_is_escaped() {
    let app = TestApp::spawn().await;
    let evil = r#"<script>alert("x")</script>"#;
    let (st, _) = app
        .post(
            &format!("/api/v1/orgs/{}/projects", app.org_id),
            json!({"name": evil}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let s = app.login_admin().await;
    let (_, _, body) = Ui::new(&app, Some(&s))
        .get(&format!("/ui/orgs/{}/projects", app.org_id))
        .await;
    assert!(!body.contains(evil), "raw markup from a project name");
    assert!(
        body.contains("&#60;script&#62;") || body.contains("&lt;script&gt;"),
        "{body}"
    );
}

#[tokio::test]
async fn an_invitation_sets_a_password_once() {
    let app = TestApp::spawn().await;
    let (st, m) = app
        .post(
            &format!("/api/v1/orgs/{}/members", app.org_id),
            json!({"email": "invitee@example.com", "role": "member"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    let token = m["invite_token"].as_str().unwrap().to_string();
    let anon = Ui::new(&app, None);
    let path = format!("/ui/invite/{token}");
    let (st, _, body) = anon.get(&path).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("Set your password"));
    let (st, _, body) = anon
        .post(
            &path,
            &[
                ("password", "Tr0ub4dor&3-horse!"),
                ("confirm", "different-one-123"),
            ],
            false,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains("differ"));
    let (st, _, body) = anon
        .post(&path, &[("password", "short"), ("confirm", "short")], false)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, h, _) = anon
        .post(
            &path,
            &[
                ("password", "Tr0ub4dor&3-horse!"),
                ("confirm", "Tr0ub4dor&3-horse!"),
            ],
            false,
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(h[LOCATION], "/ui/login?done=password-set");
    app.login("invitee@example.com", "Tr0ub4dor&3-horse!").await;
    let (st, _, _) = anon
        .post(
            &path,
            &[
                ("password", "An0ther-horse-42!"),
                ("confirm", "An0ther-horse-42!"),
            ],
            false,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "the link works once");
}
