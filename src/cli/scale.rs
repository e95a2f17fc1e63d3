//! `pgperf scale`: search and resolution at growing sizes (1k, 10k, 100k, 1M entities by
//! default, about one alias each), with the trigram indexes as GIN, GiST or both.
//!
//! For each size the database grows to that many entities through the COPY path
//! ([`copy_entities`]; the name indexes are dropped during the load and rebuilt after it),
//! then five cases run one after another, database side (the client sends the statement and
//! waits; no HTTP), each on one connection but the last:
//!
//! - `search.uncached`: `--queries` searches, each for a different source spelling of a
//!   random entity's name (typos, reordered words, initials, ...);
//! - `search.cached`: `--queries` searches through the search cache, cycling over 20 popular
//!   queries stored beforehand (every one must be a hit);
//! - `resolve.one`: `--queries` single resolutions;
//! - `resolve.batch_1000`: `--batches` batches of 1,000 names, one statement a pass;
//! - `resolve.batch_1000_x2`: the same batches, each split over two connections
//!   (`resolve_batch_on`: 500 names on each, at once).
//!
//! The report gives p50/p95/p99 and throughput per case, size and index type; the growth
//! exponent between sizes (slope of log p50 over log size: 0 flat, 1 linear); the client's
//! peak RSS above its start; and an SVG plot of p95 against size.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::TryStreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sqlx::PgConnection;

use pgperf::dataset::{self, labelled};
use pgperf::db::ingest::copy_entities;
use pgperf::db::latency::{Ms, ms_of_us};
use pgperf::db::resolve::{NameToResolve, Thresholds, resolve, resolve_batch, resolve_batch_on};
use pgperf::db::search::{SearchRequest, search};
use pgperf::db::search_cache::{SearchCache, Served};
use pgperf::db::{Db, PoolSettings};
use pgperf::perf::plot::{Chart, Series, line_chart};
use pgperf::perf::stats::{self, Summary, reset_peak_rss, status_kib};

use super::{Failure, with_workspace_on};

/// The dataset seed (the suite's).
const SEED: u64 = pgperf::scenarios::seed::SEED;
/// Names per batch resolution.
const BATCH: usize = 1_000;
/// Popular queries of the cached case.
const POPULAR: usize = 20;
/// Index builds run side by side, each on a connection of its own: PostgreSQL 15 builds a GIN
/// index in one process, so one at a time would leave a core of the machine kind idle.
const BUILDERS: usize = 2;
/// The memory each index build may sort in.
const BUILD_MEMORY: &str = "SET maintenance_work_mem = '1GB'";

/// The trigram index type(s) to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexChoice {
    /// GIN (`gin_trgm_ops`), as the migrations create it.
    Gin,
    /// GiST (`gist_trgm_ops`).
    Gist,
    /// Both, one after the other at each size.
    Both,
}

impl IndexChoice {
    fn types(self) -> &'static [IndexType] {
        match self {
            Self::Gin => &[IndexType::Gin],
            Self::Gist => &[IndexType::Gist],
            Self::Both => &[IndexType::Gin, IndexType::Gist],
        }
    }
}

/// One trigram index type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexType {
    /// GIN.
    Gin,
    /// GiST.
    Gist,
}

impl IndexType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Gin => "gin",
            Self::Gist => "gist",
        }
    }

    /// The statements that build the name and alias trigram indexes (same names as the
    /// migrations', so every query and plan guard sees them).
    fn create(self) -> [&'static str; 2] {
        match self {
            Self::Gin => [
                "CREATE INDEX entities_normalized_name_trgm_idx ON entities USING gin (normalized_name gin_trgm_ops)",
                "CREATE INDEX entity_aliases_normalized_alias_trgm_idx ON entity_aliases USING gin (normalized_alias gin_trgm_ops)",
            ],
            Self::Gist => [
                "CREATE INDEX entities_normalized_name_trgm_idx ON entities USING gist (normalized_name gist_trgm_ops)",
                "CREATE INDEX entity_aliases_normalized_alias_trgm_idx ON entity_aliases USING gist (normalized_alias gist_trgm_ops)",
            ],
        }
    }
}

