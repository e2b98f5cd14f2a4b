//! The `aiproxy-data-plane` binary: load configuration from the environment, init logging,
//! serve until SIGTERM, then drain. (A library function, so end-to-end tests can build it.)

use crate::config::{KNOWN_VARS, NodeConfig};
use crate::envconf::Env;

pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first().map(String::as_str).unwrap_or("serve");
    if matches!(cmd, "-h" | "--help" | "help") {
        println!(
            "aiproxy-data-plane [serve|check-config]\n\nConfigured with AIPROXY_* environment variables (see README): AIPROXY_CONTROL_PLANE_URL, AIPROXY_NODE_TOKEN, AIPROXY_PROXY_ADDR, …"
        );
        return;
    }
    let env = Env::from_process();
    let cfg = match NodeConfig::from_env(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    match cmd {
        "check-config" => {
            println!(
                "configuration OK (control plane {}, listen {}, node {})",
                cfg.control_plane_url, cfg.proxy_addr, cfg.node_id
            );
            return;
        }
        "serve" => {}
        other => {
            eprintln!("unknown command {other:?}; expected serve or check-config");
            std::process::exit(2);
        }
    }
    let level = env
        .get("AIPROXY_LOG_LEVEL")
        .ok()
        .flatten()
        .unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = env.get("AIPROXY_LOG_FORMAT").ok().flatten().as_deref() == Some("json");
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().flatten_event(true).init();
    } else {
        b.init();
    }
    for unknown in env.unknown(KNOWN_VARS) {
        tracing::warn!(variable = %unknown, "unknown AIPROXY_ variable ignored");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result: anyhow::Result<()> = rt.block_on(async move {
        let node = crate::node::start(cfg).await?;
        shutdown_signal().await;
        tracing::info!("SIGTERM: draining");
        node.stop().await;
        Ok(())
    });
    if let Err(e) = result {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
