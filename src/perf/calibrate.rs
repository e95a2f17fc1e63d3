//! Calibration: a fixed reference operation measured on the same server right before a case,
//! so that figures can be compared across machines of different speed.

use std::time::Instant;

use sqlx::PgConnection;

use super::stats::{Summary, latency_histogram, record};
use crate::db::DbError;

/// Warm-up round trips before calibrating.
const WARMUP: u32 = 100;
/// Bursts per calibration, and round trips per burst.
const BURSTS: u32 = 4;
const PER_BURST: u32 = 250;

/// The p50s (µs) of four bursts of 250 prepared `SELECT 1` round trips on `conn`. Callers
/// take the median over bursts (before and after a case), so one disturbed burst does not
/// move the unit cases are measured in.
pub async fn round_trip_bursts_us(conn: &mut PgConnection) -> Result<Vec<f64>, DbError> {
    for _ in 0..WARMUP {
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
    }
    let mut p50s = Vec::with_capacity(BURSTS as usize);
    for _ in 0..BURSTS {
        let mut h = latency_histogram();
        let started = Instant::now();
        for _ in 0..PER_BURST {
            let t = Instant::now();
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
            record(&mut h, t.elapsed());
        }
        p50s.push(Summary::of(&h, 0, started.elapsed()).p50_us);
    }
    Ok(p50s)
}

/// The median burst p50 (µs) of one calibration: the unit cases are measured in.
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
