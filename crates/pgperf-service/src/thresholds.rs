//! The alert thresholds of `GET /health/database/detailed`, from a TOML file. The committed
//! `monitoring/thresholds.toml` is the default (built in), and the Prometheus rules in
//! `monitoring/prometheus/alerts.yml` use the same numbers.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The committed defaults.
pub const DEFAULT_TOML: &str = include_str!("../../../monitoring/thresholds.toml");

/// Where a check trips.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The check warns at this value (at or beyond it).
    pub warn: f64,
    /// The check fails at this value; none: it never fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<f64>,
}

/// A check's verdict (the IETF health check draft's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Pass,
    /// Healthy, with a concern.
    Warn,
    /// Unhealthy.
    Fail,
}

impl Limits {
    /// The status of `value` where higher is worse.
    pub fn above(&self, value: f64) -> Status {
        if self.fail.is_some_and(|f| value >= f) {
            Status::Fail
        } else if value >= self.warn {
            Status::Warn
        } else {
            Status::Pass
        }
    }

    /// The status of `value` where lower is worse.
    pub fn below(&self, value: f64) -> Status {
        if self.fail.is_some_and(|f| value <= f) {
            Status::Fail
        } else if value <= self.warn {
            Status::Warn
        } else {
            Status::Pass
        }
    }
}

/// Every threshold (see `monitoring/thresholds.toml` for their meaning and units).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// The window of rates and percentiles, seconds.
    pub window_seconds: u64,
    /// Fewest samples in the window for a rate or percentile to be judged.
    pub min_samples: u64,
    /// The monitor query's time, ms.
    pub response_time_ms: Limits,
    /// In use over max.
    pub pool_utilization: Limits,
    /// Waiting acquirers now.
    pub pending_acquirers: Limits,
    /// Acquire timeouts within the window.
    pub acquire_timeouts: Limits,
    /// p95 of database operations, ms.
    pub query_p95_ms: Limits,
    /// p95 of cached searches, ms.
    pub cached_search_p95_ms: Limits,
    /// 5xx responses over all.
    pub error_rate: Limits,
    /// Oldest running statement, s.
    pub long_running_query_s: Limits,
    /// Cache hits over lookups (lower is worse).
    pub cache_hit_ratio: Limits,
}

/// A thresholds file that cannot be used; the message names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ThresholdsError {
    /// Not readable.
    #[error("cannot read the thresholds file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or a field missing, unknown or of the wrong type.
    #[error("the thresholds file {path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// The parser's words, with the line.
        reason: String,
    },
    /// A value out of its range.
    #[error("the thresholds file {path}: {field} {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// The field, e.g. `pool_utilization.fail`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl Default for Thresholds {
    fn default() -> Self {
        Self::parse(DEFAULT_TOML, "monitoring/thresholds.toml (built in)")
            .expect("the committed thresholds are valid")
    }
}

