//! One fresh, migrated database per test, cloned from the shared template.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pgperf::db::{DatabaseUrl, Db, PoolSettings};
use pgperf::server::Server;

use super::{gate, shared::shared};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A test's own database and a pool on it.
#[derive(Debug)]
pub struct TestDb {
    /// The pool (metered).
    pub db: Db,
    /// The database's URL.
    pub url: DatabaseUrl,
    _gate: Option<gate::Gate>,
}

/// Database names carry the process id and the run's start time, so runs never collide and
/// leftovers on an external server can be told apart.
fn unique_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("pgperf_t_{}_{}_{n}", started / 3600, std::process::id())
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
        let server = Server::external(shared.admin.clone());
        let name = unique_name();
        let url = server
            .clone_database(&shared.template, &name)
            .await
            .unwrap_or_else(|e| panic!("cloning the template database failed: {e}"));
        super::shared::register_database(&name);
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
