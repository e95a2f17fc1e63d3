//! Deterministic costs of an operation, read from `pg_stat_statements` around a counting pass:
//! statements, rows, shared buffers touched, WAL bytes and temporary blocks per operation, the
//! statements run inside functions and triggers (where the server tracks them:
//! `pg_stat_statements.track = all`), and the server's execution (plus planning) time. Unlike
//! latency they do not depend on the machine, so they are held tightly: an N+1 query or a
//! missing index fails exactly, everywhere.
//!
//! The figures are the sum over the current database's top-level statements, so only the
//! counting pass may run statements there meanwhile (the timing gate sees to it).

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::db::DbError;

/// Cumulative totals of the current database's statements at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    calls: f64,
    rows: f64,
    blocks: f64,
    wal_bytes: f64,
    temp_blocks: f64,
    time_us: f64,
    nested_calls: Option<f64>,
}

/// Whether the server can give counters.
#[derive(Debug, Clone, PartialEq)]
pub enum Availability {
    /// `pg_stat_statements` is loaded and installed in this database.
    Available,
    /// It is not: the reason, for the report.
    Unavailable(String),
}

/// Installs `pg_stat_statements` in the current database if the server has it loaded.
/// Never fails on a server without it: it says why instead.
pub async fn enable(conn: &mut PgConnection) -> Availability {
    let installed = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut *conn)
        .await;
    if let Err(e) = installed {
        return Availability::Unavailable(format!("CREATE EXTENSION pg_stat_statements: {e}"));
    }
    match snapshot(conn).await {
        Ok(_) => Availability::Available,
        Err(e) => Availability::Unavailable(format!(
            "{e} (add pg_stat_statements to the server's shared_preload_libraries)"
        )),
    }
}

/// The totals now. The query leaves itself (and anything mentioning the view) out. A
/// top-level statement's figures include what its functions and triggers ran; the nested
/// statements are counted apart, and only where the server tracks them.
pub async fn snapshot(conn: &mut PgConnection) -> Result<Totals, DbError> {
    let row: (f64, f64, f64, f64, f64, f64, Option<f64>) = sqlx::query_as(
        "SELECT coalesce(sum(calls) FILTER (WHERE toplevel), 0)::float8,
                coalesce(sum(rows) FILTER (WHERE toplevel), 0)::float8,
                coalesce(sum(shared_blks_hit + shared_blks_read) FILTER (WHERE toplevel), 0)::float8,
                coalesce(sum(wal_bytes) FILTER (WHERE toplevel), 0)::float8,
                coalesce(sum(temp_blks_read + temp_blks_written) FILTER (WHERE toplevel), 0)::float8,
                coalesce(sum(total_exec_time + total_plan_time) FILTER (WHERE toplevel), 0)::float8
                    * 1000,
                CASE WHEN current_setting('pg_stat_statements.track', true) = 'all'
                     THEN coalesce(sum(calls) FILTER (WHERE NOT toplevel), 0)::float8 END
         FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query NOT LIKE '%pg_stat_statements%'",
    )
    .fetch_one(conn)
    .await?;
    Ok(Totals {
        calls: row.0,
        rows: row.1,
        blocks: row.2,
        wal_bytes: row.3,
        temp_blocks: row.4,
        time_us: row.5,
        nested_calls: row.6,
    })
}

/// CPU time (µs) the current database's other backends have used so far, read from
/// `/proc/PID/schedstat` on the server through `pg_read_file`. `None` where that is not
/// allowed (not a superuser, not Linux) or a backend went away while being read: callers fall
/// back to `pg_stat_statements`' execution time, which for a `COPY FROM STDIN` also counts the
/// time the client takes to stream.
pub async fn backends_cpu_us(conn: &mut PgConnection) -> Option<f64> {
    sqlx::query_scalar::<_, Option<f64>>(
        "SELECT sum(split_part(pg_read_file('/proc/' || pid || '/schedstat'), ' ', 1)::float8) / 1000
         FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(conn)
    .await
    .ok()
    .flatten()
}

/// Per-operation counters of a case. `round_trips` comes from the relay
/// ([`crate::perf::wire`]); the rest from `pg_stat_statements`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counters {
    /// Shared buffers hit or read.
    pub blocks: f64,
    /// Client-server turns (round trips).
    pub round_trips: f64,
    /// Rows returned or affected.
    pub rows: f64,
    /// Top-level statements (BEGIN and COMMIT included).
    pub statements: f64,
    /// Temporary-file blocks read and written (sorts or hashes spilling to disk).
    pub temp_blocks: f64,
    /// WAL generated, bytes.
    pub wal_bytes: f64,
    /// Statements run inside functions and triggers (a trigger's `UPDATE`): none where the
    /// server does not track them, or the recording predates this counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nested_statements: Option<f64>,
}

