//! The scenarios: the operations the suite times and the CLI benchmarks, defined once so that
//! both measure exactly the same thing. A [`Case`] names an operation, how to measure it and
//! the bound a new baseline gets; [`observe`] measures it (calibration first) on a database
//! that [`seed`] prepared.

mod ops;
pub mod plans;
pub mod seed;
pub mod suite;

use std::time::Duration;

use crate::db::{Db, DbError};
use crate::perf::baseline::{Bound, CaseName, Observation};
use crate::perf::calibrate::RecentBursts;
use crate::perf::counters::{self, Availability, Counted};
use crate::perf::stats::process_cpu_time;
use crate::perf::wire::Relay;
use crate::perf::{MeasureConfig, Measurement, PerfError, Slowdown, calibrate};

pub use ops::Op;
pub use seed::{SEED, seed};

/// One timed case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its name in baselines and reports.
    pub name: CaseName,
    /// What it does.
    pub op: Op,
    /// How long and how wide.
    pub config: MeasureConfig,
    /// The bound a first recording gets.
    pub bound: Bound,
}

/// The area a case belongs to; the suite runs one area per test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Round trips and primary-key lookups.
    Lookups,
    /// Entity CRUD and listing.
    Crud,
    /// Units of work.
    Transactions,
    /// Bulk ingestion.
    Ingest,
    /// Pool acquisition.
    Pool,
    /// Search (uncached and cached) and entity resolution.
    Search,
}

fn case(name: &str, op: Op, iterations: u64, concurrency: usize, ceiling_ms: Option<f64>) -> Case {
    let warmup = (iterations / 10).clamp(3, 200);
    Case {
        name: CaseName::new(name).expect("scenario names are valid"),
        op,
        config: MeasureConfig {
            warmup_iterations: warmup,
            iterations,
            max_duration: Duration::from_secs(20),
            concurrency,
            ..MeasureConfig::default()
        },
        bound: Bound {
            p95_ceiling_us: ceiling_ms.map(|ms| ms * 1_000.0),
            ..Bound::default()
        },
    }
}

/// The cases of an area. Every case of a database query has a k6-style p95 ceiling of 1 s:
/// whatever the ratio says, a query that slow is broken.
pub fn cases(area: Area) -> Vec<Case> {
    let query = Some(1_000.0);
    match area {
        Area::Lookups => vec![
            case("lookup.select_1", Op::SelectOne, 2_000, 1, query),
            case("lookup.entity_by_id", Op::EntityById, 2_000, 1, query),
            case("lookup.entity_by_id_c4", Op::EntityById, 4_000, 4, query),
            case("lookup.trigram_search", Op::TrigramSearch, 200, 1, query),
        ],
        Area::Crud => vec![
            case("crud.create_entity", Op::CreateEntity, 1_000, 1, query),
            case("crud.update_entity", Op::UpdateEntity, 1_000, 1, query),
            case("crud.list_page", Op::ListPage, 1_000, 1, query),
            case("crud.get_many_50", Op::GetMany, 1_000, 1, query),
        ],
        Area::Transactions => vec![
            case(
                "tx.commit_entity_with_aliases",
                Op::CommitUnit,
                500,
                1,
                query,
            ),
            case("tx.rollback_unit", Op::RollbackUnit, 500, 1, query),
        ],
        Area::Ingest => vec![
            case("ingest.copy_1k", Op::Copy1k, 30, 1, Some(5_000.0)),
            case("ingest.upsert_1k", Op::Upsert1k, 30, 1, Some(5_000.0)),
            case("ingest.unnest_1k", Op::Unnest1k, 30, 1, Some(5_000.0)),
        ],
        // Uncached search and resolution take milliseconds each on the seeded 20 000
        // entities (the trigram candidates' similarity dominates): few iterations suffice.
        Area::Search => vec![
            case("search.uncached", Op::Search, 30, 1, query),
            case("search.cached", Op::SearchCached, 2_000, 1, query),
            case("resolve.one", Op::ResolveOne, 30, 1, query),
            case("resolve.batch_10", Op::ResolveBatch10, 10, 1, Some(5_000.0)),
            case("resolve.score_200", Op::ScoreNames, 1_000, 1, query),
            case("http.search_cached", Op::HttpSearchCached, 2_000, 1, query),
            case("http.search_uncached", Op::HttpSearchUncached, 30, 1, query),
        ],
        Area::Pool => vec![
            case("pool.acquire_idle", Op::AcquireIdle, 2_000, 1, query),
            case(
                "pool.acquire_contended_4x",
                Op::AcquireContended,
                4_000,
                4,
                query,
            ),
            case(
                "pool.acquire_new_connection",
                Op::AcquireNewConnection,
                200,
                1,
                query,
            ),
        ],
    }
}

