//! The baseline file's schema. Field order is alphabetical and maps are `BTreeMap`s, so the
//! serialized keys are sorted and a diff shows only what moved.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::perf::PerfError;
use crate::perf::stats::round_sig;

/// Version of the file format; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Written into every file so that a reviewer reads how the bounds work where they are.
pub const ABOUT: &str = "pgperf baseline. Per case: latencies in microseconds, and calibration_us, \
a reference (geometric mean of a SELECT 1 round trip and a fixed piece of server work) measured in bursts right before and after the case on the same \
server (median of the bursts' p50s). A case fails only when its p50 is more than bound.fail_ratio \
above the baseline both in plain time and relative to calibration_us (normalized_p50), AND more \
than bound.floor_us above what the baseline expects, AND two re-measurements agree; above warn_ratio \
it warns; when both ratios are below 1/fail_ratio it says the baseline is stale. p95_ceiling_us, \
when set, is an absolute limit. Accept an intended change with PGPERF_BASELINE=update scripts/test \
(see README, Baselines).";

/// A case's name: lowercase letters, digits, `.`, `_` and `-`, 1 to 80 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaseName(String);

impl CaseName {
    /// Checks a case name.
    pub fn new(name: impl Into<String>) -> Result<Self, PerfError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 80
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok {
            Ok(Self(name))
        } else {
            Err(PerfError::BadCaseName { name })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CaseName {
    type Error = PerfError;
    fn try_from(s: String) -> Result<Self, PerfError> {
        Self::new(s)
    }
}

impl From<CaseName> for String {
    fn from(c: CaseName) -> String {
        c.0
    }
}

impl fmt::Display for CaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What must match for figures to be comparable. No host names, no timestamps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// PostgreSQL major version of the server measured.
    pub postgres_major: u32,
    /// Cargo profile of the measuring binary (`debug` for `cargo test`, `release` for the CLI).
    pub profile: String,
}

impl Environment {
    /// The current binary's profile.
    pub fn current_profile() -> &'static str {
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    }
}

/// A case's bound: how far it may move before it warns or fails.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    /// Fail when the normalized p50 grew by more than this factor (and `floor_us`).
    pub fail_ratio: f64,
    /// Absolute excess (µs, over the calibrated expectation) below which nothing fails, so a
    /// 20 µs operation cannot fail on a few µs of jitter.
    pub floor_us: f64,
    /// Absolute p95 limit in µs (k6-style threshold), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ceiling_us: Option<f64>,
    /// Warn when the normalized p50 grew by more than this factor.
    pub warn_ratio: f64,
}

impl Default for Bound {
    /// fail 1.6x, warn 1.3x, floor 25 µs; see the README for the reasoning.
    fn default() -> Self {
        Self {
            fail_ratio: 1.6,
            floor_us: 25.0,
            p95_ceiling_us: None,
            warn_ratio: 1.3,
        }
    }
}

impl Bound {
    /// Checks the bound is meaningful; the message names the case and field.
    pub fn validate(&self, case: &CaseName) -> Result<(), PerfError> {
        let bad = |field: &str, reason: &str| PerfError::BadBound {
            case: case.clone(),
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        if !(self.fail_ratio > 1.0 && self.fail_ratio.is_finite()) {
            return Err(bad("fail_ratio", "must be a number above 1"));
        }
        if !(self.warn_ratio > 1.0 && self.warn_ratio <= self.fail_ratio) {
            return Err(bad("warn_ratio", "must be above 1 and at most fail_ratio"));
        }
        if !(self.floor_us >= 0.0 && self.floor_us.is_finite()) {
            return Err(bad("floor_us", "must be zero or more"));
        }
        if self.p95_ceiling_us.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return Err(bad("p95_ceiling_us", "must be above zero"));
        }
        Ok(())
    }
}

/// The recorded figures of one case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseBaseline {
    /// The bound the case is held to.
    pub bound: Bound,
    /// Reference round trip p50 (µs) measured with the case.
    pub calibration_us: f64,
    /// Tasks that ran the case concurrently.
    pub concurrency: u32,
    /// `p50_us / calibration_us`: the figure that is compared.
    pub normalized_p50: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 95th percentile, µs.
    pub p95_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Operations per second.
    pub throughput_per_s: f64,
}

impl CaseBaseline {
    /// The same figures rounded to 3 significant digits, as they are written.
    pub fn rounded(self) -> Self {
        let r = |x: f64| round_sig(x, 3);
        Self {
            bound: Bound {
                p95_ceiling_us: self.bound.p95_ceiling_us.map(r),
                ..self.bound
            },
            calibration_us: r(self.calibration_us),
            concurrency: self.concurrency,
            normalized_p50: r(self.normalized_p50),
            p50_us: r(self.p50_us),
            p95_us: r(self.p95_us),
            p99_us: r(self.p99_us),
            throughput_per_s: r(self.throughput_per_s),
        }
    }
}

/// A whole baseline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineFile {
    /// How to read the file (constant text).
    #[serde(default)]
    pub about: String,
    /// The cases, by name.
    pub cases: BTreeMap<CaseName, CaseBaseline>,
    /// What the figures were measured on.
    pub environment: Environment,
    /// [`SCHEMA_VERSION`] when written.
    pub schema_version: u32,
}

impl BaselineFile {
    /// An empty file for an environment.
    pub fn new(environment: Environment) -> Self {
        Self {
            about: ABOUT.to_owned(),
            cases: BTreeMap::new(),
            environment,
            schema_version: SCHEMA_VERSION,
        }
    }
}
