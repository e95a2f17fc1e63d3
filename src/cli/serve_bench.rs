//! `pgperf serve-bench`: the API service's own figures, measured in one run against one
//! container database (seeded through the COPY path), with the service in this process on
//! 127.0.0.1 and a keep-alive HTTP client:
//!
//! 1. **HTTP overhead of a cached search**: `GET /search` for popular queries (all cache
//!    hits) against the same cached lookup called directly on the data layer
//!    ([`SearchCache::search`]), in alternating blocks so that both see the same noise; the
//!    target is a p50 difference of at most 0.3 ms;
//! 2. **`/health/database` at a fixed rate** (open model: requests start on schedule whatever
//!    the previous ones do, and latency counts from the scheduled start, so a slow answer
//!    cannot hide itself by delaying the next request); the target is p99 <= 5 ms at 100/s;
//! 3. **1,000 concurrent keep-alive connections**: 1,000 requests at once, three rounds on
//!    the same client; the server-side sockets are counted in /proc/net/tcp while they idle,
//!    and no request may fail.
//!
//! The report goes to stdout and `target/pgperf/serve-bench.json`; a missed target exits 1.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use pgperf::db::PoolSettings;
use pgperf::db::latency::{Ms, ms_of_us};
use pgperf::db::search::SearchRequest;
use pgperf::db::search_cache::{SearchCache, Served};
use pgperf::perf::stats::{Summary, latency_histogram, record};
use pgperf::service::{Config, ConnectionLimits};

use super::scale::parse_count;
use super::{Failure, with_workspace};

/// Options of `pgperf serve-bench`.
#[derive(Debug, clap::Args)]
pub struct ServeBenchArgs {
    /// Entities to seed (with aliases), e.g. 100k.
    #[arg(long, default_value = "100k", value_parser = parse_count)]
    pub entities: u64,
    /// Cached searches per side (HTTP and direct).
    #[arg(long, default_value_t = 4_000)]
    pub searches: u32,
    /// Rate of the /health/database phase, requests per second.
    #[arg(long, default_value_t = 100)]
    pub health_rate: u32,
    /// Length of the /health/database phase, seconds.
    #[arg(long, default_value_t = 20)]
    pub health_seconds: u32,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 1_000)]
    pub connections: u32,
}

/// The targets of the issue, checked at the end.
const MAX_CACHED_OVERHEAD_MS: f64 = 0.3;
const MAX_HEALTH_P99_MS: f64 = 5.0;

/// The popular queries of the cached phase (the load profiles' first ten).
fn popular() -> Vec<String> {
    (0..10)
        .map(|i| pgperf::dataset::popular_query(pgperf::dataset::SERVE_SEED, i))
        .collect()
}

#[derive(Debug, Serialize)]
struct Report {
    entities: u64,
    cached_search_direct: Summary,
    cached_search_http: Summary,
    cached_overhead_p50_ms: f64,
    health_rate_per_s: u32,
    health: Summary,
    health_late_starts: u64,
    connections_wanted: u32,
    connections_held: usize,
    connection_rounds: Vec<RoundResult>,
    passed: bool,
}

#[derive(Debug, Serialize)]
struct RoundResult {
    ok: u32,
    errors: u32,
    seconds: f64,
}

/// Raises the open-files limit to its hard maximum: 1,000 connections need 2,000 sockets in
/// this process (both ends).
pub(crate) fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// Established TCP sockets whose local port is `port` (the server's side of connections).
fn established_on(port: u16) -> usize {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let wanted = format!(":{port:04X}");
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&wanted) && f[3] == "01"
        })
        .count()
}

/// Runs the benchmark.
pub async fn run(args: ServeBenchArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    with_workspace("serve_bench", async |ws| {
        let db = ws
            .pool(PoolSettings {
                max_connections: 10,
                application_name: "pgperf-serve-bench".to_owned(),
                ..PoolSettings::default()
            })
            .await?;
        seed(&db, args.entities).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let base = format!("http://127.0.0.1:{port}");
        let router = pgperf::service::router_with(db.clone(), Config::default())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let limits = ConnectionLimits::default();
        let server = tokio::spawn(pgperf::service::serve(
            listener,
            router,
            db.clone(),
            limits,
            stopped,
        ));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(120))
            .timeout(Duration::from_secs(30))
            .build()?;
        let (direct, http) = cached_phase(&client, &base, &db, args.searches).await?;
        let (health, late) = health_phase(&client, &base, &args).await?;
        let (rounds, held) = connection_rounds(&client, &base, port, args.connections).await;
        let _ = (drop(client), stop.send(()), server.await);
        let overhead = ms_of_us(http.p50_us - direct.p50_us);
        let passed = overhead <= MAX_CACHED_OVERHEAD_MS
            && ms_of_us(health.p99_us) <= MAX_HEALTH_P99_MS
            && health.errors == 0
            && rounds.iter().all(|r| r.errors == 0)
            && held >= args.connections as usize;
        let report = Report {
            entities: args.entities,
            cached_search_direct: direct,
            cached_search_http: http,
            cached_overhead_p50_ms: overhead,
            health_rate_per_s: args.health_rate,
            health,
            health_late_starts: late,
            connections_wanted: args.connections,
            connections_held: held,
            connection_rounds: rounds,
            passed,
        };
        finish(&report)
    })
    .await
}

