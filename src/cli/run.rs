//! `pgperf run`: the main job. Runs every scenario as a benchmark, compares each with the
//! baseline, prints the report and writes the result files.

use std::path::PathBuf;
use std::time::Instant;

use pgperf::perf::baseline::Environment;
use pgperf::perf::report::{self, CaseReport};
use pgperf::perf::{Guard, PerfError, calibrate};
use pgperf::scenarios::{self, AREAS};

use super::{Failure, with_workspace};

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
    let cases: Vec<_> = AREAS
        .iter()
        .flat_map(|a| scenarios::cases(*a))
        .filter(|c| {
            args.filter
                .as_deref()
                .is_none_or(|f| c.name.as_str().contains(f))
        })
        .collect();
    if cases.is_empty() {
        return Err(Failure::Usage(format!(
            "--filter {:?} matches no case; the cases are: {}",
            args.filter.unwrap_or_default(),
            scenarios::case_names()
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    let (reports, failures) = with_workspace("bench", async |ws| {
        let db = ws.pool(scenarios::pool_settings()).await?;
        eprintln!("pgperf: seeding {} entities ...", scenarios::seed::ENTITIES);
        scenarios::seed(&db).await?;
        let mut conn = db.acquire().await?;
        let major = calibrate::postgres_major(&mut conn).await?;
        drop(conn);
        let guard = Guard::from_env(&baseline, Environment { postgres_major: major, profile: profile.to_owned() })?;
        guard
            .check_slowed_cases(&scenarios::case_names())
            .map_err(|e| Failure::Usage(e.to_string()))?;
        let (mut reports, mut failures): (Vec<CaseReport>, Vec<PerfError>) = (Vec::new(), Vec::new());
        for (i, case) in cases.iter().enumerate() {
            let started = Instant::now();
            eprint!("pgperf: [{:>2}/{}] {:<32}", i + 1, cases.len(), case.name.as_str());
            let slowdown = guard.slowdown_for(&case.name);
            let checked = guard.check(&case.name, case.bound, case.config.concurrency as u32, || scenarios::observe(&db, case, slowdown)).await;
            eprintln!(" {:>5.1} s", started.elapsed().as_secs_f64());
            reports.extend(checked.report);
            failures.extend(checked.failure);
        }
        let pool = db.snapshot();
        eprintln!(
            "pgperf: pool: {} max, {} opened, {} closed, {} acquires, acquire p50 {} µs p99 {} µs, peak waiters {}, timeouts {}",
            pool.max_connections, pool.created, pool.closed, pool.acquired, pool.acquire_time.p50_us, pool.acquire_time.p99_us, pool.peak_waiting, pool.acquire_timeouts
        );
        db.close().await;
        Ok((reports, failures))
    })
    .await?;

    println!("{}", report::table(&reports));
    report::write_all(&args.results, "pgperf benchmark", &reports)?;
    println!(
        "results: {}/{{results.json,summary.md,benchmark.json}}; baseline: {}",
        args.results.display(),
        baseline.display()
    );
    if failures.is_empty() {
        return Ok(());
    }
    let text = format!(
        "{} case(s) failed:\n- {}",
        failures.len(),
        failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n- ")
    );
    if failures.iter().all(PerfError::is_regression) {
        Err(Failure::Regressed(text).into())
    } else {
        Err(anyhow::anyhow!(text))
    }
}
