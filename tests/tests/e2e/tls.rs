//! gRPC between nodes and the control plane over mutual TLS (the production overlay's shape):
//! a node with a client certificate from the configured CA syncs and serves; a node without a
//! client certificate, one with a certificate from another CA, and one speaking plain HTTP/2
//! are all refused and never become ready. Certificates are made with the `openssl` CLI.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tests::fake::openai::FakeOpenAi;
use tests::stack::{ControlPlane, Node};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`{name}-ca.crt`) and a leaf signed by it (`{name}.crt`, `{name}.key`).
fn issue(dir: &Path, ca: &str, leaf: &str, ext: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    if !dir.join(format!("{ca}.crt")).exists() {
        let (k, c) = (format!("{ca}.key"), format!("{ca}.crt"));
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend([
            "-keyout",
            &k,
            "-out",
            &c,
            "-days",
            "1",
            "-subj",
            "/CN=aiproxy test CA",
        ]);
        a.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        a.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(dir, &a);
    }
    let (k, csr, c) = (
        format!("{leaf}.key"),
        format!("{leaf}.csr"),
        format!("{leaf}.crt"),
    );
    let ext_file = format!("{leaf}.ext");
    std::fs::write(dir.join(&ext_file), ext).unwrap();
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend(["-keyout", &k, "-out", &csr, "-subj", "/CN=localhost"]);
    openssl(dir, &a);
    let (cac, cak) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &cac,
            "-CAkey",
            &cak,
            "-CAcreateserial",
            "-out",
            &c,
            "-days",
            "1",
            "-extfile",
            &ext_file,
        ],
    );
}

#[tokio::test]
async fn mutual_tls_between_nodes_and_control_plane() {
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    issue(
        d,
        "ca",
        "server",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    issue(d, "ca", "node", "extendedKeyUsage=clientAuth\n");
    issue(d, "other-ca", "rogue", "extendedKeyUsage=clientAuth\n");
    let p = |f: &str| d.join(f).display().to_string();

    let cp = ControlPlane::start_with(&[
        ("AIPROXY_GRPC_TLS_CERT", &p("server.crt")),
        ("AIPROXY_GRPC_TLS_KEY", &p("server.key")),
        ("AIPROXY_GRPC_TLS_CLIENT_CA", &p("ca.crt")),
    ])
    .await;
    let https = format!("https://localhost:{}", cp.grpc_addr.port());
    let server_trust = [
        ("AIPROXY_GRPC_TLS_CA", p("ca.crt")),
        ("AIPROXY_GRPC_TLS_DOMAIN", "localhost".to_string()),
    ];
    let spawn = |url: String, extra: Vec<(&'static str, String)>| {
        let token = cp.node_token.clone();
        async move {
            let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Node::spawn_unready(&url, &token, Arc::new(tempfile::tempdir().unwrap()), &extra).await
        }
    };

    // The node with a client certificate from the CA syncs, and follows changes.
    let mut good_env = server_trust.to_vec();
    good_env.push(("AIPROXY_GRPC_TLS_CLIENT_CERT", p("node.crt")));
    good_env.push(("AIPROXY_GRPC_TLS_CLIENT_KEY", p("node.key")));
    let mut good = spawn(https.clone(), good_env).await;
    assert!(
        good.wait_ready(Duration::from_secs(20)).await,
        "mTLS node never became ready:\n{}",
        good.logs.text()
    );
    let fake = FakeOpenAi::start("sk-tls-000000000001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-tls-000000000001", "metadata": {"api_base": fake.base()}}))
        .await;
    let key = cp.key("proxy", None).await;
    good.wait_version(cp.current_version().await).await;
    let (s, _, b) = good.chat(&key, "gpt-4o", &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Refused: no client certificate; a certificate from another CA; plain HTTP/2.
    let mut rogue_env = server_trust.to_vec();
    rogue_env.push(("AIPROXY_GRPC_TLS_CLIENT_CERT", p("rogue.crt")));
    rogue_env.push(("AIPROXY_GRPC_TLS_CLIENT_KEY", p("rogue.key")));
    let mut refused = [
        (
            "no client certificate",
            spawn(https.clone(), server_trust.to_vec()).await,
        ),
        (
            "client certificate from another CA",
            spawn(https.clone(), rogue_env).await,
        ),
        ("plain HTTP/2", spawn(cp.grpc_url(), vec![]).await),
    ];
    for (what, node) in refused.iter_mut() {
        assert!(
            !node.wait_ready(Duration::from_secs(4)).await,
            "{what}: the node got a snapshot"
        );
        let r = reqwest::get(node.url("/readyz")).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
        node.kill().await;
    }
    let (_, nodes) = cp.api("GET", "/api/v1/nodes", None).await;
    let connected: Vec<_> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["connected"] == true)
        .collect();
    assert_eq!(
        connected.len(),
        1,
        "only the mTLS node is connected: {nodes}"
    );
    good.kill().await;
}
