//! Calibration: a fixed reference measured on the same server right before and after a case
//! (a bare round trip and a fixed piece of server work), so that figures can be compared
//! across machines of different speed.

use std::time::Instant;

use sqlx::PgConnection;

use super::stats::{Summary, latency_histogram, record};
use crate::db::DbError;

/// Warm-up operations before calibrating.
const WARMUP: u32 = 50;
/// Bursts per calibration; round trips and server-work operations per burst.
const BURSTS: u32 = 4;
const ROUND_TRIPS: u32 = 200;
const WORKS: u32 = 40;

/// The reference's latency-bound part: a round trip doing nothing.
const ROUND_TRIP: &str = "SELECT 1";
/// The reference's CPU-bound part: a fixed amount of executor work on the server (~0.2 ms).
const SERVER_WORK: &str = "SELECT count(*) FROM generate_series(1, 2000)";

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

/// One calibration: four bursts, each the geometric mean (µs) of the p50 of a `SELECT 1`
/// round trip and of a fixed piece of server work. Mixing both makes the unit move with what
/// cases are made of: round trips, and server CPU (which a busy core slows more than it slows
/// a bare round trip). Callers take the median over bursts before and after a case, so one
/// disturbed burst does not move the unit.
pub async fn round_trip_bursts_us(conn: &mut PgConnection) -> Result<Vec<f64>, DbError> {
    for _ in 0..WARMUP {
        sqlx::query(ROUND_TRIP).execute(&mut *conn).await?;
        sqlx::query(SERVER_WORK).execute(&mut *conn).await?;
    }
    let mut bursts = Vec::with_capacity(BURSTS as usize);
    for _ in 0..BURSTS {
        let trip = p50_of(conn, ROUND_TRIP, ROUND_TRIPS).await?;
        let work = p50_of(conn, SERVER_WORK, WORKS).await?;
        bursts.push((trip * work).sqrt());
    }
    Ok(bursts)
}

/// The median burst of one calibration (µs): the unit cases are measured in.
pub async fn round_trip_p50_us(conn: &mut PgConnection) -> Result<f64, DbError> {
    let bursts = round_trip_bursts_us(conn).await?;
    Ok(super::stats::median(&bursts).unwrap_or_default())
}

/// The server's major version (`server_version_num / 10000`).
pub async fn postgres_major(conn: &mut PgConnection) -> Result<u32, DbError> {
    let num: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(conn)
        .await?;
    Ok(num.parse::<u32>().map(|n| n / 10_000).unwrap_or(0))
}
