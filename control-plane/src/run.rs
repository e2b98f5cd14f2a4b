//! Starting a control-plane replica (and, in standalone, its embedded node): open the database,
//! migrate, check keys, bootstrap, then serve REST and gRPC until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use data_plane::secret::Secret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, read_or_create_secret_file};
use crate::crypto::secrets::{MasterKeys, generate_master_key};
use crate::db::{self, Db};
use crate::service::bootstrap::{self, Generated, Mode};
use crate::state::AppState;

/// A running replica: its bound addresses and the handle to stop it.
pub struct Running {
    pub state: AppState,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub generated: Generated,
    pub shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops serving: watch streams close (nodes reconnect elsewhere), servers drain.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.state.db().close().await;
    }

    /// Waits until shutdown completes (the token is cancelled by a signal or by `stop`).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        self.state.db().close().await;
    }
}

/// Fills in what standalone generates under the data directory: the database URL, the master
/// key, the node token; and its permissive default for local upstreams (Ollama, vLLM).
pub fn standalone_defaults(mut cfg: Config) -> anyhow::Result<Config> {
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "configuration error: AIPROXY_DATA_DIR: cannot create {}: {e}",
                cfg.data_dir.display()
            )
        })?;
        // The database holds key hashes and encrypted secrets: keep the directory private.
        let _ = std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700));
    }
    if cfg.database_url.is_none() {
        cfg.database_url = Some(Secret::new(cfg.standalone_database_url()));
    }
    if cfg.master_key.is_none() {
        cfg.master_key = Some(read_or_create_secret_file(
            &cfg.master_key_path(),
            "AIPROXY_MASTER_KEY",
            generate_master_key,
        )?);
    }
    if cfg.node_token.is_none() {
        cfg.node_token = Some(read_or_create_secret_file(
            &cfg.node_token_path(),
            "AIPROXY_NODE_TOKEN",
            || crate::crypto::tokens::random_token(32),
        )?);
    }
    cfg.upstream_policy.allow_private = true;
    Ok(cfg)
}

/// Checks what `serve` needs, naming the variable that is missing.
pub fn require_serve(cfg: &Config) -> anyhow::Result<()> {
    cfg.require_database_url()?;
    if cfg.master_key.is_none() {
        anyhow::bail!(
            "configuration error: AIPROXY_MASTER_KEY: required (base64 of 32 random bytes; `aiproxy-control-plane rotate-master-key --generate` prints one)"
        );
    }
    if cfg.node_token.is_none() {
        anyhow::bail!(
            "configuration error: AIPROXY_NODE_TOKEN: required (a shared secret data-plane nodes present)"
        );
    }
    Ok(())
}

pub async fn open(cfg: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    let url = cfg.require_database_url()?.clone();
    let master = cfg
        .master_key
        .clone()
        .ok_or_else(|| anyhow::anyhow!("configuration error: AIPROXY_MASTER_KEY: required"))?;
    let keys = MasterKeys::new(&master, &cfg.old_master_keys)
        .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
    let db = Db::connect(url.expose())
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    db::migrate::run(&db)
        .await
        .context("database migration failed")?;
    let st = AppState::new(cfg, db, keys, clock);
    crate::service::rotate::check_master_keys(&st)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(st)
}

/// Starts a replica on the configured addresses (port 0 allowed).
pub async fn start(cfg: Config, mode: Mode) -> anyhow::Result<Running> {
    start_with_clock(cfg, mode, Arc::new(SystemClock)).await
}

pub async fn start_with_clock(
    cfg: Config,
    mode: Mode,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    let http_listener = TcpListener::bind(cfg.http_addr)
        .await
        .with_context(|| format!("cannot listen on {} (AIPROXY_HTTP_ADDR)", cfg.http_addr))?;
    let grpc_listener = TcpListener::bind(cfg.grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {} (AIPROXY_GRPC_ADDR)", cfg.grpc_addr))?;
    let http_addr = http_listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;
    let st = open(cfg, clock).await?;
    let generated = bootstrap::run(&st, mode)
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap failed: {e}"))?;
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    tasks.push(crate::service::snapshot::SnapshotHub::spawn_builder(
        st.clone(),
        shutdown.clone(),
    ));
    if st.db().backend() == db::Backend::Postgres {
        tasks.push(crate::service::listen::spawn(st.clone(), shutdown.clone()));
    }
    tasks.push(crate::service::housekeeping::spawn(
        st.clone(),
        shutdown.clone(),
    ));
    tasks.push(crate::service::rollup::spawn(st.clone(), shutdown.clone()));

    let app = crate::http::router(st.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let sd = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(http_listener, app)
            .with_graceful_shutdown(async move { sd.cancelled().await })
            .await
        {
            tracing::error!(error = %e, "http server failed");
        }
    }));
    tasks.push(crate::grpc::serve::spawn(
        st.clone(),
        grpc_listener,
        shutdown.clone(),
    )?);
    tracing::info!(http = %http_addr, grpc = %grpc_addr, replica = %st.config().replica_id, "control plane listening");
    Ok(Running {
        state: st,
        http_addr,
        grpc_addr,
        generated,
        shutdown,
        tasks,
    })
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
