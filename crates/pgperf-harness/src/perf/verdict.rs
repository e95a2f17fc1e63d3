//! A case's failure: a breach of its bound, which is the guard's verdict on the code (an
//! outcome of measuring, not an error), or an error that kept the case from being judged.

use std::path::PathBuf;

use super::PerfError;

/// Why a case did not pass.
#[derive(Debug, thiserror::Error)]
pub enum CaseFailure {
    /// The guard's verdict: the code got slower, or did more work, than its bound allows.
    #[error(transparent)]
    Breach(#[from] Breach),
    /// The case could not be measured or judged (no baseline, the server, the harness).
    #[error(transparent)]
    Error(#[from] PerfError),
}

impl CaseFailure {
    /// True for a verdict on the code, as opposed to a run that could not judge it.
    pub fn is_breach(&self) -> bool {
        matches!(self, Self::Breach(_))
    }
}

/// A case's figures broke its bound, in every re-measurement.
#[derive(Debug, thiserror::Error)]
pub enum Breach {
    /// A case is slower than its bound allows, confirmed by every re-measurement.
    #[error(transparent)]
    Regression(Box<Regression>),

    /// A case's counter (round trips, statements, buffers...) is above its bound, in every
    /// re-measurement. Counters do not depend on the machine.
    #[error(transparent)]
    CounterRegression(Box<CounterRegression>),

    /// A case's p95 is above its absolute ceiling.
    #[error("case {case}: p95 {p95_us:.0} µs is above its ceiling of {ceiling_us:.0} µs (set in {})", path.display())]
    CeilingBreached {
        /// The case.
        case: crate::perf::baseline::CaseName,
        /// Observed p95, µs.
        p95_us: f64,
        /// The ceiling, µs.
        ceiling_us: f64,
        /// The baseline file.
        path: PathBuf,
    },
}

/// A case is slower than its bound allows, confirmed by every re-measurement.
#[derive(Debug, thiserror::Error)]
#[error(
    "case {case} regressed: p50 {p50_us:.0} µs where this machine should take {expected_p50_us:.0} µs \
     (the baseline's {recorded_p50_us:.0} µs, its round trips, server and client time each scaled by \
     this run's references: {references}): x{ratio:.2}, re-measured x{confirm_ratio:.2}; the bound \
     fails above x{fail_ratio} and +{floor_us:.0} µs. If the change is intended, accept it with \
     `PGPERF_BASELINE=update {command}` and commit {} with a note in the PR",
    path.display()
)]
pub struct Regression {
    /// The case.
    pub case: crate::perf::baseline::CaseName,
    /// Observed p50 (of the confirming run), µs.
    pub p50_us: f64,
    /// What the model expects on this machine, µs.
    pub expected_p50_us: f64,
    /// The recorded p50, µs.
    pub recorded_p50_us: f64,
    /// This run's references, as text.
    pub references: String,
    /// First measurement's ratio.
    pub ratio: f64,
    /// Confirming measurement's ratio.
    pub confirm_ratio: f64,
    /// The bound's fail ratio.
    pub fail_ratio: f64,
    /// The bound's floor, µs.
    pub floor_us: f64,
    /// The command that records this file.
    pub command: &'static str,
    /// The baseline file.
    pub path: PathBuf,
}

/// A case's counter (round trips, statements, buffers...) is above its bound, in every
/// re-measurement. Counters do not depend on the machine.
#[derive(Debug, thiserror::Error)]
#[error(
    "case {case}: {counter} went from {recorded} to {measured} (the bound allows {limit}): {hint}. \
     If the change is intended, accept it with `PGPERF_BASELINE=update {command}` and commit {} \
     with a note in the PR",
    path.display()
)]
pub struct CounterRegression {
    /// The case.
    pub case: crate::perf::baseline::CaseName,
    /// The counter's name.
    pub counter: &'static str,
    /// Its recorded value (rounded for reading).
    pub recorded: String,
    /// Its measured value.
    pub measured: String,
    /// The bound.
    pub limit: String,
    /// What such a change usually means.
    pub hint: &'static str,
    /// The command that records this file.
    pub command: &'static str,
    /// The baseline file.
    pub path: PathBuf,
}
