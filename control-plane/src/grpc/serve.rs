//! The gRPC server: ConfigService, LogService and AdminService, with optional TLS / mTLS.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Snapshots can be large (tens of thousands of keys and credentials).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The largest log batch a node may send. Nodes close a batch at
/// `data_plane::logship::BATCH_MAX_BYTES` plus at most one record (two payloads of
/// `MAX_PAYLOAD_BYTES` and a few KiB); a batch over this limit would be refused on every resend.
pub const MAX_LOG_BATCH_BYTES: usize = 64 * 1024 * 1024;
const _: () = assert!(
    data_plane::logship::BATCH_MAX_BYTES + 2 * data_plane::payload::MAX_PAYLOAD_BYTES + (1 << 20)
        < MAX_LOG_BATCH_BYTES
);

pub fn spawn(
    st: AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)));
    if let Some(tls) = &st.config().grpc_tls {
        let cert = std::fs::read(&tls.cert).map_err(|e| {
            anyhow::anyhow!(
                "configuration error: AIPROXY_GRPC_TLS_CERT: cannot read {}: {e}",
                tls.cert.display()
            )
        })?;
        let key = std::fs::read(&tls.key).map_err(|e| {
            anyhow::anyhow!(
                "configuration error: AIPROXY_GRPC_TLS_KEY: cannot read {}: {e}",
                tls.key.display()
            )
        })?;
        let mut cfg = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key));
        if let Some(ca) = &tls.client_ca {
            let ca = std::fs::read(ca).map_err(|e| {
                anyhow::anyhow!(
                    "configuration error: AIPROXY_GRPC_TLS_CLIENT_CA: cannot read {}: {e}",
                    ca.display()
                )
            })?;
            cfg = cfg.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        builder = builder
            .tls_config(cfg)
            .map_err(|e| anyhow::anyhow!("configuration error: gRPC TLS: {e}"))?;
    }
    let config_svc =
        proto::v1::config_service_server::ConfigServiceServer::new(super::config::ConfigSvc {
            st: st.clone(),
            shutdown: shutdown.clone(),
        })
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(4 * 1024 * 1024);
    let log_svc = proto::v1::log_service_server::LogServiceServer::new(super::logs::LogSvc {
        st: st.clone(),
    })
    .max_decoding_message_size(MAX_LOG_BATCH_BYTES);
    let admin_svc =
        proto::v1::admin_service_server::AdminServiceServer::new(super::admin::AdminSvc {
            st: st.clone(),
        });
    let router = builder
        .add_service(config_svc)
        .add_service(log_svc)
        .add_service(admin_svc);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    Ok(tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, async move { shutdown.cancelled().await })
            .await
        {
            tracing::error!(error = %e, "grpc server failed");
        }
    }))
}
