//! The loop that `pgperf run` and the suite's timed tests share: seed a database, read the
//! server's version, make the guard, time the set-up, then check each case.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Case, case_names, observe, seed};
use crate::db::Db;
use crate::perf::baseline::{CaseName, Environment};
use crate::perf::calibrate::{self, RecentBursts};
use crate::perf::report::CaseReport;
use crate::perf::{CaseFailure, Guard, PerfError};

/// How long the server may take to answer `SELECT 1` after a case failed with an error: if
/// it does not, it is gone (paused, stopped) and the remaining cases are not run.
const ALIVE_LIMIT: Duration = Duration::from_secs(5);

/// A seeded database and the guard holding its cases to a baseline file.
#[derive(Debug)]
pub struct Prepared {
    /// The guard.
    pub guard: Guard,
    /// Notes on set-up steps far slower than recorded (see [`Guard::judge_setup`]).
    pub notes: Vec<String>,
}

/// Seeds `db`, reads the server's major version, and makes the guard for `baseline` (mode and
/// slowdowns from `settings`; a slowdown naming no case is refused here, before any
/// measurement).
pub async fn prepare(
    db: &Db,
    baseline: impl Into<PathBuf>,
    settings: &crate::Settings,
) -> Result<Prepared, PerfError> {
    let baseline = baseline.into();
    prepare_with(db, |environment| {
        Ok(Guard::with_settings(baseline, environment, settings))
    })
    .await
}

/// Like [`prepare`], with the guard made by `guard` for the server's environment.
pub async fn prepare_with(
    db: &Db,
    guard: impl FnOnce(Environment) -> Result<Guard, PerfError>,
) -> Result<Prepared, PerfError> {
    let steps = seed(db).await?;
    let mut conn = db.acquire().await?;
    let environment = db.bounded(calibrate::environment(&mut conn)).await?;
    drop(conn);
    let guard = guard(environment)?;
    guard.check_slowed_cases(&case_names())?;
    let notes = guard.judge_setup(&steps)?;
    Ok(Prepared { guard, notes })
}

/// What checking the cases gave.
#[derive(Debug, Default)]
pub struct Outcome {
    /// A report per measured case, failed ones included.
    pub reports: Vec<CaseReport>,
    /// Every case that failed, and why.
    pub failures: Vec<CaseFailure>,
    /// Cases not run because the server stopped answering.
    pub not_run: Vec<CaseName>,
}

/// How long [`settle`] may take: merging after the write cases takes well under a second.
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Merges the GIN indexes' pending entries before a case, so every case starts from the
/// state the seed leaves: the entity writes of earlier cases (thousands of inserts) otherwise
/// sit in pending lists that every later search reads in full (release `pgperf run`:
/// `search.uncached` 5.9 ms after the write cases, 1.5 ms in a fresh database). A failure
/// only costs that hygiene, and is logged.
pub async fn settle(db: &Db) {
    let merge = async {
        let mut c = db.acquire().await?;
        crate::db::ingest::merge_pending_entries(&mut c).await
    };
    // Short: a server that does not answer is the next step's to report, within its own
    // limit; this hygiene must not add a long wait of its own (a frozen server once took
    // 50 s instead of 35 s to be reported with 15 s here).
    match tokio::time::timeout(SETTLE_LIMIT, merge).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("merging GIN pending entries before a case failed: {e}"),
        Err(_) => tracing::warn!(
            "merging GIN pending entries before a case took over {} s",
            SETTLE_LIMIT.as_secs()
        ),
    }
}

/// Checks each case in turn, each after [`settle`]; `progress` is told when a case starts
/// (its index) and when it ends (with how long it took). After a case fails with an error (not a regression), the
/// server must answer `SELECT 1` within [`ALIVE_LIMIT`], or the remaining cases are not run.
pub async fn check_cases(
    db: &Db,
    guard: &Guard,
    cases: &[Case],
    recent: &RecentBursts,
    mut progress: impl FnMut(usize, &Case, Option<Duration>),
) -> Outcome {
    let mut out = Outcome::default();
    for (i, case) in cases.iter().enumerate() {
        progress(i, case, None);
        settle(db).await;
        let started = Instant::now();
        let slowdown = guard.slowdown_for(&case.name);
        let tasks = case.config.concurrency as u32;
        let checked = guard
            .check(&case.name, case.bound, tasks, || {
                observe(db, case, slowdown, recent)
            })
            .await;
        progress(i, case, Some(started.elapsed()));
        out.reports.extend(checked.report);
        let Some(failure) = checked.failure else {
            continue;
        };
        let errored = !failure.is_breach();
        out.failures.push(failure);
        if errored && !answers(db).await {
            out.not_run = cases[i + 1..].iter().map(|c| c.name.clone()).collect();
            break;
        }
    }
    out
}

/// Whether the server answers a `SELECT 1` on a new connection within [`ALIVE_LIMIT`].
async fn answers(db: &Db) -> bool {
    let probe = async {
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&db.url().connect_options())
                .await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        sqlx::Connection::close(conn).await
    };
    matches!(tokio::time::timeout(ALIVE_LIMIT, probe).await, Ok(Ok(())))
}

impl Outcome {
    /// Every failure, one per line, then the cases not run: the text of a failed run.
    pub fn failure_text(&self) -> String {
        let mut text = format!(
            "{} case(s) failed:\n- {}",
            self.failures.len(),
            self.failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n- ")
        );
        if !self.not_run.is_empty() {
            text.push_str(&format!(
                "\nthe server stopped answering, so {} case(s) were not run: {}",
                self.not_run.len(),
                self.not_run
                    .iter()
                    .map(CaseName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        text
    }

    /// Whether every failure is a regression (and every case ran).
    pub fn only_regressions(&self) -> bool {
        self.not_run.is_empty() && self.failures.iter().all(CaseFailure::is_breach)
    }
}
