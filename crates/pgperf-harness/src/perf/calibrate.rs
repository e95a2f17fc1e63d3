//! References: fixed units measured on the same server and client right before and after each
//! case, one per thing a case is made of, so that the time a case should take can be worked
//! out for *this* machine from the case's recorded make-up:
//!
//! - **round trip**: the p50 of a prepared `SELECT 1`. Its price depends on the host's wake-up
//!   cost between cores (about 40 µs on one machine of our kind, 200 µs on another);
//! - **server CPU**: the server's executor time for a fixed query (the p50 of
//!   `SELECT count(*) FROM generate_series(1, 5000)` minus the round trip);
//! - **client CPU**: a fixed piece of work in this process (building and encoding records, as
//!   the scenarios do), timed without I/O;
//! - **parallel**: the wall time per operation of `SELECT 1` run by [`PARALLEL_TASKS`] tasks on
//!   as many connections: what the machine's cores give work that keeps them all busy. Only
//!   cases with several tasks use it (their latency is tasks x the time per operation at
//!   their bottleneck, Little's law);
//! - **round-trip CPU**: the CPU time (client process + server backend) one `SELECT 1` round
//!   trip costs, for the CPU floor of one-task cases.
//!
//! Each is the median over bursts before and after the case, so one disturbed burst does
//! not move it, and over the bursts of the cases measured with it in the last [`WINDOW`]
//! ([`RecentBursts`]): a case's own eight bursts read its neighbourhood's round trip anywhere
//! in 62-86 µs on one machine whose cases did not move by more than 8 µs, and pooled they do
//! not.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use super::baseline::Environment;
use super::stats::{Summary, latency_histogram, median, process_cpu_time, record};
use crate::db::{Db, DbError};

/// Warm-up operations before calibrating.
const WARMUP: u32 = 30;
/// Bursts per calibration (before or after a case).
const BURSTS: usize = 4;
const ROUND_TRIPS: u32 = 150;
const WORKS: u32 = 30;
const CLIENT_WORKS: u32 = 30;

const ROUND_TRIP: &str = "SELECT 1";
const SERVER_WORK: &str = "SELECT count(*) FROM generate_series(1, 5000)";

/// Tasks (and connections) of the parallel reference.
pub const PARALLEL_TASKS: usize = 4;
const PARALLEL_OPS: u32 = 100;

/// The references, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct References {
    /// The client's fixed CPU unit.
    pub client_us: f64,
    /// Wall time per `SELECT 1` with [`PARALLEL_TASKS`] tasks at once.
    pub parallel_us: f64,
    /// CPU time (client process + server backend) one `SELECT 1` round trip costs. On two cores
    /// it includes what waking the other side costs; on one core most of that goes away.
    pub round_trip_cpu_us: f64,
    /// A `SELECT 1` round trip.
    pub round_trip_us: f64,
    /// The server's fixed CPU unit (executor time, round trip removed).
    pub server_us: f64,
}

impl References {
    /// The element-wise median of several bursts.
    pub fn median_of(bursts: &[References]) -> Option<References> {
        let pick = |f: fn(&References) -> f64| median(&bursts.iter().map(f).collect::<Vec<_>>());
        Some(References {
            client_us: pick(|r| r.client_us)?,
            parallel_us: pick(|r| r.parallel_us)?,
            round_trip_cpu_us: pick(|r| r.round_trip_cpu_us)?,
            round_trip_us: pick(|r| r.round_trip_us)?,
            server_us: pick(|r| r.server_us)?,
        })
    }

    /// True when every figure is finite and above zero.
    pub fn is_valid(&self) -> bool {
        [
            self.client_us,
            self.parallel_us,
            self.round_trip_us,
            self.server_us,
        ]
        .iter()
        .all(|x| x.is_finite() && *x > 0.0)
    }
}

/// How long a case's bursts count towards the references of the cases measured after it: a
/// whole `pgperf run` (20-35 s), so that a drift of the machine over minutes is still followed.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The most bursts [`RecentBursts`] keeps (a run of 23 cases takes 184).
const WINDOW_CAPACITY: usize = 512;

/// The calibration bursts of the cases of one run measured in the last [`WINDOW`].
#[derive(Debug)]
pub struct RecentBursts(Mutex<VecDeque<(Instant, References)>>);

