//! Typed pool configuration, with defaults chosen for a web service.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the connection pool behaves. `Default` gives the documented web-service defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSettings {
    /// Most connections open at once. 10 fits a 2-core service against a server with
    /// `max_connections = 100` and leaves room for several replicas.
    pub max_connections: u32,
    /// Connections kept open even when idle, so a quiet service answers its first request fast.
    pub min_connections: u32,
    /// How long an acquire may wait (in the queue, plus connecting) before it fails with
    /// `PoolTimedOut`. 5 s fails a request fast instead of piling up waiters (sqlx's 30 s
    /// outlives most HTTP timeouts).
    pub acquire_timeout: Duration,
    /// Idle connections beyond `min_connections` are closed after this long (the reaper runs
    /// every `min(idle_timeout, max_lifetime)`, so one may live up to twice as long).
    pub idle_timeout: Option<Duration>,
    /// Connections are recycled after this age, so server-side memory and plans stay fresh.
    pub max_lifetime: Option<Duration>,
    /// Server-side `statement_timeout` for every connection: a stuck query cannot hold a
    /// connection for ever. `None` leaves the server's setting.
    pub statement_timeout: Option<Duration>,
    /// Client-side limit for [`super::Db::bounded`] calls. sqlx has no client-side query
    /// timeout, and `statement_timeout` cannot fire on a server that is silently gone (paused,
    /// partitioned): without this a query waits for TCP to give up, many minutes later.
    pub query_timeout: Duration,
    /// Server-side `max_parallel_workers_per_gather` for every connection. `Some(0)` by
    /// default: a service runs many short statements at once, and a parallel plan for one of
    /// them takes cores from the others (a timed search run with one core busy was 1.7x
    /// slower with two workers, where a single process would have kept its pace). `None`
    /// leaves the server's setting, for analytical work.
    #[serde(default = "default_parallel_workers")]
    pub max_parallel_workers_per_gather: Option<u32>,
    /// pg_trgm's `similarity_threshold` for every connection: the trigram similarity a name
    /// needs to be a search hit or a resolution candidate (`%` uses it, and resolution keeps
    /// no candidate below it). 0.45 by default (pg_trgm's own is 0.3): it equals the default
    /// review threshold, below which a candidate changes no decision, and at a million
    /// entities one trigram scan rechecked 183 rows in 20 ms at 0.45, 7 018 rows in 62 ms at
    /// 0.3. `None` leaves the server's setting.
    #[serde(default = "default_similarity_threshold")]
    pub similarity_threshold: Option<f64>,
    /// Statements slower than this are logged at WARN (sqlx's slow-statement log). 1 s suits
    /// a service; bulk loads, which are slow by nature, raise it.
    #[serde(default = "default_slow_statement")]
    pub slow_statement: Duration,
    /// `application_name` on the server, so `pg_stat_activity` shows whose connections these are.
    pub application_name: String,
    /// Ping each connection before handing it out. Off by default: it doubles the round trips
    /// of a short query; a stale connection instead fails its first query with
    /// `DbError::Unavailable` and is replaced.
    pub test_before_acquire: bool,
}

fn default_parallel_workers() -> Option<u32> {
    Some(0)
}

fn default_similarity_threshold() -> Option<f64> {
    Some(0.45)
}

fn default_slow_statement() -> Duration {
    Duration::from_secs(1)
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 1,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(5 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            statement_timeout: Some(Duration::from_secs(30)),
            query_timeout: Duration::from_secs(35),
            slow_statement: default_slow_statement(),
            max_parallel_workers_per_gather: default_parallel_workers(),
            similarity_threshold: default_similarity_threshold(),
            application_name: "pgperf".to_owned(),
            test_before_acquire: false,
        }
    }
}

impl PoolSettings {
    /// Checks the settings hang together; the message names the field.
    pub fn validate(&self) -> Result<(), crate::DbError> {
        use crate::DbError;
        if let Some(t) = self.similarity_threshold
            && !(0.0..=1.0).contains(&t)
        {
            return Err(DbError::invalid(
                "similarity_threshold",
                format!("{t} is not between 0 and 1"),
            ));
        }
        if self.max_connections == 0 {
            return Err(DbError::invalid("max_connections", "must be at least 1"));
        }
        if self.min_connections > self.max_connections {
            return Err(DbError::invalid(
                "min_connections",
                format!(
                    "{} exceeds max_connections {}",
                    self.min_connections, self.max_connections
                ),
            ));
        }
        if self.acquire_timeout.is_zero() {
            return Err(DbError::invalid(
                "acquire_timeout",
                "must be more than zero",
            ));
        }
        if self.query_timeout.is_zero() {
            return Err(DbError::invalid("query_timeout", "must be more than zero"));
        }
        if self.application_name.is_empty() || self.application_name.len() > 63 {
            return Err(DbError::invalid(
                "application_name",
                "must be 1 to 63 bytes",
            ));
        }
        Ok(())
    }
}
