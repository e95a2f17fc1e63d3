//! A run's verdict and its files: the summary (JSON), the report (Markdown, fits a CI job
//! summary) and the plots (SVG).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use pgperf::db::latency::{self, Ms};
use pgperf::perf::plot::{Chart, Series, line_chart};

use super::profile::{Kind, Profile, ProfileName, Shape, Step};
use super::record::{ErrorCause, ErrorCount, KindSummary, Recorder, Sample, correlation};
use super::thresholds::LoadThresholds;

/// A stress step judged.
#[derive(Debug, Clone, Serialize)]
pub struct StepVerdict {
    /// The step's index.
    pub index: usize,
    /// Its scheduled rate.
    pub rate: f64,
    /// Responses per second achieved.
    pub achieved_per_s: f64,
    /// Cached search p50, ms.
    pub cached_p50_ms: f64,
    /// Uncached search p95, ms.
    pub uncached_p95_ms: f64,
    /// Failed over all.
    pub error_rate: f64,
    /// What broke.
    pub breaches: Vec<String>,
}

impl StepVerdict {
    /// One line.
    pub fn summary(&self) -> String {
        format!(
            "{:.0}/s achieved, cached p50 {:.1} ms, uncached p95 {:.1} ms, errors {:.2} %: {}",
            self.achieved_per_s,
            self.cached_p50_ms,
            self.uncached_p95_ms,
            100.0 * self.error_rate,
            if self.breaches.is_empty() {
                "held".to_owned()
            } else {
                format!("BROKE ({})", self.breaches.join("; "))
            }
        )
    }
}

fn totals(kinds: &BTreeMap<Kind, KindSummary>) -> (u64, u64) {
    kinds
        .values()
        .fold((0, 0), |(n, e), k| (n + k.ok + k.errors, e + k.errors))
}

/// What thresholds beyond each kind's latency are judged on: the service's samples (its
/// database p95) and whether the mix expects cache hits.
pub struct Evidence<'a> {
    /// The samples of `/health/database/metrics` over the judged span.
    pub samples: &'a [Sample],
    /// The mix sends popular queries: some searches must be cache hits.
    pub expects_hits: bool,
}

/// The worst database p95 the samples read, or why none could be read.
pub fn db_query_p95(samples: &[Sample]) -> Result<f64, String> {
    let read: Vec<f64> = samples.iter().filter_map(|s| s.query_p95_ms).collect();
    if read.is_empty() {
        let why = samples.iter().find_map(|s| s.gap).map_or_else(
            || "no sample of /health/database/metrics was taken".to_owned(),
            |g| g.to_string(),
        );
        return Err(format!("no metrics sample: {why}"));
    }
    Ok(read.into_iter().fold(0.0, f64::max))
}

/// The thresholds `kinds` and `evidence` break. A threshold whose measure has no sample fails,
/// saying why: missing data never passes.
fn breaches_of(
    kinds: &BTreeMap<Kind, KindSummary>,
    evidence: &Evidence,
    t: &LoadThresholds,
) -> Vec<String> {
    let mut breaches = Vec::new();
    match kinds.get(&Kind::CachedSearch).filter(|c| c.ok > 0) {
        Some(c) if c.p50_ms > t.cached_search.p50_ms => breaches.push(format!(
            "cached search p50 {:.1} ms > {} ms",
            c.p50_ms, t.cached_search.p50_ms
        )),
        None if evidence.expects_hits => breaches.push(
            "cached search p50: no search was a cache hit (x-cache: hit), though the mix sends \
             popular queries"
                .to_owned(),
        ),
        _ => {}
    }
    if let Some(u) = kinds.get(&Kind::UncachedSearch).filter(|u| u.ok > 0)
        && u.p95_ms > t.uncached_search.p95_ms
    {
        breaches.push(format!(
            "uncached search p95 {:.1} ms > {} ms",
            u.p95_ms, t.uncached_search.p95_ms
        ));
    }
    match db_query_p95(evidence.samples) {
        Err(why) => breaches.push(format!("database query p95: {why}")),
        Ok(p95) if p95 > t.database.query_p95_ms => breaches.push(format!(
            "database query p95 {p95:.1} ms > {} ms (the service's own metrics)",
            t.database.query_p95_ms
        )),
        Ok(_) => {}
    }
    breaches
}

