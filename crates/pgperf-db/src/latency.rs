//! Latency histograms in microseconds: the one shape the pool's metrics, the service's
//! telemetry and the load tool keep (the measuring harness keeps nanoseconds at 3 digits).

use std::time::Duration;

use hdrhistogram::Histogram;

/// The largest latency recorded, 1 h in µs: anything longer is recorded as 1 h.
pub const MAX_US: u64 = 3_600_000_000;

/// A histogram of 1 µs .. 1 h at 2 significant digits: 1 % resolution, about 20 KiB.
pub fn histogram_us() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 2).expect("valid histogram bounds")
}

/// `d` in whole µs, within what [`histogram_us`] records (1 µs .. [`MAX_US`]).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(MAX_US)
        .clamp(1, MAX_US)
}

/// Records `d` in `h`.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(micros(d));
}

/// `us` microseconds in milliseconds, the unit every report and JSON answer gives latency in.
pub fn ms_of_us(us: f64) -> f64 {
    us / 1e3
}

/// Quantile `q` of a µs histogram, in ms (0 when the histogram is empty).
pub fn quantile_ms<T: hdrhistogram::Counter>(h: &Histogram<T>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        ms_of_us(h.value_at_quantile(q) as f64)
    }
}

/// A latency in milliseconds, displayed as a person reads it: three significant figures
/// (`0.250 ms`, `4.10 ms`, `53.0 ms`, `412 ms`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Ms(pub f64);

impl Ms {
    /// `us` microseconds.
    pub fn of_us(us: f64) -> Self {
        Self(ms_of_us(us))
    }

    /// A duration.
    pub fn of(d: Duration) -> Self {
        Self(d.as_secs_f64() * 1e3)
    }
}

impl std::fmt::Display for Ms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        let decimals = match v.abs() {
            a if a >= 100.0 => 0,
            a if a >= 10.0 => 1,
            a if a >= 1.0 => 2,
            _ => 3,
        };
        write!(f, "{v:.decimals$} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_recorded_in_microseconds_within_the_bounds() {
        let mut h = histogram_us();
        record(&mut h, Duration::from_micros(250));
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(7_200));
        assert_eq!(h.len(), 3);
        assert_eq!(h.min(), 1);
        assert!(h.equivalent(h.max(), MAX_US), "{}", h.max());
        assert!(h.equivalent(h.value_at_quantile(0.5), 250));
    }

    #[test]
    fn milliseconds_show_three_significant_figures() {
        let shown: Vec<String> = [250.0, 4_100.0, 53_000.0, 412_400.0]
            .into_iter()
            .map(|us| Ms::of_us(us).to_string())
            .collect();
        assert_eq!(shown, ["0.250 ms", "4.10 ms", "53.0 ms", "412 ms"]);
        assert_eq!(Ms::of(Duration::from_micros(1_500)).to_string(), "1.50 ms");
    }
}
