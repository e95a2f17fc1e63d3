//! `pgperf ingest-bench`: bulk ingestion of generated records through pgperf's COPY path
//! versus `psql \copy` of the same rows into the same table, in one run, plus the UNNEST
//! path and row-by-row inserts (the naive loop of `records::create` in autocommit, and
//! prepared INSERTs in one transaction); with the client's peak memory during the COPY.
//! The paths run in interleaved rounds and every figure is the median over the rounds, so a
//! noisy moment moves one round, not the comparison.

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::Context;

use pgperf::dataset;
use pgperf::db::ingest::parallel::{MAX_STREAMS, copy_records_parallel};
use pgperf::db::ingest::{
    copy_records, encode_copy_line, insert_records_one_by_one, insert_records_unnest,
};
use pgperf::db::repo::records;
use pgperf::db::repo::records::INSERT_TARGET;
use pgperf::db::{DatabaseUrl, Db, NewSourceRecord, PoolSettings};
use pgperf::perf::stats::{reset_peak_rss, status_kib};
use pgperf::postgres::{cleanup, owner};

use super::child::Child;
use super::with_workspace_on;

/// Options of `pgperf ingest-bench`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Rows per COPY / UNNEST / psql run (1 to 10 000 000). They are generated once, before
    /// the rounds, and held in memory (about 1 GiB per million), as psql's are written to
    /// a file first: every path is timed loading rows that exist, not making them.
    #[arg(long, default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub rows: u64,
    /// Rows per round of each (slow) row-by-row variant; their rates are compared (1 to
    /// 10 000 000: they are generated up front with the others).
    #[arg(long, default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub row_by_row_rows: u64,
    /// Rounds of each path, interleaved; every figure is the median over its rounds (1 to 100).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Streams of the parallel COPY path, each over a connection of its own, committed
    /// together (2 to 16; the server needs max_prepared_transactions of at least as many).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=MAX_STREAMS as i64))]
    pub streams: u16,
    /// A server setting for the container it starts, `name=value`; repeatable. The default
    /// gives the server the memory a million rows need, as `pgperf scale` does: with 128 MB,
    /// PostgreSQL's default, the backends write out dirty pages of the load as they go.
    #[arg(long = "pg-setting", value_name = "NAME=VALUE", default_values = ["shared_buffers=1GB"],
          value_parser = super::parse_setting)]
    pub pg_settings: Vec<String>,
}

/// How long one `psql \copy` of `--rows` rows may take (1 M rows take ~5 s here).
const PSQL_LIMIT: Duration = Duration::from_secs(600);

/// Temporary files of this command start with this; ones older than a day are a killed
/// run's and are removed.
const TEMP_PREFIX: &str = "pgperf-ingest-";

async fn truncate(db: &Db) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE source_records RESTART IDENTITY")
        .execute(db.pool())
        .await?;
    sqlx::query("CHECKPOINT").execute(db.pool()).await.ok();
    Ok(())
}

async fn psql_copy(url: &DatabaseUrl, file: &std::path::Path) -> anyhow::Result<Duration> {
    let command = format!(
        "\\copy {INSERT_TARGET} FROM '{}' (FORMAT text)",
        file.display()
    );
    let args = ["-X", "-v", "ON_ERROR_STOP=1", "-q", "-c", &command];
    let child = Child {
        program: "psql",
        args: args.iter().map(|a| a.to_string()).collect(),
        url,
        limit: PSQL_LIMIT,
    };
    Ok(child.run().await?.took)
}

/// psql processes side by side: the `rows` in `parts` files of consecutive rows, each loaded by
/// its own `psql \copy`; the wall time of all of them.
async fn psql_copies(url: &DatabaseUrl, parts: &[tempfile::TempPath]) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    futures::future::try_join_all(parts.iter().map(|part| psql_copy(url, part))).await?;
    Ok(started.elapsed())
}

