//! The review workflow, in the style of insta: one environment variable chooses what happens
//! to baselines, and CI never writes.

use crate::perf::PerfError;

/// The variable that chooses the mode.
pub const MODE_VAR: &str = "PGPERF_BASELINE";

/// What a run does with baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Compare only; a missing case fails with the command that records it. CI's mode.
    Check,
    /// Compare; record cases that have no baseline yet; never change an existing one. The
    /// default outside CI, so a new test records its case on first local run.
    RecordNew,
    /// Record new cases and rewrite those that moved beyond the noise band (`warn_ratio`
    /// either way); regressions are accepted instead of failing. For intended changes.
    Update,
    /// Rewrite every measured case (a new machine or measure).
    Force,
}

impl Mode {
    /// The mode of [`crate::settings::Settings::from_env`].
    pub fn from_env() -> Result<Self, PerfError> {
        Ok(crate::settings::Settings::from_env()?.mode)
    }

    /// [`MODE_VAR`]'s value, under `CI` or not: `check`, `auto` or unset (CI: check; else
    /// record new), `update`, `force`. Writing modes are refused in CI.
    pub fn parse(value: Option<&str>, ci: bool) -> Result<Self, PerfError> {
        let mode = match value.map(str::trim).unwrap_or("") {
            "" | "auto" => {
                if ci {
                    Self::Check
                } else {
                    Self::RecordNew
                }
            }
            "check" => Self::Check,
            "new" => Self::RecordNew,
            "update" => Self::Update,
            "force" => Self::Force,
            other => {
                return Err(PerfError::BadMode {
                    var: MODE_VAR,
                    value: other.to_owned(),
                });
            }
        };
        if ci && mode != Self::Check {
            return Err(PerfError::WriteInCi { var: MODE_VAR });
        }
        Ok(mode)
    }

    /// Whether this mode may write the baseline file.
    pub fn writes(self) -> bool {
        self != Self::Check
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_checks_by_default_and_local_runs_record_new_cases() {
        assert_eq!(Mode::parse(None, true).unwrap(), Mode::Check);
        assert_eq!(Mode::parse(None, false).unwrap(), Mode::RecordNew);
        assert_eq!(Mode::parse(Some("auto"), false).unwrap(), Mode::RecordNew);
    }

    #[test]
    fn ci_never_writes() {
        let err = Mode::parse(Some("update"), true).unwrap_err();
        assert!(err.to_string().contains("CI"), "{err}");
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_choices() {
        let err = Mode::parse(Some("yes"), false).unwrap_err().to_string();
        assert!(
            err.contains("PGPERF_BASELINE") && err.contains("check, new, update, force"),
            "{err}"
        );
    }
}
