//! `TestApp`: a running control plane plus an HTTP client with helpers.

use control_plane::run::{self, Running};
use control_plane::service::bootstrap::Mode;
use control_plane::testing::{TEST_ADMIN_EMAIL, TEST_ADMIN_PASSWORD, TestDb, test_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub admin_key: String,
    pub org_id: String,
    pub project_id: String,
    pub running: Option<Running>,
    pub db: TestDb,
    pub config: control_plane::config::Config,
}

pub fn bootstrap_key() -> String {
    format!("aip_test_{}", uuid::Uuid::new_v4().simple())
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        let db = TestDb::new().await;
        let key = bootstrap_key();
        let config = test_config(&db, &key);
        TestApp::spawn_with(db, config, key).await
    }

    pub async fn spawn_with(
        db: TestDb,
        config: control_plane::config::Config,
        admin_key: String,
    ) -> TestApp {
        let running = run::start(config.clone(), Mode::Serve)
            .await
            .expect("control plane starts");
        let base = format!("http://{}", running.http_addr);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut app = TestApp {
            base,
            http,
            admin_key,
            org_id: String::new(),
            project_id: String::new(),
            running: Some(running),
            db,
            config,
        };
        let (s, orgs) = app.get("/api/v1/orgs").await;
        assert_eq!(s, StatusCode::OK, "{orgs}");
        app.org_id = orgs[0]["id"].as_str().unwrap().to_string();
        let (_, projects) = app
            .get(&format!("/api/v1/orgs/{}/projects", app.org_id))
            .await;
        app.project_id = projects[0]["id"].as_str().unwrap().to_string();
        app
    }

    /// Stops the server, keeping the database for a restart.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, Some(&self.admin_key), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Some(&self.admin_key),
            Some(body),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::PATCH,
            path,
            Some(&self.admin_key),
            Some(body),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::PUT,
            path,
            Some(&self.admin_key),
            Some(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, Some(&self.admin_key), None)
            .await
    }

    /// Signs in with email and password; returns a client carrying the session cookie and the
    /// CSRF token.
    pub async fn login(&self, email: &str, password: &str) -> Session {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let resp = http
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "login as {email}");
        let cookie = resp
            .headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let me: Value = resp.json().await.unwrap();
        Session {
            http,
            base: self.base.clone(),
            csrf: me["csrf_token"].as_str().unwrap().to_string(),
            cookie,
        }
    }

    pub async fn login_admin(&self) -> Session {
        self.login(TEST_ADMIN_EMAIL, TEST_ADMIN_PASSWORD).await
    }

    /// A second organization with its own admin API key (as the instance admin creates it).
    pub async fn other_org(&self, name: &str) -> (String, String) {
        let s = self.login_admin().await;
        let (st, org) = s
            .send(
                reqwest::Method::POST,
                "/api/v1/orgs",
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{org}");
        let org_id = org["id"].as_str().unwrap().to_string();
        let (st, key) = s
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/orgs/{org_id}/api-keys"),
                Some(json!({"name": "b-admin", "role": "admin"})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{key}");
        (org_id, key["key"].as_str().unwrap().to_string())
    }

    /// Creates an API key in the default org and returns its plaintext.
    pub async fn key(&self, role: &str, project_id: Option<&str>) -> String {
        let mut body = json!({"name": format!("{role}-key"), "role": role});
        if let Some(p) = project_id {
            body["project_id"] = json!(p);
        }
        let (st, k) = self
            .post(&format!("/api/v1/orgs/{}/api-keys", self.org_id), body)
            .await;
        assert_eq!(st, StatusCode::CREATED, "{k}");
        k["key"].as_str().unwrap().to_string()
    }

    /// Adds a member with a password and returns their signed-in session.
    pub async fn member(&self, email: &str, role: &str) -> Session {
        let pw = "Tr0ub4dor&3-horse!";
        let (st, m) = self
            .post(
                &format!("/api/v1/orgs/{}/members", self.org_id),
                json!({"email": email, "role": role, "password": pw}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{m}");
        self.login(email, pw).await
    }
}

pub struct Session {
    pub http: reqwest::Client,
    pub base: String,
    pub csrf: String,
    pub cookie: String,
}

impl Session {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.send_csrf(method, path, body, true).await
    }

    pub async fn send_csrf(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if csrf {
            req = req.header("x-csrf-token", &self.csrf);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            },
        )
    }
}

/// Asserts the error shape `{"error": {"code", "message"}}` and the code.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(
        body["error"]["code"], code,
        "expected error code {code}, got {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {body}"
    );
}
