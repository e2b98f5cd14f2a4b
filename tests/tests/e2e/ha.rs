//! High availability and operations: two control-plane replicas on one database, nodes moving
//! between replicas, and a node draining on SIGTERM while a stream is still running.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tests::fake::openai::{FakeOpenAi, Reply};
use tests::sse;
use tests::stack::{ControlPlane, Node};

/// A node given both replicas' gRPC URLs (A first), serving A's current version.
async fn node_on_both(a: &ControlPlane, b: &ControlPlane) -> Node {
    let both = format!("{},{}", a.grpc_url(), b.grpc_url());
    let node = Node::spawn_unready(
        &both,
        &a.node_token,
        Arc::new(tempfile::tempdir().unwrap()),
        &[],
    )
    .await;
    node.wait_version(a.current_version().await).await;
    node
}

#[tokio::test]
async fn replicas_share_changes_and_nodes_move_when_one_dies() {
    let mut a = ControlPlane::start().await;
    let b = a.replica().await;
    let key = a.key("proxy", None).await;
    let n_a = Node::start(&a).await;
    let n_b = Node::start(&b).await;
    // A node given both replicas (A first): it connects to A, and to B once A is gone.
    let n_ab = node_on_both(&a, &b).await;

    // A change made through replica A reaches the node connected to replica B.
    let fake = FakeOpenAi::start("sk-ha-000000000001").await;
    let started = Instant::now();
    a.org_provider(json!({"type": "openai", "secret": "sk-ha-000000000001", "metadata": {"api_base": fake.base()}})).await;
    let v = a.current_version().await;
    n_b.wait_version(v).await;
    let took = started.elapsed();
    // PostgreSQL: LISTEN/NOTIFY (plus a 1 s version check as a safety net); SQLite replicas
    // (one file) rely on the check alone.
    let bound = if a.db.backend == "postgres" {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    };
    assert!(
        took <= bound,
        "change via A reached B's node after {took:?} ({})",
        a.db.backend
    );
    for n in [&n_a, &n_ab] {
        n.wait_version(v).await;
    }
    for n in [&n_a, &n_b, &n_ab] {
        let (s, _, b) = n.chat(&key, "gpt-4o", &[]).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    // Kill replica A while traffic flows: no request fails on any node.
    let traffic = {
        let (urls, key) = ([n_a.url(""), n_b.url(""), n_ab.url("")], key.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut failures = Vec::new();
            let mut sent = 0;
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                for u in &urls {
                    let r = http
                        .post(format!("{u}/v1/proxy/chat/completions"))
                        .bearer_auth(&key)
                        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}))
                        .send()
                        .await;
                    sent += 1;
                    match r {
                        Ok(r) if r.status() == StatusCode::OK => {}
                        Ok(r) => failures.push(format!("{u}: {}", r.status())),
                        Err(e) => failures.push(format!("{u}: {e}")),
                    }
                }
            }
            (sent, failures)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill().await;
    let (sent, failures) = traffic.await.unwrap();
    assert!(sent > 30, "traffic flowed ({sent} requests)");
    assert!(failures.is_empty(), "{failures:?}");

    // The two-replica node moved to B: a change made through B reaches it.
    let p = b.project("after-failover").await;
    let v2 = b.current_version().await;
    assert!(v2 > v);
    n_b.wait_version(v2).await;
    n_ab.wait_version(v2).await;
    let (_, nodes) = b.api("GET", "/api/v1/nodes", None).await;
    let connected = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["connected"] == true)
        .count();
    assert!(
        connected >= 2,
        "B serves its own node and the one that moved: {nodes}"
    );
    assert!(!p.is_empty());
}

#[tokio::test]
async fn sigterm_lets_a_running_stream_finish() {
    let cp = ControlPlane::start().await;
    let fake = FakeOpenAi::start("sk-drain-00000000001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-drain-00000000001", "metadata": {"api_base": fake.base()}})).await;
    let mut node = Node::start_with(
        &cp,
        Arc::new(tempfile::tempdir().unwrap()),
        &[("AIPROXY_DRAIN_TIMEOUT_SECS", "20")],
    )
    .await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    fake.push(Reply::Slow {
        chunks: 20,
        gap: Duration::from_millis(100),
    });
    let resp = reqwest::Client::new()
        .post(node.url("/v1/proxy/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut resp = resp;
    let mut body = Vec::new();
    // The first chunk is out: now ask the node to stop.
    body.extend_from_slice(&resp.chunk().await.unwrap().unwrap());
    node.terminate();
    // While draining it reports not ready (so a load balancer stops sending new work).
    let mut saw_not_ready = false;
    for _ in 0..20 {
        match reqwest::get(node.url("/readyz")).await {
            Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                saw_not_ready = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            // Already no longer accepting connections: also correct.
            Err(_) => {
                saw_not_ready = true;
                break;
            }
        }
    }
    assert!(saw_not_ready, "a draining node is not ready");
    while let Some(c) = resp.chunk().await.unwrap() {
        body.extend_from_slice(&c);
    }
    let text = String::from_utf8(body).unwrap();
    let events = sse::data_events(&text);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "the stream completed: {text}"
    );
    assert!(sse::chunks(&text).len() >= 20, "{text}");
    let status = node.wait_exit(Duration::from_secs(25)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit after the drain:\n{}",
        node.logs.text()
    );
}