const DROP_TRIGRAM: [&str; 2] = [
    "DROP INDEX IF EXISTS entities_normalized_name_trgm_idx",
    "DROP INDEX IF EXISTS entity_aliases_normalized_alias_trgm_idx",
];

/// The word and word variant indexes (always GIN), dropped during a load and
/// rebuilt after it like the trigram ones: building once is far faster than growing them row
/// by row.
const DROP_WORDS: [&str; 4] = [
    "DROP INDEX IF EXISTS entities_normalized_name_words_idx",
    "DROP INDEX IF EXISTS entities_normalized_name_variants_idx",
    "DROP INDEX IF EXISTS entity_aliases_normalized_alias_variants_idx",
    "DROP INDEX IF EXISTS entity_aliases_normalized_alias_words_idx",
];
const CREATE_WORDS: [&str; 4] = [
    "CREATE INDEX entities_normalized_name_words_idx ON entities USING gin (to_tsvector('simple', normalized_name))",
    "CREATE INDEX entities_normalized_name_variants_idx ON entities USING gin (name_word_variants(normalized_name))",
    "CREATE INDEX entity_aliases_normalized_alias_variants_idx ON entity_aliases USING gin (name_word_variants(normalized_alias))",
    "CREATE INDEX entity_aliases_normalized_alias_words_idx ON entity_aliases USING gin (to_tsvector('simple', normalized_alias))",
];

/// Parses an entity count: `1000`, `10k`, `1m`.
pub(crate) fn parse_count(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, factor) = match lower.strip_suffix('k') {
        Some(d) => (d, 1_000),
        None => match lower.strip_suffix('m') {
            Some(d) => (d, 1_000_000),
            None => (lower.as_str(), 1),
        },
    };
    match digits.parse::<u64>() {
        Ok(n) if (1..=100_000_000).contains(&(n * factor)) => Ok(n * factor),
        _ => Err(format!(
            "{s:?} is not an entity count from 1 to 100m (like 1000, 10k or 1m)"
        )),
    }
}

/// Options of `pgperf scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// Entity counts, ascending, comma-separated (k and m suffixes); each size adds entities
    /// to the previous one's.
    #[arg(long, value_delimiter = ',', default_value = "1k,10k,100k,1m", value_parser = parse_count)]
    pub sizes: Vec<u64>,
    /// The trigram index type to measure (both: each size with GIN, then GiST).
    #[arg(long, value_enum, default_value_t = IndexChoice::Gin)]
    pub index: IndexChoice,
    /// Searches and single resolutions per case and size (10 to 100 000).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=100_000))]
    pub queries: u64,
    /// Batches of 1,000 names per size (1 to 1 000).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub batches: u64,
    /// A server setting for the container it starts, `name=value`; repeatable. The default
    /// gives the server the memory a million entities need (128 MB, PostgreSQL's default,
    /// holds a tenth of their indexes and rows).
    #[arg(long = "pg-setting", value_name = "NAME=VALUE", default_values = ["shared_buffers=1GB"],
          value_parser = super::parse_setting)]
    pub pg_settings: Vec<String>,
    /// Where report.json and latency.svg are written.
    #[arg(long, default_value = "target/pgperf-scale")]
    pub out: PathBuf,
}

/// One case at one size with one index type.
#[derive(Debug, Clone, Serialize)]
struct Row {
    size: u64,
    index: IndexType,
    case: &'static str,
    summary: Summary,
    /// For `search.uncached`: how many first pages held the entity its query was made from.
    #[serde(skip_serializing_if = "Option::is_none")]
    found: Option<Found>,
}

/// Queries whose first page held the entity each was made from (a hit with its name), of all.
#[derive(Debug, Clone, Copy, Serialize)]
struct Found {
    found: u64,
    of: u64,
}