/// The rows for psql in `parts` temporary files of consecutive rows (one file: all of them),
/// removed when they drop, and also if the run is interrupted (~170 MB for a million rows).
/// Leftovers of killed runs older than a day are removed first.
fn write_rows_files(rows: u64, parts: u64) -> anyhow::Result<Vec<tempfile::TempPath>> {
    remove_stale_temp_files();
    let files = (0..parts)
        .map(|_| {
            let file = tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .suffix(".copy")
                .tempfile()
                .context("creating a temporary file for psql")?;
            cleanup::track_file(file.path());
            Ok(file)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!("pgperf: writing {rows} generated rows for psql in {parts} file(s) ...");
    let mut writers: Vec<BufWriter<&std::fs::File>> =
        files.iter().map(|f| BufWriter::new(f.as_file())).collect();
    let mut line = Vec::with_capacity(512);
    for (i, r) in dataset::records(1, rows, 1_000).enumerate() {
        line.clear();
        encode_copy_line(&mut line, &r);
        writers[(i as u64 * parts / rows.max(1)) as usize].write_all(&line)?;
    }
    for mut w in writers {
        w.flush()?;
    }
    Ok(files.into_iter().map(|f| f.into_temp_path()).collect())
}

fn remove_stale_temp_files() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > owner::STALE_AFTER);
        if old && entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Every round's duration, per path.
#[derive(Debug, Default)]
struct Times {
    psql: Vec<Duration>,
    /// `psql \copy` in as many processes as the parallel COPY has streams.
    psql_parallel: Vec<Duration>,
    copy: Vec<Duration>,
    parallel: Vec<Duration>,
    unnest: Vec<Duration>,
    one_tx: Vec<Duration>,
    autocommit: Vec<Duration>,
    /// The client's peak RSS above its start during a COPY, KiB.
    peak_kib: u64,
}

/// Rows per second of each round, and their median.
fn rates(rows: u64, times: &[Duration]) -> (f64, Vec<f64>) {
    let v: Vec<f64> = times
        .iter()
        .map(|d| rows as f64 / d.as_secs_f64())
        .collect();
    (pgperf::perf::stats::median(&v).unwrap_or_default(), v)
}

fn print_report(args: &IngestArgs, t: &Times) {
    let (psql, psql_v) = rates(args.rows, &t.psql);
    let (psqls, psqls_v) = rates(args.rows, &t.psql_parallel);
    let psqls_name = format!("psql \\copy, {} processes", args.streams);
    let (copy, copy_v) = rates(args.rows, &t.copy);
    let (parallel, parallel_v) = rates(args.rows, &t.parallel);
    let parallel_name = format!("pgperf COPY, {} streams", args.streams);
    let (unnest, unnest_v) = rates(args.rows, &t.unnest);
    let (one_tx, one_tx_v) = rates(args.row_by_row_rows, &t.one_tx);
    let (auto, auto_v) = rates(args.row_by_row_rows, &t.autocommit);
    let rounds = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{:.0}", r))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{} rows per bulk run, {} per row-by-row run; median of {} interleaved rounds",
        args.rows, args.row_by_row_rows, args.rounds
    );
    println!("path                          rows/s  pgperf COPY is   rounds (rows/s)");
    for (name, rate, v) in [
        ("psql \\copy", psql, &psql_v),
        (psqls_name.as_str(), psqls, &psqls_v),
        ("pgperf COPY", copy, &copy_v),
        (parallel_name.as_str(), parallel, &parallel_v),
        ("pgperf UNNEST", unnest, &unnest_v),
        ("row by row, autocommit", auto, &auto_v),
        ("row by row, one transaction", one_tx, &one_tx_v),
    ] {
        println!(
            "{name:<28} {rate:>8.0}  {:>7.2}x         {}",
            copy / rate,
            rounds(v)
        );
    }
    println!("pgperf COPY / psql \\copy: {:.2}x", copy / psql);
    println!(
        "{parallel_name} / psql \\copy: {:.2}x (per round: {})",
        parallel / psql,
        per_round(&parallel_v, &psql_v)
    );
    println!(
        "{parallel_name} / {psqls_name}: {:.2}x (per round: {}); {psqls_name} / psql \\copy: {:.2}x, \
         the bound side by side processes reach on this machine",
        parallel / psqls,
        per_round(&parallel_v, &psqls_v),
        psqls / psql
    );
    println!(
        "pgperf COPY / row by row: {:.1}x (autocommit: one INSERT per record, as records::create \
         issues it), {:.1}x (prepared INSERTs in one transaction)",
        copy / auto,
        copy / one_tx
    );
    println!(
        "client peak RSS above start during COPY: {:.1} MiB",
        t.peak_kib as f64 / 1024.0
    );
}