#[tokio::test]
async fn database_outage_is_503_and_recovers_without_restart() {
    let mut cp = ControlPlane::start().await;
    if cp.db.backend != "postgres" {
        // A SQLite file cannot become unreachable; this runs in CI's PostgreSQL pass.
        eprintln!("skipped on {}: needs PostgreSQL", cp.db.backend);
        return;
    }
    // Put a cuttable relay between the control plane and PostgreSQL.
    let rest = cp.db.url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let hostport = authority.rsplit('@').next().unwrap().to_string();
    let target = tokio::net::lookup_host(&hostport)
        .await
        .unwrap()
        .next()
        .unwrap();
    let relay = tests::relay::Relay::start(target).await;
    cp.kill().await;
    for (k, v) in cp.env.iter_mut() {
        if k == "AIPROXY_DATABASE_URL" {
            *v = v.replacen(&hostport, &relay.addr.to_string(), 1);
        }
    }
    cp.spawn().await;
    let fake = FakeOpenAi::start("sk-dbdown-0000000001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-dbdown-0000000001", "metadata": {"api_base": fake.base()}})).await;
    let node = Node::start(&cp).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    let projects = format!("/api/v1/orgs/{}/projects", cp.org_id);

    // Thirty seconds without the database: writes are 503 naming the database, readiness is
    // 503, and nodes keep serving from their snapshot the whole time.
    relay.cut();
    let outage = Instant::now();
    let mut calls: i64 = 0;
    while outage.elapsed() < Duration::from_secs(30) {
        let (s, b) = cp
            .api("POST", &projects, Some(json!({"name": "during-outage"})))
            .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains("database"),
            "{b}"
        );
        let r = reqwest::get(format!("http://{}/readyz", cp.http_addr))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        for _ in 0..3 {
            let (s, _, b) = node.chat(&key, "gpt-4o", &[]).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            calls += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    relay.restore();
    // Recovers without a restart; nothing half-written from the failed attempt.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, b) = cp
            .api("POST", &projects, Some(json!({"name": "after-outage"})))
            .await;
        if s == StatusCode::CREATED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {s} {b}\n{}",
            cp.logs.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, list) = cp.api("GET", &projects, None).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"after-outage") && !names.contains(&"during-outage"),
        "{names:?}"
    );
    node.wait_version(cp.current_version().await).await;
    let (s, _, _) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK);
    // Usage recorded during the outage arrives afterwards: nothing lost, nothing doubled.
    cp.wait_requests(calls + 1, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_node_killed_mid_stream_fails_only_its_own_clients() {
    let cp = ControlPlane::start().await;
    let fake = FakeOpenAi::start("sk-crash-00000000001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-crash-00000000001", "metadata": {"api_base": fake.base()}})).await;
    let mut doomed = Node::start(&cp).await;
    let other = Node::start(&cp).await;
    let key = cp.key("proxy", None).await;
    let v = cp.current_version().await;
    doomed.wait_version(v).await;
    other.wait_version(v).await;
    let slow = Reply::Slow {
        chunks: 30,
        gap: Duration::from_millis(100),
    };
    fake.push(slow.clone());
    fake.push(slow);
    let open = |node: &Node| {
        reqwest::Client::new()
            .post(node.url("/v1/proxy/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}))
            .send()
    };
    let mut a = open(&doomed).await.unwrap();
    let mut b = open(&other).await.unwrap();
    assert_eq!(a.status(), StatusCode::OK);
    assert_eq!(b.status(), StatusCode::OK);
    let mut a_body = a.chunk().await.unwrap().unwrap().to_vec();
    let mut b_body = b.chunk().await.unwrap().unwrap().to_vec();
    // SIGKILL: no drain, no goodbye.
    doomed.kill().await;
    // The doomed node's client sees its stream end without `[DONE]` (an error or a cut body),
    // never a hang.
    let a_end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match a.chunk().await {
                Ok(Some(c)) => a_body.extend_from_slice(&c),
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the client of a killed node is not left hanging");
    let a_text = String::from_utf8_lossy(&a_body).to_string();
    assert!(
        a_end.is_err() || sse::data_events(&a_text).last().map(String::as_str) != Some("[DONE]"),
        "a killed node cannot have finished the stream: {a_text}"
    );
    // The other node's stream runs to completion, and it keeps serving.
    while let Some(c) = b.chunk().await.unwrap() {
        b_body.extend_from_slice(&c);
    }
    let b_text = String::from_utf8(b_body).unwrap();
    assert_eq!(
        sse::data_events(&b_text).last().map(String::as_str),
        Some("[DONE]"),
        "{b_text}"
    );
    assert!(sse::chunks(&b_text).len() >= 30, "{b_text}");
    let (s, _, body) = other.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

/// Rotating the master key the way the operator guide says (roll every replica to new + old
/// key, re-encrypt once, roll to the new key alone) while nodes serve traffic: no request fails,
/// and afterwards replicas holding only the new key open every secret.
#[tokio::test]
async fn master_key_rotation_without_downtime() {
    let mut a = ControlPlane::start().await;
    let mut b = a.replica().await;
    let key = a.key("proxy", None).await;
    let fake = FakeOpenAi::start("sk-rotate-000000000001").await;
    let first = a
        .org_provider(json!({"type": "openai", "secret": "sk-rotate-000000000001", "metadata": {"api_base": fake.base()}}))
        .await;
    let node = node_on_both(&a, &b).await;
    let (s, _, body) = node.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK, "{body}");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (url, key, stop) = (node.url(""), key.clone(), stop.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut sent, mut failures) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = http
                    .post(format!("{url}/v1/proxy/chat/completions"))
                    .bearer_auth(&key)
                    .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}))
                    .send()
                    .await;
                sent += 1;
                match r {
                    Ok(r) if r.status() == StatusCode::OK => {}
                    Ok(r) => failures.push(r.status().to_string()),
                    Err(e) => failures.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (sent, failures)
        })
    };
    let set_keys = |cp: &mut ControlPlane, current: &str, old: Option<&str>| {
        cp.env
            .retain(|(k, _)| k != "AIPROXY_MASTER_KEY" && k != "AIPROXY_OLD_MASTER_KEYS");
        cp.env
            .push(("AIPROXY_MASTER_KEY".into(), current.to_string()));
        if let Some(o) = old {
            cp.env
                .push(("AIPROXY_OLD_MASTER_KEYS".into(), o.to_string()));
        }
    };
    let old_key = a
        .env
        .iter()
        .find(|(k, _)| k == "AIPROXY_MASTER_KEY")
        .map(|(_, v)| v.clone())
        .unwrap();
    let new_key = control_plane::crypto::secrets::generate_master_key();
    // 1. Roll each replica to the new key with the old one still accepted.
    for cp in [&mut a, &mut b] {
        cp.kill().await;
        set_keys(cp, &new_key, Some(&old_key));
        cp.spawn().await;
    }
    // 2. Re-encrypt once.
    let out = tokio::process::Command::new(tests::stack::bin("e2e-control-plane"))
        .arg("rotate-master-key")
        .env_clear()
        .envs(a.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("re-encrypted"), "{printed}");
    assert!(!printed.contains(&new_key) && !printed.contains(&old_key));
    // 3. Roll each replica to the new key alone.
    for cp in [&mut a, &mut b] {
        cp.kill().await;
        set_keys(cp, &new_key, None);
        cp.spawn().await;
    }
    // The new key alone opens the secret written under the old one (a PATCH re-reads it), and
    // a change made now reaches the node with both credentials in it.
    let (s, p) = a
        .api(
            "PATCH",
            &format!("/api/v1/providers/{first}"),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    b.org_provider(json!({"type": "openai", "name": "second", "secret": "sk-rotate-000000000001", "metadata": {"api_base": fake.base()}}))
        .await;
    node.wait_version(b.current_version().await).await;
    for name in ["renamed", "second"] {
        let (s, h, body) = node
            .chat(&key, "gpt-4o", &[("x-bt-endpoint-name", name)])
            .await;
        assert_eq!(s, StatusCode::OK, "{name}: {body}");
        assert_eq!(h["x-bt-used-endpoint"], name);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failures) = traffic.await.unwrap();
    assert!(sent > 20, "traffic ran throughout ({sent} requests)");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {failures:?}",
        failures.len()
    );
    // The control plane's logs never show either master key.
    for cp in [&a, &b] {
        let logs = cp.logs.text();
        assert!(!logs.contains(&new_key) && !logs.contains(&old_key));
    }
}
