//! The product as separate processes: a control plane (`serve`, fresh database) and data-plane
//! nodes pointed at it, with helpers to call the admin API and the proxy and to wait for
//! configuration to propagate (by polling with a deadline, never by sleeping blindly).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control_plane::testing::{TEST_ADMIN_EMAIL, TEST_ADMIN_PASSWORD, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A binary of this package: nextest and cargo set `CARGO_BIN_EXE_<name>` for integration tests;
/// otherwise it sits next to the test executable's `deps` directory.
pub fn bin(name: &str) -> std::path::PathBuf {
    if let Ok(p) = std::env::var(format!("CARGO_BIN_EXE_{name}")) {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|d| d.parent())
        .map(|d| d.join(name))
        .unwrap()
}

/// A free loopback port (bound, then released: the child binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Captured stderr of a child process, for assertions (and for debugging failures).
#[derive(Clone, Default)]
pub struct Logs(pub Arc<Mutex<String>>);

impl Logs {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

fn capture(child: &mut Child, logs: &Logs) {
    if let Some(err) = child.stderr.take() {
        let logs = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let mut g = logs.0.lock().unwrap();
                g.push_str(&l);
                g.push('\n');
            }
        });
    }
}

pub async fn wait_http_ok(url: &str, timeout: Duration) -> bool {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub struct ControlPlane {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub admin_key: String,
    pub node_token: String,
    pub org_id: String,
    pub project_id: String,
    pub env: Vec<(String, String)>,
    pub logs: Logs,
    pub db: TestDb,
    child: Option<Child>,
    http: reqwest::Client,
}

impl ControlPlane {
    pub async fn start() -> ControlPlane {
        ControlPlane::start_with(&[]).await
    }

    /// Starts `aiproxy-control-plane serve` with a fresh database and `extra` env vars.
    pub async fn start_with(extra: &[(&str, &str)]) -> ControlPlane {
        let db = TestDb::new().await;
        let admin_key = format!("aip_e2e_{}", uuid::Uuid::new_v4().simple());
        let node_token = format!("node-token-{}", uuid::Uuid::new_v4().simple());
        let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let grpc_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut env: Vec<(String, String)> = vec![
            ("AIPROXY_DATABASE_URL".into(), db.url.clone()),
            (
                "AIPROXY_MASTER_KEY".into(),
                control_plane::crypto::secrets::generate_master_key(),
            ),
            ("AIPROXY_NODE_TOKEN".into(), node_token.clone()),
            (
                "AIPROXY_BOOTSTRAP_ADMIN_EMAIL".into(),
                TEST_ADMIN_EMAIL.into(),
            ),
            (
                "AIPROXY_BOOTSTRAP_ADMIN_PASSWORD".into(),
                TEST_ADMIN_PASSWORD.into(),
            ),
            ("AIPROXY_BOOTSTRAP_API_KEY".into(), admin_key.clone()),
            ("AIPROXY_HTTP_ADDR".into(), http_addr.to_string()),
            ("AIPROXY_GRPC_ADDR".into(), grpc_addr.to_string()),
            ("AIPROXY_UPSTREAM_ALLOW_PRIVATE".into(), "true".into()),
            ("AIPROXY_LOG_LEVEL".into(), "info".into()),
        ];
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push(((*k).into(), (*v).into()));
        }
        let mut cp = ControlPlane {
            http_addr,
            grpc_addr,
            admin_key,
            node_token,
            org_id: String::new(),
            project_id: String::new(),
            env,
            logs: Logs::default(),
            db,
            child: None,
            http: reqwest::Client::new(),
        };
        cp.spawn_fresh().await;
        let (_, orgs) = cp.api("GET", "/api/v1/orgs", None).await;
        cp.org_id = orgs[0]["id"].as_str().unwrap().to_string();
        let (_, projects) = cp
            .api("GET", &format!("/api/v1/orgs/{}/projects", cp.org_id), None)
            .await;
        cp.project_id = projects[0]["id"].as_str().unwrap().to_string();
        cp
    }

    /// A second replica on the same database (same master key and node token), on its own
    /// addresses.
    pub async fn replica(&self) -> ControlPlane {
        let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let grpc_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut env = self.env.clone();
        for (k, v) in env.iter_mut() {
            match k.as_str() {
                "AIPROXY_HTTP_ADDR" => *v = http_addr.to_string(),
                "AIPROXY_GRPC_ADDR" => *v = grpc_addr.to_string(),
                _ => {}
            }
        }
        let mut cp = ControlPlane {
            http_addr,
            grpc_addr,
            admin_key: self.admin_key.clone(),
            node_token: self.node_token.clone(),
            org_id: self.org_id.clone(),
            project_id: self.project_id.clone(),
            env,
            logs: Logs::default(),
            db: self.db.shared(),
            child: None,
            http: reqwest::Client::new(),
        };
        cp.spawn_fresh().await;
        cp
    }

    /// First start: ports come from `free_port`, which another process may grab between its
    /// probe and our bind; on "Address already in use" pick new ports and try again.
    async fn spawn_fresh(&mut self) {
        for _ in 0..5 {
            if self.try_spawn().await {
                return;
            }
            if !self.logs.text().contains("Address already in use") {
                break;
            }
            self.kill().await;
            self.logs = Logs::default();
            self.http_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            self.grpc_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            for (k, v) in self.env.iter_mut() {
                match k.as_str() {
                    "AIPROXY_HTTP_ADDR" => *v = self.http_addr.to_string(),
                    "AIPROXY_GRPC_ADDR" => *v = self.grpc_addr.to_string(),
                    _ => {}
                }
            }
        }
        panic!("control plane did not become ready:\n{}", self.logs.text());
    }

    /// (Re)starts the process on the same addresses and database.
    pub async fn spawn(&mut self) {
        assert!(
            self.try_spawn().await,
            "control plane did not become ready:\n{}",
            self.logs.text()
        );
    }

    async fn try_spawn(&mut self) -> bool {
        let mut cmd = Command::new(bin("e2e-control-plane"));
        cmd.arg("serve")
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("control plane starts");
        capture(&mut child, &self.logs);
        self.child = Some(child);
        let url = format!("http://{}/readyz", self.http_addr);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if wait_http_ok(&url, Duration::from_millis(200)).await {
                return true;
            }
            // Exited (e.g. a port taken meanwhile): no point waiting longer.
            if let Some(c) = self.child.as_mut()
                && matches!(c.try_wait(), Ok(Some(_)))
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return false;
            }
        }
        false
    }

    /// SIGKILL: the control plane dies without any cleanup.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("http://{}{}", self.http_addr, path),
            )
            .bearer_auth(&self.admin_key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let s = r.status();
        let t = r.text().await.unwrap();
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    /// Adds an org-level provider; returns its id.
    pub async fn org_provider(&self, body: Value) -> String {
        let (s, v) = self
            .api(
                "POST",
                &format!("/api/v1/orgs/{}/providers", self.org_id),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn project_provider(&self, project_id: &str, body: Value) -> String {
        let (s, v) = self
            .api(
                "POST",
                &format!("/api/v1/projects/{project_id}/providers"),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn project(&self, name: &str) -> String {
        let (s, v) = self
            .api(
                "POST",
                &format!("/api/v1/orgs/{}/projects", self.org_id),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// A new API key's plaintext.
    pub async fn key(&self, role: &str, project_id: Option<&str>) -> String {
        let mut body =
            json!({"name": format!("{role}-{}", uuid::Uuid::new_v4().simple()), "role": role});
        if let Some(p) = project_id {
            body["project_id"] = json!(p);
        }
        let (s, v) = self
            .api(
                "POST",
                &format!("/api/v1/orgs/{}/api-keys", self.org_id),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["key"].as_str().unwrap().to_string()
    }

    /// The configuration version nodes should reach after the changes made so far.
    pub async fn current_version(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (s, v) = self.api("GET", "/api/v1/nodes", None).await;
            if s == StatusCode::OK
                && let Some(n) = v.as_array().and_then(|a| a.first())
            {
                return n["current_version"].as_u64().unwrap_or(0);
            }
            if Instant::now() > deadline {
                panic!("no node registered: {v}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub struct Node {
    pub addr: SocketAddr,
    pub cache_dir: Arc<tempfile::TempDir>,
    pub logs: Logs,
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    pub async fn start(cp: &ControlPlane) -> Node {
        Node::start_with(cp, Arc::new(tempfile::tempdir().unwrap()), &[]).await
    }

    /// Starts `aiproxy-data-plane` against `cp` with a given cache directory; waits until it is
    /// ready (snapshot loaded).
    pub async fn start_with(
        cp: &ControlPlane,
        cache_dir: Arc<tempfile::TempDir>,
        extra: &[(&str, &str)],
    ) -> Node {
        let mut node = Node::spawn_unready(&cp.grpc_url(), &cp.node_token, cache_dir, extra).await;
        for _ in 0..5 {
            if node.wait_ready(Duration::from_secs(30)).await {
                return node;
            }
            if !node.logs.text().contains("Address already in use") {
                break;
            }
            // The probed port was taken meanwhile: another one.
            node.kill().await;
            node.logs = Logs::default();
            node.addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            for (k, v) in node.env.iter_mut() {
                if k == "AIPROXY_PROXY_ADDR" {
                    *v = node.addr.to_string();
                }
            }
            node.respawn().await;
        }
        panic!("node did not become ready:\n{}", node.logs.text());
    }

    pub async fn spawn_unready(
        grpc_url: &str,
        token: &str,
        cache_dir: Arc<tempfile::TempDir>,
        extra: &[(&str, &str)],
    ) -> Node {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut env: Vec<(String, String)> = vec![
            ("AIPROXY_CONTROL_PLANE_URL".into(), grpc_url.into()),
            ("AIPROXY_NODE_TOKEN".into(), token.into()),
            ("AIPROXY_PROXY_ADDR".into(), addr.to_string()),
            (
                "AIPROXY_CACHE_DIR".into(),
                cache_dir.path().display().to_string(),
            ),
            ("AIPROXY_UPSTREAM_ALLOW_PRIVATE".into(), "true".into()),
            (
                "AIPROXY_NODE_ID".into(),
                format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            ),
        ];
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push(((*k).into(), (*v).into()));
        }
        let mut node = Node {
            addr,
            cache_dir,
            logs: Logs::default(),
            env,
            child: None,
        };
        node.respawn().await;
        node
    }

    pub async fn respawn(&mut self) {
        let mut cmd = Command::new(bin("e2e-data-plane"));
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("node starts");
        capture(&mut child, &self.logs);
        self.child = Some(child);
    }

    /// Waits until `/readyz` answers 200; false early if the process exited.
    pub async fn wait_ready(&mut self, timeout: Duration) -> bool {
        let url = format!("http://{}/readyz", self.addr);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if wait_http_ok(&url, Duration::from_millis(200)).await {
                return true;
            }
            if let Some(c) = self.child.as_mut()
                && matches!(c.try_wait(), Ok(Some(_)))
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return false;
            }
        }
        false
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// SIGTERM (graceful drain).
    pub fn terminate(&self) {
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        tokio::time::timeout(timeout, c.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Waits until the node serves configuration `version` or newer.
    pub async fn wait_version(&self, version: u64) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = http.get(self.url("/readyz")).send().await {
                let t = r.text().await.unwrap_or_default();
                let v: u64 = t
                    .rsplit(' ')
                    .next()
                    .and_then(|s| s.trim_end_matches(')').parse().ok())
                    .unwrap_or(0);
                if v >= version {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node never reached version {version}:\n{}",
                self.logs.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POST a JSON body to a proxy route with a key; returns status, headers and body.
    pub async fn post(
        &self,
        path: &str,
        key: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = reqwest::Client::new()
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let s = r.status();
        let h = r.headers().clone();
        let t = r.text().await.unwrap();
        (s, h, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    /// A GET with the caller's key; the body as JSON (or as a string when it is not JSON).
    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let r = reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let s = r.status();
        let t = r.text().await.unwrap();
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    /// A non-streaming chat call.
    pub async fn chat(
        &self,
        key: &str,
        model: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.post(
            "/v1/proxy/chat/completions",
            key,
            json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]}),
            headers,
        )
        .await
    }
}

impl ControlPlane {
    /// Waits until the usage API counts `n` requests for the org (all time); returns the report.
    pub async fn wait_requests(&self, n: i64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let (s, v) = self
                .api(
                    "GET",
                    &format!("/api/v1/orgs/{}/usage?group_by=model&from=0", self.org_id),
                    None,
                )
                .await;
            if s == StatusCode::OK {
                if v["totals"]["requests"].as_i64() == Some(n) {
                    return v;
                }
                last = v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("expected {n} usage records, last report: {last}");
    }
}

impl Node {
    /// The node's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A metric's value (first series whose line starts with `prefix`).
    pub async fn metric(&self, prefix: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}
