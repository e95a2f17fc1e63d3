//! The guard: measures a case, compares it with its baseline, confirms a regression by
//! measuring again, and records figures as the mode allows.

use std::future::Future;
use std::path::{Path, PathBuf};

use super::PerfError;
use super::baseline::{
    Bound, CaseBaseline, CaseName, Comparison, CpuPerOp, Environment, Mode, Observation, Verdict,
    compare, storage,
};
use super::counters::Counter;
use super::measure::Slowdown;
use super::report::CaseReport;
use super::verdict::{Breach, CaseFailure, CounterRegression, Regression};

/// Variable that injects a deliberate slowdown into one case (to prove the guard works).
pub const SLOWDOWN_VAR: &str = "PGPERF_INJECT_SLOWDOWN";

/// Re-measurements that must all agree before a case fails.
pub const CONFIRMATIONS: usize = 2;

/// A set-up step before the cases (seeding, ...) and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupStep {
    /// Its name, e.g. `seed.entities`.
    pub name: &'static str,
    /// How long it took.
    pub took: std::time::Duration,
}

/// A set-up step is named as slow when it takes this many times its recorded time...
pub const SETUP_SLOW_RATIO: f64 = 5.0;
/// ... and at least this much longer (short steps vary by more than 5x on a busy machine).
pub const SETUP_SLOW_EXCESS_MS: f64 = 1_000.0;

/// Holds cases to one baseline file.
#[derive(Debug, Clone)]
pub struct Guard {
    path: PathBuf,
    environment: Environment,
    mode: Mode,
    slowdowns: Vec<(CaseName, f64)>,
}

/// Parses `CASE=FACTOR[,CASE=FACTOR...]` ([`SLOWDOWN_VAR`]'s value).
pub fn parse_slowdown(value: Option<&str>) -> Result<Vec<(CaseName, f64)>, PerfError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(Vec::new());
    };
    let bad = || PerfError::BadSlowdown {
        var: SLOWDOWN_VAR,
        value: value.to_owned(),
    };
    value
        .split(',')
        .map(|one| {
            let (case, factor) = one.split_once('=').ok_or_else(bad)?;
            let factor: f64 = factor.trim().parse().map_err(|_| bad())?;
            if !(factor >= 1.0 && factor.is_finite()) {
                return Err(bad());
            }
            Ok((CaseName::new(case.trim()).map_err(|_| bad())?, factor))
        })
        .collect()
}

/// What a counter's growth usually means, for the failure message.
fn counter_hint(counter: Counter) -> &'static str {
    match counter {
        Counter::RoundTrips | Counter::Statements => {
            "more queries per operation: a query in a loop (N+1), or a lost batch"
        }
        Counter::Blocks => {
            "more of the table is read per operation: a dropped or unusable index, or a changed plan"
        }
        Counter::Rows => "more rows per operation: a lost filter or limit",
        Counter::WalBytes => "more is written per operation: a new index, trigger or wider rows",
        Counter::TempBlocks => "a sort or hash now spills to disk: work_mem, or a changed plan",
        Counter::NestedStatements => {
            "more statements run inside functions or triggers: a new trigger on a table, or a \
             statement added to one"
        }
    }
}

impl Guard {
    /// A guard for `path`, with the mode and any slowdown injection of
    /// [`crate::settings::Settings::from_env`].
    pub fn from_env(path: impl Into<PathBuf>, environment: Environment) -> Result<Self, PerfError> {
        Ok(Self::with_settings(
            path,
            environment,
            &crate::settings::Settings::from_env()?,
        ))
    }

    /// A guard for `path`, with the mode and any slowdown injection of `settings`.
    pub fn with_settings(
        path: impl Into<PathBuf>,
        environment: Environment,
        settings: &crate::settings::Settings,
    ) -> Self {
        Self {
            path: path.into(),
            environment,
            mode: settings.mode,
            slowdowns: settings.slowdowns.clone(),
        }
    }

    /// A guard with an explicit mode and no injection.
    pub fn new(path: impl Into<PathBuf>, environment: Environment, mode: Mode) -> Self {
        Self {
            path: path.into(),
            environment,
            mode,
            slowdowns: Vec::new(),
        }
    }