impl Thresholds {
    /// Reads and checks a thresholds file.
    pub fn load(path: &Path) -> Result<Self, ThresholdsError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ThresholdsError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(&text, &name)
    }

    /// Parses and checks thresholds; `name` names the source in errors.
    pub fn parse(text: &str, name: &str) -> Result<Self, ThresholdsError> {
        let t: Self = toml::from_str(text).map_err(|e| ThresholdsError::Malformed {
            path: name.to_owned(),
            reason: e.to_string().trim_end().to_owned(),
        })?;
        t.validate(name)?;
        Ok(t)
    }

    /// The checks by name, with whether higher is worse.
    pub fn named(&self) -> [(&'static str, &Limits, bool); 9] {
        [
            ("response_time_ms", &self.response_time_ms, true),
            ("pool_utilization", &self.pool_utilization, true),
            ("pending_acquirers", &self.pending_acquirers, true),
            ("acquire_timeouts", &self.acquire_timeouts, true),
            ("query_p95_ms", &self.query_p95_ms, true),
            ("cached_search_p95_ms", &self.cached_search_p95_ms, true),
            ("error_rate", &self.error_rate, true),
            ("long_running_query_s", &self.long_running_query_s, true),
            ("cache_hit_ratio", &self.cache_hit_ratio, false),
        ]
    }

    fn validate(&self, name: &str) -> Result<(), ThresholdsError> {
        let bad = |field: String, reason: &str| ThresholdsError::Invalid {
            path: name.to_owned(),
            field,
            reason: reason.to_owned(),
        };
        if !(1..=3600).contains(&self.window_seconds) {
            return Err(bad(
                "window_seconds".into(),
                "must be from 1 to 3600 seconds",
            ));
        }
        for (check, l, higher_is_worse) in self.named() {
            if !(l.warn.is_finite() && l.warn >= 0.0) {
                return Err(bad(format!("{check}.warn"), "must be a number, 0 or more"));
            }
            let Some(fail) = l.fail else { continue };
            if !(fail.is_finite() && fail >= 0.0) {
                return Err(bad(format!("{check}.fail"), "must be a number, 0 or more"));
            }
            if higher_is_worse && fail < l.warn {
                return Err(bad(format!("{check}.fail"), "must be at least warn"));
            }
            if !higher_is_worse && fail > l.warn {
                return Err(bad(
                    format!("{check}.fail"),
                    "must be at most warn (lower is worse)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_committed_defaults_follow_the_product_targets() {
        let t = Thresholds::default();
        assert_eq!(t.query_p95_ms.fail, Some(1000.0));
        assert_eq!(t.cached_search_p95_ms.fail, Some(400.0));
        assert_eq!(t.error_rate.fail, Some(0.05));
        assert_eq!(t.window_seconds, 60);
    }

    #[test]
    fn limits_trip_at_their_values_in_the_right_direction() {
        let up = Limits {
            warn: 0.8,
            fail: Some(1.0),
        };
        assert_eq!(
            [0.5, 0.8, 0.99, 1.0].map(|v| up.above(v)),
            [Status::Pass, Status::Warn, Status::Warn, Status::Fail]
        );
        let down = Limits {
            warn: 0.3,
            fail: None,
        };
        assert_eq!(
            [0.0, 0.3, 0.31].map(|v| down.below(v)),
            [Status::Warn, Status::Warn, Status::Pass]
        );
    }

    /// The unit a threshold's name ends in, as a factor to Prometheus's base unit.
    fn to_base_units(check: &str) -> f64 {
        if check.ends_with("_ms") { 1e-3 } else { 1.0 }
    }

    #[test]
    fn the_alert_rules_use_the_same_thresholds() {
        let rules = include_str!("../../../monitoring/prometheus/alerts.yml");
        let t = Thresholds::default();
        let mut seen = Vec::new();
        // Each rule is a block from `- alert:`; its expr ends with `>= N` or `<= N`, and its
        // `threshold` label names the entry, e.g. `pool_utilization.warn`.
        for block in rules.split("      - alert: ").skip(1) {
            let Some(label) = block
                .lines()
                .find_map(|l| l.trim().strip_prefix("threshold: "))
            else {
                continue;
            };
            let (check, level) = label.split_once('.').expect("check.level");
            let expr = block
                .lines()
                .find_map(|l| l.trim().strip_prefix("expr: "))
                .expect("an expr");
            let number: f64 = expr
                .rsplit(' ')
                .next()
                .unwrap()
                .parse()
                .expect("a number last");
            let (_, limits, higher_is_worse) = t
                .named()
                .into_iter()
                .find(|(n, _, _)| *n == check)
                .unwrap_or_else(|| panic!("{label}: no such threshold"));
            let want = match level {
                "warn" => limits.warn,
                "fail" => limits.fail.expect("a fail threshold"),
                other => panic!("{label}: level {other}"),
            } * to_base_units(check);
            let op = if higher_is_worse { " >= " } else { " <= " };
            assert!(expr.contains(op), "{label}: {expr} should compare with{op}");
            assert!(
                (number - want).abs() < 1e-12,
                "{label}: the rule says {number}, the file {want}"
            );
            seen.push(label.to_owned());
        }
        // Every threshold has its rules: warn, and fail where there is one.
        for (check, limits, _) in t.named() {
            assert!(
                seen.contains(&format!("{check}.warn")),
                "no rule for {check}.warn"
            );
            if limits.fail.is_some() {
                assert!(
                    seen.contains(&format!("{check}.fail")),
                    "no rule for {check}.fail"
                );
            }
        }
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_field() {
        let swap = DEFAULT_TOML.replace(
            "[pool_utilization]\nwarn = 0.8\nfail = 1.0",
            "[pool_utilization]\nwarn = 0.8\nfail = 0.5",
        );
        assert_ne!(swap, DEFAULT_TOML);
        let e = Thresholds::parse(&swap, "t.toml").unwrap_err().to_string();
        assert_eq!(
            e,
            "the thresholds file t.toml: pool_utilization.fail must be at least warn"
        );

        let unknown = format!("{DEFAULT_TOML}\n[pool_utilisation]\nwarn = 1\n");
        let e = Thresholds::parse(&unknown, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("the thresholds file t.toml is malformed:")
                && e.contains("pool_utilisation"),
            "{e}"
        );

        let missing = DEFAULT_TOML.replace("[error_rate]\nwarn = 0.01\nfail = 0.05\n", "");
        let e = Thresholds::parse(&missing, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("error_rate"), "{e}");
    }
}
