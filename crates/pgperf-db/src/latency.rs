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
}