/// How one size was loaded, and the client's memory by then.
#[derive(Debug, Clone, Serialize)]
struct Load {
    size: u64,
    aliases: u64,
    copy_s: f64,
    index_s: f64,
    /// The client's peak RSS above its start, so far (MiB).
    peak_rss_growth_mib: f64,
}

/// The growth exponent of a case between two sizes.
#[derive(Debug, Clone, Serialize)]
struct Growth {
    case: &'static str,
    index: IndexType,
    from: u64,
    to: u64,
    exponent: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    sizes: Vec<u64>,
    queries: u64,
    batches: u64,
    loads: Vec<Load>,
    rows: Vec<Row>,
    growth: Vec<Growth>,
}

/// Runs the benchmark.
pub async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    if args.sizes.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Failure::Usage(format!(
            "--sizes must be ascending, without repeats: {:?}",
            args.sizes
        ))
        .into());
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let report = with_workspace_on("scale", &args.pg_settings, async |ws| {
        let settings = PoolSettings {
            // The measuring connection, and the index builders beside it.
            max_connections: 1 + BUILDERS as u32,
            statement_timeout: Some(Duration::from_secs(600)),
            query_timeout: Duration::from_secs(900),
            ..PoolSettings::default()
        };
        let db = ws.pool(settings).await?;
        let result = measure_sizes(&db, &args).await;
        db.close().await;
        result
    })
    .await?;
    let json = args.out.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let svg = args.out.join("latency.svg");
    plot(&svg, &report).map_err(anyhow::Error::msg)?;
    print!("{}", markdown(&report));
    eprintln!("pgperf: wrote {} and {}", json.display(), svg.display());
    Ok(())
}

async fn measure_sizes(db: &Db, args: &ScaleArgs) -> anyhow::Result<Report> {
    let rss_start = status_kib("VmRSS:").unwrap_or(0);
    reset_peak_rss();
    let mut conn = db.acquire().await?;
    let (mut loads, mut rows) = (Vec::new(), Vec::new());
    let mut loaded = 0;
    for &size in &args.sizes {
        let mut load = grow(db, &mut conn, loaded, size, args.index.types()[0]).await?;
        let mut built = args.index.types()[0];
        loaded = size;
        for &index in args.index.types() {
            if built != index {
                let started = Instant::now();
                rebuild(db, &mut conn, index).await?;
                eprintln!(
                    "pgperf: {size} entities: {} indexes built in {:.1} s",
                    index.as_str(),
                    started.elapsed().as_secs_f64()
                );
                built = index;
            }
            rows.extend(measure_cases(db, &mut conn, size, index, args).await?);
        }
        let peak = status_kib("VmHWM:").unwrap_or(0).saturating_sub(rss_start);
        load.peak_rss_growth_mib = peak as f64 / 1024.0;
        loads.push(load);
    }
    let growth = growth(&rows);
    Ok(Report {
        sizes: args.sizes.clone(),
        queries: args.queries,
        batches: args.batches,
        loads,
        rows,
        growth,
    })
}