impl Default for RecentBursts {
    fn default() -> Self {
        Self::new()
    }
}

impl RecentBursts {
    /// An empty window (`const`, so that a test binary can keep one in a `static` across the
    /// areas it times one after another).
    pub const fn new() -> Self {
        Self(Mutex::new(VecDeque::new()))
    }

    /// Adds a case's `bursts`, measured at `at`, and gives the references of that case: the
    /// element-wise median over them and every burst of the last [`WINDOW`] before `at`.
    pub fn references(&self, at: Instant, bursts: &[References]) -> Option<References> {
        let mut recent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        recent.extend(bursts.iter().map(|b| (at, *b)));
        while recent.len() > WINDOW_CAPACITY
            || recent
                .front()
                .is_some_and(|(t, _)| at.duration_since(*t) > WINDOW)
        {
            recent.pop_front();
        }
        References::median_of(&recent.iter().map(|(_, b)| *b).collect::<Vec<_>>())
    }
}

async fn p50_of(conn: &mut PgConnection, sql: &'static str, n: u32) -> Result<f64, DbError> {
    let mut h = latency_histogram();
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        sqlx::query(sql).execute(&mut *conn).await?;
        record(&mut h, t.elapsed());
    }
    Ok(Summary::of(&h, 0, started.elapsed()).p50_us)
}

/// CPU time (µs) this connection's backend has used, from `/proc/PID/schedstat` read through
/// `pg_read_file`; `None` where that is not allowed.
async fn backend_cpu_us(conn: &mut PgConnection) -> Option<f64> {
    sqlx::query_scalar::<_, f64>(
        "SELECT split_part(pg_read_file('/proc/' || pg_backend_pid() || '/schedstat'), ' ', 1)::float8 / 1000",
    )
    .fetch_one(conn)
    .await
    .ok()
}

/// The client unit: generate 20 source records and encode them as COPY text and JSON, the
/// kind of work the scenarios' client side does.
fn client_unit(round: u64) -> usize {
    let mut out = String::with_capacity(8 * 1024);
    for r in crate::dataset::records(round, 20, 1_000) {
        out.push_str(&r.source);
        out.push('\t');
        out.push_str(&r.external_id);
        out.push('\t');
        out.push_str(&serde_json::to_string(&r.payload).unwrap_or_default());
        out.push('\n');
    }
    out.len()
}

fn client_p50(n: u32) -> f64 {
    let mut h = latency_histogram();
    let started = Instant::now();
    let mut sink = 0usize;
    for i in 0..n {
        let t = Instant::now();
        sink = sink.wrapping_add(client_unit(u64::from(i % 4)));
        record(&mut h, t.elapsed());
    }
    std::hint::black_box(sink);
    Summary::of(&h, 0, started.elapsed()).p50_us
}

/// One burst of the parallel reference: wall time per operation (µs).
async fn parallel_burst(db: &Db) -> Result<f64, DbError> {
    let mut conns = Vec::with_capacity(PARALLEL_TASKS);
    for _ in 0..PARALLEL_TASKS {
        conns.push(db.acquire().await?);
    }
    for c in &mut conns {
        for _ in 0..10 {
            sqlx::query(ROUND_TRIP).execute(&mut **c).await?;
        }
    }
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for _ in 0..PARALLEL_OPS {
                    sqlx::query(ROUND_TRIP).execute(&mut *c).await?;
                }
                Ok::<_, DbError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("reference task panicked")?;
    }
    let ops = (PARALLEL_TASKS as u32 * PARALLEL_OPS) as f64;
    Ok(started.elapsed().as_secs_f64() * 1e6 / ops)
}

/// One calibration: [`BURSTS`] bursts of each reference, on connections of `db` (whose pool
/// must allow [`PARALLEL_TASKS`] connections).
pub async fn bursts(db: &Db) -> Result<Vec<References>, DbError> {
    let mut out = serial_bursts(&mut *db.acquire().await?).await?;
    for r in &mut out {
        r.parallel_us = parallel_burst(db).await?;
    }
    Ok(out)
}

