//! Postgres LISTEN for configuration changes made through other replicas: each NOTIFY wakes the
//! snapshot builder at once (the 1 s version poll remains the safety net).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub fn spawn(st: AppState, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match sqlx::postgres::PgListener::connect(st.db().url().expose()).await {
                Ok(mut l) => {
                    if let Err(e) = l.listen("aiproxy_config").await {
                        tracing::warn!(error = %e, "cannot LISTEN for configuration changes");
                    } else {
                        loop {
                            tokio::select! {
                                n = l.recv() => match n {
                                    Ok(_) => st.config_changed(),
                                    Err(e) => { tracing::warn!(error = %e, "LISTEN connection lost"); break; }
                                },
                                _ = shutdown.cancelled() => return,
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot connect for LISTEN; relying on the version poll")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    })
}