/// Adds entities `from..to` through COPY, with the trigram indexes dropped during the load
/// and rebuilt as `index` after it, then VACUUM ANALYZE.
async fn grow(
    db: &Db,
    conn: &mut PgConnection,
    from: u64,
    to: u64,
    index: IndexType,
) -> anyhow::Result<Load> {
    for sql in DROP_TRIGRAM.into_iter().chain(DROP_WORDS) {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    let started = Instant::now();
    let rows = (from..to).map(|i| dataset::entity(SEED, i));
    let loaded = copy_entities(&mut *conn, rows)
        .await
        .with_context(|| format!("loading entities {from} to {to}"))?;
    let copy_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    build_indexes(db, CREATE_WORDS.into_iter().chain(index.create())).await?;
    vacuum_analyze(db).await?;
    let index_s = started.elapsed().as_secs_f64();
    eprintln!(
        "pgperf: {to} entities: {} entities and {} aliases copied in {copy_s:.1} s, word and {} trigram indexes built in {index_s:.1} s",
        loaded.entities,
        loaded.aliases,
        index.as_str()
    );
    Ok(Load {
        size: to,
        aliases: loaded.aliases,
        copy_s,
        index_s,
        peak_rss_growth_mib: 0.0,
    })
}

async fn rebuild(db: &Db, conn: &mut PgConnection, index: IndexType) -> anyhow::Result<()> {
    for sql in DROP_TRIGRAM {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    build_indexes(db, index.create()).await?;
    vacuum_analyze(db).await
}

/// Runs `statements` [`BUILDERS`] at a time, each on a connection of its own with
/// [`BUILD_MEMORY`]; logs how long each took.
async fn build_indexes(
    db: &Db,
    statements: impl IntoIterator<Item = &'static str>,
) -> anyhow::Result<()> {
    futures::stream::iter(statements.into_iter().map(anyhow::Ok))
        .try_for_each_concurrent(BUILDERS, async |sql| {
            let mut conn = db.acquire().await?;
            let started = Instant::now();
            sqlx::query(BUILD_MEMORY).execute(&mut *conn).await?;
            sqlx::query(sql).execute(&mut *conn).await?;
            eprintln!("pgperf: {:.1} s: {sql}", started.elapsed().as_secs_f64());
            Ok(())
        })
        .await
}

/// Statistics and the visibility map for both tables, side by side, with autovacuum off so
/// that it cannot start in the middle of a measurement.
async fn vacuum_analyze(db: &Db) -> anyhow::Result<()> {
    let table = async |name: &str| -> anyhow::Result<()> {
        let mut conn = db.acquire().await?;
        let off = format!("ALTER TABLE {name} SET (autovacuum_enabled = false)");
        sqlx::query(sqlx::AssertSqlSafe(off))
            .execute(&mut *conn)
            .await?;
        let vacuum = format!("VACUUM ANALYZE {name}");
        sqlx::query(sqlx::AssertSqlSafe(vacuum))
            .execute(&mut *conn)
            .await?;
        Ok(())
    };
    futures::try_join!(table("entities"), table("entity_aliases"))?;
    pgperf::db::ingest::refresh_frequent_words(&mut *db.acquire().await?).await?;
    Ok(())
}

/// Source spellings of random entities among the first `size`, each with the entity's name.
fn labelled_queries(size: u64, count: u64, salt: u64) -> Vec<(NameToResolve, String)> {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ size.rotate_left(20) ^ salt);
    (0..count)
        .map(|_| {
            let (entity, _) = dataset::entity(SEED, rng.random_range(0..size));
            let query = NameToResolve {
                name: labelled::variant_of(&mut rng, &entity.name),
                kind: entity.kind,
            };
            (query, entity.name)
        })
        .collect()
}

/// [`labelled_queries`] without the labels.
fn queries(size: u64, count: u64, salt: u64) -> Vec<NameToResolve> {
    let labelled = labelled_queries(size, count, salt);
    labelled.into_iter().map(|(query, _)| query).collect()
}

/// Times `op` over `inputs`, one after another.
async fn timed<C: ?Sized, T>(
    conn: &mut C,
    inputs: &[T],
    mut op: impl AsyncFnMut(&mut C, &T) -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    let mut h = stats::latency_histogram();
    let wall = Instant::now();
    for input in inputs {
        let started = Instant::now();
        op(conn, input).await?;
        stats::record(&mut h, started.elapsed());
    }
    Ok(Summary::of(&h, 0, wall.elapsed()))
}

async fn measure_cases(
    db: &Db,
    conn: &mut PgConnection,
    size: u64,
    index: IndexType,
    args: &ScaleArgs,
) -> anyhow::Result<Vec<Row>> {
    let labelled = labelled_queries(size, args.queries, 1);
    let (uncached, cached, found) = measure_searches(conn, &labelled).await?;
    let names: Vec<NameToResolve> = labelled.into_iter().map(|(query, _)| query).collect();
    let (one, batch) = measure_resolution(conn, size, &names, args.batches).await?;
    let batch_x2 = measure_split_batches(db, size, args.batches).await?;
    let cases = [
        ("search.uncached", uncached),
        ("search.cached", cached),
        ("resolve.one", one),
        ("resolve.batch_1000", batch),
        ("resolve.batch_1000_x2", batch_x2),
    ];
    eprintln!(
        "pgperf: {size} entities, {}: search.uncached found the queried entity on {} of {} first pages",
        index.as_str(),
        found.found,
        found.of
    );
    for (case, s) in &cases {
        eprintln!(
            "pgperf: {size} entities, {}: {case} p50 {:.2} ms, p95 {:.2} ms",
            index.as_str(),
            ms_of_us(s.p50_us),
            ms_of_us(s.p95_us)
        );
    }
    let row = |(case, summary)| Row {
        size,
        index,
        case,
        summary,
        found: (case == "search.uncached").then_some(found),
    };
    Ok(cases.into_iter().map(row).collect())
}

/// `search.uncached` over every query (counting the first pages that hold the entity it was
/// made from), then `search.cached` cycling over the first [`POPULAR`] (or every query, when
/// fewer), stored beforehand.
async fn measure_searches(
    conn: &mut PgConnection,
    labelled: &[(NameToResolve, String)],
) -> anyhow::Result<(Summary, Summary, Found)> {
    let requests: Vec<(SearchRequest, &str)> = labelled
        .iter()
        .map(|(n, original)| (SearchRequest::new(n.name.clone(), 10), original.as_str()))
        .collect();
    let mut found = 0;
    let uncached = timed(conn, &requests, async |c, (r, original)| {
        let page = search(c, r).await?;
        found += u64::from(page.hits.iter().any(|h| h.name == *original));
        Ok(())
    })
    .await
    .context("search.uncached")?;
    let found = Found {
        found,
        of: requests.len() as u64,
    };
    let requests: Vec<SearchRequest> = requests.into_iter().map(|(r, _)| r).collect();
    let cache = SearchCache::new(Duration::from_secs(3600))?;
    let popular = &requests[..POPULAR.min(requests.len())];
    for r in popular {
        cache.search(conn, r).await?;
    }
    let cycled: Vec<&SearchRequest> = popular.iter().cycle().take(requests.len()).collect();
    let cached = timed(conn, &cycled, async |c, r| {
        match cache.search(c, r).await? {
            (_, Served::Hit) => Ok(()),
            (_, Served::Miss) => anyhow::bail!("{:?} was not served from the cache", r.text),
        }
    })
    .await
    .context("search.cached")?;
    Ok((uncached, cached, found))
}

/// `resolve.one` over every name, then `resolve.batch_1000` over `batches` batches.
async fn measure_resolution(
    conn: &mut PgConnection,
    size: u64,
    names: &[NameToResolve],
    batches: u64,
) -> anyhow::Result<(Summary, Summary)> {
    let thresholds = Thresholds::default();
    let one = timed(conn, names, async |c, n| {
        resolve(c, n, thresholds).await?;
        Ok(())
    })
    .await
    .context("resolve.one")?;
    let batches: Vec<Vec<NameToResolve>> = (0..batches)
        .map(|b| queries(size, BATCH as u64, 100 + b))
        .collect();
    let batch = timed(conn, &batches, async |c, names| {
        let answers = resolve_batch(c, names, thresholds).await?;
        anyhow::ensure!(answers.len() == names.len(), "a batch lost answers");
        Ok(())
    })
    .await
    .context("resolve.batch_1000")?;
    Ok((one, batch))
}

/// `resolve.batch_1000_x2`: the batches of `resolve.batch_1000`, each split over two
/// connections ([`resolve_batch_on`]).
async fn measure_split_batches(db: &Db, size: u64, batches: u64) -> anyhow::Result<Summary> {
    let mut pair = [db.acquire().await?, db.acquire().await?];
    let batches: Vec<Vec<NameToResolve>> = (0..batches)
        .map(|b| queries(size, BATCH as u64, 100 + b))
        .collect();
    timed(&mut pair[..], &batches, async |pair, names| {
        let answers = resolve_batch_on(pair, names, Thresholds::default()).await?;
        anyhow::ensure!(answers.len() == names.len(), "a batch lost answers");
        Ok(())
    })
    .await
    .context("resolve.batch_1000_x2")
}

/// Slope of log y over log x between two points: 0 flat, 1 linear, 0.5 square root.
pub fn growth_exponent((x0, y0): (f64, f64), (x1, y1): (f64, f64)) -> f64 {
    (y1 / y0).ln() / (x1 / x0).ln()
}

fn growth(rows: &[Row]) -> Vec<Growth> {
    let mut out = Vec::new();
    for pair in rows.iter().enumerate().flat_map(|(i, a)| {
        rows[i + 1..]
            .iter()
            .find(|b| b.case == a.case && b.index == a.index)
            .map(|b| (a, b))
    }) {
        let (a, b) = pair;
        out.push(Growth {
            case: a.case,
            index: a.index,
            from: a.size,
            to: b.size,
            exponent: growth_exponent(
                (a.size as f64, a.summary.p50_us),
                (b.size as f64, b.summary.p50_us),
            ),
        });
    }
    out
}

fn markdown(r: &Report) -> String {
    let mut s = String::from(
        "\n| Entities | Index | Case | p50 | p95 | p99 | per s |\n|---:|---|---|---:|---:|---:|---:|\n",
    );
    for row in &r.rows {
        let m = &row.summary;
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} |\n",
            row.size,
            row.index.as_str(),
            row.case,
            Ms::of_us(m.p50_us),
            Ms::of_us(m.p95_us),
            Ms::of_us(m.p99_us),
            m.throughput_per_s
        );
    }
    s += "\nGrowth exponent of p50 (0 flat, 1 linear):\n\n| Case | Index | From | To | Exponent |\n|---|---|---:|---:|---:|\n";
    for g in &r.growth {
        s += &format!(
            "| {} | {} | {} | {} | {:.2} |\n",
            g.case,
            g.index.as_str(),
            g.from,
            g.to,
            g.exponent
        );
    }
    s += "\nLoads (COPY path) and the client's peak RSS above its start:\n\n| Entities | Aliases | COPY s | Indexes s | Peak RSS growth MiB |\n|---:|---:|---:|---:|---:|\n";
    for l in &r.loads {
        s += &format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |\n",
            l.size, l.aliases, l.copy_s, l.index_s, l.peak_rss_growth_mib
        );
    }
    s
}