/// Judges one stress step by the product thresholds.
pub fn judge_step(
    index: usize,
    step: &Step,
    kinds: &BTreeMap<Kind, KindSummary>,
    evidence: &Evidence,
    t: &LoadThresholds,
) -> StepVerdict {
    let (n, errors) = totals(kinds);
    let achieved = n as f64 / step.secs;
    let cached = kinds.get(&Kind::CachedSearch).map_or(0.0, |k| k.p50_ms);
    let uncached = kinds.get(&Kind::UncachedSearch).map_or(0.0, |k| k.p95_ms);
    let error_rate = if n == 0 {
        0.0
    } else {
        errors as f64 / n as f64
    };
    let mut breaches = breaches_of(kinds, evidence, t);
    if error_rate > t.errors.rate {
        breaches.push(format!(
            "error rate {:.2} % > {:.2} %",
            100.0 * error_rate,
            100.0 * t.errors.rate
        ));
    }
    if achieved < step.rate * t.throughput.min_ratio {
        breaches.push(format!(
            "achieved {achieved:.0}/s < {:.0}/s ({:.0} % of the scheduled {:.0}/s)",
            step.rate * t.throughput.min_ratio,
            100.0 * t.throughput.min_ratio,
            step.rate
        ));
    }
    StepVerdict {
        index,
        rate: step.rate,
        achieved_per_s: achieved,
        cached_p50_ms: cached,
        uncached_p95_ms: uncached,
        error_rate,
        breaches,
    }
}

/// Goose's own count of a request name.
#[derive(Debug, Clone, Serialize)]
pub struct GooseCount {
    /// The name (`search`, `/resolve`, ...).
    pub name: String,
    /// Successes.
    pub success: usize,
    /// Failures.
    pub fail: usize,
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The profile as run.
    pub profile: Profile,
    /// The thresholds it was held to.
    pub thresholds: LoadThresholds,
    /// When it ended (UTC).
    pub finished_at: String,
    /// The commit of the working tree (`git rev-parse --short HEAD`), if any.
    pub commit: Option<String>,
    /// How long it ran, seconds.
    pub seconds: f64,
    /// Figures by request kind (searches by the service's `x-cache`).
    pub kinds: BTreeMap<Kind, KindSummary>,
    /// Every response.
    pub requests: u64,
    /// Failed responses over all.
    pub error_rate: f64,
    /// Responses per second over the run.
    pub achieved_per_s: f64,
    /// Searches per second over the scheduled part of the run.
    pub achieved_searches_per_s: f64,
    /// Requests that started more than 50 ms after they were due.
    pub late_starts: u64,
    /// The worst database p95 the service reported, ms.
    pub db_query_p95_ms: f64,
    /// The most pool connections in use over the maximum.
    pub pool_utilization_max: f64,
    /// Mean waiting acquirers.
    pub pool_waiting_mean: f64,
    /// Correlation of waiting acquirers with the p95 of each second.
    pub corr_waiting_p95: Option<f64>,
    /// Correlation of pool utilization with the p95 of each second.
    pub corr_utilization_p95: Option<f64>,
    /// Whether the pool looks like the bottleneck, in words.
    pub pool_verdict: String,
    /// The errors by request kind and cause, most first.
    pub errors_by_cause: Vec<ErrorCount>,
    /// The cache hit ratio (hits over searches, as the service's `x-cache` says) of the
    /// run, and of each 10 s with searches: (seconds into the run, ratio).
    pub hit_ratio: Option<f64>,
    /// See [`Summary::hit_ratio`].
    pub hit_ratio_by_10s: Vec<(usize, f64)>,
    /// Stress: each step judged, and the highest rate that held every threshold.
    pub steps: Vec<StepVerdict>,
    /// Stress: the breaking point (the highest step rate that met every threshold).
    pub breaking_point_per_s: Option<f64>,
    /// Spike: seconds from the spike's end until latency was back to its level before.
    pub spike_recovery_s: Option<f64>,
    /// Soak: p95 of the first tenth and of the last tenth, ms.
    pub drift_p95_ms: Option<(f64, f64)>,
    /// The service's RSS at the start and the end, MiB (when known).
    pub rss_mib: Option<(f64, f64)>,
    /// Mean service CPU, percent of one core (when known).
    pub cpu_percent_mean: Option<f64>,
    /// Connections the pool opened during the run (churn).
    pub pool_connections_opened: Option<f64>,
    /// Goose's own counts.
    pub goose: Vec<GooseCount>,
    /// The most users goose ran at once.
    pub max_users: Option<usize>,
    /// Figures beyond a threshold that do not fail this profile (the spike's burst).
    pub notes: Vec<String>,
    /// Why the run stopped early, if it did.
    pub stopped_early: Option<String>,
    /// Every threshold broken, with the measured value.
    pub breaches: Vec<String>,
}

fn commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The window of the hit ratio over time, seconds.
const HIT_WINDOW: usize = 10;

/// Hits over searches in `seconds` (none without searches).
fn hit_ratio(seconds: &[super::record::Second]) -> Option<f64> {
    let hits: u64 = seconds.iter().map(super::record::Second::hits).sum();
    let searches: u64 = seconds
        .iter()
        .map(super::record::Second::searches_done)
        .sum();
    (searches > 0).then(|| share(hits, searches))
}

