//! `standalone`: the control plane and an embedded node in one process, both configured from
//! the same environment.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::stack::{bin, free_port, wait_http_ok};
use tokio::process::Command;

#[tokio::test]
async fn standalone_serves_both_and_its_node_reads_the_node_variables() {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc, proxy) = (free_port(), free_port(), free_port());
    let key = format!("aip_e2e_{}", uuid::Uuid::new_v4().simple());
    let mut child = Command::new(bin("e2e-control-plane"))
        .arg("standalone")
        .env_clear()
        .envs([
            ("AIPROXY_DATA_DIR", dir.path().to_str().unwrap().to_string()),
            ("AIPROXY_HTTP_ADDR", format!("127.0.0.1:{http}")),
            ("AIPROXY_GRPC_ADDR", format!("127.0.0.1:{grpc}")),
            ("AIPROXY_PROXY_ADDR", format!("127.0.0.1:{proxy}")),
            ("AIPROXY_BOOTSTRAP_API_KEY", key.clone()),
            // A node variable: the embedded node used to run on its defaults whatever was set.
            ("AIPROXY_MAX_BODY_BYTES", "2000".to_string()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for url in [
        format!("http://127.0.0.1:{http}/readyz"),
        format!("http://127.0.0.1:{proxy}/readyz"),
    ] {
        assert!(
            wait_http_ok(&url, Duration::from_secs(30)).await,
            "{url} never became ready"
        );
    }
    let post = |content: String| {
        let key = key.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!(
                    "http://127.0.0.1:{proxy}/v1/proxy/chat/completions"
                ))
                .bearer_auth(key)
                .json(
                    &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}),
                )
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap())
        }
    };
    // Within the limit the body is read (no provider credential is configured: a 4xx about
    // that, not about the size).
    let (s, b) = post("hi".into()).await;
    assert!(
        s.is_client_error() && s != StatusCode::PAYLOAD_TOO_LARGE,
        "{s} {b}"
    );
    let (s, b) = post("x".repeat(3000)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(b["error"]["code"], "request_too_large");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("2000"),
        "{b}"
    );
    child.kill().await.unwrap();
}
