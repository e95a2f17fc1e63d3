//! One fresh, migrated database per test, cloned from the shared template.

use std::time::Duration;

use pgperf::db::{DatabaseUrl, Db, PoolSettings};
use pgperf::postgres::Server;

use super::{gate, shared::shared};

/// A test's own database and a pool on it.
#[derive(Debug)]
pub struct TestDb {
    /// The pool (metered).
    pub db: Db,
    /// The database's URL.
    pub url: DatabaseUrl,
    _gate: Option<gate::Gate>,
}

impl TestDb {
    /// A new database with the test pool settings (small pool, short acquire timeout).
    pub async fn new() -> Self {
        Self::with_settings(test_settings()).await
    }

    /// A new database whose pool uses `settings`.
    pub async fn with_settings(settings: PoolSettings) -> Self {
        let gate = gate::shared().await;
        let mut this = Self::unguarded(settings).await;
        this._gate = Some(gate);
        this
    }

    /// A new database for a timed test, which holds the timing gate exclusively itself.
    pub async fn for_timing(settings: PoolSettings) -> Self {
        Self::unguarded(settings).await
    }

    async fn unguarded(settings: PoolSettings) -> Self {
        let shared = shared();
        let server = if shared.is_container() {
            Server::in_own_container(shared.admin.clone())
        } else {
            Server::external(shared.admin.clone())
        };
        let name = pgperf::postgres::database_name("t");
        let url = server
            .clone_database(&shared.template, &name)
            .await
            .unwrap_or_else(|e| panic!("cloning the template database failed: {e}"));
        let db = Db::connect(&url, settings)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database failed: {e}"));
        Self {
            db,
            url,
            _gate: None,
        }
    }
}

/// Pool settings for tests: small, with a short acquire timeout so a leak fails fast.
pub fn test_settings() -> PoolSettings {
    PoolSettings {
        max_connections: 5,
        min_connections: 0,
        acquire_timeout: Duration::from_secs(10),
        application_name: "pgperf-test".to_owned(),
        ..PoolSettings::default()
    }
}

/// rstest fixture: a fresh database.
#[rstest::fixture]
pub async fn test_db() -> TestDb {
    TestDb::new().await
}