/// [`hit_ratio`] of each `window` seconds that had searches: (its start, the ratio).
fn hit_ratios(seconds: &[super::record::Second], window: usize) -> Vec<(usize, f64)> {
    seconds
        .chunks(window)
        .enumerate()
        .filter_map(|(i, w)| hit_ratio(w).map(|r| (i * window, r)))
        .collect()
}

fn p95_per_second(recorder: &Recorder) -> Vec<f64> {
    recorder
        .seconds()
        .iter()
        .map(|s| latency::quantile_ms(&s.all, 0.95))
        .collect()
}

/// What a load run left behind, to be summarized and judged.
pub struct RunFacts<'a> {
    /// The requests' figures, by kind and by second.
    pub recorder: &'a Recorder,
    /// The service's metrics, sampled once a second.
    pub samples: &'a [Sample],
    /// goose's own counts, when goose ran to its end.
    pub goose: Option<&'a goose::metrics::GooseMetrics>,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
    /// Whether Ctrl-C stopped it.
    pub interrupted: bool,
    /// The verdicts of a stepped profile's steps.
    pub steps: Vec<StepVerdict>,
    /// How long it ran.
    pub seconds: f64,
}

/// Builds the summary and judges it.
pub fn summarize(profile: &Profile, t: &LoadThresholds, run: RunFacts<'_>) -> Summary {
    let kinds = run.recorder.by_kind();
    let (requests, errors) = totals(&kinds);
    let error_rate = share(errors, requests);
    let scheduled = profile.shape.secs().min(run.seconds).max(1.0);
    let per_second = run.recorder.seconds();
    let searches: u64 = per_second.iter().map(|s| s.searches_done()).sum();
    let achieved_searches_per_s = searches as f64 / scheduled;
    let p95s = p95_per_second(run.recorder);
    let pool = PoolFigures::of(run.samples, &p95s);
    let process = ProcessFigures::of(run.samples);
    let v = Verdicts::of(profile, t, &run, &kinds, &p95s, achieved_searches_per_s);
    let stopped_early = run.aborted.or_else(|| {
        (run.interrupted && profile.name != ProfileName::Stress)
            .then(|| "interrupted (Ctrl-C)".to_owned())
    });
    Summary {
        profile: profile.clone(),
        thresholds: t.clone(),
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        commit: commit(),
        seconds: run.seconds,
        kinds,
        requests,
        error_rate,
        achieved_per_s: requests as f64 / scheduled,
        achieved_searches_per_s,
        late_starts: run.recorder.late_starts(),
        db_query_p95_ms: db_query_p95(run.samples).unwrap_or(0.0),
        pool_utilization_max: pool.utilization_max,
        pool_waiting_mean: pool.waiting_mean,
        corr_waiting_p95: pool.corr_waiting_p95,
        corr_utilization_p95: pool.corr_utilization_p95,
        pool_verdict: pool.verdict,
        errors_by_cause: run.recorder.errors_by_cause(),
        hit_ratio: hit_ratio(&per_second),
        hit_ratio_by_10s: hit_ratios(&per_second, HIT_WINDOW),
        steps: run.steps,
        breaking_point_per_s: v.breaking_point_per_s,
        spike_recovery_s: v.spike_recovery_s,
        drift_p95_ms: drift_p95(profile, &per_second),
        rss_mib: process.rss_mib,
        cpu_percent_mean: process.cpu_percent_mean,
        pool_connections_opened: process.pool_connections_opened,
        goose: goose_counts(run.goose),
        max_users: run.goose.map(|m| m.maximum_users),
        notes: v.notes,
        stopped_early,
        breaches: v.breaches,
    }
}

/// What the run is judged to have done.
struct Verdicts {
    breaking_point_per_s: Option<f64>,
    spike_recovery_s: Option<f64>,
    breaches: Vec<String>,
    notes: Vec<String>,
}

impl Verdicts {
    fn of(
        profile: &Profile,
        t: &LoadThresholds,
        run: &RunFacts<'_>,
        kinds: &BTreeMap<Kind, KindSummary>,
        p95s: &[f64],
        achieved_searches_per_s: f64,
    ) -> Self {
        let breaking_point_per_s = (profile.name == ProfileName::Stress).then(|| {
            let held = run.steps.iter().take_while(|s| s.breaches.is_empty());
            held.map(|s| s.rate).fold(0.0, f64::max)
        });
        let spike_recovery_s = spike_recovery(profile, p95s);
        let evidence = Evidence {
            samples: run.samples,
            expects_hits: profile.weights.expects_hits(),
        };
        let mut breaches = breaches_of(kinds, &evidence, t);
        breaches.extend(run_breaches(
            profile,
            t,
            totals(kinds),
            achieved_searches_per_s,
        ));
        if let Some(a) = &run.aborted {
            breaches.push(format!("stopped early: {a}"));
        }
        let (breaches, notes) = by_profile(
            profile,
            breaches,
            &run.steps,
            spike_recovery_s,
            breaking_point_per_s,
        );
        Self {
            breaking_point_per_s,
            spike_recovery_s,
            breaches,
            notes,
        }
    }
}

