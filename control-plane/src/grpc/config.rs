//! ConfigService: streams the current snapshot to a node on connect and a new one on every
//! change (as a delta from the one sent before, to a node that accepts deltas); records which
//! version each node applied.

use std::pin::Pin;

use proto::v1 as pb;
use proto::v1::config_service_server::ConfigService;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::db::{self, nodes::NodeRow};
use crate::service::snapshot::BuildMark;
use crate::state::AppState;

pub struct ConfigSvc {
    pub st: AppState,
    pub shutdown: tokio_util::sync::CancellationToken,
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotEnvelope, Status>> + Send>>;

fn valid_node_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

#[tonic::async_trait]
impl ConfigService for ConfigSvc {
    type WatchStream = SnapshotStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        let key = super::node_auth(&self.st, &req)?;
        let w = req.into_inner();
        if !valid_node_id(&w.node_id) {
            return Err(Status::invalid_argument(
                "node_id must be 1-128 characters of [A-Za-z0-9-_.:]",
            ));
        }
        let st = self.st.clone();
        let now = st.now_ms();
        let row = NodeRow {
            node_id: w.node_id.clone(),
            hostname: w.hostname.chars().take(255).collect(),
            build: w.node_build.chars().take(64).collect(),
            replica: st.config().replica_id.clone(),
            applied_version: w.known_version as i64,
            last_error: String::new(),
            details: "{}".into(),
            connected: true,
            connected_at: now,
            last_seen_at: now,
        };
        if let Err(e) = db::nodes::upsert_connected(st.db().pool(), &row).await {
            tracing::warn!(error = %e, "cannot record node connection");
        }
        tracing::info!(node_id = %w.node_id, known_version = w.known_version, "node connected");
        st.0.metrics
            .connected_nodes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let mut snapshots = st.snapshots().subscribe();
        let shutdown = self.shutdown.clone();
        let node_id = w.node_id.clone();
        let accepts_deltas = w.accepts_deltas;
        tokio::spawn(async move {
            // The build last sent on this stream: the next one goes as a delta from it when the
            // node accepts deltas and the snapshot can give one (from that very build, not
            // another of the same version: see `BuildMark`).
            let mut sent: Option<BuildMark> = None;
            loop {
                let current = snapshots.borrow_and_update().clone();
                if let Some(s) = current {
                    let delta = match sent {
                        Some(from) if accepts_deltas && from.version < s.version => {
                            s.delta_for(&key, from).await.map(|d| (from.version, d))
                        }
                        _ => None,
                    };
                    let env = match delta {
                        Some((base_version, delta)) => pb::SnapshotEnvelope {
                            version: s.version,
                            snapshot: Default::default(),
                            seal_key_id: key.id().to_string(),
                            base_version,
                            delta,
                        },
                        None => pb::SnapshotEnvelope {
                            version: s.version,
                            snapshot: s.encode_for(&key).await,
                            seal_key_id: key.id().to_string(),
                            base_version: 0,
                            delta: Default::default(),
                        },
                    };
                    // An empty whole encoding is a failed one (`once`): the stream ends, and
                    // the node's reconnect asks again.
                    if env.snapshot.is_empty() && env.delta.is_empty() {
                        let _ = tx
                            .send(Err(Status::unavailable(
                                "cannot encode the configuration snapshot",
                            )))
                            .await;
                        break;
                    }
                    if tx.send(Ok(env)).await.is_err() {
                        break;
                    }
                    sent = Some(s.mark());
                }
                tokio::select! {
                    changed = snapshots.changed() => if changed.is_err() { break },
                    _ = tx.closed() => break,
                    _ = shutdown.cancelled() => {
                        // Tell the node to reconnect (to another replica, when there is one).
                        let _ = tx.send(Err(Status::unavailable("control plane shutting down"))).await;
                        break;
                    }
                }
            }
            tracing::info!(node_id = %node_id, "node disconnected");
            st.0.metrics
                .connected_nodes
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = db::nodes::disconnected(
                st.db().pool(),
                &node_id,
                &st.config().replica_id,
                st.now_ms(),
            )
            .await
            {
                tracing::warn!(error = %e, "cannot record node disconnection");
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack(&self, req: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        super::node_auth(&self.st, &req)?;
        let a = req.into_inner();
        if !valid_node_id(&a.node_id) {
            return Err(Status::invalid_argument("invalid node_id"));
        }
        let details = if a.details_json.len() > 256 * 1024
            || serde_json::from_str::<serde_json::Value>(&a.details_json).is_err()
        {
            "{}".to_string()
        } else {
            a.details_json
        };
        if !a.error.is_empty() {
            tracing::warn!(node_id = %a.node_id, version = a.applied_version, error = %a.error, "node rejected a snapshot");
        }
        db::nodes::ack(
            self.st.db().pool(),
            &a.node_id,
            a.applied_version as i64,
            &a.error.chars().take(1000).collect::<String>(),
            &details,
            self.st.now_ms(),
        )
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::AckResponse {}))
    }
}