/// Refuses arguments that would measure nothing or need more open files than allowed.
fn check_args(args: &ServeBenchArgs) -> anyhow::Result<()> {
    if args.searches == 0 || args.health_rate == 0 || args.health_seconds == 0 {
        let why = "--searches, --health-rate and --health-seconds must be above zero";
        return Err(Failure::Usage(why.to_owned()).into());
    }
    let limit = raise_fd_limit();
    let files = u64::from(args.connections) * 2 + 100;
    if files > limit {
        return Err(Failure::Usage(format!(
            "{} connections need about {files} open files; this process may have {limit} (ulimit -n)",
            args.connections
        ))
        .into());
    }
    Ok(())
}

/// Loads `entities` generated entities through the COPY path, and gathers statistics.
async fn seed(db: &pgperf::db::Db, entities: u64) -> anyhow::Result<()> {
    let mut c = db.acquire().await?;
    let started = Instant::now();
    pgperf::db::ingest::copy_entities(
        &mut c,
        pgperf::dataset::entities(pgperf::dataset::SERVE_SEED, entities),
    )
    .await?;
    pgperf::db::ingest::analyze_entities(&mut c).await?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("pgperf: seeded {entities} entities in {secs:.1} s");
    Ok(())
}

/// The cached search through the data layer and over HTTP, alternating blocks of 200; every
/// one must be a hit.
async fn cached_phase(
    client: &reqwest::Client,
    base: &str,
    db: &pgperf::db::Db,
    searches: u32,
) -> anyhow::Result<(Summary, Summary)> {
    // Warm the cache: the first request of each query is a miss and stores the page.
    let popular = popular();
    for q in &popular {
        let r = client.get(format!("{base}/search?q={q}")).send().await?;
        anyhow::ensure!(
            r.status().is_success(),
            "warming /search?q={q}: {}",
            r.status()
        );
    }
    let cache = SearchCache::default();
    let (mut direct, mut http) = (latency_histogram(), latency_histogram());
    let started = Instant::now();
    let mut conn = db.acquire().await?;
    let mut done = 0u32;
    while done < searches {
        let n = 200u32.min(searches - done);
        let block = || (done..done + n).map(|i| &popular[i as usize % popular.len()]);
        for q in block() {
            let req = SearchRequest::new(q.to_owned(), 10);
            let t = Instant::now();
            let (_, served) = cache.search(&mut conn, &req).await?;
            record(&mut direct, t.elapsed());
            anyhow::ensure!(
                served == Served::Hit,
                "direct lookup of {q:?} missed the cache"
            );
        }
        for q in block() {
            let t = Instant::now();
            let r = client.get(format!("{base}/search?q={q}")).send().await?;
            let hit = r.headers().get("x-cache").is_some_and(|v| v == "hit");
            let ok = r.status().is_success();
            let _ = r.bytes().await?;
            record(&mut http, t.elapsed());
            anyhow::ensure!(ok && hit, "GET /search?q={q} was not a cache hit");
        }
        done += n;
    }
    let wall = started.elapsed();
    let (direct, http) = (Summary::of(&direct, 0, wall), Summary::of(&http, 0, wall));
    eprintln!(
        "pgperf: cached search p50: HTTP {}, data layer {}",
        Ms::of_us(http.p50_us),
        Ms::of_us(direct.p50_us)
    );
    Ok((direct, http))
}