    /// The baseline file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The injected slowdown for `case`, if any.
    pub fn slowdown_for(&self, case: &CaseName) -> Option<Slowdown> {
        self.slowdowns
            .iter()
            .find(|(c, _)| c == case)
            .map(|(_, f)| Slowdown(*f))
    }

    /// Refuses a slowdown that names no case in `known`: it would slow nothing and prove
    /// nothing.
    pub fn check_slowed_cases(&self, known: &[CaseName]) -> Result<(), PerfError> {
        let unknown = self.slowdowns.iter().find(|(c, _)| !known.contains(c));
        match unknown {
            Some((case, _)) => Err(PerfError::UnknownSlowdownCase {
                var: SLOWDOWN_VAR,
                case: case.clone(),
                known: known
                    .iter()
                    .map(CaseName::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            None => Ok(()),
        }
    }

    /// The command that records this guard's file: the suite's or the benchmark's.
    pub fn record_command(&self) -> &'static str {
        if self.environment.profile == "release" {
            "scripts/bench"
        } else {
            "scripts/test"
        }
    }

    /// Notes for set-up steps far slower than recorded: which step, how long it took and what
    /// it usually takes. The cases are measured and judged anyway; a note only points at the
    /// cause (a trigger, a dropped index) when they fail. In writing modes the times are
    /// recorded (`force` replaces recorded ones; `new` and `update` add missing ones).
    pub fn judge_setup(&self, steps: &[SetupStep]) -> Result<Vec<String>, PerfError> {
        let recorded = match storage::load(&self.path) {
            Ok(file) => file.map(|f| f.setup_ms).unwrap_or_default(),
            Err(e) if self.mode == Mode::Force && storage::is_replaceable(&e) => Default::default(),
            Err(e) => return Err(e),
        };
        let notes = steps
            .iter()
            .filter_map(|step| {
                let usual = *recorded.get(step.name)?;
                let ms = step.took.as_secs_f64() * 1e3;
                (ms > usual * SETUP_SLOW_RATIO && ms - usual > SETUP_SLOW_EXCESS_MS).then(|| {
                    format!(
                        "set-up step {} took {:.1} s, usually {:.1} s (x{:.0}): something made \
                         it slower (a trigger, a dropped index, a slower server); the cases \
                         below are measured anyway",
                        step.name,
                        ms / 1e3,
                        usual / 1e3,
                        ms / usual
                    )
                })
            })
            .collect();
        if self.mode.writes() {
            let times: Vec<(String, f64)> = steps
                .iter()
                .map(|s| (s.name.to_owned(), s.took.as_secs_f64() * 1e3))
                .collect();
            let replace = self.mode == Mode::Force;
            storage::save_setup(&self.path, &self.environment, &times, replace)?;
        }
        Ok(notes)
    }

    fn recorded(&self, case: &CaseName) -> Result<Option<CaseBaseline>, PerfError> {
        let loaded = storage::load(&self.path).and_then(|file| match file {
            Some(f) => {
                storage::check_comparable(&self.path, &f, &self.environment).map(|()| Some(f))
            }
            None => Ok(None),
        });
        match loaded {
            // Re-recording everything: a file of an older schema or environment starts anew.
            Err(e) if self.mode == Mode::Force && storage::is_replaceable(&e) => Ok(None),
            other => Ok(other?.and_then(|f| f.cases.get(case).copied())),
        }
    }

    fn save(
        &self,
        case: &CaseName,
        bound: Bound,
        concurrency: u32,
        o: &Observation,
    ) -> Result<(), PerfError> {
        let baseline = CaseBaseline {
            bound,
            concurrency,
            counters: o.counted.counters,
            cpu_us: CpuPerOp {
                client_us: o.client_cpu_us,
                server_us: o.server_cpu_us.or(o.counted.server_us).unwrap_or(0.0),
            },
            make_up_us: o.make_up(),
            p50_us: o.summary.p50_us,
            p95_us: o.summary.p95_us,
            p99_us: o.summary.p99_us,
            references_us: o.references,
            throughput_per_s: o.summary.throughput_per_s,
        };
        storage::save_case(
            &self.path,
            &self.environment,
            case,
            baseline,
            self.mode == Mode::Force,
        )
    }

    /// Measures `case` with `measure` and holds it to its baseline. `bound` is used only for a
    /// case recorded for the first time; the file's bound (reviewed) wins afterwards. A failed
    /// case still has its report (for the table) when it was measured.
    pub async fn check<F, Fut>(
        &self,
        case: &CaseName,
        bound: Bound,
        concurrency: u32,
        measure: F,
    ) -> Checked
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Observation, PerfError>>,
    {
        match self.check_case(case, bound, concurrency, measure).await {
            Ok(report) => Checked {
                report: Some(report),
                failure: None,
            },
            Err(Failed(e, report)) => Checked {
                report: report.map(|r| *r),
                failure: Some(e),
            },
        }
    }

    async fn check_case<F, Fut>(
        &self,
        case: &CaseName,
        bound: Bound,
        concurrency: u32,
        mut measure: F,
    ) -> Result<CaseReport, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Observation, PerfError>>,
    {
        bound.validate(case)?;
        let first = ok_observation(case, measure().await?)?;
        let Some(baseline) = self.recorded(case)? else {
            if !self.mode.writes() {
                return Err(PerfError::MissingCase {
                    case: case.clone(),
                    path: self.path.clone(),
                }
                .into());
            }
            let kept = recording(case, first, &mut measure).await?;
            self.save(case, bound, concurrency, &kept)?;
            return Ok(CaseReport::new(case, kept, None).recorded("new case recorded"));
        };
        if baseline.concurrency != concurrency && self.mode != Mode::Force {
            return Err(PerfError::Incomparable {
                path: self.path.clone(),
                field: format!("cases.{case}.concurrency"),
                recorded: baseline.concurrency.to_string(),
                current: concurrency.to_string(),
            }
            .into());
        }
        let cmp = compare(&baseline, &first);
        let rerecord = match self.mode {
            Mode::Force => Some("re-recorded (force)"),
            Mode::Update if cmp.verdict != Verdict::Unchanged => {
                Some("updated: moved beyond the noise band")
            }
            _ => None,
        };
        if let Some(note) = rerecord {
            let kept = recording(case, first, &mut measure).await?;
            self.save(case, baseline.bound, concurrency, &kept)?;
            let cmp = compare(&baseline, &kept);
            return Ok(CaseReport::new(case, kept, Some((baseline, cmp))).recorded(note));
        }
        if !cmp.verdict.fails() {
            return Ok(CaseReport::new(case, first, Some((baseline, cmp))));
        }
        self.confirm(case, baseline, (first, cmp), &mut measure)
            .await
    }

    /// Confirms a failure before reporting it: a regression must show in every one of
    /// [`CONFIRMATIONS`] more measurements, so a noisy moment (one, or two in a row) never
    /// fails a PR, while a real slowdown, which shows every time, still does.
    async fn confirm<F, Fut>(
        &self,
        case: &CaseName,
        baseline: CaseBaseline,
        first: (Observation, Comparison),
        measure: &mut F,
    ) -> Result<CaseReport, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Observation, PerfError>>,
    {
        let first_ratio = first.1.ratio;
        let mut latest = first;
        for _ in 0..CONFIRMATIONS {
            let again = ok_observation(case, measure().await?)?;
            let confirm = compare(&baseline, &again);
            if !confirm.verdict.fails() {
                let note = format!(
                    "first measurement x{first_ratio:.2} was noise: re-measured x{:.2}",
                    confirm.ratio
                );
                return Ok(CaseReport::new(case, again, Some((baseline, confirm))).noted(note));
            }
            latest = (again, confirm);
        }
        let (last, confirm) = latest;
        let breach = self.breach(case, &baseline, &last, first_ratio, &confirm);
        let report = CaseReport::new(case, last, Some((baseline, confirm)));
        Err(Failed(breach.into(), Some(Box::new(report))))
    }

    fn breach(
        &self,
        case: &CaseName,
        baseline: &CaseBaseline,
        last: &Observation,
        first_ratio: f64,
        confirm: &Comparison,
    ) -> Breach {
        let (case, path, command) = (case.clone(), self.path.clone(), self.record_command());
        let figure = |x: f64| format!("{}", crate::perf::stats::round_sig(x, 3));
        match (confirm.verdict, confirm.counter_breach) {
            (Verdict::CeilingBreached, _) => Breach::CeilingBreached {
                case,
                p95_us: last.summary.p95_us,
                ceiling_us: confirm.ceiling_us,
                path,
            },
            (Verdict::CounterRegressed, Some(b)) => {
                Breach::CounterRegression(Box::new(CounterRegression {
                    case,
                    counter: b.counter.label(),
                    recorded: figure(b.recorded),
                    measured: figure(b.measured),
                    limit: figure(b.limit),
                    hint: counter_hint(b.counter),
                    command,
                    path,
                }))
            }
            _ => Breach::Regression(Box::new(Regression {
                case,
                p50_us: last.summary.p50_us,
                expected_p50_us: confirm.expected_p50_us,
                recorded_p50_us: baseline.p50_us,
                references: crate::perf::report::references_text(&last.references),
                ratio: first_ratio,
                confirm_ratio: confirm.ratio,
                fail_ratio: baseline.bound.fail_ratio,
                floor_us: confirm.floor_us,
                command,
                path,
            })),
        }
    }
}

/// Observations a recording takes; it keeps their element-wise median.
pub const RECORDING_SAMPLES: usize = 3;

/// What a recording keeps: the median of `first` and [`RECORDING_SAMPLES`] - 1 more.
async fn recording<F, Fut>(
    case: &CaseName,
    first: Observation,
    measure: &mut F,
) -> Result<Observation, PerfError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Observation, PerfError>>,
{
    let mut all = vec![first];
    for _ in 1..RECORDING_SAMPLES {
        all.push(ok_observation(case, measure().await?)?);
    }
    Ok(Observation::median_of(&all).expect("at least one observation"))
}

/// A case's outcome: its report when it was measured, and its failure, if any.
#[derive(Debug)]
pub struct Checked {
    /// What was measured and how it compared.
    pub report: Option<CaseReport>,
    /// Why the case failed.
    pub failure: Option<CaseFailure>,
}

impl Checked {
    /// The report, or the failure.
    pub fn into_result(self) -> Result<CaseReport, CaseFailure> {
        match self.failure {
            Some(e) => Err(e),
            None => Ok(self.report.expect("a passing case has a report")),
        }
    }
}

struct Failed(CaseFailure, Option<Box<CaseReport>>);

impl From<PerfError> for Failed {
    fn from(e: PerfError) -> Self {
        Self(CaseFailure::Error(e), None)
    }
}

fn ok_observation(case: &CaseName, o: Observation) -> Result<Observation, PerfError> {
    if o.summary.errors > 0 {
        return Err(PerfError::Operation {
            case: case.clone(),
            errors: o.summary.errors,
            first_error: "see the case's log".into(),
        });
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::stats::Summary;

    fn obs(p50_us: f64) -> Observation {
        let summary = Summary {
            count: 100,
            errors: 0,
            min_us: p50_us,
            p50_us,
            p95_us: p50_us,
            p99_us: p50_us,
            max_us: p50_us,
            mean_us: p50_us,
            throughput_per_s: 1e6 / p50_us,
        };
        Observation {
            summary,
            references: crate::perf::calibrate::References {
                client_us: 100.0,
                parallel_us: 10.0,
                round_trip_cpu_us: 40.0,
                round_trip_us: 40.0,
                server_us: 800.0,
            },
            counted: crate::perf::counters::Counted {
                counters: None,
                round_trips: 1.0,
                server_us: None,
            },
            client_cpu_us: 10.0,
            server_cpu_us: None,
        }
    }

    fn guard(dir: &Path, mode: Mode) -> Guard {
        Guard::new(
            dir.join("b.json"),
            Environment {
                postgres_major: 15,
                profile: "debug".into(),
                durability: String::new(),
            },
            mode,
        )
    }

    async fn check(g: &Guard, figures: &[f64]) -> Result<CaseReport, CaseFailure> {
        let mut figures = figures.iter().copied();
        let case = CaseName::new("c.case").unwrap();
        g.check(&case, Bound::default(), 1, || {
            let p50 = figures.next().expect("measured too often");
            async move { Ok(obs(p50)) }
        })
        .await
        .into_result()
    }

    #[tokio::test]
    async fn a_missing_case_fails_in_check_mode_with_the_record_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = check(&guard(dir.path(), Mode::Check), &[100.0])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.case") && err.contains("PGPERF_BASELINE=new"),
            "{err}"
        );
        assert!(
            !dir.path().join("b.json").exists(),
            "check mode wrote a file"
        );
    }

    #[tokio::test]
    async fn a_confirmed_regression_fails_naming_the_case_numbers_and_remedy() {
        let dir = tempfile::tempdir().unwrap();
        check(&guard(dir.path(), Mode::RecordNew), &[100.0, 100.0, 100.0])
            .await
            .unwrap();
        let err = check(&guard(dir.path(), Mode::Check), &[300.0, 320.0, 310.0])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.case regressed") && err.contains("x3.00") && err.contains("x3.10"),
            "{err}"
        );
        assert!(err.contains("PGPERF_BASELINE=update"), "{err}");
    }

