//! Secrets at rest: nothing plaintext in the database; ciphertexts bound to their owner.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::TestApp;

const SECRETS: [&str; 4] = [
    "sk-live-PLAINTEXT-openai-7d1f",
    "sk-ant-PLAINTEXT-anthropic-99",
    "aws-PLAINTEXT-secret-access-key",
    "PLAINTEXT-session-token-55",
];

async fn store_secrets(app: &TestApp) {
    let org = format!("/api/v1/orgs/{}/providers", app.org_id);
    let proj = format!("/api/v1/projects/{}/providers", app.project_id);
    assert_eq!(
        app.post(&org, json!({"type": "openai", "secret": SECRETS[0]}))
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        app.post(&proj, json!({"type": "anthropic", "secret": SECRETS[1]}))
            .await
            .0,
        StatusCode::CREATED
    );
    let (s, b) = app.post(&org, json!({"type": "bedrock", "secret": SECRETS[2], "metadata": {"region": "us-east-1", "access_key_id": "AKIDEXAMPLE", "session_token": SECRETS[3]}})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

/// Every text and blob of every row of every table, as one string.
async fn dump_database(app: &TestApp) -> String {
    let st = &app.running.as_ref().unwrap().state;
    control_plane::testing::dump_text(st.db().pool()).await
}

#[tokio::test]
async fn no_plaintext_secret_in_the_database() {
    let app = TestApp::spawn().await;
    store_secrets(&app).await;
    let dump = dump_database(&app).await;
    assert!(
        dump.contains("AKIDEXAMPLE"),
        "the dump reads the credential rows"
    );
    for s in SECRETS {
        assert!(!dump.contains(s), "{s} found in the database rows");
    }
    assert!(
        !dump.contains(&app.admin_key),
        "the bootstrap API key is stored only as a hash"
    );
    assert!(!dump.contains(control_plane::testing::TEST_ADMIN_PASSWORD));
    // The raw SQLite files (database and WAL) too.
    if let Some(file) = app.db.sqlite_file() {
        let mut raw = std::fs::read(&file).unwrap();
        raw.extend(std::fs::read(file.with_extension("db-wal")).unwrap_or_default());
        for s in SECRETS.iter().copied().chain([
            app.admin_key.as_str(),
            control_plane::testing::TEST_ADMIN_PASSWORD,
        ]) {
            assert!(
                !raw.windows(s.len()).any(|w| w == s.as_bytes()),
                "{s} found in the raw database file"
            );
        }
        assert!(
            raw.windows(11).any(|w| w == b"AKIDEXAMPLE"),
            "the raw scan sees stored data"
        );
    }
}

#[tokio::test]
async fn ciphertext_moved_to_another_tenant_does_not_decrypt() {
    let app = TestApp::spawn().await;
    let (other_org, other_key) = app.other_org("tenant-b").await;
    let (_, a) = app
        .post(
            &format!("/api/v1/orgs/{}/providers", app.org_id),
            json!({"type": "openai", "secret": SECRETS[0]}),
        )
        .await;
    let (s, b) = app
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/orgs/{other_org}/providers"),
            Some(&other_key),
            Some(json!({"type": "openai", "secret": "sk-tenant-b-own-secret-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let st = &app.running.as_ref().unwrap().state;
    // An attacker with database access copies A's ciphertext onto B's row.
    let row = sqlx::query("SELECT sealed_secret FROM provider_credentials WHERE id = $1")
        .bind(a["id"].as_str().unwrap().to_string())
        .fetch_one(st.db().pool())
        .await
        .unwrap();
    use sqlx::Row;
    let sealed: String = row.try_get("sealed_secret").unwrap();
    sqlx::query("UPDATE provider_credentials SET sealed_secret = $1 WHERE id = $2")
        .bind(sealed)
        .bind(b["id"].as_str().unwrap().to_string())
        .execute(st.db().pool())
        .await
        .unwrap();
    // B's credential no longer decrypts: it is left out of snapshots, and never yields A's secret.
    assert!(
        crate::providers::node_view(&app, b["id"].as_str().unwrap())
            .await
            .is_none()
    );
    assert!(
        crate::providers::node_view(&app, a["id"].as_str().unwrap())
            .await
            .is_some()
    );
    let (s, e) = app
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/providers/{}", b["id"].as_str().unwrap()),
            Some(&other_key),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::INTERNAL_SERVER_ERROR,
        "tampered rows are an operator problem: {e}"
    );
    assert!(!e.to_string().contains(SECRETS[0]));
}
