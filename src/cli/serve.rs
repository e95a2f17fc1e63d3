//! `pgperf serve`: the HTTP API on a database: `PGPERF_DATABASE_URL`'s, or a fresh migrated
//! database in a container it starts (removed when the process ends, also on Ctrl-C).

use std::net::SocketAddr;

use anyhow::Context;

use pgperf::db::PoolSettings;

use super::with_workspace;

/// Options of `pgperf serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
}

/// Serves until the process is stopped.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    with_workspace("serve", async |ws| {
        let db = ws.pool(PoolSettings::default()).await?;
        let listener = tokio::net::TcpListener::bind(args.bind)
            .await
            .with_context(|| format!("listening on {}", args.bind))?;
        eprintln!(
            "pgperf: serving on http://{} (database {})",
            listener.local_addr()?,
            ws.url
        );
        axum::serve(listener, pgperf::service::router(db))
            .await
            .context("serving HTTP")
    })
    .await
}
