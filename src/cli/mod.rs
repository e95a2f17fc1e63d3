//! The CLI's commands. Each gets a server (a container, or PGPERF_DATABASE_URL), its own
//! database cloned from the migrated template, and cleans both up at the end.

pub mod ab;
pub mod abuse;
pub mod accuracy;
pub mod alert_sink;
pub mod check_server;
mod child;
pub mod ingest_bench;
pub mod load;
pub mod pgbench;
pub mod run;
pub mod scale;
pub mod serve;
pub mod serve_bench;
mod target;

use std::time::Instant;

use anyhow::Context;

use pgperf::db::{DatabaseUrl, Db, PoolSettings};
use pgperf::postgres::{Server, Template};
use pgperf_testbed::placement::{Apart, Placed, WhenBusy};

/// Exit code: a measured case regressed (the guard failed it).
pub const EXIT_REGRESSION: u8 = 1;
/// Exit code: the command line is wrong (clap's own errors exit 2 too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: anything else went wrong (no server, a failed query, a file that cannot be read).
pub const EXIT_ERROR: u8 = 3;

/// A failure with an exit code of its own; any other error exits with [`EXIT_ERROR`].
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// One or more cases regressed.
    #[error("{0}")]
    Regressed(String),
}

/// The exit code for an error.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<Failure>() {
        Some(Failure::Usage(_)) => EXIT_USAGE,
        Some(Failure::Regressed(_)) => EXIT_REGRESSION,
        None => EXIT_ERROR,
    }
}

/// Applies the run's `PGPERF_CONTAINER_UPDATE` to a container of ours, then places the client
/// and the server apart for timing (`pgperf_testbed::placement`) until the value returned is
/// dropped. Processes started meanwhile (`pgperf ab`'s workers) inherit the client's CPU.
pub fn place_for_timing(
    server: &Server,
    testbed: &pgperf_testbed::Settings,
    when_busy: WhenBusy,
) -> anyhow::Result<Placed> {
    server.update_container(&testbed.container_update)?;
    let placed = Apart::place(
        testbed.placement,
        server.container_id(),
        &testbed.container_update,
        when_busy,
    )?;
    eprintln!("pgperf: {}", placed.describe());
    Ok(placed)
}

/// A server and a fresh database on it, for one command.
pub struct Workspace {
    /// The server (its container is removed by [`Workspace::close`]).
    pub server: Server,
    /// The database's URL.
    pub url: DatabaseUrl,
    /// The testbed's settings, read once when the workspace opened.
    pub testbed: pgperf_testbed::Settings,
    name: String,
}

impl Workspace {
    /// Starts or reaches the server (a container it starts gets `settings`, `name=value`
    /// each), and clones a database named after `purpose`.
    pub async fn open_with(purpose: &str, settings: &[String]) -> anyhow::Result<Self> {
        let started = Instant::now();
        eprintln!("pgperf: starting PostgreSQL (or reaching PGPERF_DATABASE_URL) ...");
        let testbed = pgperf_testbed::Settings::from_env()?;
        let server = Server::start(&testbed, settings).await?;
        if server.container_id().is_none() && !settings.is_empty() {
            eprintln!(
                "pgperf: note: the server at PGPERF_DATABASE_URL keeps its own settings ({} not applied)",
                settings.join(", ")
            );
        }
        if server.container_id().is_none() {
            for name in server.drop_stale_databases().await {
                eprintln!(
                    "pgperf: dropped {name}, left on the server by a run killed a day ago or more"
                );
            }
        }
        eprintln!(
            "pgperf: server {} ready in {:.1} s",
            server.admin_url(),
            started.elapsed().as_secs_f64()
        );
        let name = pgperf::postgres::database_name(purpose);
        let url = async {
            let template = Template::ensure(server.admin_url()).await?;
            server.clone_database(&template, &name).await
        }
        .await;
        match url {
            Ok(url) => Ok(Self {
                server,
                url,
                testbed,
                name,
            }),
            Err(e) => {
                server.shutdown().await;
                Err(e).context("preparing the benchmark database")
            }
        }
    }

    /// A pool on the workspace's database.
    pub async fn pool(&self, settings: PoolSettings) -> anyhow::Result<Db> {
        Ok(Db::connect(&self.url, settings).await?)
    }

    /// Drops the database and removes the container (if we started one).
    pub async fn close(self) {
        if let Err(e) = self.server.drop_database(&self.name).await {
            eprintln!(
                "pgperf: warning: could not drop database {}: {e}",
                self.name
            );
        }
        self.server.shutdown().await;
    }
}

/// Runs `work` in a workspace and always closes it, also when `work` fails.
pub async fn with_workspace<T>(
    purpose: &str,
    work: impl AsyncFnOnce(&Workspace) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    with_workspace_on(purpose, &[], work).await
}

/// As [`with_workspace`], with more settings (`name=value`) for a server it starts.
pub async fn with_workspace_on<T>(
    purpose: &str,
    settings: &[String],
    work: impl AsyncFnOnce(&Workspace) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let ws = Workspace::open_with(purpose, settings).await?;
    let result = work(&ws).await;
    ws.close().await;
    result
}

/// Checks a server setting: `name=value`, a name of letters, digits, `_` and `.`, a value
/// without spaces (each goes to the server as one `-c` argument, no shell involved).
pub fn parse_setting(s: &str) -> Result<String, String> {
    let ok = s.split_once('=').is_some_and(|(name, value)| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && !value.is_empty()
            && !value.chars().any(char::is_whitespace)
    });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a server setting NAME=VALUE (like shared_buffers=1GB)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_setting;

    #[test]
    fn settings_are_name_equals_value() {
        assert_eq!(
            parse_setting("shared_buffers=1GB").as_deref(),
            Ok("shared_buffers=1GB")
        );
        for bad in ["shared_buffers", "=1GB", "a=", "x y=1", "a=1 -c b=2"] {
            assert!(
                parse_setting(bad).unwrap_err().contains("NAME=VALUE"),
                "{bad}"
            );
        }
    }
}
