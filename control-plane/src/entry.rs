//! The `aiproxy-control-plane` binary: parse the command line, load configuration, init
//! logging, run. (A library function, so the end-to-end tests can build the same binary.)

use crate::cli::{Cli, Command};
use crate::config::{Config, LogFormat, known_vars};
use crate::run;
use crate::service::bootstrap::Mode;
use clap::Parser;
use data_plane::envconf::Env;

fn init_tracing(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

pub fn main() {
    let cli = Cli::parse();
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
    if let Err(e) = rt.block_on(real_main(cli)) {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    let env = Env::from_process();
    let flags = match &cli.command {
        Command::Standalone(f)
        | Command::Serve(f)
        | Command::Migrate(f)
        | Command::RotateSigningKey(f) => f.clone(),
        Command::CreateAdmin { flags, .. }
        | Command::RotateMasterKey { flags, .. }
        | Command::CheckConfig { flags, .. } => flags.clone(),
    };
    let cfg = Config::load(&env, &flags.overrides())?;
    init_tracing(&cfg);
    for unknown in env.unknown(&known_vars()) {
        tracing::warn!(variable = %unknown, "unknown AIPROXY_ variable ignored");
    }
    match cli.command {
        Command::Standalone(_) => {
            let cfg = run::standalone_defaults(cfg)?;
            let proxy_addr = cfg.proxy_addr;
            let running = run::start(cfg, Mode::Standalone).await?;
            let node = crate::standalone::start_node(&running, proxy_addr, &env).await?;
            print_banner(&running, node.addr);
            run::shutdown_signal().await;
            tracing::info!("shutting down");
            node.stop().await;
            running.stop().await;
        }
        Command::Serve(_) => {
            run::require_serve(&cfg)?;
            let running = run::start(cfg, Mode::Serve).await?;
            run::shutdown_signal().await;
            tracing::info!("shutting down");
            running.stop().await;
        }
        Command::Migrate(_) => {
            cfg.require_database_url()?;
            let db = crate::db::Db::connect(cfg.require_database_url()?.expose())
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            let n = crate::db::migrate::run(&db).await?;
            println!("applied {n} migration(s)");
        }
        Command::CreateAdmin {
            email, password, ..
        } => {
            let st = run::open(cfg, std::sync::Arc::new(crate::clock::SystemClock)).await?;
            let msg = crate::service::bootstrap::create_admin(&st, &email, &password)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            println!("{msg}");
        }
        Command::RotateMasterKey { generate, .. } => {
            if generate {
                println!("{}", crate::crypto::secrets::generate_master_key());
                return Ok(());
            }
            let st = run::open(cfg, std::sync::Arc::new(crate::clock::SystemClock)).await?;
            let n = crate::service::rotate::rotate_master_key(&st)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            println!(
                "re-encrypted {n} secret(s) under master key {}",
                st.keys().current_id()
            );
        }
        Command::RotateSigningKey(_) => {
            let st = run::open(cfg, std::sync::Arc::new(crate::clock::SystemClock)).await?;
            crate::service::rotate::rotate_signing_key(&st)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            println!(
                "new temporary-credential signing key active; nodes pick it up with the next snapshot"
            );
        }
        Command::CheckConfig {
            connect,
            standalone,
            ..
        } => {
            let cfg = if standalone {
                run::standalone_defaults(cfg)?
            } else {
                run::require_serve(&cfg).map(|_| cfg)?
            };
            crate::crypto::secrets::MasterKeys::new(
                cfg.master_key
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("AIPROXY_MASTER_KEY: required"))?,
                &cfg.old_master_keys,
            )
            .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
            if connect {
                let db = crate::db::Db::connect(cfg.require_database_url()?.expose())
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                db.ping()
                    .await
                    .map_err(|e| anyhow::anyhow!("database: {e}"))?;
            }
            println!("configuration OK");
        }
    }
    Ok(())
}

fn print_banner(running: &run::Running, proxy: std::net::SocketAddr) {
    println!();
    println!("AI Proxy is running (standalone)");
    println!(
        "  REST API:                 http://{}/api/v1 (OpenAPI: /api/v1/openapi.json)",
        running.http_addr
    );
    println!(
        "  web admin:                http://{}/ui",
        running.http_addr
    );
    println!("  gRPC (nodes, automation): http://{}", running.grpc_addr);
    println!("  proxy for your apps:      http://{proxy}/v1/proxy");
    if let (Some(email), Some(pw)) = (
        &running.generated.admin_email,
        &running.generated.admin_password,
    ) {
        println!("  admin sign-in (shown once): {email} / {pw}");
    }
    if let Some(k) = &running.generated.api_key {
        println!("  admin API key (shown once): {k}");
    }
    println!();
}
