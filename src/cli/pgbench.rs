//! `pgperf compare-pgbench`: primary-key lookups through the harness versus
//! `pgbench -S -M prepared` against the same server over TCP, in one run, as ratios.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use pgperf::db::{DatabaseUrl, DbError, MeteredConnection, PoolSettings};
use pgperf::perf::{MeasureConfig, Measurement, Operation, Summary, measure};

use super::child::Child;
use super::{place_for_timing, with_workspace};
use pgperf_testbed::placement::WhenBusy;

/// Options of `pgperf compare-pgbench`.
#[derive(Debug, clap::Args)]
pub struct PgbenchArgs {
    /// Client counts to compare at (1 to 64 each).
    #[arg(long, value_delimiter = ',', default_value = "1,8",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub clients: Vec<u16>,
    /// Seconds per run of either side (1 to 3600).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Rounds per client count, pgbench and pgperf alternating; the ratio is of the medians
    /// (1 to 100).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// pgbench scale, 100 000 accounts per unit (1 to 1000).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub scale: u32,
}

/// Runs pgbench with `args` against `url`; killed if it outlives its work by a minute.
async fn pgbench(url: &DatabaseUrl, args: Vec<String>, seconds: u64) -> anyhow::Result<String> {
    let child = Child {
        program: "pgbench",
        args,
        url,
        limit: Duration::from_secs(seconds + 60),
    };
    Ok(child.run().await?.text)
}

async fn pgbench_tps(url: &DatabaseUrl, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    let threads = threads_for(clients);
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
    let text = pgbench(url, args, seconds).await?;
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok());
    tps.with_context(|| format!("no tps line in pgbench's output:\n{text}"))
}

/// Client threads for `clients` connections: pgbench's `-j`, one per core at most.
fn threads_for(clients: usize) -> usize {
    clients.min(std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// The harness's lookups, built like pgbench's client: `threads_for(clients)` threads, each
/// driving its share of the connections on a single-threaded runtime. (On a multi-threaded
/// runtime the tasks' wake-ups cross threads: 0.86-0.95x of pgbench at 8 clients here,
/// against 0.95-1.0x this way.)
async fn harness(
    url: &DatabaseUrl,
    clients: usize,
    seconds: u64,
    accounts: i64,
) -> anyhow::Result<Summary> {
    let threads = threads_for(clients);
    let shares: Vec<usize> = (0..threads)
        .map(|t| clients / threads + usize::from(t < clients % threads))
        .collect();
    let url = url.clone();
    let parts = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            let running: Vec<_> = shares
                .iter()
                .enumerate()
                .map(|(t, &n)| {
                    let url = &url;
                    s.spawn(move || on_thread(url, t, n, seconds, accounts))
                })
                .collect();
            running
                .into_iter()
                .map(|h| h.join().expect("a harness thread panicked"))
                .collect::<anyhow::Result<Vec<Measurement>>>()
        })
    })
    .await??;
    let m = Measurement::merge(parts).context("no harness thread ran")?;
    if m.summary.errors > 0 {
        bail!(
            "{} lookups failed: {}",
            m.summary.errors,
            m.first_error.unwrap_or_default()
        );
    }
    Ok(m.summary)
}

/// One harness thread: a single-threaded runtime, a pool of `clients` connections.
fn on_thread(
    url: &DatabaseUrl,
    thread: usize,
    clients: usize,
    seconds: u64,
    accounts: i64,
) -> anyhow::Result<Measurement> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let settings = PoolSettings {
            max_connections: clients as u32,
            min_connections: 0,
            ..PoolSettings::default()
        };
        let db = pgperf::db::Db::connect(url, settings).await?;
        let mut states = Vec::with_capacity(clients);
        for t in 0..clients {
            let seed = (thread * 1_000 + t) as u64;
            states.push((db.acquire().await?, ChaCha8Rng::seed_from_u64(seed)));
        }
        let config = MeasureConfig {
            warmup_iterations: 500,
            iterations: u64::MAX,
            max_duration: Duration::from_secs(seconds),
            concurrency: clients,
            ..MeasureConfig::default()
        };
        let m = measure(config, states, lookup(accounts), None).await;
        db.close().await;
        Ok(m)
    })
}

