//! Bootstrap on an empty database, restarts that create nothing twice, master-key checks and
//! rotation.

use control_plane::testing::{TEST_ADMIN_EMAIL, test_config};
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{TestApp, bootstrap_key};

#[tokio::test]
async fn empty_database_gets_default_org_project_admin_and_key() {
    let app = TestApp::spawn().await;
    let (s, orgs) = app.get("/api/v1/orgs").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(orgs.as_array().unwrap().len(), 1);
    assert_eq!(orgs[0]["name"], "default");
    let (_, projects) = app
        .get(&format!("/api/v1/orgs/{}/projects", app.org_id))
        .await;
    assert_eq!(projects[0]["name"], "default");
    let (s, me) = app.get("/api/v1/me").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (me["kind"].as_str(), me["role"].as_str()),
        (Some("api_key"), Some("admin"))
    );
    let session = app.login_admin().await;
    let (s, me) = session.send(reqwest::Method::GET, "/api/v1/me", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["email"], TEST_ADMIN_EMAIL);
    assert_eq!(me["instance_admin"], true);
}

#[tokio::test]
async fn restart_keeps_everything_and_creates_nothing_twice() {
    let mut app = TestApp::spawn().await;
    let (s, _) = app
        .post(
            &format!("/api/v1/orgs/{}/providers", app.org_id),
            json!({"type": "openai", "secret": "sk-restart-test-0001"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    app.stop().await;
    let db = std::mem::replace(&mut app.db, control_plane::testing::TestDb::new().await);
    let app2 = TestApp::spawn_with(db, app.config.clone(), app.admin_key.clone()).await;
    let (_, orgs) = app2.get("/api/v1/orgs").await;
    assert_eq!(orgs.as_array().unwrap().len(), 1, "{orgs}");
    let (_, projects) = app2
        .get(&format!("/api/v1/orgs/{}/projects", app2.org_id))
        .await;
    assert_eq!(projects.as_array().unwrap().len(), 1);
    let (_, providers) = app2
        .get(&format!("/api/v1/orgs/{}/providers", app2.org_id))
        .await;
    assert_eq!(providers.as_array().unwrap().len(), 1);
    let (_, keys) = app2
        .get(&format!("/api/v1/orgs/{}/api-keys", app2.org_id))
        .await;
    assert_eq!(
        keys.as_array().unwrap().len(),
        1,
        "the bootstrap key is registered once: {keys}"
    );
    let (_, members) = app2
        .get(&format!("/api/v1/orgs/{}/members", app2.org_id))
        .await;
    assert_eq!(members.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn wrong_master_key_fails_startup_with_a_clear_message() {
    let mut app = TestApp::spawn().await;
    let (s, _) = app
        .post(
            &format!("/api/v1/orgs/{}/providers", app.org_id),
            json!({"type": "anthropic", "secret": "sk-ant-master-key-test"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    app.stop().await;
    let mut cfg = app.config.clone();
    cfg.master_key = Some(data_plane::secret::Secret::new(
        control_plane::crypto::secrets::generate_master_key(),
    ));
    let err = control_plane::run::start(cfg, control_plane::service::bootstrap::Mode::Serve)
        .await
        .err()
        .expect("startup must fail");
    let msg = format!("{err:#}");
    assert!(
        msg.starts_with("AIPROXY_MASTER_KEY: stored secrets were encrypted with master key"),
        "{msg}"
    );
    let mut cfg = app.config.clone();
    cfg.master_key = Some(data_plane::secret::Secret::new("too-short"));
    let msg = format!(
        "{:#}",
        control_plane::run::start(cfg, control_plane::service::bootstrap::Mode::Serve)
            .await
            .err()
            .expect("bad key")
    );
    assert!(msg.contains("AIPROXY_MASTER_KEY"), "{msg}");
}

#[tokio::test]
async fn master_key_rotation_reencrypts_everything() {
    let mut app = TestApp::spawn().await;
    let (_, p) = app
        .post(
            &format!("/api/v1/orgs/{}/providers", app.org_id),
            json!({"type": "openai", "secret": "sk-rotate-me-123456"}),
        )
        .await;
    let id = p["id"].as_str().unwrap().to_string();
    app.stop().await;
    let old = app.config.master_key.clone().unwrap();
    let new =
        data_plane::secret::Secret::new(control_plane::crypto::secrets::generate_master_key());
    // Step 1: new key current, old key still accepted; rotate re-wraps everything.
    let mut rotating = app.config.clone();
    rotating.master_key = Some(new.clone());
    rotating.old_master_keys = vec![old];
    let st = control_plane::run::open(
        rotating,
        std::sync::Arc::new(control_plane::clock::SystemClock),
    )
    .await
    .unwrap();
    let n = control_plane::service::rotate::rotate_master_key(&st)
        .await
        .unwrap();
    assert!(
        n >= 2,
        "the credential and the signing key are re-wrapped, got {n}"
    );
    st.db().close().await;
    // Step 2: only the new key: everything still decrypts (a PATCH opens the sealed secret).
    let mut after = app.config.clone();
    after.master_key = Some(new);
    let db = std::mem::replace(&mut app.db, control_plane::testing::TestDb::new().await);
    let app2 = TestApp::spawn_with(db, after, app.admin_key.clone()).await;
    let (s, p) = app2
        .patch(
            &format!("/api/v1/providers/{id}"),
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let snap = control_plane::service::snapshot::build(&app2.running.as_ref().unwrap().state)
        .await
        .unwrap();
    assert_eq!(snap.counts().3, 1, "the credential is in the snapshot");
}

#[tokio::test]
async fn bootstrap_admin_password_must_meet_the_policy() {
    let db = control_plane::testing::TestDb::new().await;
    let mut cfg = test_config(&db, &bootstrap_key());
    cfg.bootstrap_admin_password = Some(data_plane::secret::Secret::new("short"));
    let err = control_plane::run::start(cfg, control_plane::service::bootstrap::Mode::Serve)
        .await
        .err()
        .expect("weak password refused");
    assert!(
        format!("{err:#}").contains("AIPROXY_BOOTSTRAP_ADMIN_PASSWORD"),
        "{err:#}"
    );
}
