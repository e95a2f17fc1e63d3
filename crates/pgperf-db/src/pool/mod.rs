//! The tuned connection pool: typed settings, eager connection with a clear error, and
//! metrics that sqlx does not keep (waiters, acquire and usage time, timeouts, closes).

mod connection;
mod metrics;
mod settings;

use std::{sync::Arc, time::Duration, time::Instant};

use sqlx::{Connection, PgPool, postgres::PgPoolOptions};

pub use connection::MeteredConnection;
pub use metrics::{LatencySummary, PoolMetrics, PoolSnapshot};
pub use settings::PoolSettings;

use crate::{DatabaseUrl, DbError};

/// The application's handle to the database: a sqlx pool plus its metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    url: DatabaseUrl,
    pool: PgPool,
    metrics: Arc<PoolMetrics>,
    settings: Arc<PoolSettings>,
}

impl Db {
    /// Opens a pool to `url` with `settings`. One direct connection is made first, so a wrong
    /// URL, password or database name fails here with the server's own reason instead of a
    /// pool timeout later.
    pub async fn connect(url: &DatabaseUrl, settings: PoolSettings) -> Result<Self, DbError> {
        settings.validate()?;
        let options = connect_options(url, &settings);
        let probe = tokio::time::timeout(
            settings.acquire_timeout,
            sqlx::PgConnection::connect_with(&options),
        );
        match probe.await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(source)) => {
                return Err(DbError::Connect {
                    target: url.to_string(),
                    source,
                });
            }
            Err(_) => {
                return Err(DbError::ConnectTimeout {
                    target: url.to_string(),
                    after: settings.acquire_timeout,
                });
            }
        }
        Ok(Self::connect_lazy(url, settings))
    }

    /// Builds the pool without connecting; connections open on first use (or for
    /// `min_connections`, in the background).
    pub fn connect_lazy(url: &DatabaseUrl, settings: PoolSettings) -> Self {
        let metrics = Arc::new(PoolMetrics::default());
        let pool =
            pool_options(&settings, &metrics).connect_lazy_with(connect_options(url, &settings));
        Self {
            url: url.clone(),
            pool,
            metrics,
            settings: Arc::new(settings),
        }
    }

    /// One connection outside the pool, with the pool's options and within its
    /// `acquire_timeout`: for a monitor that must not compete with the work it watches.
    pub async fn connect_one(&self) -> Result<sqlx::PgConnection, DbError> {
        let options = connect_options(&self.url, &self.settings);
        let after = self.settings.acquire_timeout;
        match tokio::time::timeout(after, sqlx::PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => Err(DbError::Connect {
                target: self.url.to_string(),
                source,
            }),
            Err(_) => Err(DbError::ConnectTimeout {
                target: self.url.to_string(),
                after,
            }),
        }
    }

    /// Acquires a connection, counting the wait, the waiters and timeouts.
    pub async fn acquire(&self) -> Result<MeteredConnection, DbError> {
        let started = Instant::now();
        let waiting = self.metrics.start_waiting();
        let result = self.pool.acquire().await;
        drop(waiting);
        match result {
            Ok(conn) => {
                self.metrics.acquired(started.elapsed());
                Ok(MeteredConnection::new(conn, Arc::clone(&self.metrics)))
            }
            Err(e) => {
                self.metrics
                    .acquire_failed(matches!(e, sqlx::Error::PoolTimedOut));
                Err(DbError::from(e))
            }
        }
    }

    /// Runs `work` (any data-layer call) under the client-side `query_timeout`, so that a
    /// silently dead server yields [`DbError::Timeout`] instead of a hang.
    pub async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        let after = self.settings.query_timeout;
        tokio::time::timeout(after, work)
            .await
            .map_err(|_| DbError::Timeout { after })?
    }

    /// The underlying sqlx pool, for calls that take an executor. Acquires made through it
    /// are not counted in the metrics (the pool's size and idle count still are).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The database's URL (`Display` redacts the password).
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The settings the pool was built with.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// The live counters.
    pub fn metrics(&self) -> &PoolMetrics {
        &self.metrics
    }

    /// A serializable snapshot of the pool now.
    pub fn snapshot(&self) -> PoolSnapshot {
        self.metrics.snapshot(
            self.pool.size(),
            self.pool.num_idle(),
            self.settings.max_connections,
        )
    }

    /// Closes every connection and refuses new acquires (`DbError::Unavailable`). Waits for
    /// checked-out connections to come back for at most `acquire_timeout`, then leaves them to
    /// close when they are dropped (with a warning naming how many), so a leaked or stuck
    /// connection cannot hang a shutdown.
    pub async fn close(&self) {
        if tokio::time::timeout(self.settings.acquire_timeout, self.pool.close())
            .await
            .is_err()
        {
            tracing::warn!(
                in_use = self.snapshot().in_use,
                "closing the pool: connections still checked out after {:?}; they close when dropped",
                self.settings.acquire_timeout
            );
        }
    }

    /// Waits until every handed-out connection is back (in-use zero and the pool's idle count
    /// caught up), or `limit` passes; returns whether it settled.
    pub async fn settle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.snapshot();
            if s.in_use == 0 && s.idle == s.total {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn connect_options(url: &DatabaseUrl, s: &PoolSettings) -> sqlx::postgres::PgConnectOptions {
    use sqlx::ConnectOptions as _;
    let mut options = url
        .connect_options()
        .application_name(&s.application_name)
        .log_slow_statements(log::LevelFilter::Warn, s.slow_statement);
    if let Some(t) = s.statement_timeout {
        options = options.options([("statement_timeout", format!("{}ms", t.as_millis()))]);
    }
    if let Some(n) = s.max_parallel_workers_per_gather {
        options = options.options([("max_parallel_workers_per_gather", n.to_string())]);
    }
    if let Some(t) = s.similarity_threshold {
        options = options.options([("pg_trgm.similarity_threshold", t.to_string())]);
    }
    options
}

fn pool_options(s: &PoolSettings, metrics: &Arc<PoolMetrics>) -> PgPoolOptions {
    let on_connect = Arc::clone(metrics);
    let on_release = Arc::clone(metrics);
    let on_acquire = Arc::clone(metrics);
    let lifetime = s.max_lifetime;
    // Lifetime is enforced in the hooks rather than by sqlx, so that its closes are counted.
    let expired = move |age: Duration| lifetime.is_some_and(|l| age >= l);
    PgPoolOptions::new()
        .max_connections(s.max_connections)
        .min_connections(s.min_connections)
        .acquire_timeout(s.acquire_timeout)
        .idle_timeout(s.idle_timeout)
        .max_lifetime(None)
        .test_before_acquire(s.test_before_acquire)
        .after_connect(move |_conn, _meta| {
            on_connect.connection_created();
            Box::pin(async { Ok(()) })
        })
        .before_acquire(move |_conn, meta| {
            let keep = !expired(meta.age);
            if !keep {
                on_acquire.closed_for_lifetime();
            }
            Box::pin(async move { Ok(keep) })
        })
        .after_release(move |_conn, meta| {
            let keep = !expired(meta.age);
            if !keep {
                on_release.closed_for_lifetime();
            }
            Box::pin(async move { Ok(keep) })
        })
}