/// `part / whole`; 0 when there is no whole.
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The whole run's breaches: its error rate, its search rate against the profile's target,
/// and no answer at all.
fn run_breaches(
    profile: &Profile,
    t: &LoadThresholds,
    (requests, errors): (u64, u64),
    achieved_searches_per_s: f64,
) -> Vec<String> {
    let mut breaches = Vec::new();
    let error_rate = share(errors, requests);
    if error_rate > t.errors.rate {
        breaches.push(format!(
            "error rate {:.2} % > {:.2} % ({errors} of {requests})",
            100.0 * error_rate,
            100.0 * t.errors.rate
        ));
    }
    breaches.extend(throughput_breach(profile, t, achieved_searches_per_s));
    if requests == 0 {
        breaches.push("no request was answered".to_owned());
    }
    breaches
}

/// The throughput threshold's breach, for a profile with a search-rate target.
fn throughput_breach(profile: &Profile, t: &LoadThresholds, achieved: f64) -> Option<String> {
    let target = profile.target_searches_per_s?;
    let min = target * t.throughput.min_ratio;
    (achieved < min).then(|| {
        format!(
            "achieved {achieved:.1} searches/s < {min:.1}/s ({:.0} % of the target {target:.0}/s)",
            100.0 * t.throughput.min_ratio
        )
    })
}

/// The breaches that fail the run and the notes, as the profile judges: a spike reports its
/// burst's latency and fails on errors or no recovery; a stress run is judged by its steps.
fn by_profile(
    profile: &Profile,
    breaches: Vec<String>,
    steps: &[StepVerdict],
    spike_recovery_s: Option<f64>,
    breaking_point_per_s: Option<f64>,
) -> (Vec<String>, Vec<String>) {
    match profile.name {
        ProfileName::Spike => {
            let (mut kept, during): (Vec<String>, Vec<String>) = breaches
                .into_iter()
                .partition(|b| b.starts_with("error rate") || b.starts_with("stopped early"));
            if spike_recovery_s.is_none() {
                kept.push(
                    "latency did not come back to its level before the spike by the end of the run"
                        .to_owned(),
                );
            }
            let notes = during
                .into_iter()
                .map(|b| format!("over the whole run, spike included: {b}"));
            (kept, notes.collect())
        }
        // A stress run ends with a broken step by design. It fails only when not even the
        // first step held (or no step could be judged).
        ProfileName::Stress if breaking_point_per_s.is_none_or(|b| b <= 0.0) => {
            let why = match steps.first() {
                Some(first) => format!(
                    "no step met every threshold; the first ({:.0}/s): {}",
                    first.rate,
                    first.breaches.join("; ")
                ),
                None => "no step ran to its end".to_owned(),
            };
            (vec![why], Vec::new())
        }
        ProfileName::Stress => (Vec::new(), Vec::new()),
        _ => (breaches, Vec::new()),
    }
}

/// The pool against latency, second by second.
struct PoolFigures {
    utilization_max: f64,
    waiting_mean: f64,
    corr_waiting_p95: Option<f64>,
    corr_utilization_p95: Option<f64>,
    verdict: String,
}

impl PoolFigures {
    fn of(samples: &[Sample], p95s: &[f64]) -> Self {
        let (mut waiting, mut util, mut lat) = (Vec::new(), Vec::new(), Vec::new());
        for s in samples {
            if let Some(p) = p95s.get(s.t as usize).filter(|p| **p > 0.0) {
                waiting.push(s.waiting);
                util.push(s.utilization());
                lat.push(*p);
            }
        }
        let utilization_max = samples.iter().map(Sample::utilization).fold(0.0, f64::max);
        let n = samples.len().max(1) as f64;
        let waiting_mean = samples.iter().map(|s| s.waiting).sum::<f64>() / n;
        let saturated = samples.iter().filter(|s| s.utilization() >= 0.99).count() as f64 / n;
        let corr_waiting_p95 = correlation(&waiting, &lat);
        let verdict = if waiting_mean >= 0.5 && corr_waiting_p95.is_some_and(|c| c >= 0.5) {
            format!(
                "the pool was the bottleneck: {waiting_mean:.1} requests waited for a connection on average, and latency rose with them (r = {:.2})",
                corr_waiting_p95.unwrap_or(0.0)
            )
        } else if saturated >= 0.2 {
            format!(
                "the pool ran full {:.0} % of the time: close to being the bottleneck",
                100.0 * saturated
            )
        } else {
            "the pool was not the bottleneck".to_owned()
        };
        Self {
            utilization_max,
            waiting_mean,
            corr_waiting_p95,
            corr_utilization_p95: correlation(&util, &lat),
            verdict,
        }
    }
}

