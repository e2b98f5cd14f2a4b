//! Secret hygiene after a full run: credentials created, used (JSON and streams, payload
//! logging on), failing upstream calls whose error bodies echo the key, a rotation, a deletion,
//! a control-plane outage that sends request logs to the node's spool, and the web admin's
//! pages. Then every place a secret could leak is scanned for every secret: both services' logs
//! at debug level, both `/metrics`, every response the clients received, the node's disk cache
//! and spool, and the database (rows through SQL, and the raw SQLite files).

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::fake::openai::{FakeOpenAi, Reply};
use tests::stack::{ControlPlane, Node};

fn files_under(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p.display().to_string(), bytes));
        }
    }
}

async fn database_text(cp: &ControlPlane) -> String {
    let db = control_plane::db::Db::connect(&cp.db.url).await.unwrap();
    control_plane::testing::dump_text(db.pool()).await
}

#[tokio::test]
async fn no_plaintext_secret_anywhere_after_a_full_run() {
    let debug = [("AIPROXY_LOG_LEVEL", "debug")];
    let mut cp = ControlPlane::start_with(&debug).await;
    let mut node = Node::start_with(
        &cp,
        std::sync::Arc::new(tempfile::tempdir().unwrap()),
        &debug,
    )
    .await;
    let (good, rotated, echo401, echo400, header) = (
        "sk-hyg-good-00000000000000001",
        "sk-hyg-rotated-000000000000002",
        "sk-hyg-echo401-00000000000003",
        "sk-hyg-echo400-00000000000004",
        "hdr-hyg-secret-00000000000005",
    );
    let mut seen: Vec<String> = Vec::new(); // every response body a client received
    let fake = FakeOpenAi::start(good).await;
    let fake_rotated = FakeOpenAi::start(rotated).await;
    let fake401 = FakeOpenAi::start(echo401).await;
    let fake400 = FakeOpenAi::start(echo400).await;

    // Credentials: org key, a project key (shadows it in its project), a custom provider with
    // a secret header, and two keys whose upstreams will echo them back in errors.
    let p_echo = cp.project("echo").await;
    let good_id = cp
        .org_provider(
            json!({"type": "openai", "secret": good, "metadata": {"api_base": fake.base()}}),
        )
        .await;
    cp.org_provider(
        json!({"type": "custom", "name": "house", "secret": good, "metadata": {
        "api_base": fake.base(), "format": "openai", "headers": {"X-Team-Secret": header},
        "custom_models": {"house-model": {"flavor": "chat"}}}}),
    )
    .await;
    cp.project_provider(
        &p_echo,
        json!({"type": "openai", "secret": echo401, "metadata": {"api_base": fake401.base()}}),
    )
    .await;
    let p400 = cp.project("echo400").await;
    cp.project_provider(
        &p400,
        json!({"type": "openai", "secret": echo400, "metadata": {"api_base": fake400.base()}}),
    )
    .await;
    let key = cp.key("proxy", None).await;
    let v = cp.current_version().await;
    node.wait_version(v).await;

    // Use them: JSON, stream, custom model, all logged with payloads.
    let parent = [("x-bt-parent", "project_name:default")];
    for model in ["gpt-4o", "house-model"] {
        let (s, _, b) = node.chat(&key, model, &parent).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        seen.push(b.to_string());
    }
    let (s, _, b) = node
        .post(
            "/v1/proxy/chat/completions",
            &key,
            json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
            &parent,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    seen.push(b.to_string());
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.headers.get("x-team-secret").is_some_and(|h| h == header)),
        "the header reached the custom upstream"
    );

    // Upstreams that echo the key: 401 (reported as provider_auth_failed) and 400 (passed
    // through, scrubbed).
    fake401.push(Reply::Status {
        status: 401,
        body: json!({"error": {"message": format!("Incorrect API key provided: {echo401}"), "type": "invalid_request_error", "code": "invalid_api_key"}}),
        headers: vec![],
    });
    let (s, _, b) = node
        .chat(&key, "gpt-4o", &[("x-bt-parent", "project_name:echo")])
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    seen.push(b.to_string());
    fake400.push(Reply::Status {
        status: 400,
        body: json!({"error": {"message": format!("bad request for key {echo400}"), "type": "invalid_request_error"}}),
        headers: vec![],
    });
    let (s, _, b) = node
        .chat(&key, "gpt-4o", &[("x-bt-parent", "project_name:echo400")])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    seen.push(b.to_string());

    // Rotate the org key, then delete the project key; reads along the way.
    let (s, b) = cp
        .api(
            "PATCH",
            &format!("/api/v1/providers/{good_id}"),
            Some(json!({"secret": rotated, "metadata": {"api_base": fake_rotated.base()}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    seen.push(b.to_string());
    for path in [
        format!("/api/v1/orgs/{}/providers", cp.org_id),
        format!("/api/v1/projects/{p_echo}/providers"),
        format!("/api/v1/projects/{}/logs", cp.project_id),
        format!("/api/v1/orgs/{}/audit-log", cp.org_id),
        format!("/api/v1/orgs/{}/models", cp.org_id),
        "/api/v1/nodes".to_string(),
    ] {
        let (s, b) = cp.api("GET", &path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        seen.push(b.to_string());
    }
    let (_, list) = cp
        .api("GET", &format!("/api/v1/projects/{p_echo}/providers"), None)
        .await;
    let echo_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["scope"] == "project")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = cp
        .api("DELETE", &format!("/api/v1/providers/{echo_id}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    node.wait_version(cp.current_version().await).await;
    let (s, _, b) = node.chat(&key, "gpt-4o", &parent).await;
    assert_eq!(s, StatusCode::OK, "the rotated key serves: {b}");
    assert_eq!(fake_rotated.count(), 1);
    seen.push(b.to_string());

    // Log details and web admin pages, as the admin sees them.
    cp.wait_requests(6, Duration::from_secs(15)).await;
    let (_, logs) = cp
        .api(
            "GET",
            &format!("/api/v1/projects/{}/logs", cp.project_id),
            None,
        )
        .await;
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("http://{}/api/v1/auth/login", cp.http_addr))
        .json(&json!({"email": control_plane::testing::TEST_ADMIN_EMAIL, "password": control_plane::testing::TEST_ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    seen.push(login.to_string());
    let session = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = session
        .post(format!("http://{}/api/v1/auth/login", cp.http_addr))
        .json(&json!({"email": control_plane::testing::TEST_ADMIN_EMAIL, "password": control_plane::testing::TEST_ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut pages = vec![
        format!("/ui/orgs/{}/providers", cp.org_id),
        format!("/ui/orgs/{}/custom-providers", cp.org_id),
        format!("/ui/projects/{p_echo}/providers"),
        format!("/ui/projects/{}/logs", cp.project_id),
        format!("/ui/orgs/{}/audit", cp.org_id),
        format!("/ui/orgs/{}/dashboard", cp.org_id),
        format!("/ui/orgs/{}/api-keys", cp.org_id),
    ];
    for l in logs["logs"].as_array().unwrap() {
        let id = l["id"].as_str().unwrap();
        let (s, d) = cp
            .api(
                "GET",
                &format!("/api/v1/projects/{}/logs/{id}", cp.project_id),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        seen.push(d.to_string());
        pages.push(format!("/ui/projects/{}/logs/{id}", cp.project_id));
    }
    for p in &pages {
        let r = session
            .get(format!("http://{}{p}", cp.http_addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{p}");
        let html = r.text().await.unwrap();
        assert!(html.contains("</html>"), "{p}");
        seen.push(html);
    }
    assert!(
        seen.iter()
            .any(|s| s.contains("headers are stored and hidden")),
        "the custom provider page says headers are stored, without showing them"
    );

    // Control plane down: request logs go to the node's spool; a graceful stop flushes it.
    let cp_logs_before = cp.logs.text();
    cp.kill().await;
    for _ in 0..3 {
        let (s, _, b) = node.chat(&key, "gpt-4o", &parent).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        seen.push(b.to_string());
    }
    let node_logs_before = node.logs.text();
    node.terminate();
    assert!(node.wait_exit(Duration::from_secs(30)).await.is_some());
    let mut disk = Vec::new();
    files_under(node.cache_dir.path(), &mut disk);
    assert!(
        disk.iter().any(|(p, _)| p.contains("spool")),
        "the spool holds the records: {:?}",
        disk.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert!(disk.iter().any(|(p, _)| p.ends_with("snapshot.bin")));
    cp.spawn().await;
    node.respawn().await;
    cp.wait_requests(9, Duration::from_secs(20)).await;

    // The scan.
    let mut texts: Vec<(String, String)> = vec![
        ("control-plane log (before restart)".into(), cp_logs_before),
        ("control-plane log".into(), cp.logs.text()),
        ("node log (before restart)".into(), node_logs_before),
        ("node log".into(), node.logs.text()),
        ("node /metrics".into(), node.metrics().await),
        ("database rows".into(), database_text(&cp).await),
    ];
    let cp_metrics = reqwest::get(format!("http://{}/metrics", cp.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    texts.push(("control-plane /metrics".into(), cp_metrics));
    for (i, s) in seen.iter().enumerate() {
        texts.push((format!("response #{i}"), s.clone()));
    }
    assert!(
        texts[1].1.contains("DEBUG") || texts[1].1.contains("debug"),
        "the logs are at debug level"
    );
    let mut raw: Vec<(String, Vec<u8>)> = disk;
    if let Some(path) = cp.db.url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap();
        for suffix in ["", "-wal", "-shm"] {
            if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
                raw.push((format!("{path}{suffix}"), b));
            }
        }
    }
    let master_key = cp
        .env
        .iter()
        .find(|(k, _)| k == "AIPROXY_MASTER_KEY")
        .unwrap()
        .1
        .clone();
    let secrets = [
        good,
        rotated,
        echo401,
        echo400,
        header,
        key.as_str(),
        cp.node_token.as_str(),
        master_key.as_str(),
        control_plane::testing::TEST_ADMIN_PASSWORD,
    ];
    let mut leaks = Vec::new();
    for s in secrets {
        for (place, text) in &texts {
            if text.contains(s) {
                leaks.push(format!("{s} in {place}"));
            }
        }
        for (place, bytes) in &raw {
            if bytes.windows(s.len()).any(|w| w == s.as_bytes()) {
                leaks.push(format!("{s} in file {place}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "plaintext secrets found:\n{}",
        leaks.join("\n")
    );
    // The scan reads what it claims to read.
    assert!(
        texts[5].1.contains("OPENAI_API_KEY"),
        "database rows were read"
    );
    assert!(
        raw.iter().map(|(_, b)| b.len()).sum::<usize>() > 1000,
        "files were read"
    );
    assert!(
        seen.iter().any(|s| s.contains("sk-…0002")),
        "previews are present"
    );
}
