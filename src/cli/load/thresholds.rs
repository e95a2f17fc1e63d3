//! The thresholds of `pgperf load`, from `load/thresholds.toml` (committed; built in).

use std::path::Path;

use serde::{Deserialize, Serialize};

const DEFAULT_TOML: &str = include_str!("../../../load/thresholds.toml");

/// A p50 bound, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P50 {
    /// The bound.
    pub p50_ms: f64,
}

/// A p95 bound, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P95 {
    /// The bound.
    pub p95_ms: f64,
}

/// The database bound, from the service's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The worst p95 of a database operation, ms.
    pub query_p95_ms: f64,
}

/// The error bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Errors {
    /// Failed over all responses, at the end.
    pub rate: f64,
    /// The same over the last window: the run stops.
    pub abort_rate: f64,
    /// The window, seconds.
    pub abort_window_s: u64,
}

/// The throughput bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throughput {
    /// Achieved over target searches per second, at least.
    pub min_ratio: f64,
}

/// Every threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadThresholds {
    /// Cached search.
    pub cached_search: P50,
    /// Uncached search.
    pub uncached_search: P95,
    /// Database operations.
    pub database: Database,
    /// Errors.
    pub errors: Errors,
    /// Throughput.
    pub throughput: Throughput,
}

impl Default for LoadThresholds {
    fn default() -> Self {
        Self::parse(DEFAULT_TOML, "load/thresholds.toml (built in)")
            .expect("the committed load thresholds are valid")
    }
}

impl LoadThresholds {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the thresholds file {}: {e}", path.display())
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks; `name` names the source in errors.
    pub fn parse(text: &str, name: &str) -> anyhow::Result<Self> {
        let t: Self = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "the thresholds file {name} is malformed: {}",
                e.to_string().trim_end()
            )
        })?;
        let positive = [
            ("cached_search.p50_ms", t.cached_search.p50_ms),
            ("uncached_search.p95_ms", t.uncached_search.p95_ms),
            ("database.query_p95_ms", t.database.query_p95_ms),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                anyhow::bail!("the thresholds file {name}: {field} must be above 0");
            }
        }
        for (field, v) in [
            ("errors.rate", t.errors.rate),
            ("errors.abort_rate", t.errors.abort_rate),
            ("throughput.min_ratio", t.throughput.min_ratio),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                anyhow::bail!("the thresholds file {name}: {field} must be from 0 to 1");
            }
        }
        if !(1..=600).contains(&t.errors.abort_window_s) {
            anyhow::bail!(
                "the thresholds file {name}: errors.abort_window_s must be from 1 to 600"
            );
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_thresholds_are_the_product_targets() {
        let t = LoadThresholds::default();
        assert_eq!(
            (
                t.cached_search.p50_ms,
                t.uncached_search.p95_ms,
                t.database.query_p95_ms,
                t.errors.rate
            ),
            (400.0, 3000.0, 1000.0, 0.05)
        );
    }

    #[test]
    fn a_bad_file_names_the_field() {
        let e = LoadThresholds::parse(&DEFAULT_TOML.replace("rate = 0.05", "rate = 5"), "t.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "the thresholds file t.toml: errors.rate must be from 0 to 1"
        );
        let e = LoadThresholds::parse("[cached_search]\np50_ms = 1\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("malformed") && e.contains("uncached_search"),
            "{e}"
        );
    }
}
