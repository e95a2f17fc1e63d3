//! Pool metrics in the spirit of HikariCP's. sqlx reports only `size()` and `num_idle()`;
//! the rest is counted here around `acquire` and in the pool's hooks, with atomics and two
//! small histograms (microseconds), so the cost per acquire is a few nanoseconds.

use std::sync::{
    Mutex,
    atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::latency::{self, histogram_us};

/// Live counters of one pool. Shared by the pool's hooks and its connections.
#[derive(Debug)]
pub struct PoolMetrics {
    waiting: AtomicI64,
    peak_waiting: AtomicI64,
    in_use: AtomicI64,
    acquired: AtomicU64,
    acquire_timeouts: AtomicU64,
    acquire_errors: AtomicU64,
    created: AtomicU64,
    closed_max_lifetime: AtomicU64,
    acquire_us: Mutex<Histogram<u64>>,
    usage_us: Mutex<Histogram<u64>>,
}

fn record(h: &Mutex<Histogram<u64>>, d: Duration) {
    if let Ok(mut h) = h.lock() {
        latency::record(&mut h, d);
    }
}

impl Default for PoolMetrics {
    fn default() -> Self {
        Self {
            waiting: AtomicI64::new(0),
            peak_waiting: AtomicI64::new(0),
            in_use: AtomicI64::new(0),
            acquired: AtomicU64::new(0),
            acquire_timeouts: AtomicU64::new(0),
            acquire_errors: AtomicU64::new(0),
            created: AtomicU64::new(0),
            closed_max_lifetime: AtomicU64::new(0),
            acquire_us: Mutex::new(histogram_us()),
            usage_us: Mutex::new(histogram_us()),
        }
    }
}

/// Guard of one waiting acquirer: counts it while it waits, also when its future is dropped.
pub(crate) struct Waiting<'a>(&'a PoolMetrics);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Relaxed);
    }
}

impl PoolMetrics {
    pub(crate) fn start_waiting(&self) -> Waiting<'_> {
        let now = self.waiting.fetch_add(1, Relaxed) + 1;
        self.peak_waiting.fetch_max(now, Relaxed);
        Waiting(self)
    }

    pub(crate) fn acquired(&self, waited: Duration) {
        self.acquired.fetch_add(1, Relaxed);
        self.in_use.fetch_add(1, Relaxed);
        record(&self.acquire_us, waited);
    }

    pub(crate) fn acquire_failed(&self, timed_out: bool) {
        let counter = if timed_out {
            &self.acquire_timeouts
        } else {
            &self.acquire_errors
        };
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn released(&self, held: Duration) {
        self.in_use.fetch_sub(1, Relaxed);
        record(&self.usage_us, held);
    }

    pub(crate) fn connection_created(&self) {
        self.created.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed_for_lifetime(&self) {
        self.closed_max_lifetime.fetch_add(1, Relaxed);
    }

    /// Resets the peak of waiting acquirers to the current number (start of a measurement).
    pub fn reset_peak_waiting(&self) {
        self.peak_waiting.store(self.waiting.load(Relaxed), Relaxed);
    }

    /// A consistent-enough copy of the counters, with the pool's own size and idle count.
    pub fn snapshot(&self, size: u32, idle: usize, max: u32) -> PoolSnapshot {
        let created = self.created.load(Relaxed);
        let lifetime = self.closed_max_lifetime.load(Relaxed);
        let closed = created.saturating_sub(u64::from(size));
        PoolSnapshot {
            max_connections: max,
            total: size,
            idle: idle as u32,
            in_use: self.in_use.load(Relaxed).max(0) as u32,
            waiting: self.waiting.load(Relaxed).max(0) as u32,
            peak_waiting: self.peak_waiting.load(Relaxed).max(0) as u32,
            acquired: self.acquired.load(Relaxed),
            acquire_timeouts: self.acquire_timeouts.load(Relaxed),
            acquire_errors: self.acquire_errors.load(Relaxed),
            created,
            closed,
            closed_max_lifetime: lifetime,
            closed_other: closed.saturating_sub(lifetime),
            acquire_time: LatencySummary::of(&self.acquire_us),
            usage_time: LatencySummary::of(&self.usage_us),
        }
    }
}

/// Percentiles of a histogram in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 95th percentile, µs.
    pub p95_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Largest sample, µs.
    pub max_us: u64,
}

impl LatencySummary {
    fn of(h: &Mutex<Histogram<u64>>) -> Self {
        let h = h
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| histogram_us());
        Self {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// A serializable picture of the pool at one moment (it feeds the health endpoints).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolSnapshot {
    /// The configured maximum.
    pub max_connections: u32,
    /// Connections open now, idle or in use (sqlx's `size()`).
    pub total: u32,
    /// Connections open and idle now (sqlx's `num_idle()`; lags a release slightly).
    pub idle: u32,
    /// Connections handed out and not yet returned.
    pub in_use: u32,
    /// Acquirers waiting now.
    pub waiting: u32,
    /// Most acquirers waiting at once since the pool started or the peak was reset.
    pub peak_waiting: u32,
    /// Successful acquires.
    pub acquired: u64,
    /// Acquires that failed with `PoolTimedOut`.
    pub acquire_timeouts: u64,
    /// Acquires that failed otherwise (closed pool, connect error).
    pub acquire_errors: u64,
    /// Connections opened.
    pub created: u64,
    /// Connections closed (`created - total`).
    pub closed: u64,
    /// Closed on return or before reuse because they were older than `max_lifetime`.
    pub closed_max_lifetime: u64,
    /// Closed for any other reason: idle timeout (the reaper), broken (failed ping on
    /// return, the server went away), or the pool closing.
    pub closed_other: u64,
    /// Time to acquire a connection.
    pub acquire_time: LatencySummary,
    /// Time a connection was held by its user.
    pub usage_time: LatencySummary,
}
