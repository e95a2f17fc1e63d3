//! `pgperf run`: the main job. Runs every scenario as a benchmark, compares each with the
//! baseline, prints the report and writes the result files.

use std::path::PathBuf;

use pgperf::perf::baseline::Environment;
use pgperf::perf::calibrate::RecentBursts;
use pgperf::perf::{PerfError, report};
use pgperf::scenarios::{self, AREAS, suite};

use super::{Failure, place_for_timing, with_workspace};
use pgperf_testbed::placement::WhenBusy;

/// Options of `pgperf run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Baseline file to compare with (default: baselines/bench-<profile>.json).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Directory for results.json, summary.md and benchmark.json.
    #[arg(long, default_value = "target/pgperf")]
    pub results: PathBuf,
    /// Only cases whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
}

/// Runs the scenarios; fails when any case regressed (after printing the whole report).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let profile = Environment::current_profile();
    let baseline = args
        .baseline
        .unwrap_or_else(|| PathBuf::from(format!("baselines/bench-{profile}.json")));
    let cases = selected(args.filter.as_deref())?;
    let settings = pgperf_harness::Settings::from_env()?;
    let outcome = with_workspace("bench", async |ws| {
        let db = ws.pool(scenarios::pool_settings()).await?;
        eprintln!("pgperf: seeding {} entities ...", scenarios::seed::ENTITIES);
        let prepared = suite::prepare(&db, &baseline, &settings)
            .await
            .map_err(|e| match e {
                e @ PerfError::UnknownSlowdownCase { .. } => Failure::Usage(e.to_string()).into(),
                e => anyhow::Error::new(e),
            })?;
        for note in &prepared.notes {
            eprintln!("pgperf: note: {note}");
        }
        let _placed = place_for_timing(&ws.server, &ws.testbed, WhenBusy::StayAsIs)?;
        let recent = RecentBursts::default();
        let outcome =
            suite::check_cases(
                &db,
                &prepared.guard,
                &cases,
                &recent,
                |i, case, took| match took {
                    None => eprint!(
                        "pgperf: [{:>2}/{}] {:<32}",
                        i + 1,
                        cases.len(),
                        case.name.as_str()
                    ),
                    Some(t) => eprintln!(" {:>5.1} s", t.as_secs_f64()),
                },
            )
            .await;
        print_pool(&db);
        db.close().await;
        Ok((outcome, prepared.notes))
    })
    .await;
    let (outcome, notes) = outcome?;
    publish(&outcome, &args.results, &baseline, settings.ci)?;
    verdict(outcome, notes)
}

/// Prints the report (with CI's annotations when `ci`) and writes the result files.
fn publish(
    outcome: &suite::Outcome,
    results: &std::path::Path,
    baseline: &std::path::Path,
    ci: bool,
) -> anyhow::Result<()> {
    println!("{}", report::table(&outcome.reports));
    if let Some(annotation) = report::unjudged_annotations(&outcome.reports)
        && ci
    {
        println!("{annotation}");
    }
    report::write_all(results, "pgperf benchmark", &outcome.reports)?;
    println!(
        "results: {}/{{results.json,summary.md,benchmark.json}}; baseline: {}",
        results.display(),
        baseline.display()
    );
    Ok(())
}

/// Passes, or fails naming every failed case (only regressions exit 1; any other failure 3).
fn verdict(outcome: suite::Outcome, notes: Vec<String>) -> anyhow::Result<()> {
    if outcome.failures.is_empty() {
        return Ok(());
    }
    let mut text = outcome.failure_text();
    for note in notes {
        text.push_str(&format!("\n{note}"));
    }
    if outcome.only_regressions() {
        Err(Failure::Regressed(text).into())
    } else {
        Err(anyhow::anyhow!(text))
    }
}

/// The cases whose name contains `filter` (all without one); a filter matching none is a
/// usage error listing the cases.
fn selected(filter: Option<&str>) -> Result<Vec<scenarios::Case>, Failure> {
    let cases: Vec<_> = AREAS
        .iter()
        .flat_map(|a| scenarios::cases(*a))
        .filter(|c| filter.is_none_or(|f| c.name.as_str().contains(f)))
        .collect();
    if cases.is_empty() {
        return Err(Failure::Usage(format!(
            "--filter {:?} matches no case; the cases are: {}",
            filter.unwrap_or_default(),
            scenarios::case_names()
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(cases)
}

fn print_pool(db: &pgperf::db::Db) {
    let pool = db.snapshot();
    eprintln!(
        "pgperf: pool: {} max, {} opened, {} closed, {} acquires, acquire p50 {} µs p99 {} µs, \
         peak waiters {}, timeouts {}",
        pool.max_connections,
        pool.created,
        pool.closed,
        pool.acquired,
        pool.acquire_time.p50_us,
        pool.acquire_time.p99_us,
        pool.peak_waiting,
        pool.acquire_timeouts
    );
}
