//! Standalone: the embedded data-plane node, pointed at this replica's gRPC address, with its
//! last-known-good cache under the data directory.

use std::net::SocketAddr;

use data_plane::config::NodeConfig;
use data_plane::envconf::Env;
use data_plane::node::RunningNode;

use crate::run::Running;

/// The embedded node: the node's own variables from `env` (body and timeout limits, attempts,
/// cache, spool and log-queue bounds, Redis, …), then what standalone decides — the in-process
/// control plane over plaintext gRPC, the proxy address, the cache directory under the data
/// directory unless `AIPROXY_CACHE_DIR` is set, the node id `standalone-<pid>` unless
/// `AIPROXY_NODE_ID` is set, and the control plane's destination policy and OTLP endpoint.
pub async fn start_node(
    running: &Running,
    addr: SocketAddr,
    env: &Env,
) -> anyhow::Result<RunningNode> {
    let cfg = running.state.config();
    let token = cfg
        .node_token
        .clone()
        .ok_or_else(|| anyhow::anyhow!("configuration error: AIPROXY_NODE_TOKEN: required"))?;
    let mut node = NodeConfig::defaults(format!("http://{}", running.grpc_addr), token);
    node.apply_env(env)?;
    node.grpc_tls = None;
    node.proxy_addr = addr;
    if env.get("AIPROXY_CACHE_DIR")?.is_none() {
        node.cache_dir = cfg.data_dir.join("node");
    }
    node.upstream_policy = cfg.upstream_policy.clone();
    node.otlp_traces_url = cfg.otlp_traces_url.clone();
    if env.get("AIPROXY_NODE_ID")?.is_none() {
        node.node_id = format!("standalone-{}", std::process::id());
    }
    data_plane::node::start(node).await
}
