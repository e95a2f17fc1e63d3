//! A pooled connection that reports how long it was held.

use std::{
    ops::{Deref, DerefMut},
    sync::Arc,
    time::Instant,
};

use sqlx::{PgConnection, Postgres, pool::PoolConnection};

use super::PoolMetrics;

/// A connection from [`super::Db::acquire`]. Derefs to `PgConnection`; returning it to the
/// pool (dropping it) records its usage time.
#[derive(Debug)]
pub struct MeteredConnection {
    conn: PoolConnection<Postgres>,
    acquired_at: Instant,
    metrics: Arc<PoolMetrics>,
}

impl MeteredConnection {
    pub(crate) fn new(conn: PoolConnection<Postgres>, metrics: Arc<PoolMetrics>) -> Self {
        Self {
            conn,
            acquired_at: Instant::now(),
            metrics,
        }
    }
}

impl Deref for MeteredConnection {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for MeteredConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl Drop for MeteredConnection {
    fn drop(&mut self) {
        self.metrics.released(self.acquired_at.elapsed());
    }
}
