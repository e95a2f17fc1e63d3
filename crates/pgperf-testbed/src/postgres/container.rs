//! Starting PostgreSQL in a container with testcontainers-modules.

use std::time::Duration;

use rand::Rng;
use testcontainers_modules::{
    postgres::Postgres,
    testcontainers::{
        ContainerAsync, ImageExt, core::ContainerPort, core::Mount, runners::AsyncRunner,
    },
};

use super::ServerError;
use crate::db::DatabaseUrl;
use crate::settings::Settings;

/// PGDATA in the official image and in ours.
const PGDATA: &str = "/var/lib/postgresql/data";

/// The server's settings (the module's default is only `fsync=off`):
/// - `fsync=off`: data durability does not matter in a throw-away test server (unless the
///   options ask for a durable one, to test crash recovery);
/// - `full_page_writes=off`: after a checkpoint the first change of each page would otherwise
///   log the whole page, so WAL bytes per operation would depend on when checkpoints fall;
/// - `pg_stat_statements` preloaded, planning time tracked: the guard's per-operation counters
///   (statements, rows, buffers, WAL) and server time come from it (`pgperf ab` also tracks
///   statements in functions and triggers, `pg_stat_statements.track=all`);
/// - `max_prepared_transactions`: one per stream of the most parallel COPY can use
///   ([`MAX_STREAMS`](crate::db::ingest::parallel::MAX_STREAMS)), which commits its streams
///   together with two-phase commit (PostgreSQL's default, 0, refuses it).
fn server_args(options: &ContainerOptions) -> Vec<String> {
    let durable = if options.durable { "on" } else { "off" };
    let mut settings = vec![
        format!("fsync={durable}"),
        format!("full_page_writes={durable}"),
        format!(
            "max_prepared_transactions={}",
            crate::db::ingest::parallel::MAX_STREAMS
        ),
    ];
    if options.stat_statements {
        settings.push("shared_preload_libraries=pg_stat_statements".to_owned());
        settings.push("pg_stat_statements.track_planning=on".to_owned());
    }
    settings.extend(options.settings.iter().cloned());
    settings
        .into_iter()
        .flat_map(|s| ["-c".to_owned(), s])
        .collect()
}

/// What container to start.
#[derive(Debug, Clone)]
pub struct ContainerOptions {
    /// Image name, e.g. `postgres`.
    pub name: String,
    /// Image tag, e.g. `15`.
    pub tag: String,
    /// A fixed host port (so it survives `docker restart`); `None` lets Docker pick one.
    pub host_port: Option<u16>,
    /// How long to wait for readiness.
    pub startup_timeout: Duration,
    /// Keep PGDATA on a tmpfs: cloning a database takes ~30 ms instead of ~180 ms on this
    /// machine's disk. Data does not survive a container restart, so fault tests that restart
    /// the server turn it off.
    pub data_on_tmpfs: bool,
    /// Preload `pg_stat_statements` (the guard's counters come from it); off only to test a
    /// server without it.
    pub stat_statements: bool,
    /// `fsync` and `full_page_writes` on, as in production: for crash tests (off otherwise,
    /// which is faster and makes WAL volume independent of checkpoints).
    pub durable: bool,
    /// More server settings, `name=value` each (`-c name=value`), e.g. `shared_buffers=1GB`
    /// for a benchmark at a size the default 128 MB does not hold.
    pub settings: Vec<String>,
}

impl ContainerOptions {
    /// The image from `PGPERF_PG_IMAGE` ([`Settings`]), a port chosen by Docker, a 60 s
    /// startup limit.
    pub fn from_env() -> Result<Self, ServerError> {
        Ok(Self::with_image(Settings::from_env()?.image))
    }

    /// The image `(name, tag)`, a port chosen by Docker, a 60 s startup limit.
    pub fn with_image((name, tag): (String, String)) -> Self {
        Self {
            name,
            tag,
            host_port: None,
            startup_timeout: Duration::from_secs(60),
            data_on_tmpfs: true,
            stat_statements: true,
            durable: false,
            settings: Vec::new(),
        }
    }

    /// The image as `name:tag`.
    pub fn image(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

fn random_password() -> String {
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

pub(super) async fn start(
    options: &ContainerOptions,
) -> Result<(ContainerAsync<Postgres>, DatabaseUrl), ServerError> {
    let password = random_password();
    // The engine's request log (PGPERF_LOG=debug) shows the container's environment.
    crate::db::remember_secret(&password);
    let mut request = Postgres::default()
        .with_password(&password)
        .with_name(&options.name)
        .with_tag(&options.tag)
        .with_cmd(server_args(options))
        .with_startup_timeout(options.startup_timeout);
    for (key, value) in super::owner::Owner::current().labels() {
        request = request.with_label(key, value);
    }
    if options.data_on_tmpfs {
        request = request.with_mount(Mount::tmpfs_mount(PGDATA));
    }
    if let Some(port) = options.host_port {
        request = request.with_mapped_port(port, ContainerPort::Tcp(5432));
    }
    let image = options.image();
    let container = request
        .start()
        .await
        .map_err(|e| ServerError::from_start(&image, e))?;
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .map_err(|e| ServerError::from_start(&image, e))?;
    let url = DatabaseUrl::parse(&format!(
        "postgres://postgres:{password}@127.0.0.1:{port}/postgres"
    ))
    .map_err(|source| ServerError::BadUrl {
        var: "container URL",
        source,
    })?;
    Ok((container, url))
}
