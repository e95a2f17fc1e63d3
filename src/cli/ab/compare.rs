//! The paired run itself: per case a pilot batch on each side, then rounds in ABBA order,
//! then a counting pass on each side; the rounds give the estimate, the counts the counter
//! check.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

use pgperf::perf::Summary;
use pgperf::perf::baseline::{Bound, CounterBreach, first_counter_breach};
use pgperf::perf::counters::Counted;
use pgperf::perf::paired::{self, Change, Estimate, Round, Rule};
use pgperf::scenarios::{self, AREAS, Case};

use super::build::{Revision, git};
use super::protocol::{Reply, Request};
use super::side::Side;

/// How a paired run goes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The verdict rule.
    pub rule: Rule,
    /// Rounds per case.
    pub rounds: u32,
    /// Target time of one batch.
    pub batch: Duration,
    /// Only cases whose name contains this.
    pub filter: Option<String>,
    /// Cases whose slowdown is intended.
    pub accepted: Vec<String>,
}

/// What the paired run found for one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case.
    pub case: String,
    /// Operations per batch.
    pub batch_iterations: u64,
    /// The rounds (µs per side).
    pub rounds: Vec<Round>,
    /// Head / base with its interval and verdict (none when too few rounds were usable).
    pub estimate: Option<Estimate>,
    /// The base's and the head's counts.
    pub counted: (Counted, Counted),
    /// The first counter of the head above the base's bound.
    pub counter_breach: Option<CounterBreach>,
    /// Whether a slowdown of this case is accepted.
    pub accepted: bool,
}

impl CaseResult {
    /// The median of the base's rounds, µs.
    pub fn base_us(&self) -> f64 {
        paired::side_median(&self.rounds, |r| r.base_us)
    }

    /// The median of the head's rounds, µs.
    pub fn head_us(&self) -> f64 {
        paired::side_median(&self.rounds, |r| r.head_us)
    }

    /// Whether the head is slower with confidence.
    pub fn slower(&self) -> bool {
        self.estimate.is_some_and(|e| e.change == Change::Slower)
    }

    /// Whether this case fails the run.
    pub fn fails(&self) -> bool {
        !self.accepted && (self.slower() || self.counter_breach.is_some())
    }
}

