//! Summary statistics of a latency sample, from an HdrHistogram. Pure maths, unit-tested.
//!
//! Percentiles are HdrHistogram's `value_at_quantile`: the smallest recorded value v such
//! that at least q of all samples are <= v (nearest rank), at 3 significant digits of
//! resolution (0.1 %). `p50` is the median; `mean` is the arithmetic mean of the histogram.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency recorded: 10 minutes, in nanoseconds.
const MAX_NS: u64 = 600_000_000_000;

/// A latency histogram in nanoseconds, 1 ns .. 10 min at 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

/// Records one latency (saturating at 10 minutes).
pub fn record(h: &mut Histogram<u64>, latency: Duration) {
    let ns = u64::try_from(latency.as_nanos())
        .unwrap_or(MAX_NS)
        .clamp(1, MAX_NS);
    h.saturating_record(ns);
}

/// What one measurement found. Latencies in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Operations that succeeded (recorded in the histogram).
    pub count: u64,
    /// Operations that returned an error (not in the histogram).
    pub errors: u64,
    /// Fastest, µs.
    pub min_us: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 95th percentile, µs.
    pub p95_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Slowest, µs.
    pub max_us: f64,
    /// Arithmetic mean, µs.
    pub mean_us: f64,
    /// Successful operations per second of wall time (all tasks together).
    pub throughput_per_s: f64,
}

impl Summary {
    /// Summarizes a histogram of nanoseconds measured over `wall` time.
    pub fn of(h: &Histogram<u64>, errors: u64, wall: Duration) -> Self {
        let us = |ns: u64| ns as f64 / 1_000.0;
        let empty = h.is_empty();
        let secs = wall.as_secs_f64();
        Self {
            count: h.len(),
            errors,
            min_us: if empty { 0.0 } else { us(h.min()) },
            p50_us: us(h.value_at_quantile(0.50)),
            p95_us: us(h.value_at_quantile(0.95)),
            p99_us: us(h.value_at_quantile(0.99)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1_000.0,
            throughput_per_s: if secs > 0.0 {
                h.len() as f64 / secs
            } else {
                0.0
            },
        }
    }
}

/// Rounds to `digits` significant figures (reviewed files keep 3, so diffs show only moves).
pub fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = x.abs().log10().floor() as i32;
    let factor = 10f64.powi(digits - 1 - magnitude);
    (x * factor).round() / factor
}

/// The median of a slice (mean of the middle two for even lengths); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// CPU time used by this process so far (every thread, user and system), for the client's CPU
/// per operation. Zero where the clock is unavailable.
pub fn process_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A field of /proc/self/status in KiB (`"VmRSS:"` resident now, `"VmHWM:"` its peak).
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the peak RSS (VmHWM) to the current RSS (Linux: "5" to clear_refs).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(values_us: &[u64]) -> Histogram<u64> {
        let mut h = latency_histogram();
        for v in values_us {
            record(&mut h, Duration::from_micros(*v));
        }
        h
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let h = histogram_of(&(1..=100).collect::<Vec<_>>());
        let s = Summary::of(&h, 0, Duration::from_secs(1));
        assert_eq!(s.count, 100);
        assert!((s.p50_us - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p95_us - 95.0).abs() < 0.1, "{s:?}");
        assert!((s.p99_us - 99.0).abs() < 0.1, "{s:?}");
        assert!(
            (s.min_us - 1.0).abs() < 0.01 && (s.max_us - 100.0).abs() < 0.1,
            "{s:?}"
        );
        assert!((s.mean_us - 50.5).abs() < 0.1, "{s:?}");
        assert!((s.throughput_per_s - 100.0).abs() < 1e-9);
    }

    #[test]
    fn resolution_is_three_significant_digits() {
        let h = histogram_of(&[40_123]);
        let s = Summary::of(&h, 0, Duration::from_secs(1));
        assert!((s.p50_us - 40_123.0).abs() / 40_123.0 < 0.001, "{s:?}");
    }

    #[test]
    fn an_empty_sample_summarizes_to_zeros_with_its_errors() {
        let s = Summary::of(&latency_histogram(), 3, Duration::from_secs(1));
        assert_eq!(
            (s.count, s.errors, s.p50_us, s.throughput_per_s),
            (0, 3, 0.0, 0.0)
        );
    }

    #[test]
    fn round_sig_keeps_three_significant_figures() {
        assert_eq!(round_sig(123_456.0, 3), 123_000.0);
        assert_eq!(round_sig(0.012_345, 3), 0.0123);
        assert_eq!(round_sig(45.678, 3), 45.7);
        assert_eq!(round_sig(0.0, 3), 0.0);
    }

    #[test]
    fn median_of_odd_and_even_lengths() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
