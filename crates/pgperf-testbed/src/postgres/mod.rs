//! A PostgreSQL server to run against, and databases on it.
//!
//! [`Server::from_env`] starts a container (testcontainers-modules' `Postgres` with the image
//! in `PGPERF_PG_IMAGE`, default `postgres:15`) or, when `PGPERF_DATABASE_URL` is set, uses
//! that server. [`Template`] migrates a template database once; [`Server::clone_database`]
//! then gives each user (a test, a benchmark) its own database in tens of milliseconds.

pub mod cleanup;
mod container;
mod error;
pub mod owner;
mod template;

use crate::db::DatabaseUrl;
use crate::settings::Settings;

pub use container::ContainerOptions;
pub use error::ServerError;
pub use owner::{OWNER_LABEL, database_name};
pub use template::Template;

/// Environment variable naming an external server to use instead of a container.
pub const DATABASE_URL_VAR: &str = "PGPERF_DATABASE_URL";
/// Environment variable naming the PostgreSQL image (`name:tag`).
pub const IMAGE_VAR: &str = "PGPERF_PG_IMAGE";
/// Environment variable with `docker update` arguments for the run's container (`--cpus 1`,
/// `--cpuset-cpus 0`): set-ups that reproduce another machine's make-up on this one. Read at
/// the edge (the test support, `pgperf ab`) and passed to [`Server::update_container`].
pub const CONTAINER_UPDATE_VAR: &str = "PGPERF_CONTAINER_UPDATE";
/// Environment variable: `apart` (the default) or `as-is`, where timed runs put the client
/// and the server's container ([`crate::placement`]).
pub const PLACEMENT_VAR: &str = "PGPERF_PLACEMENT";
/// The image used when `PGPERF_PG_IMAGE` is unset (the official one, as on GitHub CI).
pub const DEFAULT_IMAGE: &str = "postgres:15";

type PgContainer = testcontainers_modules::testcontainers::ContainerAsync<
    testcontainers_modules::postgres::Postgres,
>;

/// A running PostgreSQL server: a container we own, or an external one.
pub struct Server {
    admin: DatabaseUrl,
    container: Option<PgContainer>,
    /// Whether databases made through this handle are tracked for dropping on interruption
    /// (not on a container, which goes away whole).
    track_databases: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("admin", &self.admin)
            .field("container", &self.container_id())
            .finish()
    }
}

impl Server {
    /// An external server given by its URL (any database on it; `postgres` is used for admin).
    pub fn external(url: DatabaseUrl) -> Self {
        Self {
            admin: url,
            container: None,
            track_databases: true,
        }
    }

    /// A handle on a server in a container that this process removes whole (its admin URL):
    /// databases made through it are not tracked for dropping.
    pub fn in_own_container(admin: DatabaseUrl) -> Self {
        Self {
            admin,
            container: None,
            track_databases: false,
        }
    }

    /// `PGPERF_DATABASE_URL` if set, otherwise a new container from `PGPERF_PG_IMAGE`.
    pub async fn from_env() -> Result<Self, ServerError> {
        Self::from_env_with(&[]).await
    }

    /// As [`Server::from_env`], with more server settings (`name=value`) for a container it
    /// starts; a server at `PGPERF_DATABASE_URL` keeps its own.
    pub async fn from_env_with(settings: &[String]) -> Result<Self, ServerError> {
        Self::start(&Settings::from_env()?, settings).await
    }

    /// The external server of `testbed`, or a new container of its image with more server
    /// settings (`name=value`).
    pub async fn start(testbed: &Settings, settings: &[String]) -> Result<Self, ServerError> {
        if let Some(url) = &testbed.database_url {
            return Ok(Self::external(url.clone()));
        }
        let mut options = ContainerOptions::with_image(testbed.image.clone());
        options.settings = settings.to_vec();
        let _ = tokio::task::spawn_blocking(owner::sweep_dead_containers).await;
        Self::start_container(options).await
    }

    /// Starts a PostgreSQL container and waits until it accepts connections.
    pub async fn start_container(options: ContainerOptions) -> Result<Self, ServerError> {
        let (container, admin) = container::start(&options).await?;
        cleanup::track_container(container.id());
        Ok(Self {
            admin,
            container: Some(container),
            track_databases: false,
        })
    }

    /// URL of the server's `postgres` database (password included; `Display` redacts it).
    pub fn admin_url(&self) -> &DatabaseUrl {
        &self.admin
    }

    /// The container, when we started one (to pause, stop or restart it in fault tests).
    pub fn container(&self) -> Option<&PgContainer> {
        self.container.as_ref()
    }

    /// The container's id, when we started one.
    pub fn container_id(&self) -> Option<&str> {
        self.container.as_ref().map(|c| c.id())
    }

    /// Creates `name` as a copy of `template` and returns its URL.
    pub async fn clone_database(
        &self,
        template: &Template,
        name: &str,
    ) -> Result<DatabaseUrl, ServerError> {
        let url = template::clone_database(&self.admin, template, name).await?;
        if self.track_databases {
            cleanup::track_database(&self.admin, name);
        }
        Ok(url)
    }

    /// Drops a database made by [`Server::clone_database`] (closing other sessions on it).
    pub async fn drop_database(&self, name: &str) -> Result<(), ServerError> {
        template::drop_database(&self.admin, name).await?;
        cleanup::forget_database(name);
        Ok(())
    }

    /// Drops databases that killed runs left on this server (named by [`database_name`],
    /// older than [`owner::STALE_AFTER`]); returns their names. Best effort and bounded.
    pub async fn drop_stale_databases(&self) -> Vec<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let names = template::database_names(&self.admin)
            .await
            .unwrap_or_default();
        let mut dropped = Vec::new();
        for name in names
            .into_iter()
            .filter(|n| owner::is_stale_database(n, now))
        {
            if self.drop_database(&name).await.is_ok() {
                dropped.push(name);
            }
        }
        dropped
    }

    /// Applies `docker update ARGS` to the container (`--cpus 1`, `--cpuset-cpus 0`, ...), to
    /// reproduce another machine's make-up on this one; nothing without a container or args.
    pub fn update_container(&self, args: &str) -> Result<(), ServerError> {
        match (self.container_id(), args.trim().is_empty()) {
            (Some(id), false) => docker_update(id, args),
            _ => Ok(()),
        }
    }

    /// Removes the container now (also done on drop, which needs a tokio runtime).
    pub async fn shutdown(mut self) {
        if let Some(c) = self.container.take() {
            let id = c.id().to_owned();
            // A removal that fails or hangs stays tracked: the exit clean-up tries again.
            let removed = tokio::time::timeout(std::time::Duration::from_secs(30), c.rm()).await;
            if matches!(removed, Ok(Ok(()))) {
                cleanup::forget_container(&id);
            }
        }
    }
}

/// `docker update ARGS ID`: a container's CPU list or quota.
pub fn docker_update(id: &str, args: &str) -> Result<(), ServerError> {
    let failed = |reason: String| ServerError::ContainerUpdate {
        id: id.to_owned(),
        args: args.to_owned(),
        reason,
    };
    let out = std::process::Command::new("docker")
        .arg("update")
        .args(args.split_whitespace())
        .arg(id)
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}
