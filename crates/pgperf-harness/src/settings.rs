//! The harness's settings, read from the environment once, here and nowhere else in this
//! crate, and checked as they are read: a malformed value is an error naming its variable.

use std::time::Duration;

use crate::perf::PerfError;
use crate::perf::baseline::mode::MODE_VAR;
use crate::perf::baseline::{CaseName, Mode};
use crate::perf::guard::{SLOWDOWN_VAR, parse_slowdown};
use crate::perf::wire::{WIRE_DELAY_VAR, parse_delay};

/// The variable CI systems set; under it baselines are only checked, and reports annotate.
pub const CI_VAR: &str = "CI";

/// How the harness judges and what it may write.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Whether this is CI (`CI` set, and not `false` or `0`).
    pub ci: bool,
    /// What a run does with baselines (`PGPERF_BASELINE`; CI: check only).
    pub mode: Mode,
    /// Slowdowns injected into cases, to prove the guard (`PGPERF_INJECT_SLOWDOWN`).
    pub slowdowns: Vec<(CaseName, f64)>,
    /// A delay added to every round trip by a relay (`PGPERF_WIRE_DELAY_US`), to reproduce a
    /// dearer network on this machine.
    pub wire_delay: Option<Duration>,
}

impl Settings {
    /// Reads the process's environment.
    pub fn from_env() -> Result<Self, PerfError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `var` (testable).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, PerfError> {
        let ci = var(CI_VAR).is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
        Ok(Self {
            ci,
            mode: Mode::parse(var(MODE_VAR).as_deref(), ci)?,
            slowdowns: parse_slowdown(var(SLOWDOWN_VAR).as_deref())?,
            wire_delay: parse_delay(var(WIRE_DELAY_VAR).as_deref())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn nothing_set_records_new_cases_and_injects_nothing() {
        let s = Settings::from_vars(vars(&[])).unwrap();
        assert_eq!(
            (s.ci, s.mode, s.slowdowns.len(), s.wire_delay),
            (false, Mode::RecordNew, 0, None)
        );
    }

    #[test]
    fn ci_checks_only_and_refuses_to_write() {
        let s = Settings::from_vars(vars(&[(CI_VAR, "true")])).unwrap();
        assert_eq!((s.ci, s.mode), (true, Mode::Check));
        let err = Settings::from_vars(vars(&[(CI_VAR, "1"), (MODE_VAR, "force")])).unwrap_err();
        assert!(err.to_string().contains(MODE_VAR), "{err}");
        let s = Settings::from_vars(vars(&[(CI_VAR, "false")])).unwrap();
        assert!(!s.ci);
    }

    #[test]
    fn each_malformed_value_names_its_variable() {
        for (name, value) in [
            (SLOWDOWN_VAR, "crud.update_entity"),
            (WIRE_DELAY_VAR, "150us"),
            (WIRE_DELAY_VAR, "100001"),
            (MODE_VAR, "sometimes"),
        ] {
            let pairs: &'static [(&str, &str)] = Box::leak(Box::new([(name, value)]));
            let err = Settings::from_vars(vars(pairs)).unwrap_err().to_string();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
        let s = Settings::from_vars(vars(&[(WIRE_DELAY_VAR, " 150 ")])).unwrap();
        assert_eq!(s.wire_delay, Some(Duration::from_micros(150)));
    }
}
