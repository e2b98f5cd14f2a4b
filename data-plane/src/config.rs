//! Node configuration: defaults, then `AIPROXY_*` environment variables (`_FILE` variants for
//! secrets). Errors name the variable at fault. Tests build `NodeConfig` values directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::envconf::{ConfigError, Env};
use crate::netguard::{Cidr, NetPolicy};
use crate::secret::Secret;

pub const KNOWN_VARS: &[&str] = &[
    "AIPROXY_CONTROL_PLANE_URL",
    "AIPROXY_NODE_TOKEN",
    "AIPROXY_NODE_ID",
    "AIPROXY_PROXY_ADDR",
    "AIPROXY_CACHE_DIR",
    "AIPROXY_MAX_BODY_BYTES",
    "AIPROXY_CONNECT_TIMEOUT_MS",
    "AIPROXY_FIRST_BYTE_TIMEOUT_MS",
    "AIPROXY_TOTAL_TIMEOUT_MS",
    "AIPROXY_MAX_ATTEMPTS",
    "AIPROXY_UPSTREAM_ALLOW_PRIVATE",
    "AIPROXY_UPSTREAM_ALLOW_CIDRS",
    "AIPROXY_LOG_FORMAT",
    "AIPROXY_LOG_LEVEL",
    "AIPROXY_REDIS_URL",
    "AIPROXY_DRAIN_TIMEOUT_SECS",
    "AIPROXY_BODY_READ_TIMEOUT_SECS",
    "AIPROXY_SPOOL_MAX_BYTES",
    "AIPROXY_LOG_QUEUE_MAX_BYTES",
    "AIPROXY_CACHE_MAX_BYTES",
    "AIPROXY_OTLP_ENDPOINT",
    "AIPROXY_GRPC_TLS_CA",
    "AIPROXY_GRPC_TLS_DOMAIN",
    "AIPROXY_GRPC_TLS_CLIENT_CERT",
    "AIPROXY_GRPC_TLS_CLIENT_KEY",
];

#[derive(Debug, Clone)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// Until the upstream's response headers arrive.
    pub first_byte: Duration,
    /// A whole non-streaming call, or the gap allowed between two chunks of a stream.
    pub total: Duration,
    /// Upper bound on all attempts of one request (failover included).
    pub request_budget: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            total: Duration::from_secs(600),
            request_budget: Duration::from_secs(900),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcClientTls {
    pub ca: Option<PathBuf>,
    pub domain: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub control_plane_url: String,
    pub node_token: Secret,
    pub node_id: String,
    pub proxy_addr: SocketAddr,
    /// Last-known-good snapshot and log spool live here.
    pub cache_dir: PathBuf,
    pub max_body_bytes: usize,
    /// Largest upstream response read whole (non-streaming).
    pub max_response_bytes: usize,
    pub timeouts: Timeouts,
    pub max_attempts: u32,
    pub upstream_policy: NetPolicy,
    pub grpc_tls: Option<GrpcClientTls>,
    pub drain_timeout: Duration,
    /// The longest a client may take to send its request body (slow-body attacks end in 408).
    pub body_read_timeout: Duration,
    pub redis_url: Option<Secret>,
    pub spool_max_bytes: u64,
    /// In-memory bound on usage records waiting to be shipped (payloads included).
    pub log_queue_max_bytes: u64,
    /// In-memory response cache bound (when Redis is not configured).
    pub cache_max_bytes: usize,
    /// Where traces go (`<AIPROXY_OTLP_ENDPOINT>/v1/traces`, OTLP/HTTP JSON); none = no export.
    pub otlp_traces_url: Option<http::Uri>,
}

impl NodeConfig {
    pub fn defaults(control_plane_url: String, node_token: Secret) -> NodeConfig {
        NodeConfig {
            control_plane_url,
            node_token,
            node_id: default_node_id(),
            proxy_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cache_dir: PathBuf::from("./data/node"),
            max_body_bytes: 32 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            timeouts: Timeouts::default(),
            max_attempts: 3,
            upstream_policy: NetPolicy::default(),
            grpc_tls: None,
            drain_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            redis_url: None,
            spool_max_bytes: 256 * 1024 * 1024,
            log_queue_max_bytes: 256 * 1024 * 1024,
            cache_max_bytes: 64 * 1024 * 1024,
            otlp_traces_url: None,
        }
    }

