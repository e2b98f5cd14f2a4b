//! A data-plane node: its shared state, and starting/stopping it (standalone embeds the same).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::balance::Balancer;
use crate::config::NodeConfig;
use crate::httpclient::{self, ClientOptions, HttpClient};
use crate::metrics::Metrics;
use crate::record::Sink;
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::sync::Syncer;

pub struct NodeState {
    pub cfg: NodeConfig,
    pub store: Arc<SnapshotStore>,
    pub client: HttpClient,
    pub balancer: Balancer,
    pub metrics: Arc<Metrics>,
    pub sink: Sink,
    /// OTLP trace export, when `AIPROXY_OTLP_ENDPOINT` is set.
    pub tracer: Option<Arc<crate::otlp::Exporter>>,
    pub cache: crate::cache::Cache,
    /// Set on SIGTERM: `/readyz` fails so load balancers stop sending new requests.
    pub draining: AtomicBool,
}

pub type Node = Arc<NodeState>;

impl NodeState {
    pub fn ready(&self) -> bool {
        self.store.load().is_some() && !self.draining.load(Ordering::Relaxed)
    }

    /// Where every finished call's record goes: traces (if configured), then the log pipeline.
    pub fn submit(&self, record: crate::record::RequestRecord) {
        if let Some(t) = &self.tracer {
            t.submit_record(&record);
        }
        self.sink.submit(record);
    }

    fn on_apply(&self, s: &Snapshot) {
        self.balancer
            .forget_except(|| s.all_credentials().map(|c| c.id.as_str()));
        self.metrics
            .config_version
            .store(s.version, std::sync::atomic::Ordering::Relaxed);
    }

    /// What the node reports to the control plane with each ack.
    pub fn details_json(&self) -> String {
        serde_json::json!({"draining": self.draining.load(Ordering::Relaxed), "credentials": self.balancer.details()}).to_string()
    }
}

pub struct RunningNode {
    pub addr: SocketAddr,
    pub node: Node,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    sync: tokio::task::JoinHandle<()>,
    shipper: tokio::task::JoinHandle<()>,
    ship_stop: CancellationToken,
}

impl RunningNode {
    /// Graceful stop: report not-ready, stop accepting, let in-flight requests and streams finish
    /// (up to the drain timeout), then stop syncing.
    pub async fn stop(self) {
        self.node.draining.store(true, Ordering::Relaxed);
        self.shutdown.cancel();
        let drain = self.node.cfg.drain_timeout;
        if tokio::time::timeout(drain, self.server).await.is_err() {
            tracing::warn!(
                timeout_s = drain.as_secs(),
                "drain timeout reached; closing remaining connections"
            );
        }
        // The server is done: every record is in the queue. Flush it (or spool it).
        self.ship_stop.cancel();
        let _ = self.shipper.await;
        let _ = self.sync.await;
    }

    /// Stops at once without draining (a crash, for tests of what others see).
    pub fn abort(self) {
        self.server.abort();
        self.sync.abort();
        self.shipper.abort();
    }
}

/// The trace collector is the operator's own choice (usually in-cluster, on a private
/// address), so its client is not bound by the upstream SSRF policy.
pub fn otlp_client() -> HttpClient {
    httpclient::build(
        Arc::new(crate::netguard::NetPolicy {
            allow_private: true,
            allow_cidrs: Vec::new(),
        }),
        &ClientOptions {
            pool_max_idle_per_host: 2,
            ..Default::default()
        },
    )
}

pub async fn start(cfg: NodeConfig) -> anyhow::Result<RunningNode> {
    let listener = TcpListener::bind(cfg.proxy_addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {} (AIPROXY_PROXY_ADDR): {e}",
            cfg.proxy_addr
        )
    })?;
    let addr = listener.local_addr()?;
    let client = httpclient::build(
        Arc::new(cfg.upstream_policy.clone()),
        &ClientOptions {
            connect_timeout: cfg.timeouts.connect,
            ..Default::default()
        },
    );
    let store = Arc::new(SnapshotStore::default());
    let metrics = Arc::new(Metrics::default());
    let (sink, shipper) = crate::logship::pipeline(&cfg, metrics.clone());
    let sink: Sink = sink;
    let cache_store: Arc<dyn crate::cache::CacheStore> = match &cfg.redis_url {
        Some(url) => match crate::cache::RedisStore::connect(url.expose()).await {
            Ok(r) => {
                tracing::info!("response cache: redis (shared by every node)");
                Arc::new(r)
            }
            Err(e) => {
                tracing::error!(error = %e, "response cache: redis unavailable; using a per-node in-memory cache");
                Arc::new(crate::cache::MemoryStore::new(cfg.cache_max_bytes))
            }
        },
        None => Arc::new(crate::cache::MemoryStore::new(cfg.cache_max_bytes)),
    };
    let cache = crate::cache::Cache::new(cache_store, cfg.node_token.expose());
    let ship_stop = CancellationToken::new();
    let tracer = cfg.otlp_traces_url.clone().map(|url| {
        tracing::info!(url = %url, "exporting traces over OTLP/HTTP");
        crate::otlp::Exporter::start(url, "aiproxy-data-plane", otlp_client(), ship_stop.clone())
    });
    let node: Node = Arc::new(NodeState {
        cfg: cfg.clone(),
        store: store.clone(),
        client,
        balancer: Balancer::default(),
        metrics,
        sink,
        tracer,
        cache,
        draining: AtomicBool::new(false),
    });
    let n1 = node.clone();
    let n2 = node.clone();
    let syncer = Arc::new(Syncer::new(
        cfg,
        store,
        Arc::new(move |s: &Snapshot| n1.on_apply(s)),
        Arc::new(move || n2.details_json()),
    ));
    syncer.load_cache();
    let shutdown = CancellationToken::new();
    let sync = tokio::spawn(syncer.run(shutdown.clone()));
    let shipper = tokio::spawn(shipper.run(ship_stop.clone()));
    let app = crate::server::router(node.clone());
    let server = tokio::spawn(crate::listen::serve(listener, app, shutdown.clone()));
    tracing::info!(addr = %addr, node_id = %node.cfg.node_id, "data-plane node listening");
    Ok(RunningNode {
        addr,
        node,
        shutdown,
        server,
        sync,
        shipper,
        ship_stop,
    })
}
