//! Shared state of a control-plane replica: configuration, database, master keys, clock, the
//! snapshot hub that feeds watching nodes, and in-memory rate limiters.

use std::sync::Arc;

use data_plane::netguard::NetPolicy;

use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::secrets::MasterKeys;
use crate::db::Db;
use crate::service::snapshot::SnapshotHub;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub keys: MasterKeys,
    pub clock: Arc<dyn Clock>,
    pub snapshots: SnapshotHub,
    pub login_limiter: crate::http::ratelimit::RateLimiter,
    pub upstream_policy: Arc<NetPolicy>,
    pub metrics: crate::metrics::Metrics,
    /// OTLP trace export of API requests, when configured.
    pub tracer: Option<Arc<data_plane::otlp::Exporter>>,
}

impl AppState {
    pub fn new(config: Config, db: Db, keys: MasterKeys, clock: Arc<dyn Clock>) -> AppState {
        let upstream_policy = Arc::new(config.upstream_policy.clone());
        // Spans still queued when the process exits are lost (at most one 2 s batch).
        let tracer = config.otlp_traces_url.clone().map(|url| {
            data_plane::otlp::Exporter::start(
                url,
                "aiproxy-control-plane",
                data_plane::node::otlp_client(),
                tokio_util::sync::CancellationToken::new(),
            )
        });
        AppState(Arc::new(Inner {
            snapshots: SnapshotHub::new(),
            login_limiter: crate::http::ratelimit::RateLimiter::new(20, 60_000),
            config,
            db,
            keys,
            clock,
            upstream_policy,
            metrics: crate::metrics::Metrics::default(),
            tracer,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn db(&self) -> &Db {
        &self.0.db
    }

    pub fn keys(&self) -> &MasterKeys {
        &self.0.keys
    }

    pub fn now_ms(&self) -> i64 {
        self.0.clock.now_ms()
    }

    pub fn snapshots(&self) -> &SnapshotHub {
        &self.0.snapshots
    }

    /// Tells the snapshot hub that configuration changed (after a commit).
    pub fn config_changed(&self) {
        self.0.snapshots.poke();
    }
}
