//! `pgperf compare-pgbench`: primary-key lookups through the harness versus
//! `pgbench -S -M prepared` against the same server over TCP, in one run, as ratios.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use pgperf::db::{DatabaseUrl, DbError, MeteredConnection, PoolSettings};
use pgperf::perf::{MeasureConfig, Operation, Summary, measure};

use super::with_workspace;

/// Options of `pgperf compare-pgbench`.
#[derive(Debug, clap::Args)]
pub struct PgbenchArgs {
    /// Client counts to compare at (1 to 64 each).
    #[arg(long, value_delimiter = ',', default_value = "1,8",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub clients: Vec<u16>,
    /// Seconds per run (1 to 3600).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// pgbench scale, 100 000 accounts per unit (1 to 1000).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub scale: u32,
}

fn pgbench(url: &DatabaseUrl, args: &[String]) -> anyhow::Result<String> {
    let out = Command::new("pgbench")
        .args(args)
        .envs(url.libpq_env())
        .output()
        .context("running pgbench (install the PostgreSQL client tools: apt-get install postgresql-client)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("pgbench {} failed: {text}", args.join(" "));
    }
    Ok(text)
}

fn pgbench_tps(url: &DatabaseUrl, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    let threads = clients.min(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let args: Vec<String> = [
        "-S",
        "-M",
        "prepared",
        "-n",
        "-c",
        &clients.to_string(),
        "-j",
        &threads.to_string(),
        "-T",
        &seconds.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let text = pgbench(url, &args)?;
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok());
    tps.with_context(|| format!("no tps line in pgbench's output:\n{text}"))
}

async fn harness(
    url: &DatabaseUrl,
    clients: usize,
    seconds: u64,
    accounts: i64,
) -> anyhow::Result<Summary> {
    let settings = PoolSettings {
        max_connections: clients as u32,
        min_connections: 0,
        ..PoolSettings::default()
    };
    let db = pgperf::db::Db::connect(url, settings).await?;
    let mut states = Vec::with_capacity(clients);
    for t in 0..clients {
        states.push((db.acquire().await?, ChaCha8Rng::seed_from_u64(t as u64)));
    }
    let op: Operation<(MeteredConnection, ChaCha8Rng), DbError> = Arc::new(move |(c, rng)| {
        let aid = rng.random_range(1..=accounts);
        Box::pin(async move {
            sqlx::query("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
                .bind(aid as i32)
                .execute(&mut **c)
                .await?;
            Ok(())
        })
    });
    let config = MeasureConfig {
        warmup_iterations: 500,
        iterations: u64::MAX,
        max_duration: Duration::from_secs(seconds),
        concurrency: clients,
    };
    let m = measure(config, states, op, None).await;
    db.close().await;
    if m.summary.errors > 0 {
        bail!(
            "{} lookups failed: {}",
            m.summary.errors,
            m.first_error.unwrap_or_default()
        );
    }
    Ok(m.summary)
}

/// Runs the comparison and prints a table of ratios.
pub async fn run(args: PgbenchArgs) -> anyhow::Result<()> {
    with_workspace("pgbench", async |ws| {
        eprintln!("pgperf: pgbench -i -s {} ...", args.scale);
        pgbench(
            &ws.url,
            &[
                "-i".into(),
                "-q".into(),
                "-s".into(),
                args.scale.to_string(),
            ],
        )?;
        let accounts = i64::from(args.scale) * 100_000;
        println!(
            "clients  pgbench -S -M prepared (tps)  pgperf (ops/s)  ratio  pgperf p50  pgperf p99"
        );
        for clients in args.clients.iter().map(|&c| usize::from(c)) {
            eprintln!(
                "pgperf: {clients} client(s): pgbench, pgperf, pgbench ({} s each) ...",
                args.seconds
            );
            let before = pgbench_tps(&ws.url, clients, args.seconds)?;
            let ours = harness(&ws.url, clients, args.seconds, accounts).await?;
            let after = pgbench_tps(&ws.url, clients, args.seconds)?;
            let reference = (before + after) / 2.0;
            println!(
                "{clients:>7}  {reference:>28.0}  {:>14.0}  {:>5.2}  {:>7.0} µs  {:>7.0} µs",
                ours.throughput_per_s,
                ours.throughput_per_s / reference,
                ours.p50_us,
                ours.p99_us
            );
        }
        Ok(())
    })
    .await
}