/// One counter of [`Counters`], for messages and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// [`Counters::round_trips`].
    RoundTrips,
    /// [`Counters::statements`].
    Statements,
    /// [`Counters::rows`].
    Rows,
    /// [`Counters::blocks`].
    Blocks,
    /// [`Counters::wal_bytes`].
    WalBytes,
    /// [`Counters::temp_blocks`].
    TempBlocks,
    /// [`Counters::nested_statements`].
    NestedStatements,
}

impl Counter {
    /// Every counter, in report order.
    pub const ALL: [Counter; 7] = [
        Self::RoundTrips,
        Self::Statements,
        Self::NestedStatements,
        Self::Rows,
        Self::Blocks,
        Self::WalBytes,
        Self::TempBlocks,
    ];

    /// Its name in messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::RoundTrips => "round trips per operation",
            Self::Statements => "statements per operation",
            Self::Rows => "rows per operation",
            Self::Blocks => "shared buffers (hit + read) per operation",
            Self::WalBytes => "WAL bytes per operation",
            Self::TempBlocks => "temporary blocks per operation",
            Self::NestedStatements => "statements in functions and triggers per operation",
        }
    }

    /// Its value in `c`, when `c` has it.
    pub fn of(self, c: &Counters) -> Option<f64> {
        Some(match self {
            Self::RoundTrips => c.round_trips,
            Self::Statements => c.statements,
            Self::Rows => c.rows,
            Self::Blocks => c.blocks,
            Self::WalBytes => c.wal_bytes,
            Self::TempBlocks => c.temp_blocks,
            Self::NestedStatements => return c.nested_statements,
        })
    }

    /// The most this counter may read, recorded `recorded` and held to `ratio`. Round trips
    /// and statements are counts of what the code sends, the same on every run: one more per
    /// operation fails whatever the case's size (with a ratio, `resolve.batch_10`'s 2.2 round
    /// trips could take a whole extra one). Volumes (rows, buffers, WAL, temporary blocks)
    /// move a little with the data, and are held to the ratio.
    pub fn limit(self, recorded: f64, ratio: f64) -> f64 {
        match self {
            Self::RoundTrips | Self::Statements | Self::NestedStatements => recorded + self.slack(),
            _ => recorded * ratio + self.slack(),
        }
    }

    /// What a counter may grow by (on top of the ratio, for volumes) before it fails: small
    /// counts move by a unit now and then (a page split, a second heap page), which is no
    /// regression.
    pub fn slack(self) -> f64 {
        match self {
            Self::RoundTrips | Self::Statements | Self::NestedStatements => 0.5,
            Self::Rows => 1.0,
            Self::Blocks => 4.0,
            Self::WalBytes => 512.0,
            Self::TempBlocks => 1.0,
        }
    }
}

/// What a counting pass measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Counted {
    /// The counters, when the server has `pg_stat_statements` (round trips are always counted).
    pub counters: Option<Counters>,
    /// Round trips per operation (also in `counters` when present).
    pub round_trips: f64,
    /// Server time (execution + planning) per operation, µs, when known.
    pub server_us: Option<f64>,
}

impl Counted {
    /// Per-operation figures from totals before and after `ops` operations and `turns` turns.
    pub fn from_totals(
        before: Option<Totals>,
        after: Option<Totals>,
        turns: u64,
        ops: u64,
    ) -> Self {
        let ops = ops.max(1) as f64;
        let round_trips = turns as f64 / ops;
        let Some((b, a)) = before.zip(after) else {
            return Self {
                counters: None,
                round_trips,
                server_us: None,
            };
        };
        let per = |x: f64, y: f64| ((y - x) / ops).max(0.0);
        Self {
            counters: Some(Counters {
                blocks: per(b.blocks, a.blocks),
                round_trips,
                rows: per(b.rows, a.rows),
                statements: per(b.calls, a.calls),
                temp_blocks: per(b.temp_blocks, a.temp_blocks),
                wal_bytes: per(b.wal_bytes, a.wal_bytes),
                nested_statements: b.nested_calls.zip(a.nested_calls).map(|(b, a)| per(b, a)),
            }),
            round_trips,
            server_us: Some(per(b.time_us, a.time_us)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(calls: f64, blocks: f64, time_us: f64) -> Totals {
        Totals {
            calls,
            blocks,
            time_us,
            ..Totals::default()
        }
    }

    #[test]
    fn per_operation_figures_are_differences_over_the_operations() {
        let c = Counted::from_totals(
            Some(totals(10.0, 100.0, 1_000.0)),
            Some(totals(110.0, 500.0, 3_000.0)),
            200,
            100,
        );
        let counters = c.counters.unwrap();
        assert_eq!(counters.statements, 1.0);
        assert_eq!(counters.blocks, 4.0);
        assert_eq!(c.round_trips, 2.0);
        assert_eq!(c.server_us, Some(20.0));
    }

    #[test]
    fn without_pg_stat_statements_only_round_trips_are_counted() {
        let c = Counted::from_totals(None, None, 50, 50);
        assert_eq!(c.counters, None);
        assert_eq!(c.round_trips, 1.0);
        assert_eq!(c.server_us, None);
    }
}
