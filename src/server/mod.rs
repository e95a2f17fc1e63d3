//! A PostgreSQL server to run against, and databases on it.
//!
//! [`Server::from_env`] starts a container (testcontainers-modules' `Postgres` with the image
//! in `PGPERF_PG_IMAGE`, default `postgres:15`) or, when `PGPERF_DATABASE_URL` is set, uses
//! that server. [`Template`] migrates a template database once; [`Server::clone_database`]
//! then gives each user (a test, a benchmark) its own database in tens of milliseconds.

mod container;
mod error;
mod template;

use crate::db::DatabaseUrl;

pub use container::{ContainerOptions, OWNER_LABEL, image_from_env};
pub use error::ServerError;
pub use template::Template;

/// Environment variable naming an external server to use instead of a container.
pub const DATABASE_URL_VAR: &str = "PGPERF_DATABASE_URL";
/// Environment variable naming the PostgreSQL image (`name:tag`).
pub const IMAGE_VAR: &str = "PGPERF_PG_IMAGE";
/// The image used when `PGPERF_PG_IMAGE` is unset (the official one, as on GitHub CI).
pub const DEFAULT_IMAGE: &str = "postgres:15";

type PgContainer = testcontainers_modules::testcontainers::ContainerAsync<
    testcontainers_modules::postgres::Postgres,
>;

/// A running PostgreSQL server: a container we own, or an external one.
pub struct Server {
    admin: DatabaseUrl,
    container: Option<PgContainer>,
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
        }
    }

    /// `PGPERF_DATABASE_URL` if set, otherwise a new container from `PGPERF_PG_IMAGE`.
    pub async fn from_env() -> Result<Self, ServerError> {
        match std::env::var(DATABASE_URL_VAR) {
            Ok(text) if !text.trim().is_empty() => {
                let url =
                    DatabaseUrl::parse(text.trim()).map_err(|source| ServerError::BadUrl {
                        var: DATABASE_URL_VAR,
                        source,
                    })?;
                Ok(Self::external(url))
            }
            _ => Self::start_container(ContainerOptions::from_env()?).await,
        }
    }

    /// Starts a PostgreSQL container and waits until it accepts connections.
    pub async fn start_container(options: ContainerOptions) -> Result<Self, ServerError> {
        let (container, admin) = container::start(&options).await?;
        Ok(Self {
            admin,
            container: Some(container),
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
        template::clone_database(&self.admin, template, name).await
    }

    /// Drops a database made by [`Server::clone_database`] (closing other sessions on it).
    pub async fn drop_database(&self, name: &str) -> Result<(), ServerError> {
        template::drop_database(&self.admin, name).await
    }

    /// Removes the container now (also done on drop, which needs a tokio runtime).
    pub async fn shutdown(mut self) {
        if let Some(c) = self.container.take() {
            let _ = c.rm().await;
        }
    }
}