/// Each round's ratio of `a` to `b`.
fn per_round(a: &[f64], b: &[f64]) -> String {
    a.iter()
        .zip(b)
        .map(|(a, b)| format!("{:.2}", a / b))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the comparison and prints figures and ratios.
pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    with_workspace_on("ingest", &args.pg_settings, async |ws| {
        let db = ws
            .pool(PoolSettings {
                max_connections: u32::from(args.streams),
                // Loading a million rows, or truncating them, takes seconds by design: no
                // slow-statement warnings in the middle of the report.
                slow_statement: PSQL_LIMIT,
                ..PoolSettings::default()
            })
            .await?;
        let file = write_rows_files(args.rows, 1)?.remove(0);
        let parts = write_rows_files(args.rows, u64::from(args.streams))?;
        let rows: Vec<NewSourceRecord> =
            dataset::records(1, args.rows.max(args.row_by_row_rows), 1_000).collect();
        let bulk = &rows[..args.rows as usize];
        let mut t = Times::default();
        for round in 1..=args.rounds {
            let say = |what: &str| eprintln!("pgperf: round {round}/{}: {what} ...", args.rounds);
            truncate(&db).await?;
            say("psql \\copy");
            t.psql.push(psql_copy(&ws.url, &file).await?);
            truncate(&db).await?;
            say(&format!("psql \\copy, {} processes", args.streams));
            t.psql_parallel.push(psql_copies(&ws.url, &parts).await?);
            say("pgperf COPY");
            copy_round(&db, bulk, &mut t).await?;
            say(&format!("pgperf COPY, {} streams", args.streams));
            t.parallel
                .push(parallel_round(&db, bulk, args.streams).await?);
            say("UNNEST");
            t.unnest.push(timed_load(&db, bulk, Load::Unnest).await?);
            say(&format!(
                "row by row ({} rows, one transaction, then autocommit)",
                args.row_by_row_rows
            ));
            let few = &rows[..args.row_by_row_rows as usize];
            t.one_tx
                .push(timed_load(&db, few, Load::OneTransaction).await?);
            t.autocommit
                .push(timed_load(&db, few, Load::Autocommit).await?);
        }
        truncate(&db).await?;
        db.close().await;
        for f in std::iter::once(&file).chain(&parts) {
            cleanup::forget_file(f);
        }
        drop((file, parts));
        print_report(&args, &t);
        Ok(())
    })
    .await
}

/// The paths other than COPY, each timed on an empty table.
#[derive(Debug, Clone, Copy)]
enum Load {
    Unnest,
    OneTransaction,
    Autocommit,
}

async fn timed_load(db: &Db, rows: &[NewSourceRecord], load: Load) -> anyhow::Result<Duration> {
    truncate(db).await?;
    let mut conn = db.acquire().await?;
    // The one-transaction path takes its rows owned: copied before the clock starts.
    let owned = matches!(load, Load::OneTransaction).then(|| rows.to_vec());
    let started = Instant::now();
    match load {
        Load::Unnest => {
            insert_records_unnest(&mut conn, rows).await?;
        }
        Load::OneTransaction => {
            insert_records_one_by_one(&mut conn, owned.unwrap_or_default()).await?;
        }
        Load::Autocommit => {
            for r in rows {
                records::create(&mut conn, r).await?;
            }
        }
    }
    Ok(started.elapsed())
}

/// One round of pgperf's COPY, with the client's peak memory above its start.
async fn copy_round(db: &Db, rows: &[NewSourceRecord], t: &mut Times) -> anyhow::Result<()> {
    truncate(db).await?;
    let mut conn = db.acquire().await?;
    let rss_before = status_kib("VmRSS:").unwrap_or(0);
    reset_peak_rss();
    let started = Instant::now();
    let n = copy_records(&mut conn, rows).await?;
    t.copy.push(started.elapsed());
    let peak = status_kib("VmHWM:").unwrap_or(0).saturating_sub(rss_before);
    t.peak_kib = t.peak_kib.max(peak);
    anyhow::ensure!(
        n == rows.len() as u64,
        "COPY loaded {n} rows, expected {}",
        rows.len()
    );
    Ok(())
}

/// One round of the parallel COPY, over `--streams` connections.
async fn parallel_round(
    db: &Db,
    rows: &[NewSourceRecord],
    streams: u16,
) -> anyhow::Result<Duration> {
    truncate(db).await?;
    let mut conns = Vec::new();
    for _ in 0..streams {
        conns.push(db.acquire().await?);
    }
    let started = Instant::now();
    let n = copy_records_parallel(&mut conns, rows).await?;
    let took = started.elapsed();
    anyhow::ensure!(
        n == rows.len() as u64,
        "the parallel COPY loaded {n} rows, expected {}",
        rows.len()
    );
    Ok(took)
}