fn plot(path: &Path, r: &Report) -> Result<(), String> {
    let mut series: Vec<Series> = Vec::new();
    for row in &r.rows {
        let name = format!("{} ({}) p95", row.case, row.index.as_str());
        let point = (row.size as f64, ms_of_us(row.summary.p95_us));
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push(point),
            None => series.push(Series {
                name,
                points: vec![point],
            }),
        }
    }
    let chart = Chart {
        title: "p95 latency against entities (database side)",
        x_desc: "entities",
        y_desc: "p95 latency, ms",
        log_log: true,
    };
    line_chart(path, &chart, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_k_and_m_suffixes() {
        assert_eq!(parse_count("1k"), Ok(1_000));
        assert_eq!(parse_count("1M"), Ok(1_000_000));
        assert_eq!(parse_count("2500"), Ok(2_500));
        for bad in ["", "k", "0", "1x", "-1k", "200m"] {
            let err = parse_count(bad).unwrap_err();
            assert!(err.contains("entity count"), "{bad}: {err}");
        }
    }

    #[test]
    fn growth_exponents_read_flat_sqrt_and_linear() {
        let e = |y1: f64| growth_exponent((1_000.0, 2.0), (1_000_000.0, y1));
        assert!(e(2.0).abs() < 1e-12);
        assert!((e(2_000.0) - 1.0).abs() < 1e-12);
        assert!((e(2.0 * 1_000f64.sqrt()) - 0.5).abs() < 1e-12);
    }
}
