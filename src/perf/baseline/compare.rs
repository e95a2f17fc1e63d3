//! The bound policy: a pure function from a baseline and an observation to a verdict.
//!
//! Figures are normalized by a calibration round trip measured with each case, so a machine
//! that is uniformly faster or slower compares equal, while one case getting slower relative
//! to the round trip stands out.

use serde::Serialize;

use super::model::CaseBaseline;
use crate::perf::stats::Summary;

/// What one measurement of a case saw.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Observation {
    /// The case's statistics.
    pub summary: Summary,
    /// The reference round trip p50 (µs) measured with it (median of bursts before and after).
    pub calibration_us: f64,
}

impl Observation {
    /// `p50 / calibration`.
    pub fn normalized_p50(&self) -> f64 {
        self.summary.p50_us / self.calibration_us
    }
}

/// How a case compares with its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Within the bound.
    Unchanged,
    /// Slower than the warn ratio, not beyond the fail ratio (or within the floor).
    Warn,
    /// Faster than 1/fail_ratio: the baseline is stale and should be updated.
    Stale,
    /// Slower than the fail ratio and the floor.
    Regressed,
    /// The p95 is above the case's absolute ceiling.
    CeilingBreached,
}

impl Verdict {
    /// True for the verdicts that fail a test.
    pub fn fails(self) -> bool {
        matches!(self, Self::Regressed | Self::CeilingBreached)
    }

    /// A short word for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unchanged => "ok",
            Self::Warn => "WARN slower",
            Self::Stale => "stale (faster)",
            Self::Regressed => "FAIL slower",
            Self::CeilingBreached => "FAIL ceiling",
        }
    }
}

/// The numbers behind a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// The judged slowdown: the smaller of `raw_ratio` and `normalized_ratio`.
    pub ratio: f64,
    /// Current p50 over the baseline's p50, in plain microseconds.
    pub raw_ratio: f64,
    /// Current normalized p50 (p50 / calibration) over the baseline's.
    pub normalized_ratio: f64,
    /// What the baseline lets this run expect (µs): the larger of the recorded p50 and the
    /// recorded normalized p50 at this run's calibration.
    pub expected_p50_us: f64,
    /// Observed p50 minus the expectation (µs).
    pub excess_us: f64,
    /// The outcome.
    pub verdict: Verdict,
}

