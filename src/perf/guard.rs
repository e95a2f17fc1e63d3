//! The guard: measures a case, compares it with its baseline, confirms a regression by
//! measuring again, and records figures as the mode allows.

use std::future::Future;
use std::path::{Path, PathBuf};

use super::PerfError;
use super::baseline::{
    Bound, CaseBaseline, CaseName, Environment, Mode, Observation, Verdict, compare, storage,
};
use super::measure::Slowdown;
use super::report::CaseReport;

/// Variable that injects a deliberate slowdown into one case (to prove the guard works).
pub const SLOWDOWN_VAR: &str = "PGPERF_INJECT_SLOWDOWN";

/// Re-measurements that must all agree before a case fails.
pub const CONFIRMATIONS: usize = 2;

/// Holds cases to one baseline file.
#[derive(Debug, Clone)]
pub struct Guard {
    path: PathBuf,
    environment: Environment,
    mode: Mode,
    slowdown: Option<(String, f64)>,
}

fn parse_slowdown(value: Option<&str>) -> Result<Option<(String, f64)>, PerfError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let bad = || PerfError::BadSlowdown {
        var: SLOWDOWN_VAR,
        value: value.to_owned(),
    };
    let (case, factor) = value.split_once('=').ok_or_else(bad)?;
    let factor: f64 = factor.trim().parse().map_err(|_| bad())?;
    if !(factor >= 1.0 && factor.is_finite()) || case.trim().is_empty() {
        return Err(bad());
    }
    Ok(Some((case.trim().to_owned(), factor)))
}

impl Guard {
    /// A guard for `path`, reading the mode and any slowdown injection from the environment.
    pub fn from_env(path: impl Into<PathBuf>, environment: Environment) -> Result<Self, PerfError> {
        let slowdown = parse_slowdown(std::env::var(SLOWDOWN_VAR).ok().as_deref())?;
        Ok(Self {
            path: path.into(),
            environment,
            mode: Mode::from_env()?,
            slowdown,
        })
    }

    /// A guard with an explicit mode and no injection.
    pub fn new(path: impl Into<PathBuf>, environment: Environment, mode: Mode) -> Self {
        Self {
            path: path.into(),
            environment,
            mode,
            slowdown: None,
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
        self.slowdown
            .as_ref()
            .filter(|(c, _)| c == case.as_str())
            .map(|(_, f)| Slowdown(*f))
    }

    fn recorded(&self, case: &CaseName) -> Result<Option<CaseBaseline>, PerfError> {
        let Some(file) = storage::load(&self.path)? else {
            return Ok(None);
        };
        storage::check_comparable(&self.path, &file, &self.environment)?;
        Ok(file.cases.get(case).copied())
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
            calibration_us: o.calibration_us,
            concurrency,
            normalized_p50: o.normalized_p50(),
            p50_us: o.summary.p50_us,
            p95_us: o.summary.p95_us,
            p99_us: o.summary.p99_us,
            throughput_per_s: o.summary.throughput_per_s,
        };
        storage::save_case(&self.path, &self.environment, case, baseline)
    }