/// The serial references ([`References::parallel_us`] left at zero).
async fn serial_bursts(conn: &mut PgConnection) -> Result<Vec<References>, DbError> {
    for _ in 0..WARMUP {
        sqlx::query(ROUND_TRIP).execute(&mut *conn).await?;
        sqlx::query(SERVER_WORK).execute(&mut *conn).await?;
    }
    let mut out = Vec::with_capacity(BURSTS);
    for _ in 0..BURSTS {
        let (cpu0, server0) = (process_cpu_time(), backend_cpu_us(conn).await);
        let round_trip_us = p50_of(conn, ROUND_TRIP, ROUND_TRIPS).await?;
        let client_cpu = process_cpu_time().saturating_sub(cpu0).as_secs_f64() * 1e6;
        let server_cpu = match (server0, backend_cpu_us(conn).await) {
            (Some(a), Some(b)) => (b - a).max(0.0),
            _ => 0.0,
        };
        let round_trip_cpu_us = (client_cpu + server_cpu) / f64::from(ROUND_TRIPS);
        let work = p50_of(conn, SERVER_WORK, WORKS).await?;
        let client_us = client_p50(CLIENT_WORKS);
        out.push(References {
            client_us,
            parallel_us: 0.0,
            round_trip_cpu_us,
            round_trip_us,
            // The work query is one round trip plus the executor's work.
            server_us: (work - round_trip_us).max(1.0),
        });
    }
    Ok(out)
}

/// The environment of figures measured on this server with this binary: its major version,
/// the binary's profile, and the server's durability settings.
pub async fn environment(conn: &mut PgConnection) -> Result<Environment, DbError> {
    let postgres_major = postgres_major(&mut *conn).await?;
    let durability: String = sqlx::query_scalar(
        "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings
          WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit')",
    )
    .fetch_one(conn)
    .await?;
    Ok(Environment {
        postgres_major,
        profile: Environment::current_profile().to_owned(),
        durability,
    })
}

/// The server's major version (`server_version_num / 10000`).
pub async fn postgres_major(conn: &mut PgConnection) -> Result<u32, DbError> {
    let num: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(conn)
        .await?;
    Ok(num.parse::<u32>().map(|n| n / 10_000).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(c: f64, t: f64, s: f64) -> References {
        References {
            client_us: c,
            parallel_us: t / 4.0,
            round_trip_cpu_us: t,
            round_trip_us: t,
            server_us: s,
        }
    }

    #[test]
    fn the_median_is_taken_per_reference() {
        let m = References::median_of(&[
            r(1.0, 50.0, 900.0),
            r(3.0, 40.0, 700.0),
            r(2.0, 45.0, 800.0),
        ])
        .unwrap();
        assert_eq!(m, r(2.0, 45.0, 800.0));
    }

    #[test]
    fn a_case_is_judged_by_the_bursts_of_the_window_not_older_ones() {
        let recent = RecentBursts::default();
        let start = Instant::now();
        let old = [r(9.0, 90.0, 900.0); 8];
        assert_eq!(recent.references(start, &old), Some(old[0]));
        let later = start + WINDOW / 2;
        let mid = recent.references(later, &[r(1.0, 10.0, 100.0); 2]);
        assert_eq!(mid, Some(old[0]), "8 bursts of the window outvote 2");
        let past = start + WINDOW + Duration::from_secs(1);
        let now = recent.references(past, &[r(2.0, 20.0, 200.0); 3]);
        assert_eq!(
            now,
            Some(r(2.0, 20.0, 200.0)),
            "bursts older than the window drop out"
        );
    }

    #[test]
    fn the_window_keeps_a_bounded_number_of_bursts() {
        let recent = RecentBursts::default();
        let at = Instant::now();
        recent.references(at, &[r(9.0, 90.0, 900.0); WINDOW_CAPACITY]);
        let newest = recent.references(at, &[r(1.0, 10.0, 100.0); WINDOW_CAPACITY / 2 + 1]);
        assert_eq!(newest, Some(r(1.0, 10.0, 100.0)));
        assert_eq!(recent.0.lock().unwrap().len(), WINDOW_CAPACITY);
    }

    #[test]
    fn the_client_unit_takes_measurable_time() {
        assert!(client_p50(5) > 0.0);
    }
}
