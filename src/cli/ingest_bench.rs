//! `pgperf ingest-bench`: bulk ingestion of generated records through pgperf's COPY path
//! versus `psql \copy` of the same rows into the same table, in one run, plus the UNNEST
//! path and row-by-row inserts (prepared INSERTs in one transaction, and the naive loop of
//! `records::create` in autocommit); with the client's peak memory during the COPY.

use std::io::{BufWriter, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use pgperf::dataset;
use pgperf::db::ingest::{
    copy_records, encode_copy_line, insert_records_one_by_one, insert_records_unnest,
};
use pgperf::db::repo::records;
use pgperf::db::{DatabaseUrl, Db, PoolSettings};

use super::with_workspace;

/// Options of `pgperf ingest-bench`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Rows per COPY / UNNEST / psql run.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Rows for the (slow) row-by-row run; its rate is compared.
    #[arg(long, default_value_t = 20_000)]
    pub row_by_row_rows: u64,
    /// Rounds of psql and pgperf COPY, alternating.
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
}

const COLUMNS: &str = "source_records (source, external_id, payload, entity_id, match_score)";

/// Reads a field of /proc/self/status in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the peak RSS (VmHWM) to the current RSS (Linux, "5" to clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn truncate(db: &Db) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE source_records RESTART IDENTITY")
        .execute(db.pool())
        .await?;
    sqlx::query("CHECKPOINT").execute(db.pool()).await.ok();
    Ok(())
}

fn psql_copy(url: &DatabaseUrl, file: &std::path::Path) -> anyhow::Result<Duration> {
    let command = format!("\\copy {COLUMNS} FROM '{}' (FORMAT text)", file.display());
    let started = Instant::now();
    let out = Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-q", "-c", &command])
        .envs(url.libpq_env())
        .output()
        .context("running psql")?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "psql \\copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

fn rate(rows: u64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

/// Runs the comparison and prints figures and ratios.
pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    with_workspace("ingest", async |ws| {
        let db = ws
            .pool(PoolSettings {
                max_connections: 2,
                ..PoolSettings::default()
            })
            .await?;
        let file = tempfile::NamedTempFile::new()?;
        eprintln!(
            "pgperf: writing {} generated rows for psql to {} ...",
            args.rows,
            file.path().display()
        );
        {
            let mut w = BufWriter::new(file.as_file());
            let mut line = Vec::with_capacity(512);
            for r in dataset::records(1, args.rows, 1_000) {
                line.clear();
                encode_copy_line(&mut line, &r);
                w.write_all(&line)?;
            }
            w.flush()?;
        }
        let (mut psql_times, mut ours_times, mut peak_kib) = (Vec::new(), Vec::new(), 0u64);
        for round in 1..=args.rounds {
            truncate(&db).await?;
            eprintln!("pgperf: round {round}: psql \\copy ...");
            psql_times.push(psql_copy(&ws.url, file.path())?);
            truncate(&db).await?;
            eprintln!("pgperf: round {round}: pgperf COPY ...");
            let mut conn = db.acquire().await?;
            let rss_before = status_kib("VmRSS:").unwrap_or(0);
            reset_peak_rss();
            let started = Instant::now();
            let n = copy_records(&mut conn, dataset::records(1, args.rows, 1_000)).await?;
            ours_times.push(started.elapsed());
            peak_kib = peak_kib.max(status_kib("VmHWM:").unwrap_or(0).saturating_sub(rss_before));
            drop(conn);
            anyhow::ensure!(
                n == args.rows,
                "COPY loaded {n} rows, expected {}",
                args.rows
            );
        }
        truncate(&db).await?;
        eprintln!("pgperf: UNNEST ...");
        let started = Instant::now();
        let mut conn = db.acquire().await?;
        insert_records_unnest(&mut conn, dataset::records(1, args.rows, 1_000)).await?;
        drop(conn);
        let unnest = started.elapsed();
        truncate(&db).await?;
        eprintln!("pgperf: row by row ({} rows) ...", args.row_by_row_rows);
        let started = Instant::now();
        let mut conn = db.acquire().await?;
        insert_records_one_by_one(&mut conn, dataset::records(1, args.row_by_row_rows, 1_000))
            .await?;
        drop(conn);
        let one_by_one = started.elapsed();
        truncate(&db).await?;
        eprintln!(
            "pgperf: row by row, autocommit ({} rows) ...",
            args.row_by_row_rows
        );
        let mut conn = db.acquire().await?;
        let started = Instant::now();
        for r in dataset::records(1, args.row_by_row_rows, 1_000) {
            records::create(&mut conn, &r).await?;
        }
        let autocommit = started.elapsed();
        drop(conn);
        db.close().await;

        let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
        let (psql, ours) = (
            rate(args.rows, best(&psql_times)),
            rate(args.rows, best(&ours_times)),
        );
        let (unnest, slow) = (
            rate(args.rows, unnest),
            rate(args.row_by_row_rows, one_by_one),
        );
        let naive = rate(args.row_by_row_rows, autocommit);
        println!("path                     rows/s   vs psql \\copy");
        println!("psql \\copy          {psql:>11.0}   1.00");
        println!("pgperf COPY         {ours:>11.0}   {:.2}", ours / psql);
        println!("pgperf UNNEST       {unnest:>11.0}   {:.2}", unnest / psql);
        println!("row by row, one tx  {slow:>11.0}   {:.2}", slow / psql);
        println!("row by row, autocommit {naive:>8.0}   {:.2}", naive / psql);
        println!(
            "pgperf COPY / row by row: {:.1}x in one transaction, {:.1}x autocommit",
            ours / slow,
            ours / naive
        );
        println!(
            "client peak RSS above start during COPY: {:.1} MiB",
            peak_kib as f64 / 1024.0
        );
        println!(
            "rounds (best taken): psql {:?}, pgperf {:?}",
            psql_times
                .iter()
                .map(|d| format!("{:.2}s", d.as_secs_f64()))
                .collect::<Vec<_>>(),
            ours_times
                .iter()
                .map(|d| format!("{:.2}s", d.as_secs_f64()))
                .collect::<Vec<_>>()
        );
        Ok(())
    })
    .await
}