/// The service process's own figures over the run.
struct ProcessFigures {
    rss_mib: Option<(f64, f64)>,
    cpu_percent_mean: Option<f64>,
    pool_connections_opened: Option<f64>,
}

impl ProcessFigures {
    fn of(samples: &[Sample]) -> Self {
        let first_last = |v: Vec<f64>| (v.len() >= 2).then(|| (v[0], v[v.len() - 1]));
        let rss = first_last(samples.iter().filter_map(|s| s.rss_mib).collect());
        let cpu: Vec<f64> = samples.iter().filter_map(|s| s.cpu_percent).collect();
        let created = samples.iter().map(|s| s.pool_created).filter(|c| *c > 0.0);
        Self {
            rss_mib: rss,
            cpu_percent_mean: (!cpu.is_empty()).then(|| cpu.iter().sum::<f64>() / cpu.len() as f64),
            pool_connections_opened: first_last(created.collect()).map(|(a, b)| b - a),
        }
    }
}

/// A soak's p95 over its first and last tenth.
fn drift_p95(profile: &Profile, per_second: &[super::record::Second]) -> Option<(f64, f64)> {
    if profile.name != ProfileName::Soak || per_second.len() < 20 {
        return None;
    }
    let tenth = per_second.len() / 10;
    let merged = |range: &[super::record::Second]| {
        let mut h = hdrhistogram::Histogram::<u32>::new_with_bounds(1, 120_000_000, 2)
            .expect("valid bounds");
        for s in range {
            let _ = h.add(&s.all);
        }
        latency::quantile_ms(&h, 0.95)
    };
    let last = &per_second[per_second.len() - tenth..];
    Some((merged(&per_second[..tenth]), merged(last)))
}

