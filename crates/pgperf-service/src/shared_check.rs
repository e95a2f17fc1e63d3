//! A check of the database shared by every request that asks for it while it is fresh: the
//! one policy behind `/health/database` (a `SELECT 1`) and the monitoring endpoints (the
//! server's statistics).
//!
//! The check runs on a connection of its own outside the pool, so it reports the database,
//! not the pool's queue. A passing result younger than [`Sharing::max_age`] is shared: a flood
//! of requests costs the database nothing and queues behind nothing. Past
//! [`Sharing::refresh_after`] the next check runs in the background. Otherwise a request runs
//! the check itself, one at a time, within [`DATABASE_CHECK_TIMEOUT`] of its arrival: a
//! request that waited while another ran takes that one's result. A check cut off by its time
//! limit drops the connection (it may be mid-query); the next connects again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use pgperf_db::{Db, DbError};
use sqlx::PgConnection;

use crate::telemetry::{Operation, Outcome, Telemetry};

/// The longest a database check may take; past it the check fails ("no answer within").
pub const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One check: when it ended, how long it took, and its result or why it failed (words
/// without address or secret).
#[derive(Debug, Clone)]
pub struct Reading<T> {
    /// When it ended.
    pub at: Instant,
    /// How long it took.
    pub took: Duration,
    /// What it read, or why it failed.
    pub result: Result<T, String>,
}

/// The statement(s) of a check, on the check's connection.
pub type CheckFn<T> = for<'c> fn(&'c mut PgConnection) -> BoxFuture<'c, Result<T, DbError>>;

/// How long a passing check is shared, and how it is metered.
#[derive(Debug, Clone, Copy)]
pub struct Sharing {
    /// A passing check at most this old answers at once.
    pub max_age: Duration,
    /// A passing check older than this is still answered, and the next starts in the
    /// background.
    pub refresh_after: Duration,
    /// The operation each check is metered as, if any.
    pub metered_as: Option<Operation>,
    /// Whether a closed pool (the service stopping) fails the check: its database is no
    /// longer served.
    pub fails_when_stopping: bool,
}

/// A check shared under a [`Sharing`] policy.
pub struct SharedCheck<T> {
    check: CheckFn<T>,
    sharing: Sharing,
    conn: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
    last: std::sync::Mutex<Option<Reading<T>>>,
}

/// Why a database call failed, in words that hold no address or secret.
fn reason(e: &DbError) -> &'static str {
    if e.is_unavailable() {
        "the database is unavailable"
    } else {
        "the check query failed"
    }
}

fn timed_out() -> String {
    format!("no answer within {} ms", DATABASE_CHECK_TIMEOUT.as_millis())
}

impl<T: Clone + Send + Sync + 'static> SharedCheck<T> {
    /// A shared `check`, never run yet.
    pub fn new(check: CheckFn<T>, sharing: Sharing) -> Self {
        Self {
            check,
            sharing,
            conn: Arc::default(),
            last: std::sync::Mutex::new(None),
        }
    }

    /// A fresh passing reading, or one taken now (see the module's documentation).
    pub async fn reading(self: &Arc<Self>, db: &Db, telemetry: &Arc<Telemetry>) -> Reading<T> {
        let arrived = Instant::now();
        let shared = self.last().filter(|r| {
            r.result.is_ok() && r.at.elapsed() < self.sharing.max_age && !self.stopping(db)
        });
        match shared {
            Some(r) => {
                if r.at.elapsed() >= self.sharing.refresh_after {
                    self.refresh_in_background(db, telemetry);
                }
                r
            }
            None => self.read_now(db, telemetry, arrived).await,
        }
    }

    fn stopping(&self, db: &Db) -> bool {
        self.sharing.fails_when_stopping && db.pool().is_closed()
    }

    fn last(&self) -> Option<Reading<T>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn read_now(&self, db: &Db, telemetry: &Telemetry, arrived: Instant) -> Reading<T> {
        let deadline = tokio::time::Instant::from_std(arrived + DATABASE_CHECK_TIMEOUT);
        let turn = tokio::time::timeout_at(deadline, Arc::clone(&self.conn).lock_owned());
        let Ok(mut conn) = turn.await else {
            return self.ended(telemetry, arrived, Outcome::Timeout, Err(timed_out()));
        };
        if let Some(r) = self.last().filter(|r| r.at >= arrived) {
            return r;
        }
        self.run(&mut conn, db, telemetry, deadline).await
    }

    /// Starts a check unless one is running; it ends within [`DATABASE_CHECK_TIMEOUT`].
    fn refresh_in_background(self: &Arc<Self>, db: &Db, telemetry: &Arc<Telemetry>) {
        let Ok(mut conn) = Arc::clone(&self.conn).try_lock_owned() else {
            return;
        };
        let (this, db, telemetry) = (Arc::clone(self), db.clone(), Arc::clone(telemetry));
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + DATABASE_CHECK_TIMEOUT;
            this.run(&mut conn, &db, &telemetry, deadline).await;
        });
    }

    async fn run(
        &self,
        slot: &mut Option<PgConnection>,
        db: &Db,
        telemetry: &Telemetry,
        deadline: tokio::time::Instant,
    ) -> Reading<T> {
        let started = Instant::now();
        match tokio::time::timeout_at(deadline, self.on_own_connection(db, slot)).await {
            Ok(Ok(value)) => self.ended(telemetry, started, Outcome::Ok, Ok(value)),
            Ok(Err(e)) => {
                tracing::warn!("a check of the database failed: {e}");
                let why = reason(&e).to_owned();
                self.ended(telemetry, started, Outcome::Error, Err(why))
            }
            Err(_) => self.ended(telemetry, started, Outcome::Timeout, Err(timed_out())),
        }
    }

    /// The check on the connection in `slot` (a new one if none); the connection is kept
    /// only if the check ended.
    async fn on_own_connection(
        &self,
        db: &Db,
        slot: &mut Option<PgConnection>,
    ) -> Result<T, DbError> {
        if self.stopping(db) {
            return Err(DbError::Unavailable {
                source: sqlx::Error::PoolClosed,
            });
        }
        let mut conn = match slot.take() {
            Some(c) => c,
            None => db.connect_one().await?,
        };
        let value = (self.check)(&mut conn).await?;
        *slot = Some(conn);
        Ok(value)
    }

    /// Keeps (and meters) a check that began at `started`.
    fn ended(
        &self,
        telemetry: &Telemetry,
        started: Instant,
        outcome: Outcome,
        result: Result<T, String>,
    ) -> Reading<T> {
        let took = started.elapsed();
        if let Some(operation) = self.sharing.metered_as {
            telemetry.query(operation, took, outcome);
        }
        let r = Reading {
            at: Instant::now(),
            took,
            result,
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.clone());
        r
    }
}
