//! A PostgreSQL container of a test's own, for faults that would disturb other tests
//! (pausing, restarting). Data is on the container's disk (not tmpfs) so it survives a
//! restart, and the host port is fixed so that the URL does too.

use pgperf::db::{DatabaseUrl, Db, PoolSettings};
use pgperf::postgres::{ContainerOptions, Server, Template};

use super::gate::{self, Gate};
use super::shared::shared;

/// A test's own server and a migrated database on it. It holds the timing gate shared while it
/// lives, like every other test: starting and breaking a server loads the cores.
pub struct Dedicated {
    /// The server; call [`Dedicated::shutdown`] at the end.
    pub server: Server,
    /// The migrated database.
    pub url: DatabaseUrl,
    _gate: Option<Gate>,
}

/// A free port of 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

impl Dedicated {
    /// Starts the container and migrates a database on it. `None` when the suite runs against
    /// PGPERF_DATABASE_URL (no engine to break).
    pub async fn start() -> Option<Self> {
        Self::start_changed(|o| o).await
    }

    /// Like [`Dedicated::start`], with the container options changed by `change`.
    pub async fn start_changed(
        change: impl FnOnce(ContainerOptions) -> ContainerOptions,
    ) -> Option<Self> {
        let gate = gate::shared().await;
        let mut this = Self::start_with(change).await?;
        this._gate = Some(gate);
        Some(this)
    }

    /// Starts the container, without the gate: [`Dedicated::start_changed`] holds it.
    async fn start_with(change: impl FnOnce(ContainerOptions) -> ContainerOptions) -> Option<Self> {
        if !shared().is_container() {
            super::skip::skip(
                "fault tests need a container of their own (PGPERF_DATABASE_URL is set)",
            );
            return None;
        }
        let options = change(ContainerOptions {
            data_on_tmpfs: false,
            host_port: Some(free_port()),
            ..ContainerOptions::from_env().unwrap()
        });
        let server = Server::start_container(options)
            .await
            .unwrap_or_else(|e| panic!("starting a dedicated container: {e}"));
        let template = Template::ensure(server.admin_url()).await.unwrap();
        let url = server.clone_database(&template, "fault").await.unwrap();
        Some(Self {
            server,
            url,
            _gate: None,
        })
    }

    /// A pool on the database.
    pub async fn pool(&self, settings: PoolSettings) -> Db {
        Db::connect(&self.url, settings).await.unwrap()
    }

    /// Removes the container.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}