/// `/health/database` at a fixed rate, latency from each request's scheduled start; and how
/// many started late.
async fn health_phase(
    client: &reqwest::Client,
    base: &str,
    args: &ServeBenchArgs,
) -> anyhow::Result<(Summary, u64)> {
    let period = Duration::from_secs_f64(1.0 / f64::from(args.health_rate));
    let total = args.health_rate * args.health_seconds;
    let began = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    let mut late = 0u64;
    for i in 0..total {
        let at = began + period * i;
        tokio::time::sleep_until(at).await;
        if tokio::time::Instant::now() > at + period {
            late += 1;
        }
        let request = client.get(format!("{base}/health/database"));
        tasks.push(tokio::spawn(async move {
            let ok = match request.send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (at.elapsed(), ok)
        }));
    }
    let (mut h, mut errors) = (latency_histogram(), 0u64);
    for t in tasks {
        match t.await.context("a health request task")? {
            (took, true) => record(&mut h, took),
            (_, false) => errors += 1,
        }
    }
    let health = Summary::of(&h, errors, began.elapsed());
    eprintln!(
        "pgperf: /health/database at {}/s: p50 {}, p99 {}, {errors} errors",
        args.health_rate,
        Ms::of_us(health.p50_us),
        Ms::of_us(health.p99_us)
    );
    Ok((health, late))
}

/// `connections` concurrent keep-alive requests, three rounds on one client (search, health,
/// search); the rounds and the most server-side connections held.
async fn connection_rounds(
    client: &reqwest::Client,
    base: &str,
    port: u16,
    connections: u32,
) -> (Vec<RoundResult>, usize) {
    let mut rounds = Vec::new();
    let mut held = 0;
    let popular = popular();
    for round in 0..3 {
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..connections {
            let q = &popular[(i as usize) % popular.len()];
            let url = if round == 1 {
                format!("{base}/health/live")
            } else {
                format!("{base}/search?q={q}")
            };
            let request = client.get(url);
            set.spawn(async move {
                match request.send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                }
            });
        }
        let (mut ok, mut errors) = (0, 0);
        while let Some(r) = set.join_next().await {
            if r.unwrap_or(false) {
                ok += 1
            } else {
                errors += 1
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        held = held.max(established_on(port));
        let seconds = started.elapsed().as_secs_f64();
        rounds.push(RoundResult {
            ok,
            errors,
            seconds,
        });
    }
    let counts: Vec<_> = rounds.iter().map(|r| (r.ok, r.errors)).collect();
    eprintln!(
        "pgperf: {connections} concurrent requests x3: {counts:?}; {held} server-side connections held"
    );
    (rounds, held)
}

/// Prints and writes the report; a missed target is a regression.
fn finish(report: &Report) -> anyhow::Result<()> {
    print_report(report);
    std::fs::create_dir_all("target/pgperf")?;
    std::fs::write(
        "target/pgperf/serve-bench.json",
        serde_json::to_string_pretty(report)?,
    )?;
    if !report.passed {
        let why = "a service target was missed (see the report)";
        return Err(Failure::Regressed(why.to_owned()).into());
    }
    Ok(())
}

fn print_report(r: &Report) {
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!(
        "pgperf serve-bench: {} entities, service on 127.0.0.1, one run",
        r.entities
    );
    println!();
    println!("| Measure | p50 | p95 | p99 | Target | |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, s: &Summary, target: &str, ok: &str| {
        println!(
            "| {name} | {} | {} | {} | {target} | {ok} |",
            Ms::of_us(s.p50_us),
            Ms::of_us(s.p95_us),
            Ms::of_us(s.p99_us)
        );
    };
    row("Cached search, data layer", &r.cached_search_direct, "", "");
    row(
        "Cached search, GET /search",
        &r.cached_search_http,
        &format!(
            "p50 within {MAX_CACHED_OVERHEAD_MS} ms of the data layer (is {})",
            Ms(r.cached_overhead_p50_ms)
        ),
        verdict(r.cached_overhead_p50_ms <= MAX_CACHED_OVERHEAD_MS),
    );
    row(
        &format!("GET /health/database at {}/s", r.health_rate_per_s),
        &r.health,
        &format!(
            "p99 <= {MAX_HEALTH_P99_MS} ms, no error ({} errors)",
            r.health.errors
        ),
        verdict(ms_of_us(r.health.p99_us) <= MAX_HEALTH_P99_MS && r.health.errors == 0),
    );
    println!();
    for (i, round) in r.connection_rounds.iter().enumerate() {
        println!(
            "Round {} of {} concurrent requests: {} ok, {} errors, {:.2} s",
            i + 1,
            r.connections_wanted,
            round.ok,
            round.errors,
            round.seconds
        );
    }
    println!(
        "Server-side connections held open (keep-alive): {} of {} wanted: {}",
        r.connections_held,
        r.connections_wanted,
        verdict(
            r.connections_held >= r.connections_wanted as usize
                && r.connection_rounds.iter().all(|x| x.errors == 0)
        )
    );
    println!(
        "Health requests started late by more than one period: {}",
        r.health_late_starts
    );
}