/// Cases named in `Perf-accepted:` trailers of the commits after `base` up to HEAD.
pub fn accepted_in_commits(repo: &Path, base: &Revision) -> Vec<String> {
    let range = format!("{}..HEAD", base.sha);
    let format = "--format=%(trailers:key=Perf-accepted,valueonly,separator=%x0A)";
    git(repo, &["log", format, &range])
        .map(|text| {
            text.lines()
                .flat_map(|l| l.split([',', ' ']))
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The figure a batch gives: its p50, or for several tasks their mean latency (tasks /
/// throughput), as the single-run guard judges.
fn figure(case: &Case, s: &Summary) -> f64 {
    let tasks = case.config.concurrency.max(1) as f64;
    if tasks > 1.0 && s.throughput_per_s > 0.0 {
        tasks * 1e6 / s.throughput_per_s
    } else {
        s.p50_us
    }
}

async fn batch(
    side: &mut Side,
    case: &Case,
    iterations: u64,
    warmup: u64,
) -> anyhow::Result<Summary> {
    let request = Request::Measure {
        case: case.name.to_string(),
        iterations,
        warmup,
    };
    match side.ask(&request).await? {
        Reply::Measured(s) => Ok(s),
        other => bail!("{} side: unexpected reply {other:?}", side.label),
    }
}

async fn count(side: &mut Side, case: &Case) -> anyhow::Result<Counted> {
    match side
        .ask(&Request::Count {
            case: case.name.to_string(),
        })
        .await?
    {
        Reply::Counted(c) => Ok(c),
        other => bail!("{} side: unexpected reply {other:?}", side.label),
    }
}

/// Operations per batch: about `plan.batch` of the slower side's pilot, at least 3, at
/// most the case's own iteration count.
fn batch_size(case: &Case, plan: &Plan, pilots: [&Summary; 2]) -> u64 {
    let tasks = case.config.concurrency.max(1) as f64;
    let per_op_us = pilots.iter().map(|s| s.mean_us / tasks).fold(1.0, f64::max);
    let n = (plan.batch.as_secs_f64() * 1e6 / per_op_us) as u64;
    n.clamp(3, case.config.iterations.max(3))
}

async fn compare_case(
    base: &mut Side,
    head: &mut Side,
    case: &Case,
    plan: &Plan,
) -> anyhow::Result<CaseResult> {
    let pilot_n = (case.config.iterations / 10).clamp(3, 100);
    let warm = case.config.warmup_iterations;
    let pilots = [
        batch(base, case, pilot_n, warm).await?,
        batch(head, case, pilot_n, warm).await?,
    ];
    let n = batch_size(case, plan, [&pilots[0], &pilots[1]]);
    let warmup = (n / 10).clamp(2, warm.max(2));
    let mut rounds = Vec::with_capacity(plan.rounds as usize);
    for r in 0..plan.rounds {
        let (b, h) = if r % 2 == 0 {
            let b = batch(base, case, n, warmup).await?;
            (b, batch(head, case, n, warmup).await?)
        } else {
            let h = batch(head, case, n, warmup).await?;
            (batch(base, case, n, warmup).await?, h)
        };
        rounds.push(Round {
            base_us: figure(case, &b),
            head_us: figure(case, &h),
        });
    }
    let counted = (count(base, case).await?, count(head, case).await?);
    let counter_breach = counted
        .0
        .counters
        .zip(counted.1.counters)
        .and_then(|(then, now)| first_counter_breach(&then, &now, Bound::default().counter_ratio));
    Ok(CaseResult {
        case: case.name.to_string(),
        batch_iterations: n,
        estimate: paired::estimate(&rounds, &plan.rule),
        rounds,
        counted,
        counter_breach,
        accepted: plan.accepted.iter().any(|a| a == case.name.as_str()),
    })
}

/// The head's cases that the filter selects and the base knows (the others are named on
/// standard error: a new case has nothing to be compared with).
fn selected(base: &Side, head: &Side, plan: &Plan) -> anyhow::Result<Vec<Case>> {
    let cases: Vec<Case> = AREAS
        .iter()
        .flat_map(|a| scenarios::cases(*a))
        .filter(|c| {
            plan.filter
                .as_deref()
                .is_none_or(|f| c.name.as_str().contains(f))
        })
        .filter(|c| head.cases.iter().any(|h| h == c.name.as_str()))
        .collect();
    let (known, new): (Vec<_>, Vec<_>) = cases
        .into_iter()
        .partition(|c| base.cases.iter().any(|b| b == c.name.as_str()));
    for c in &new {
        eprintln!(
            "pgperf ab: {} is new (the base has no such case): not compared",
            c.name
        );
    }
    if known.is_empty() {
        return Err(super::Failure::Usage(format!(
            "--filter {:?} selects no case that both builds have",
            plan.filter.as_deref().unwrap_or_default()
        ))
        .into());
    }
    Ok(known)
}

/// Prepares both sides, compares every selected case, and stops both workers.
pub async fn run_all(
    mut base: Side,
    mut head: Side,
    plan: &Plan,
) -> anyhow::Result<Vec<CaseResult>> {
    let result = async {
        let cases = selected(&base, &head, plan)?;
        eprintln!("pgperf ab: seeding a database for each side ...");
        let (b, h) = tokio::join!(base.ask(&Request::Prepare), head.ask(&Request::Prepare));
        let (_, _) = (b?, h?);
        let mut results = Vec::with_capacity(cases.len());
        for (i, case) in cases.iter().enumerate() {
            let started = std::time::Instant::now();
            let r = compare_case(&mut base, &mut head, case, plan).await?;
            eprintln!(
                "pgperf ab: [{:>2}/{}] {:<30} {}  {:>5.1} s",
                i + 1,
                cases.len(),
                case.name.as_str(),
                super::report::verdict_text(&r),
                started.elapsed().as_secs_f64()
            );
            results.push(r);
        }
        Ok(results)
    }
    .await;
    tokio::join!(base.quit(), head.quit());
    result
}