    /// Measures `case` with `measure` and holds it to its baseline. `bound` is used only for a
    /// case recorded for the first time; the file's bound (reviewed) wins afterwards.
    pub async fn check<F, Fut>(
        &self,
        case: &CaseName,
        bound: Bound,
        concurrency: u32,
        mut measure: F,
    ) -> Result<CaseReport, PerfError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Observation, PerfError>>,
    {
        bound.validate(case)?;
        let first = ok_observation(case, measure().await?)?;
        let Some(baseline) = self.recorded(case)? else {
            if !self.mode.writes() {
                return Err(PerfError::MissingCase {
                    case: case.to_string(),
                    path: self.path.clone(),
                });
            }
            self.save(case, bound, concurrency, &first)?;
            return Ok(CaseReport::new(case, first, None).recorded("new case recorded"));
        };
        let cmp = compare(&baseline, &first);
        match self.mode {
            Mode::Force => {
                self.save(case, baseline.bound, concurrency, &first)?;
                return Ok(CaseReport::new(case, first, Some((baseline, cmp)))
                    .recorded("re-recorded (force)"));
            }
            Mode::Update if cmp.verdict != Verdict::Unchanged => {
                self.save(case, baseline.bound, concurrency, &first)?;
                return Ok(CaseReport::new(case, first, Some((baseline, cmp)))
                    .recorded("updated: moved beyond the noise band"));
            }
            _ => {}
        }
        if !cmp.verdict.fails() {
            return Ok(CaseReport::new(case, first, Some((baseline, cmp))));
        }
        // Confirm before failing: a regression must show in every one of CONFIRMATIONS more
        // measurements, so a noisy moment (one, or two in a row) never fails a PR, while a real
        // slowdown, which shows every time, still does.
        let mut latest = (first, cmp);
        for _ in 0..CONFIRMATIONS {
            let again = ok_observation(case, measure().await?)?;
            let confirm = compare(&baseline, &again);
            if !confirm.verdict.fails() {
                return Ok(
                    CaseReport::new(case, again, Some((baseline, confirm))).noted(format!(
                        "first measurement x{:.2} was noise: re-measured x{:.2}",
                        cmp.ratio, confirm.ratio
                    )),
                );
            }
            latest = (again, confirm);
        }
        let (last, confirm) = latest;
        Err(match confirm.verdict {
            Verdict::CeilingBreached => PerfError::CeilingBreached {
                case: case.to_string(),
                p95_us: last.summary.p95_us,
                ceiling_us: baseline.bound.p95_ceiling_us.unwrap_or_default(),
                path: self.path.clone(),
            },
            _ => PerfError::Regression {
                case: case.to_string(),
                p50_us: last.summary.p50_us,
                expected_p50_us: confirm.expected_p50_us,
                calibration_us: last.calibration_us,
                ratio: cmp.ratio,
                confirm_ratio: confirm.ratio,
                fail_ratio: baseline.bound.fail_ratio,
                floor_us: baseline.bound.floor_us,
                path: self.path.clone(),
            },
        })
    }
}

fn ok_observation(case: &CaseName, o: Observation) -> Result<Observation, PerfError> {
    if o.summary.errors > 0 {
        return Err(PerfError::Operation {
            case: case.to_string(),
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
            calibration_us: 40.0,
        }
    }

    fn guard(dir: &Path, mode: Mode) -> Guard {
        Guard::new(
            dir.join("b.json"),
            Environment {
                postgres_major: 15,
                profile: "debug".into(),
            },
            mode,
        )
    }

    async fn check(g: &Guard, figures: &[f64]) -> Result<CaseReport, PerfError> {
        let mut figures = figures.iter().copied();
        let case = CaseName::new("c.case").unwrap();
        g.check(&case, Bound::default(), 1, || {
            let p50 = figures.next().expect("measured too often");
            async move { Ok(obs(p50)) }
        })
        .await
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
        check(&guard(dir.path(), Mode::RecordNew), &[100.0])
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
        check(&guard(dir.path(), Mode::RecordNew), &[100.0])
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
        check(&guard(dir.path(), Mode::RecordNew), &[100.0])
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
        check(&g, &[100.0]).await.unwrap();
        let before = std::fs::read_to_string(g.path()).unwrap();
        check(&guard(dir.path(), Mode::Update), &[110.0])
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(g.path()).unwrap(),
            before,
            "a move within the band rewrote the file"
        );
        check(&guard(dir.path(), Mode::Update), &[300.0])
            .await
            .unwrap();
        assert!(
            std::fs::read_to_string(g.path())
                .unwrap()
                .contains("\"p50_us\": 300.0")
        );
    }

    #[test]
    fn slowdown_injection_is_parsed_or_refused_by_name() {
        assert_eq!(
            parse_slowdown(Some("crud.insert=3")).unwrap(),
            Some(("crud.insert".into(), 3.0))
        );
        assert_eq!(parse_slowdown(None).unwrap(), None);
        assert!(
            parse_slowdown(Some("crud.insert"))
                .unwrap_err()
                .to_string()
                .contains(SLOWDOWN_VAR)
        );
    }
}