fn lookup(accounts: i64) -> Operation<(MeteredConnection, ChaCha8Rng), DbError> {
    Arc::new(move |(c, rng)| {
        let aid = rng.random_range(1..=accounts);
        Box::pin(async move {
            sqlx::query("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
                .bind(aid as i32)
                .execute(&mut **c)
                .await?;
            Ok(())
        })
    })
}

/// Both sides' rates over the rounds at one client count.
#[derive(Debug, Default)]
struct Rounds {
    pgbench: Vec<f64>,
    pgperf: Vec<f64>,
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
}

impl Rounds {
    /// The ratio of the medians, and the lowest and highest ratio of one round's pair.
    fn ratio(&self) -> (f64, f64, f64) {
        let median = |v: &[f64]| pgperf::perf::stats::median(v).unwrap_or(f64::NAN);
        let pairs: Vec<f64> = self
            .pgperf
            .iter()
            .zip(&self.pgbench)
            .map(|(ours, theirs)| ours / theirs)
            .collect();
        let low = pairs.iter().copied().fold(f64::INFINITY, f64::min);
        let high = pairs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (median(&self.pgperf) / median(&self.pgbench), low, high)
    }
}

async fn compare_at(
    url: &DatabaseUrl,
    args: &PgbenchArgs,
    clients: usize,
    accounts: i64,
) -> anyhow::Result<Rounds> {
    let mut r = Rounds::default();
    for round in 1..=args.rounds {
        eprintln!(
            "pgperf: {clients} client(s), round {round}/{}: pgbench and pgperf, {} s each ...",
            args.rounds, args.seconds
        );
        // Alternate which side goes first, so a drift of the machine favours neither.
        let ours_first = round % 2 == 0;
        if !ours_first {
            r.pgbench
                .push(pgbench_tps(url, clients, args.seconds).await?);
        }
        let ours = harness(url, clients, args.seconds, accounts).await?;
        if ours_first {
            r.pgbench
                .push(pgbench_tps(url, clients, args.seconds).await?);
        }
        r.pgperf.push(ours.throughput_per_s);
        r.p50_us.push(ours.p50_us);
        r.p99_us.push(ours.p99_us);
    }
    Ok(r)
}

/// Runs the comparison and prints a table of ratios.
pub async fn run(args: PgbenchArgs) -> anyhow::Result<()> {
    with_workspace("pgbench", async |ws| {
        eprintln!("pgperf: pgbench -i -s {} ...", args.scale);
        let init = ["-i", "-q", "-s", &args.scale.to_string()].map(String::from);
        pgbench(&ws.url, init.to_vec(), 600).await?;
        let accounts = i64::from(args.scale) * 100_000;
        // Both sides run placed alike: pgbench, started meanwhile, inherits the client's CPU.
        // Left to the OS, a client and its backend sometimes share a core and sometimes not,
        // which moved single rounds from x0.49 to x1.14 at one client.
        let _placed = place_for_timing(&ws.server, &ws.testbed, WhenBusy::PlaceAnyway)?;
        let mut lines = Vec::new();
        for clients in args.clients.iter().map(|&c| usize::from(c)) {
            let r = compare_at(&ws.url, &args, clients, accounts).await?;
            let (ratio, low, high) = r.ratio();
            let median = |v: &[f64]| pgperf::perf::stats::median(v).unwrap_or(f64::NAN);
            lines.push(format!(
                "{clients:>7}  {:>16.0}  {:>14.0}  {ratio:>5.2}  {low:>4.2}-{high:<4.2}  {:>7.0} µs  {:>7.0} µs",
                median(&r.pgbench),
                median(&r.pgperf),
                median(&r.p50_us),
                median(&r.p99_us),
            ));
        }
        println!(
            "{} rounds of {} s per side, interleaved; figures are medians over the rounds",
            args.rounds, args.seconds
        );
        println!(
            "clients  pgbench -S (tps)  pgperf (ops/s)  ratio  per round  pgperf p50  pgperf p99"
        );
        for line in lines {
            println!("{line}");
        }
        Ok(())
    })
    .await
}