    pub fn from_env(env: &Env) -> Result<NodeConfig, ConfigError> {
        let url = env.get("AIPROXY_CONTROL_PLANE_URL")?.ok_or_else(|| {
            ConfigError::new(
                "AIPROXY_CONTROL_PLANE_URL",
                "required (gRPC URL of the control plane, e.g. http://control-plane:8001)",
            )
        })?;
        // One URL, or several replicas comma-separated (tried in turn on reconnect).
        let parts: Vec<&str> = url.split(',').map(str::trim).collect();
        if parts
            .iter()
            .any(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(ConfigError::new(
                "AIPROXY_CONTROL_PLANE_URL",
                "must be a URL starting with http:// or https:// (or several, comma-separated)",
            ));
        }
        let url = parts.join(",");
        let token = env.secret("AIPROXY_NODE_TOKEN")?.ok_or_else(|| {
            ConfigError::new(
                "AIPROXY_NODE_TOKEN",
                "required (the shared secret the control plane expects)",
            )
        })?;
        let mut c = NodeConfig::defaults(url, token);
        c.apply_env(env)?;
        Ok(c)
    }

    /// The optional settings from the environment (everything but the control plane's URL and
    /// the node token), over what `self` holds. `standalone` applies them to its embedded node.
    pub fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        let c = self;
        if let Some(v) = env.get("AIPROXY_NODE_ID")? {
            c.node_id = v;
        }
        if let Some(v) = env.parse("AIPROXY_PROXY_ADDR", "host:port")? {
            c.proxy_addr = v;
        }
        if let Some(v) = env.get("AIPROXY_CACHE_DIR")? {
            c.cache_dir = PathBuf::from(v);
        }
        if let Some(v) = env.parse::<usize>("AIPROXY_MAX_BODY_BYTES", "a number of bytes")? {
            c.max_body_bytes = v;
        }
        if let Some(v) = env.parse::<u64>("AIPROXY_CONNECT_TIMEOUT_MS", "milliseconds")? {
            c.timeouts.connect = Duration::from_millis(v);
        }
        if let Some(v) = env.parse::<u64>("AIPROXY_FIRST_BYTE_TIMEOUT_MS", "milliseconds")? {
            c.timeouts.first_byte = Duration::from_millis(v);
        }
        if let Some(v) = env.parse::<u64>("AIPROXY_TOTAL_TIMEOUT_MS", "milliseconds")? {
            c.timeouts.total = Duration::from_millis(v);
        }
        if let Some(v) = env.parse::<u32>("AIPROXY_MAX_ATTEMPTS", "a number")? {
            if v == 0 {
                return Err(ConfigError::new(
                    "AIPROXY_MAX_ATTEMPTS",
                    "must be at least 1",
                ));
            }
            c.max_attempts = v;
        }
        if let Some(v) = env.bool("AIPROXY_UPSTREAM_ALLOW_PRIVATE")? {
            c.upstream_policy.allow_private = v;
        }
        if let Some(v) = env.list("AIPROXY_UPSTREAM_ALLOW_CIDRS")? {
            c.upstream_policy.allow_cidrs = v
                .iter()
                .map(|s| {
                    s.parse::<Cidr>()
                        .map_err(|e| ConfigError::new("AIPROXY_UPSTREAM_ALLOW_CIDRS", e))
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = env.parse::<u64>("AIPROXY_DRAIN_TIMEOUT_SECS", "seconds")? {
            c.drain_timeout = Duration::from_secs(v);
        }
        if let Some(v) = env.parse::<u64>("AIPROXY_BODY_READ_TIMEOUT_SECS", "seconds")? {
            c.body_read_timeout = Duration::from_secs(v.max(1));
        }
        if let Some(v) = env.secret("AIPROXY_REDIS_URL")? {
            c.redis_url = Some(v);
        }
        if let Some(v) = env.parse::<usize>("AIPROXY_CACHE_MAX_BYTES", "a number of bytes")? {
            c.cache_max_bytes = v;
        }
        if let Some(v) = env.parse::<u64>("AIPROXY_SPOOL_MAX_BYTES", "a number of bytes")? {
            c.spool_max_bytes = v;
        }
        if let Some(v) = env.parse::<u64>("AIPROXY_LOG_QUEUE_MAX_BYTES", "a number of bytes")? {
            c.log_queue_max_bytes = v;
        }
        if let Some(v) = env.get("AIPROXY_OTLP_ENDPOINT")?
            && !v.trim().is_empty()
        {
            c.otlp_traces_url = Some(
                crate::otlp::traces_url(&v)
                    .map_err(|e| ConfigError::new("AIPROXY_OTLP_ENDPOINT", e))?,
            );
        }
        let ca = env.get("AIPROXY_GRPC_TLS_CA")?;
        let domain = env.get("AIPROXY_GRPC_TLS_DOMAIN")?;
        let cert = env.get("AIPROXY_GRPC_TLS_CLIENT_CERT")?;
        let key = env.get("AIPROXY_GRPC_TLS_CLIENT_KEY")?;
        if ca.is_some() || domain.is_some() || cert.is_some() || key.is_some() {
            if cert.is_some() != key.is_some() {
                return Err(ConfigError::new(
                    "AIPROXY_GRPC_TLS_CLIENT_CERT",
                    "AIPROXY_GRPC_TLS_CLIENT_CERT and AIPROXY_GRPC_TLS_CLIENT_KEY must be set together",
                ));
            }
            c.grpc_tls = Some(GrpcClientTls {
                ca: ca.map(PathBuf::from),
                domain,
                client_cert: cert.map(PathBuf::from),
                client_key: key.map(PathBuf::from),
            });
        }
        Ok(())
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "node".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(100)
        .collect();
    format!(
        "{}-{}",
        if host.is_empty() { "node" } else { &host },
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_and_bad_values_name_the_variable() {
        let e = NodeConfig::from_env(&Env::default()).unwrap_err();
        assert_eq!(e.var, "AIPROXY_CONTROL_PLANE_URL");
        let e = NodeConfig::from_env(&Env::from_pairs([(
            "AIPROXY_CONTROL_PLANE_URL",
            "http://cp:8001",
        )]))
        .unwrap_err();
        assert_eq!(e.var, "AIPROXY_NODE_TOKEN");
        let e = NodeConfig::from_env(&Env::from_pairs([
            ("AIPROXY_CONTROL_PLANE_URL", "http://cp:8001"),
            ("AIPROXY_NODE_TOKEN", "t"),
            ("AIPROXY_MAX_ATTEMPTS", "0"),
        ]))
        .unwrap_err();
        assert_eq!(e.var, "AIPROXY_MAX_ATTEMPTS");
        let c = NodeConfig::from_env(&Env::from_pairs([
            ("AIPROXY_CONTROL_PLANE_URL", "http://cp:8001"),
            ("AIPROXY_NODE_TOKEN", "t"),
            ("AIPROXY_FIRST_BYTE_TIMEOUT_MS", "1500"),
        ]))
        .unwrap();
        assert_eq!(c.timeouts.first_byte, Duration::from_millis(1500));
        assert!(c.node_id.len() > 8);
        assert!(c.otlp_traces_url.is_none());
        let e = NodeConfig::from_env(&Env::from_pairs([
            ("AIPROXY_CONTROL_PLANE_URL", "http://cp:8001"),
            ("AIPROXY_NODE_TOKEN", "t"),
            ("AIPROXY_OTLP_ENDPOINT", "otel-collector:4317"),
        ]))
        .unwrap_err();
        assert_eq!(e.var, "AIPROXY_OTLP_ENDPOINT");
        let c = NodeConfig::from_env(&Env::from_pairs([
            ("AIPROXY_CONTROL_PLANE_URL", "http://cp:8001"),
            ("AIPROXY_NODE_TOKEN", "t"),
            ("AIPROXY_OTLP_ENDPOINT", "http://otel-collector:4318/"),
        ]))
        .unwrap();
        assert_eq!(
            c.otlp_traces_url.map(|u| u.to_string()).as_deref(),
            Some("http://otel-collector:4318/v1/traces")
        );
    }
}
