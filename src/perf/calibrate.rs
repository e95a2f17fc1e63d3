//! Calibration: a fixed reference operation measured on the same server right before a case,
//! so that figures can be compared across machines of different speed.

use std::time::Instant;

use sqlx::PgConnection;

use super::stats::{Summary, latency_histogram, record};
use crate::db::DbError;

/// Warm-up round trips before calibrating.
const WARMUP: u32 = 100;
/// Recorded round trips.
const SAMPLES: u32 = 1_000;

/// The p50 (µs) of a prepared `SELECT 1` round trip on `conn`: the unit cases are measured in.
pub async fn round_trip_p50_us(conn: &mut PgConnection) -> Result<f64, DbError> {
    for _ in 0..WARMUP {
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
    }
    let mut h = latency_histogram();
    let started = Instant::now();
    for _ in 0..SAMPLES {
        let t = Instant::now();
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        record(&mut h, t.elapsed());
    }
    Ok(Summary::of(&h, 0, started.elapsed()).p50_us)
}

/// The server's major version (`server_version_num / 10000`).
pub async fn postgres_major(conn: &mut PgConnection) -> Result<u32, DbError> {
    let num: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(conn)
        .await?;
    Ok(num.parse::<u32>().map(|n| n / 10_000).unwrap_or(0))
}