    #[tokio::test]
    async fn a_regression_that_the_re_measurement_does_not_confirm_passes() {
        let dir = tempfile::tempdir().unwrap();
        check(&guard(dir.path(), Mode::RecordNew), &[100.0, 100.0, 100.0])
            .await
            .unwrap();
        let report = check(&guard(dir.path(), Mode::Check), &[300.0, 105.0])
            .await
            .unwrap();
        assert!(report.note.unwrap().contains("noise"));
    }

    #[tokio::test]
    async fn a_regression_must_show_in_every_re_measurement() {
        let dir = tempfile::tempdir().unwrap();
        check(&guard(dir.path(), Mode::RecordNew), &[100.0, 100.0, 100.0])
            .await
            .unwrap();
        // Noisy twice in a row, then the truth: passes, and says so.
        let report = check(&guard(dir.path(), Mode::Check), &[300.0, 290.0, 104.0])
            .await
            .unwrap();
        assert!(report.note.unwrap().contains("x1.04"));
    }

    #[tokio::test]
    async fn update_rewrites_only_cases_that_moved() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(dir.path(), Mode::RecordNew);
        check(&g, &[100.0, 100.0, 100.0]).await.unwrap();
        let before = std::fs::read_to_string(g.path()).unwrap();
        check(&guard(dir.path(), Mode::Update), &[110.0])
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(g.path()).unwrap(),
            before,
            "a move within the band rewrote the file"
        );
        check(&guard(dir.path(), Mode::Update), &[300.0, 300.0, 300.0])
            .await
            .unwrap();
        assert!(
            std::fs::read_to_string(g.path())
                .unwrap()
                .contains("\"p50_us\": 300.0")
        );
    }

    #[tokio::test]
    async fn a_recording_keeps_the_median_of_three_measurements() {
        let dir = tempfile::tempdir().unwrap();
        let g = guard(dir.path(), Mode::RecordNew);
        check(&g, &[100.0, 500.0, 110.0]).await.unwrap();
        let text = std::fs::read_to_string(g.path()).unwrap();
        assert!(text.contains("\"p50_us\": 110.0"), "{text}");
    }

    #[test]
    fn a_slowdown_naming_no_case_is_refused_with_the_cases() {
        let mut g = guard(Path::new("."), Mode::Check);
        g.slowdowns = parse_slowdown(Some("a.b=3,x.y=2")).unwrap();
        let known = [CaseName::new("a.b").unwrap(), CaseName::new("c.d").unwrap()];
        let err = g.check_slowed_cases(&known).unwrap_err().to_string();
        assert!(err.contains("\"x.y\"") && err.contains("a.b, c.d"), "{err}");
        g.slowdowns.truncate(1);
        assert!(g.check_slowed_cases(&known).is_ok());
    }

    #[test]
    fn slowdown_injection_is_parsed_or_refused_by_name() {
        assert_eq!(
            parse_slowdown(Some("crud.insert=3")).unwrap(),
            vec![(CaseName::new("crud.insert").unwrap(), 3.0)]
        );
        assert_eq!(
            parse_slowdown(Some("a.b=3, c.d=2.5")).unwrap(),
            vec![
                (CaseName::new("a.b").unwrap(), 3.0),
                (CaseName::new("c.d").unwrap(), 2.5)
            ]
        );
        assert_eq!(parse_slowdown(None).unwrap(), vec![]);
        assert!(parse_slowdown(Some("a.b=3,c.d=0.5")).is_err());
        assert!(parse_slowdown(Some("Not A Case=3")).is_err());
        assert!(
            parse_slowdown(Some("crud.insert"))
                .unwrap_err()
                .to_string()
                .contains(SLOWDOWN_VAR)
        );
    }
}
