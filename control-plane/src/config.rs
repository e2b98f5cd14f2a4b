//! Control-plane configuration: defaults, then an optional TOML file (`--config` or
//! `AIPROXY_CONFIG`), then `AIPROXY_*` environment variables (`_FILE` variants for secrets),
//! then flags. Resolution fails with one line naming the variable at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use data_plane::envconf::{ConfigError, Env, load_toml};
use data_plane::netguard::{Cidr, NetPolicy};
use data_plane::secret::Secret;
use serde::Deserialize;

/// Every variable the control plane reads (unknown `AIPROXY_*` names are warned about). The
/// data plane's (`data_plane::config::KNOWN_VARS`) are accepted too: `standalone` embeds a node.
pub const KNOWN_VARS: &[&str] = &[
    "AIPROXY_CONFIG",
    "AIPROXY_DATABASE_URL",
    "AIPROXY_MASTER_KEY",
    "AIPROXY_OLD_MASTER_KEYS",
    "AIPROXY_NODE_TOKEN",
    "AIPROXY_OLD_NODE_TOKENS",
    "AIPROXY_BOOTSTRAP_ADMIN_EMAIL",
    "AIPROXY_BOOTSTRAP_ADMIN_PASSWORD",
    "AIPROXY_BOOTSTRAP_API_KEY",
    "AIPROXY_HTTP_ADDR",
    "AIPROXY_GRPC_ADDR",
    "AIPROXY_PROXY_ADDR",
    "AIPROXY_DATA_DIR",
    "AIPROXY_LOG_FORMAT",
    "AIPROXY_LOG_LEVEL",
    "AIPROXY_LOG_RETENTION_DAYS",
    "AIPROXY_COOKIE_SECURE",
    "AIPROXY_UPSTREAM_ALLOW_PRIVATE",
    "AIPROXY_UPSTREAM_ALLOW_CIDRS",
    "AIPROXY_GRPC_TLS_CERT",
    "AIPROXY_GRPC_TLS_KEY",
    "AIPROXY_GRPC_TLS_CLIENT_CA",
    "AIPROXY_REPLICA_ID",
];

/// The variables not warned about: the control plane's and the embedded node's.
pub fn known_vars() -> Vec<&'static str> {
    KNOWN_VARS
        .iter()
        .chain(data_plane::config::KNOWN_VARS)
        .copied()
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The TOML file's shape; every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<Secret>,
    pub master_key: Option<Secret>,
    pub old_master_keys: Option<Vec<Secret>>,
    pub node_token: Option<Secret>,
    pub old_node_tokens: Option<Vec<Secret>>,
    pub bootstrap_admin_email: Option<String>,
    pub bootstrap_admin_password: Option<Secret>,
    pub bootstrap_api_key: Option<Secret>,
    pub http_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    pub proxy_addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
    pub log_retention_days: Option<u32>,
    pub cookie_secure: Option<bool>,
    pub upstream_allow_private: Option<bool>,
    pub upstream_allow_cidrs: Option<Vec<String>>,
    pub grpc_tls_cert: Option<PathBuf>,
    pub grpc_tls_key: Option<PathBuf>,
    pub grpc_tls_client_ca: Option<PathBuf>,
    pub replica_id: Option<String>,
}

/// Resolved configuration. Tests build this directly.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: Option<Secret>,
    pub master_key: Option<Secret>,
    pub old_master_keys: Vec<Secret>,
    pub node_token: Option<Secret>,
    pub old_node_tokens: Vec<Secret>,
    pub bootstrap_admin_email: Option<String>,
    pub bootstrap_admin_password: Option<Secret>,
    pub bootstrap_api_key: Option<Secret>,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub proxy_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub log_level: String,
    pub log_retention_days: u32,
    /// `None`: Secure cookies exactly when the request came over TLS (X-Forwarded-Proto).
    pub cookie_secure: Option<bool>,
    pub upstream_policy: NetPolicy,
    pub grpc_tls: Option<GrpcTls>,
    /// Identifies this replica in `GET /api/v1/nodes` (default: hostname + pid).
    pub replica_id: String,
    /// Maximum admin API request body.
    pub max_body_bytes: usize,
    /// Login attempts allowed per email before a temporary lockout.
    pub login_max_failures: u32,
    pub login_lockout_secs: u64,
    pub session_ttl_secs: u64,
    /// Trace export (`<AIPROXY_OTLP_ENDPOINT>/v1/traces`, OTLP/HTTP JSON); standalone's node uses it too.
    pub otlp_traces_url: Option<http::Uri>,
}