/// Compares an observation with a case's baseline.
///
/// A case is judged slower only when it is slower both in plain time and relative to the
/// calibration round trip (the smaller ratio): a machine that is uniformly faster or slower
/// moves only the plain figure, a disturbed calibration moves only the normalized one, and
/// neither fails a case on its own. It is judged stale only when both ratios say it is much
/// faster.
pub fn compare(baseline: &CaseBaseline, observed: &Observation) -> Comparison {
    let bound = &baseline.bound;
    let raw_ratio = observed.summary.p50_us / baseline.p50_us;
    let normalized_ratio = observed.normalized_p50() / baseline.normalized_p50;
    let ratio = raw_ratio.min(normalized_ratio);
    let expected_p50_us = baseline
        .p50_us
        .max(baseline.normalized_p50 * observed.calibration_us);
    let excess_us = observed.summary.p50_us - expected_p50_us;
    let verdict = if bound
        .p95_ceiling_us
        .is_some_and(|c| observed.summary.p95_us > c)
    {
        Verdict::CeilingBreached
    } else if ratio > bound.fail_ratio && excess_us > bound.floor_us {
        Verdict::Regressed
    } else if ratio > bound.warn_ratio {
        Verdict::Warn
    } else if raw_ratio.max(normalized_ratio) < 1.0 / bound.fail_ratio {
        Verdict::Stale
    } else {
        Verdict::Unchanged
    };
    Comparison {
        ratio,
        raw_ratio,
        normalized_ratio,
        expected_p50_us,
        excess_us,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::baseline::model::Bound;

    const CALIBRATION: f64 = 40.0;

    fn baseline(p50_us: f64) -> CaseBaseline {
        CaseBaseline {
            bound: Bound::default(),
            calibration_us: CALIBRATION,
            concurrency: 1,
            normalized_p50: p50_us / CALIBRATION,
            p50_us,
            p95_us: p50_us * 1.5,
            p99_us: p50_us * 2.0,
            throughput_per_s: 1e6 / p50_us,
        }
    }

    fn seen(p50_us: f64, calibration_us: f64) -> Observation {
        let summary = Summary {
            count: 1000,
            errors: 0,
            min_us: p50_us * 0.8,
            p50_us,
            p95_us: p50_us * 1.5,
            p99_us: p50_us * 2.0,
            max_us: p50_us * 3.0,
            mean_us: p50_us,
            throughput_per_s: 1e6 / p50_us,
        };
        Observation {
            summary,
            calibration_us,
        }
    }

    #[test]
    fn noise_within_the_band_passes() {
        for factor in [0.8, 0.9, 1.0, 1.1, 1.25] {
            let c = compare(&baseline(200.0), &seen(200.0 * factor, CALIBRATION));
            assert_eq!(c.verdict, Verdict::Unchanged, "factor {factor}: {c:?}");
            // and with the calibration moving the other way by as much
            let c = compare(
                &baseline(200.0),
                &seen(200.0 * factor, CALIBRATION / factor),
            );
            assert_ne!(c.verdict, Verdict::Regressed, "factor {factor}: {c:?}");
        }
    }

    #[test]
    fn a_twofold_regression_fails() {
        let c = compare(&baseline(200.0), &seen(400.0, CALIBRATION));
        assert_eq!(c.verdict, Verdict::Regressed);
        assert!(
            (c.ratio - 2.0).abs() < 1e-9 && (c.excess_us - 200.0).abs() < 1e-9,
            "{c:?}"
        );
    }

    #[test]
    fn a_uniformly_faster_or_slower_machine_passes() {
        for speed in [0.5, 2.0] {
            let c = compare(&baseline(200.0), &seen(200.0 * speed, CALIBRATION * speed));
            assert_eq!(
                c.verdict,
                Verdict::Unchanged,
                "machine speed factor {speed}: {c:?}"
            );
        }
    }

    #[test]
    fn a_disturbed_calibration_alone_does_not_fail_a_case() {
        // The round trip looked twice as fast (a lucky calibration) while the case is unchanged.
        let c = compare(&baseline(200.0), &seen(200.0, CALIBRATION * 0.5));
        assert_eq!(c.verdict, Verdict::Unchanged, "{c:?}");
        assert!((c.normalized_ratio - 2.0).abs() < 1e-9 && (c.raw_ratio - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_twofold_regression_fails_whatever_the_calibration_did() {
        for calibration in [CALIBRATION * 0.8, CALIBRATION, CALIBRATION * 1.2] {
            let c = compare(&baseline(200.0), &seen(400.0, calibration));
            assert_eq!(
                c.verdict,
                Verdict::Regressed,
                "calibration {calibration}: {c:?}"
            );
        }
    }

    #[test]
    fn a_slowdown_between_warn_and_fail_warns() {
        assert_eq!(
            compare(&baseline(200.0), &seen(290.0, CALIBRATION)).verdict,
            Verdict::Warn
        );
    }

    #[test]
    fn the_floor_keeps_tiny_cases_from_failing_on_jitter() {
        // 10 µs -> 30 µs is 3x, but only 20 µs above the expectation: under the 25 µs floor.
        assert_eq!(
            compare(&baseline(10.0), &seen(30.0, CALIBRATION)).verdict,
            Verdict::Warn
        );
        assert_eq!(
            compare(&baseline(10.0), &seen(40.0, CALIBRATION)).verdict,
            Verdict::Regressed
        );
    }

    #[test]
    fn a_much_faster_case_says_the_baseline_is_stale() {
        assert_eq!(
            compare(&baseline(200.0), &seen(90.0, CALIBRATION)).verdict,
            Verdict::Stale
        );
    }

    #[test]
    fn an_absolute_ceiling_fails_even_when_the_ratio_is_fine() {
        let mut b = baseline(200.0);
        b.bound.p95_ceiling_us = Some(250.0);
        assert_eq!(
            compare(&b, &seen(200.0, CALIBRATION)).verdict,
            Verdict::CeilingBreached
        );
    }
}