/// goose's success and failure counts per request name, sorted by name.
fn goose_counts(goose: Option<&goose::metrics::GooseMetrics>) -> Vec<GooseCount> {
    let Some(m) = goose else {
        return Vec::new();
    };
    let mut v: Vec<GooseCount> = m
        .requests
        .iter()
        .map(|(name, a)| GooseCount {
            name: name.clone(),
            success: a.success_count,
            fail: a.fail_count,
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Seconds from the end of the spike step until the p95 of a second is back within 1.5x
/// of the median per-second p95 before the spike (or 5 ms above it, for fast baselines).
fn spike_recovery(profile: &Profile, p95s: &[f64]) -> Option<f64> {
    if profile.name != ProfileName::Spike {
        return None;
    }
    let Shape::Rate { steps, .. } = &profile.shape else {
        return None;
    };
    // Per-second figures count from the run's start; the schedule starts one second later.
    let (before, spike) = (steps.first()?.secs + 1.0, steps.get(1)?.secs);
    let mut base: Vec<f64> = p95s
        .iter()
        .take(before as usize)
        .skip(3)
        .copied()
        .filter(|p| *p > 0.0)
        .collect();
    base.sort_by(f64::total_cmp);
    let normal = *base.get(base.len() / 2)?;
    let limit = (normal * 1.5).max(normal + 5.0);
    let end = (before + spike) as usize;
    p95s.iter()
        .enumerate()
        .skip(end)
        .find(|(_, p)| **p > 0.0 && **p <= limit)
        .map(|(i, _)| (i - end) as f64)
}

/// The errors by cause in words, and whether the service's admission limit explains most
/// of them (a limit doing its job, and the run's bottleneck); `None` without errors.
fn errors_said(errors: &[ErrorCount]) -> Option<String> {
    let total: u64 = errors.iter().map(|e| e.count).sum();
    if total == 0 {
        return None;
    }
    let each: Vec<String> = (errors.iter())
        .map(|e| format!("{} {} {}", e.kind.name(), e.count, e.cause))
        .collect();
    let shed: u64 = (errors.iter())
        .filter(|e| e.cause == ErrorCause::Shed)
        .map(|e| e.count)
        .sum();
    let reading = if 2 * shed > total {
        format!(
            " {shed} of the {total} were requests the service's admission limit shed: that \
             limit is the bottleneck, and the work it admits is what it protects."
        )
    } else {
        String::new()
    };
    Some(format!("Errors by cause: {}.{reading}", each.join("; ")))
}

/// The Markdown report.
pub fn markdown(s: &Summary) -> String {
    let mut m = String::new();
    md_head(&mut m, s);
    md_figures(&mut m, s);
    md_steps(&mut m, s);
    md_verdict(&mut m, s);
    m
}

/// The title, the run in one line, and the table of request kinds.
fn md_head(m: &mut String, s: &Summary) {
    let verdict = if s.breaches.is_empty() {
        "PASSED"
    } else {
        "FAILED"
    };
    let _ = write!(
        m,
        "### pgperf load: {} — {verdict}\n\n{} requests in {:.0} s ({:.1}/s; {:.1} searches/s), up to {} users, errors {:.2} %, commit {}\n\n",
        s.profile.name,
        s.requests,
        s.seconds,
        s.achieved_per_s,
        s.achieved_searches_per_s,
        s.max_users.map_or("?".to_owned(), |u| u.to_string()),
        100.0 * s.error_rate,
        s.commit.as_deref().unwrap_or("unknown")
    );
    m.push_str(
        "| request | ok | errors | p50 | p95 | p99 | max |\n|---|---|---|---|---|---|---|\n",
    );
    for (k, v) in s.kinds.iter().filter(|(_, v)| v.ok + v.errors > 0) {
        let (p50, p95, p99, max) = (Ms(v.p50_ms), Ms(v.p95_ms), Ms(v.p99_ms), Ms(v.max_ms));
        let _ = writeln!(
            m,
            "| {} | {} | {} | {p50} | {p95} | {p99} | {max} |",
            k.name(),
            v.ok,
            v.errors
        );
    }
}

/// The cache hit ratio, over the run and by 10 s (lowest marked).
fn md_hit_ratio(m: &mut String, s: &Summary) {
    let Some(all) = s.hit_ratio else {
        return;
    };
    let lowest = s
        .hit_ratio_by_10s
        .iter()
        .map(|(_, r)| *r)
        .fold(1.0, f64::min);
    let by: Vec<String> = s
        .hit_ratio_by_10s
        .iter()
        .map(|(_, r)| format!("{r:.2}"))
        .collect();
    let _ = writeln!(
        m,
        "Cache hit ratio (hits over searches): {all:.2} over the run, lowest {lowest:.2} in a 10 s window; by 10 s: {}.",
        by.join(" ")
    );
}

/// The database, the pool and the service process.
fn md_figures(m: &mut String, s: &Summary) {
    let _ = writeln!(
        m,
        "\nDatabase query p95 (the service's metrics, worst second): {}. Pool: at most {:.0} % in use, {:.2} waiting on average; {}.",
        Ms(s.db_query_p95_ms),
        100.0 * s.pool_utilization_max,
        s.pool_waiting_mean,
        s.pool_verdict
    );
    if let Some(c) = s.corr_waiting_p95 {
        let _ = writeln!(
            m,
            "Correlation of waiting acquirers with the p95 of each second: {c:.2}."
        );
    }
    if let Some(said) = errors_said(&s.errors_by_cause) {
        let _ = writeln!(m, "{said}");
    }
    md_hit_ratio(m, s);
    if let (Some(cpu), Some((a, b))) = (s.cpu_percent_mean, s.rss_mib) {
        let _ = writeln!(
            m,
            "Service: {cpu:.0} % of a core on average; RSS {a:.1} → {b:.1} MiB."
        );
    }
    if s.late_starts > 0 {
        let _ = writeln!(
            m,
            "{} requests started more than 50 ms after they were due (every virtual user was busy).",
            s.late_starts
        );
    }
}

/// A stepped profile's steps, its breaking point, a spike's recovery, a soak's drift.
fn md_steps(m: &mut String, s: &Summary) {
    if !s.steps.is_empty() {
        m.push_str("\n| step rate | achieved | cached p50 | uncached p95 | errors | verdict |\n|---|---|---|---|---|---|\n");
    }
    for v in &s.steps {
        let verdict = if v.breaches.is_empty() {
            "held".to_owned()
        } else {
            v.breaches.join("; ")
        };
        let (cached, uncached) = (Ms(v.cached_p50_ms), Ms(v.uncached_p95_ms));
        let _ = writeln!(
            m,
            "| {:.0}/s | {:.0}/s | {cached} | {uncached} | {:.2} % | {verdict} |",
            v.rate,
            v.achieved_per_s,
            100.0 * v.error_rate
        );
    }
    if let Some(b) = s.breaking_point_per_s {
        let _ = writeln!(
            m,
            "\n**Breaking point: {b:.0} requests/s** (the highest step that met every threshold)."
        );
    }
    if s.profile.name == ProfileName::Spike {
        match s.spike_recovery_s {
            Some(r) => _ = writeln!(m, "\nLatency recovered {r:.0} s after the spike ended."),
            None => m.push_str("\nLatency did not recover before the run ended.\n"),
        }
    }
    if let Some((a, b)) = s.drift_p95_ms {
        let _ = writeln!(
            m,
            "\nDrift: p95 {} in the first tenth, {} in the last.",
            Ms(a),
            Ms(b)
        );
    }
    if let Some(c) = s.pool_connections_opened {
        let _ = writeln!(m, "Pool connections opened during the run (churn): {c:.0}.");
    }
}

/// The notes, an early stop, and the thresholds broken (or that every one held).
fn md_verdict(m: &mut String, s: &Summary) {
    for n in &s.notes {
        let _ = writeln!(
            m,
            "Note: {n} (expected: the burst is beyond capacity on purpose)."
        );
    }
    if let Some(why) = &s.stopped_early {
        let _ = writeln!(m, "\nStopped early: {why}.");
    }
    if s.breaches.is_empty() {
        m.push_str("\nEvery threshold held.\n");
    } else {
        m.push_str("\n**Thresholds broken:**\n");
        for b in &s.breaches {
            let _ = writeln!(m, "- {b}");
        }
    }
}

/// Writes summary.json, report.md and the plots.
pub fn write(
    out: &Path,
    s: &Summary,
    recorder: &Recorder,
    samples: &[Sample],
) -> anyhow::Result<()> {
    let path = out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(s)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let path = out.join("report.md");
    std::fs::write(&path, markdown(s)).with_context(|| format!("writing {}", path.display()))?;
    for (file, chart, series) in plots(&recorder.seconds(), samples) {
        line_chart(&out.join(file), &chart, &series)
            .map_err(|e| anyhow::anyhow!("drawing {file}: {e}"))?;
    }
    Ok(())
}

/// A chart over the seconds of the run.
fn over_time<'a>(title: &'a str, y_desc: &'a str) -> Chart<'a> {
    Chart {
        title,
        x_desc: "seconds into the run",
        y_desc,
        log_log: false,
    }
}

/// The run's three plots: latency, responses and the pool, per second.
fn plots<'a>(
    seconds: &[super::record::Second],
    samples: &[Sample],
) -> [(&'static str, Chart<'a>, Vec<Series>); 3] {
    let series = |name: &str, f: &dyn Fn(&super::record::Second) -> Option<f64>| Series {
        name: name.to_owned(),
        points: seconds
            .iter()
            .enumerate()
            .filter_map(|(i, s)| f(s).map(|v| (i as f64 + 0.5, v)))
            .collect(),
    };
    let pct = |q: f64| {
        move |s: &super::record::Second| {
            (!s.all.is_empty()).then(|| latency::quantile_ms(&s.all, q))
        }
    };
    let sampled = |name: &str, f: &dyn Fn(&Sample) -> f64| Series {
        name: name.to_owned(),
        points: samples.iter().map(|s| (s.t, f(s))).collect(),
    };
    [
        (
            "latency.svg",
            over_time("Latency per second (all requests)", "ms"),
            vec![
                series("p50", &pct(0.5)),
                series("p95", &pct(0.95)),
                series("p99", &pct(0.99)),
            ],
        ),
        (
            "rps.svg",
            over_time("Responses per second", "per second"),
            vec![
                series("all", &|s| Some(s.total() as f64)),
                series("searches", &|s| Some(s.searches_done() as f64)),
                series("errors", &|s| Some(s.errors as f64)),
            ],
        ),
        (
            "pool.svg",
            over_time(
                "Pool: connections in use (% of max) and waiting acquirers",
                "% in use / waiting",
            ),
            vec![
                sampled("in use, % of max", &|s| 100.0 * s.utilization()),
                sampled("waiting acquirers", &|s| s.waiting),
            ],
        ),
    ]
}

/// The terminal summary.
pub fn print(s: &Summary, out: &Path) {
    println!("{}", markdown(s));
    println!(
        "Files: {0}/summary.json, {0}/report.md, {0}/latency.svg, {0}/rps.svg, {0}/pool.svg",
        out.display()
    );
}

#[cfg(test)]
mod tests {
    use super::super::record::{MetricsGap, Second};
    use super::*;

    fn second(hits: u64, misses: u64, writes: u64) -> Second {
        let mut s = Second::default();
        s.count.insert(Kind::CachedSearch, hits);
        s.count.insert(Kind::UncachedSearch, misses);
        s.count.insert(Kind::Write, writes);
        s
    }

    #[test]
    fn errors_are_said_by_cause_and_a_shedding_limit_is_named_the_bottleneck() {
        let count = |kind, cause, count| ErrorCount { kind, cause, count };
        assert_eq!(errors_said(&[]), None);
        let shed = errors_said(&[
            count(Kind::Resolve, ErrorCause::Shed, 1404),
            count(Kind::Entity, ErrorCause::Status(500), 2),
        ])
        .unwrap();
        assert!(
            shed.starts_with(
                "Errors by cause: resolve 1404 shed (503 with Retry-After); entity 2 status 500."
            ) && shed.contains("1404 of the 1406 were requests the service's admission limit shed"),
            "{shed}"
        );
        let failed = errors_said(&[count(Kind::Write, ErrorCause::Write, 3)]).unwrap();
        assert!(!failed.contains("admission limit"), "{failed}");
    }

    #[test]
    fn the_hit_ratio_is_hits_over_searches_by_window_and_writes_do_not_count() {
        let seconds = [
            second(6, 4, 1),
            second(6, 4, 1),
            second(0, 0, 3),
            second(0, 0, 3),
            second(1, 9, 1),
        ];
        assert_eq!(hit_ratio(&seconds), Some(13.0 / 30.0));
        assert_eq!(hit_ratios(&seconds, 2), [(0, 0.6), (4, 0.1)]);
        assert_eq!(hit_ratio(&seconds[2..4]), None);
    }

    fn kind(ok: u64, p50_ms: f64) -> KindSummary {
        KindSummary {
            ok,
            errors: 0,
            p50_ms,
            p95_ms: p50_ms,
            p99_ms: p50_ms,
            max_ms: p50_ms,
        }
    }

    fn measured(query_p95_ms: f64) -> Sample {
        Sample {
            query_p95_ms: Some(query_p95_ms),
            ..Sample::default()
        }
    }

    fn judged(
        kinds: &[(Kind, KindSummary)],
        samples: &[Sample],
        expects_hits: bool,
    ) -> Vec<String> {
        let kinds: BTreeMap<Kind, KindSummary> = kinds.iter().cloned().collect();
        let evidence = Evidence {
            samples,
            expects_hits,
        };
        breaches_of(&kinds, &evidence, &LoadThresholds::default())
    }

    #[test]
    fn a_run_within_every_threshold_has_no_breach() {
        let kinds = [(Kind::CachedSearch, kind(100, 5.0))];
        assert_eq!(
            judged(&kinds, &[measured(20.0)], true),
            Vec::<String>::new()
        );
    }

    #[test]
    fn metrics_refused_fail_the_database_threshold_and_say_why() {
        let kinds = [(Kind::CachedSearch, kind(100, 5.0))];
        let refused = [Sample::without_metrics(1.0, MetricsGap::Status(401))];
        assert_eq!(
            judged(&kinds, &refused, true),
            [
                "database query p95: no metrics sample: 401 from /health/database/metrics; set PGPERF_ADMIN_TOKEN"
            ]
        );
        let renamed = [Sample::from_metrics(1.0, &serde_json::json!({"pool": {}}))];
        assert_eq!(
            judged(&kinds, &renamed, true),
            [
                "database query p95: no metrics sample: /health/database/metrics has no `queries` object"
            ]
        );
        assert_eq!(
            judged(&kinds, &[], true),
            [
                "database query p95: no metrics sample: no sample of /health/database/metrics was taken"
            ]
        );
    }

    #[test]
    fn one_sample_with_figures_is_judged_and_a_slow_database_fails() {
        let samples = [
            Sample::without_metrics(1.0, MetricsGap::NoAnswer),
            measured(1_500.0),
        ];
        let breaches = judged(&[(Kind::CachedSearch, kind(9, 5.0))], &samples, true);
        assert_eq!(breaches.len(), 1);
        assert!(
            breaches[0].starts_with("database query p95 1500.0 ms > "),
            "{breaches:?}"
        );
    }

    #[test]
    fn a_mix_that_expects_cache_hits_fails_without_any() {
        let no_hit = [(Kind::UncachedSearch, kind(100, 50.0))];
        let breaches = judged(&no_hit, &[measured(20.0)], true);
        assert_eq!(breaches.len(), 1);
        assert!(
            breaches[0].contains("no search was a cache hit"),
            "{breaches:?}"
        );
        assert_eq!(
            judged(&no_hit, &[measured(20.0)], false),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_stress_step_is_judged_on_the_database_threshold_too() {
        let kinds: BTreeMap<Kind, KindSummary> = [(Kind::UncachedSearch, kind(100, 50.0))]
            .into_iter()
            .collect();
        let step = Step {
            secs: 10.0,
            rate: 10.0,
        };
        let refused = [Sample::without_metrics(1.0, MetricsGap::Status(503))];
        let evidence = Evidence {
            samples: &refused,
            expects_hits: false,
        };
        let v = judge_step(0, &step, &kinds, &evidence, &LoadThresholds::default());
        assert_eq!(
            v.breaches,
            ["database query p95: no metrics sample: 503 from /health/database/metrics"]
        );
    }
}
