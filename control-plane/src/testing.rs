//! Helpers for tests that run a real control plane: a fresh database per test (a SQLite file in
//! a temporary directory, or — when `AIPROXY_TEST_POSTGRES_URL` names a Postgres database — a
//! fresh schema in it) and a configuration listening on port 0.

use std::net::SocketAddr;

use data_plane::netguard::NetPolicy;
use data_plane::secret::Secret;

use crate::config::Config;

pub const TEST_ADMIN_EMAIL: &str = "admin@example.com";
pub const TEST_ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

/// A fresh database for one test. Keep it alive for the test's duration.
pub struct TestDb {
    pub url: String,
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new() -> TestDb {
        match std::env::var("AIPROXY_TEST_POSTGRES_URL") {
            Ok(admin) if !admin.is_empty() => {
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                sqlx::any::install_default_drivers();
                let pool = sqlx::AnyPool::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("AIPROXY_TEST_POSTGRES_URL: cannot connect: {e}"));
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("cannot create schema: {e}"));
                pool.close().await;
                let sep = if admin.contains('?') { '&' } else { '?' };
                TestDb {
                    url: format!("{admin}{sep}options=-c%20search_path%3D{schema}"),
                    backend: "postgres",
                    _dir: None,
                }
            }
            _ => {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("aiproxy.db").display()
                );
                TestDb {
                    url,
                    backend: "sqlite",
                    _dir: Some(dir),
                }
            }
        }
    }

    /// Another handle on the same database that does not own it (for a second control-plane
    /// replica); the original must outlive it.
    pub fn shared(&self) -> TestDb {
        TestDb {
            url: self.url.clone(),
            backend: self.backend,
            _dir: None,
        }
    }

    /// The SQLite file, for tests that scan the raw database.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        self._dir.as_ref().map(|d| d.path().join("aiproxy.db"))
    }
}

/// A configuration for tests: loopback, port 0, fresh keys, known bootstrap credentials, and an
/// upstream policy that lets fake providers on 127.0.0.1 be reached.
pub fn test_config(db: &TestDb, bootstrap_api_key: &str) -> Config {
    let mut c = Config::defaults();
    let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    c.http_addr = any;
    c.grpc_addr = any;
    c.proxy_addr = any;
    c.database_url = Some(Secret::new(db.url.clone()));
    c.master_key = Some(Secret::new(crate::crypto::secrets::generate_master_key()));
    c.node_token = Some(Secret::new(crate::crypto::tokens::random_token(24)));
    c.bootstrap_admin_email = Some(TEST_ADMIN_EMAIL.into());
    c.bootstrap_admin_password = Some(Secret::new(TEST_ADMIN_PASSWORD));
    c.bootstrap_api_key = Some(Secret::new(bootstrap_api_key));
    c.upstream_policy = NetPolicy {
        allow_private: true,
        allow_cidrs: Vec::new(),
    };
    c.replica_id = format!("test-{}", uuid::Uuid::new_v4().simple());
    c
}

/// Every text value of every row of every table, as one string (for scanning a database for
/// plaintext secrets).
pub async fn dump_text(pool: &sqlx::AnyPool) -> String {
    use sqlx::{Column, Row};
    let tables = [
        "users",
        "orgs",
        "members",
        "projects",
        "api_keys",
        "provider_credentials",
        "org_settings",
        "audit_log",
        "sessions",
        "nodes",
        "signing_keys",
        "request_logs",
        "config_state",
        "config_changes",
    ];
    let mut out = String::new();
    for t in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {t}")))
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("reading {t}: {e}"));
        for r in rows {
            for c in r.columns() {
                if let Ok(Some(s)) = r.try_get::<Option<String>, _>(c.ordinal()) {
                    out.push_str(&s);
                    out.push('\n');
                }
            }
        }
    }
    out
}