#[derive(Debug, Clone)]
pub struct GrpcTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, nodes must present a client certificate signed by this CA (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// Flags that override everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub database_url: Option<String>,
    pub http_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    pub proxy_addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Defaults for one machine; `standalone` and tests start from here.
    pub fn defaults() -> Config {
        Config {
            database_url: None,
            master_key: None,
            old_master_keys: Vec::new(),
            node_token: None,
            old_node_tokens: Vec::new(),
            bootstrap_admin_email: None,
            bootstrap_admin_password: None,
            bootstrap_api_key: None,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 8001)),
            proxy_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            log_retention_days: 30,
            cookie_secure: None,
            upstream_policy: NetPolicy::default(),
            grpc_tls: None,
            replica_id: default_replica_id(),
            max_body_bytes: 1024 * 1024,
            login_max_failures: 10,
            login_lockout_secs: 15 * 60,
            session_ttl_secs: 7 * 24 * 3600,
            otlp_traces_url: None,
        }
    }

    /// Resolves defaults → file → env → flags.
    pub fn load(env: &Env, flags: &Overrides) -> Result<Config, ConfigError> {
        let file_path = match &flags.config_file {
            Some(p) => Some(p.clone()),
            None => env.get("AIPROXY_CONFIG")?.map(PathBuf::from),
        };
        let file: FileConfig = load_toml(file_path.as_deref(), "AIPROXY_CONFIG")?;
        let mut c = Config::defaults();
        c.apply_file(file)?;
        c.apply_env(env)?;
        c.apply_flags(flags);
        Ok(c)
    }

    fn apply_file(&mut self, f: FileConfig) -> Result<(), ConfigError> {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = f.$field { self.$field = Some(v); } )* };
        }
        set!(
            database_url,
            master_key,
            node_token,
            bootstrap_admin_email,
            bootstrap_admin_password,
            bootstrap_api_key,
            cookie_secure
        );
        if let Some(v) = f.old_master_keys {
            self.old_master_keys = v;
        }
        if let Some(v) = f.old_node_tokens {
            self.old_node_tokens = v;
        }
        if let Some(v) = f.http_addr {
            self.http_addr = v;
        }
        if let Some(v) = f.grpc_addr {
            self.grpc_addr = v;
        }
        if let Some(v) = f.proxy_addr {
            self.proxy_addr = v;
        }
        if let Some(v) = f.data_dir {
            self.data_dir = v;
        }
        if let Some(v) = f.log_format {
            self.log_format = v;
        }
        if let Some(v) = f.log_level {
            self.log_level = v;
        }
        if let Some(v) = f.log_retention_days {
            self.log_retention_days = v;
        }
        if let Some(v) = f.upstream_allow_private {
            self.upstream_policy.allow_private = v;
        }
        if let Some(v) = f.upstream_allow_cidrs {
            self.upstream_policy.allow_cidrs = parse_cidrs("upstream_allow_cidrs", &v)?;
        }
        if let Some(v) = f.replica_id {
            self.replica_id = v;
        }
        match (f.grpc_tls_cert, f.grpc_tls_key) {
            (Some(cert), Some(key)) => {
                self.grpc_tls = Some(GrpcTls {
                    cert,
                    key,
                    client_ca: f.grpc_tls_client_ca,
                })
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError::new(
                    "grpc_tls_cert",
                    "grpc_tls_cert and grpc_tls_key must be set together",
                ));
            }
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        if let Some(v) = env.secret("AIPROXY_DATABASE_URL")? {
            self.database_url = Some(v);
        }
        if let Some(v) = env.secret("AIPROXY_MASTER_KEY")? {
            self.master_key = Some(v);
        }
        if let Some(v) = env.list("AIPROXY_OLD_MASTER_KEYS")? {
            self.old_master_keys = v.into_iter().map(Secret::new).collect();
        }
        if let Some(v) = env.secret("AIPROXY_NODE_TOKEN")? {
            self.node_token = Some(v);
        }
        if let Some(v) = env.list("AIPROXY_OLD_NODE_TOKENS")? {
            self.old_node_tokens = v.into_iter().map(Secret::new).collect();
        }
        if let Some(v) = env.get("AIPROXY_BOOTSTRAP_ADMIN_EMAIL")? {
            self.bootstrap_admin_email = Some(v);
        }
        if let Some(v) = env.secret("AIPROXY_BOOTSTRAP_ADMIN_PASSWORD")? {
            self.bootstrap_admin_password = Some(v);
        }
        if let Some(v) = env.secret("AIPROXY_BOOTSTRAP_API_KEY")? {
            self.bootstrap_api_key = Some(v);
        }
        if let Some(v) = env.parse("AIPROXY_HTTP_ADDR", "host:port")? {
            self.http_addr = v;
        }
        if let Some(v) = env.parse("AIPROXY_GRPC_ADDR", "host:port")? {
            self.grpc_addr = v;
        }
        if let Some(v) = env.parse("AIPROXY_PROXY_ADDR", "host:port")? {
            self.proxy_addr = v;
        }
        if let Some(v) = env.get("AIPROXY_DATA_DIR")? {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env.get("AIPROXY_LOG_FORMAT")? {
            self.log_format = match v.as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                other => {
                    return Err(ConfigError::new(
                        "AIPROXY_LOG_FORMAT",
                        format!("expected json or text, got {other:?}"),
                    ));
                }
            };
        }
        if let Some(v) = env.get("AIPROXY_LOG_LEVEL")? {
            self.log_level = v;
        }
        if let Some(v) = env.parse("AIPROXY_LOG_RETENTION_DAYS", "a number of days")? {
            self.log_retention_days = v;
        }
        if let Some(v) = env.get("AIPROXY_OTLP_ENDPOINT")?
            && !v.trim().is_empty()
        {
            self.otlp_traces_url = Some(
                data_plane::otlp::traces_url(&v)
                    .map_err(|e| ConfigError::new("AIPROXY_OTLP_ENDPOINT", e))?,
            );
        }
        if let Some(v) = env.bool("AIPROXY_COOKIE_SECURE")? {
            self.cookie_secure = Some(v);
        }
        if let Some(v) = env.bool("AIPROXY_UPSTREAM_ALLOW_PRIVATE")? {
            self.upstream_policy.allow_private = v;
        }
        if let Some(v) = env.list("AIPROXY_UPSTREAM_ALLOW_CIDRS")? {
            self.upstream_policy.allow_cidrs = parse_cidrs("AIPROXY_UPSTREAM_ALLOW_CIDRS", &v)?;
        }
        if let Some(v) = env.get("AIPROXY_REPLICA_ID")? {
            self.replica_id = v;
        }
        let cert = env.get("AIPROXY_GRPC_TLS_CERT")?;
        let key = env.get("AIPROXY_GRPC_TLS_KEY")?;
        let ca = env.get("AIPROXY_GRPC_TLS_CLIENT_CA")?;
        match (cert, key) {
            (Some(cert), Some(key)) => {
                self.grpc_tls = Some(GrpcTls {
                    cert: cert.into(),
                    key: key.into(),
                    client_ca: ca.map(PathBuf::from),
                })
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError::new(
                    "AIPROXY_GRPC_TLS_CERT",
                    "AIPROXY_GRPC_TLS_CERT and AIPROXY_GRPC_TLS_KEY must be set together",
                ));
            }
        }
        Ok(())
    }

    fn apply_flags(&mut self, f: &Overrides) {
        if let Some(v) = &f.database_url {
            self.database_url = Some(Secret::new(v.clone()));
        }
        if let Some(v) = f.http_addr {
            self.http_addr = v;
        }
        if let Some(v) = f.grpc_addr {
            self.grpc_addr = v;
        }
        if let Some(v) = f.proxy_addr {
            self.proxy_addr = v;
        }
        if let Some(v) = &f.data_dir {
            self.data_dir = v.clone();
        }
    }

    /// The database URL, or the error `serve`/`migrate` report when it is missing.
    pub fn require_database_url(&self) -> Result<&Secret, ConfigError> {
        self.database_url.as_ref().ok_or_else(|| {
            ConfigError::new(
                "AIPROXY_DATABASE_URL",
                "required (sqlite://path or postgres://…)",
            )
        })
    }

    pub fn standalone_database_url(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.data_dir.join("aiproxy.db").display()
        )
    }

    pub fn master_key_path(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }

    pub fn node_token_path(&self) -> PathBuf {
        self.data_dir.join("node.token")
    }
}