/// Pool settings the scenarios run with: 4 connections, one per task of
/// `lookup.entity_by_id_c4`. (The pool cases run on pools of one connection of their own.)
pub fn pool_settings() -> crate::db::PoolSettings {
    crate::db::PoolSettings {
        max_connections: 4,
        min_connections: 1,
        application_name: "pgperf-bench".to_owned(),
        ..crate::db::PoolSettings::default()
    }
}

/// The name of every case of every area.
pub fn case_names() -> Vec<CaseName> {
    AREAS
        .iter()
        .flat_map(|a| cases(*a))
        .map(|c| c.name)
        .collect()
}

/// Every area, in the order the CLI runs them.
pub const AREAS: [Area; 6] = [
    Area::Lookups,
    Area::Crud,
    Area::Transactions,
    Area::Ingest,
    Area::Pool,
    Area::Search,
];

/// How long a step around the measurement (a calibration, a counter snapshot, connecting)
/// may take: each is a few queries, so this only passes when the server stopped answering.
const STEP_LIMIT: Duration = Duration::from_secs(15);

/// Runs a step of [`observe`] or [`count`] under [`STEP_LIMIT`].
async fn step<T, E>(
    case: &Case,
    step: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, PerfError>
where
    PerfError: From<E>,
{
    within(case, step, STEP_LIMIT, work).await
}

async fn within<T, E>(
    case: &Case,
    step: &'static str,
    limit: Duration,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, PerfError>
where
    PerfError: From<E>,
{
    tokio::time::timeout(limit, work)
        .await
        .map(|r| r.map_err(PerfError::from))
        .unwrap_or_else(|_| {
            Err(PerfError::Stalled {
                case: case.name.clone(),
                step,
                after: limit,
            })
        })
}

/// The most a measurement of `config` can take when every operation answers: its recorded
/// phase, twice (warm-up), plus the set-up steps. Operations that do not answer fail sooner,
/// by `op_timeout`.
fn measuring_limit(config: &MeasureConfig) -> Duration {
    config.max_duration * 2 + STEP_LIMIT
}

/// Measures `case` on `db` (seeded by [`seed`]) between two calibrations of the references
/// (the median of their bursts and of the `recent` bursts of the cases measured before it, so
/// a machine that changes speed is accounted for and one disturbed burst is not), then counts
/// its per-operation costs in a short counting pass ([`count`]). Every step is bounded:
/// operations by the case's `op_timeout`, the rest by [`STEP_LIMIT`].
pub async fn observe(
    db: &Db,
    case: &Case,
    slowdown: Option<Slowdown>,
    recent: &RecentBursts,
) -> Result<Observation, PerfError> {
    slowable(case, slowdown)?;
    let mut probe = step(case, "connecting", connect_direct(db)).await?;
    let mut bursts = step(case, "calibrating", calibrate::bursts(db)).await?;
    let at_start = async {
        let server = counters::backends_cpu_us(&mut probe).await;
        (process_cpu_time(), server)
    };
    let measured = ops::run(
        db,
        case,
        slowdown,
        tokio::time::timeout(STEP_LIMIT, at_start),
    );
    let limit = measuring_limit(&case.config);
    let (m, started_with) = within(case, "measuring", limit, measured).await?;
    if m.summary.errors > 0 {
        return Err(operation_failed(case, &m));
    }
    let (client_at_start, server_at_start) = started_with.map_err(|_| PerfError::Stalled {
        case: case.name.clone(),
        step: "reading the server's CPU time",
        after: STEP_LIMIT,
    })?;
    let client_cpu = process_cpu_time().saturating_sub(client_at_start);
    let server_after = step(case, "reading the server's CPU time", async {
        Ok::<_, PerfError>(counters::backends_cpu_us(&mut probe).await)
    });
    let server_cpu = server_at_start
        .zip(server_after.await?)
        .map(|(before, after)| (after - before).max(0.0));
    let _ = tokio::time::timeout(STEP_LIMIT, sqlx::Connection::close(probe)).await;
    bursts.extend(step(case, "calibrating", calibrate::bursts(db)).await?);
    let references = recent
        .references(std::time::Instant::now(), &bursts)
        .expect("calibrations give bursts");
    let ops = m.summary.count.max(1) as f64;
    Ok(Observation {
        summary: m.summary,
        references,
        counted: count(db, case).await?,
        client_cpu_us: client_cpu.as_secs_f64() * 1e6 / ops,
        server_cpu_us: server_cpu.map(|us| us / ops),
    })
}

/// Measures one batch of `case`: `iterations` recorded operations after `warmup` per task,
/// with no calibration and no counting, slowed by `slowdown` if given. The paired comparison
/// of two builds (`pgperf ab`) alternates such batches between its sides.
pub async fn sample(
    db: &Db,
    case: &Case,
    (iterations, warmup): (u64, u64),
    slowdown: Option<Slowdown>,
) -> Result<Measurement, PerfError> {
    slowable(case, slowdown)?;
    let batch = Case {
        config: case.config.iterations(iterations).warmup(warmup),
        ..case.clone()
    };
    let limit = measuring_limit(&batch.config);
    let (m, ()) = within(
        case,
        "measuring",
        limit,
        ops::run(db, &batch, slowdown, async {}),
    )
    .await?;
    if m.summary.errors > 0 {
        return Err(operation_failed(case, &m));
    }
    Ok(m)
}

/// A slowdown holds its task's thread while it waits: only a case with one task can take one.
fn slowable(case: &Case, slowdown: Option<Slowdown>) -> Result<(), PerfError> {
    if slowdown.is_some() && case.config.concurrency > 1 {
        return Err(PerfError::SlowdownNeedsOneTask {
            var: crate::perf::guard::SLOWDOWN_VAR,
            case: case.name.clone(),
            tasks: case.config.concurrency,
        });
    }
    Ok(())
}

fn operation_failed(case: &Case, m: &Measurement) -> PerfError {
    PerfError::Operation {
        case: case.name.clone(),
        errors: m.summary.errors,
        first_error: m.first_error.clone().unwrap_or_default(),
    }
}

/// Operations in a counting pass: enough for stable averages, a fraction of the timed run.
fn counting_config(case: &Case) -> MeasureConfig {
    MeasureConfig {
        iterations: (case.config.iterations / 5).clamp(5, 200),
        warmup_iterations: case.config.warmup_iterations.min(20),
        ..case.config
    }
}

/// Counts `case`'s per-operation costs: it runs the operation again, through a
/// [`Relay`](crate::perf::wire::Relay) that counts round trips, between two snapshots of
/// `pg_stat_statements` taken on a direct connection. Without `pg_stat_statements` only round
/// trips are counted.
pub async fn count(db: &Db, case: &Case) -> Result<Counted, PerfError> {
    let relay =
        Relay::start(&db.url().host_port(), Duration::ZERO).map_err(|source| PerfError::Relay {
            target: db.url().host_port(),
            source,
        })?;
    let relayed = db.url().via("127.0.0.1", relay.port())?;
    let mut stats = step(case, "connecting", connect_direct(db)).await?;
    let enabled = step(case, "enabling pg_stat_statements", async {
        Ok::<_, PerfError>(counters::enable(&mut stats).await)
    });
    let available = enabled.await? == Availability::Available;
    let counting = step(
        case,
        "connecting",
        Db::connect(&relayed, db.settings().clone()),
    )
    .await?;
    let case_here = Case {
        config: counting_config(case),
        ..case.clone()
    };
    let at_start = async {
        relay.reset();
        snapshot_if(available, &mut stats).await
    };
    let measured = ops::run(&counting, &case_here, None, at_start);
    let outcome = within(
        case,
        "counting",
        measuring_limit(&case_here.config),
        measured,
    )
    .await;
    let turns = relay.turns();
    counting.close().await;
    let (m, before) = outcome?;
    if m.summary.errors > 0 {
        return Err(operation_failed(case, &m));
    }
    let after = step(case, "reading pg_stat_statements", async {
        Ok::<_, PerfError>(snapshot_if(available, &mut stats).await)
    });
    let after = after.await?;
    let _ = tokio::time::timeout(STEP_LIMIT, sqlx::Connection::close(stats)).await;
    Ok(Counted::from_totals(before, after, turns, m.summary.count))
}

/// A connection of its own to the case's database, outside the pool (and any relay).
async fn connect_direct(db: &Db) -> Result<sqlx::PgConnection, DbError> {
    <sqlx::PgConnection as sqlx::Connection>::connect_with(&db.url().connect_options())
        .await
        .map_err(|source| DbError::Connect {
            target: db.url().to_string(),
            source,
        })
}

async fn snapshot_if(available: bool, conn: &mut sqlx::PgConnection) -> Option<counters::Totals> {
    if available {
        counters::snapshot(conn).await.ok()
    } else {
        None
    }
}
