//! Command line: subcommands and the flags that override configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "aiproxy-control-plane",
    version,
    about = "AI Proxy control plane: tenancy, provider keys, admin API, configuration for data-plane nodes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One machine, no set-up: control plane + an embedded data-plane node, SQLite under ./data.
    Standalone(Flags),
    /// Production control plane (needs AIPROXY_DATABASE_URL, AIPROXY_MASTER_KEY, AIPROXY_NODE_TOKEN).
    Serve(Flags),
    /// Apply database migrations and exit.
    Migrate(Flags),
    /// Create an instance admin (or reset an existing user's password and make them admin).
    CreateAdmin {
        #[command(flatten)]
        flags: Flags,
        #[arg(long)]
        email: String,
        /// Read from AIPROXY_ADMIN_PASSWORD when not given.
        #[arg(long, env = "AIPROXY_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Re-encrypt every stored secret under AIPROXY_MASTER_KEY (old keys in AIPROXY_OLD_MASTER_KEYS).
    RotateMasterKey {
        #[command(flatten)]
        flags: Flags,
        /// Only print a newly generated master key and exit.
        #[arg(long)]
        generate: bool,
    },
    /// Start signing temporary credentials with a new key (tokens signed with older keys keep
    /// working until they expire; keys older than two days are removed).
    RotateSigningKey(Flags),
    /// Validate configuration (and database connectivity with --connect) without starting.
    CheckConfig {
        #[command(flatten)]
        flags: Flags,
        #[arg(long)]
        connect: bool,
        /// Check as for `standalone` (defaults filled in under the data directory).
        #[arg(long)]
        standalone: bool,
    },
}

#[derive(Debug, Args, Clone, Default)]
pub struct Flags {
    /// TOML configuration file (AIPROXY_CONFIG).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database URL (AIPROXY_DATABASE_URL).
    #[arg(long)]
    pub database_url: Option<String>,
    /// REST and web admin listen address (AIPROXY_HTTP_ADDR).
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
    /// gRPC listen address (AIPROXY_GRPC_ADDR).
    #[arg(long)]
    pub grpc_addr: Option<SocketAddr>,
    /// Embedded data plane's listen address, standalone only (AIPROXY_PROXY_ADDR).
    #[arg(long)]
    pub proxy_addr: Option<SocketAddr>,
    /// Data directory for standalone (AIPROXY_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Flags {
    pub fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides {
            config_file: self.config.clone(),
            database_url: self.database_url.clone(),
            http_addr: self.http_addr,
            grpc_addr: self.grpc_addr,
            proxy_addr: self.proxy_addr,
            data_dir: self.data_dir.clone(),
        }
    }
}