fn parse_cidrs(var: &str, items: &[String]) -> Result<Vec<Cidr>, ConfigError> {
    items
        .iter()
        .map(|s| s.parse::<Cidr>().map_err(|e| ConfigError::new(var, e)))
        .collect()
}

fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}-{}", std::process::id())
}

/// Reads (or, for standalone, creates with mode 0600) a file holding a generated secret.
pub fn read_or_create_secret_file(
    path: &Path,
    var: &str,
    generate: impl FnOnce() -> String,
) -> Result<Secret, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(Secret::new(s.trim().to_string())),
        Ok(_) => Err(ConfigError::new(
            var,
            format!("{} is empty", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    ConfigError::new(var, format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let value = generate();
            write_private_file(path, value.as_bytes()).map_err(|e| {
                ConfigError::new(var, format!("cannot write {}: {e}", path.display()))
            })?;
            Ok(Secret::new(value))
        }
        Err(e) => Err(ConfigError::new(
            var,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// Writes a file readable only by its owner (0600), atomically.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_nodes_variables_are_known_and_only_those() {
        let env = Env::from_pairs([
            ("AIPROXY_DATABASE_URL", "sqlite://x"),
            ("AIPROXY_CACHE_MAX_BYTES", "1000"),
            ("AIPROXY_LOG_QUEUE_MAX_BYTES", "1000"),
            ("AIPROXY_BODY_READ_TIMEOUT_SECS", "5"),
            ("AIPROXY_NOT_A_SETTING", "1"),
        ]);
        assert_eq!(env.unknown(&known_vars()), ["AIPROXY_NOT_A_SETTING"]);
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "http_addr = \"127.0.0.1:9000\"\ngrpc_addr = \"127.0.0.1:9001\"\nlog_retention_days = 7\n").unwrap();
        let env = Env::from_pairs([
            ("AIPROXY_GRPC_ADDR", "127.0.0.1:9101"),
            ("AIPROXY_CONFIG", file.to_str().unwrap()),
        ]);
        let flags = Overrides {
            http_addr: Some("127.0.0.1:9200".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::load(&env, &flags).unwrap();
        assert_eq!(c.http_addr.port(), 9200);
        assert_eq!(c.grpc_addr.port(), 9101);
        assert_eq!(c.log_retention_days, 7);
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "http_adr = \"127.0.0.1:9000\"\n").unwrap();
        let err = Config::load(
            &Env::default(),
            &Overrides {
                config_file: Some(file),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.var, "AIPROXY_CONFIG");
        assert!(err.message.contains("http_adr"), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let env = Env::from_pairs([("AIPROXY_UPSTREAM_ALLOW_CIDRS", "10.0.0.0/8, nope")]);
        let err = Config::load(&env, &Overrides::default()).unwrap_err();
        assert_eq!(err.var, "AIPROXY_UPSTREAM_ALLOW_CIDRS");
        let env = Env::from_pairs([("AIPROXY_LOG_FORMAT", "xml")]);
        assert_eq!(
            Config::load(&env, &Overrides::default()).unwrap_err().var,
            "AIPROXY_LOG_FORMAT"
        );
    }

    #[test]
    fn generated_secret_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/master.key");
        let a = read_or_create_secret_file(&p, "AIPROXY_MASTER_KEY", || "k1".into()).unwrap();
        let b = read_or_create_secret_file(&p, "AIPROXY_MASTER_KEY", || "k2".into()).unwrap();
        assert_eq!(a.expose(), "k1");
        assert_eq!(b.expose(), "k1");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
