//! What the service measures about itself: a Prometheus recorder of its own (the `metrics`
//! facade with `metrics-exporter-prometheus`, not the process-global recorder, so several
//! services in one process keep apart), and windowed figures for the health checks (the last
//! `window_seconds`, in six slots, so a spike from an hour ago no longer warns).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde::Serialize;

use crate::db::latency::{self, histogram_us};

/// Histogram buckets in seconds; they include the product's 0.4 s (cached search), 1 s
/// (database query) and 3 s (uncached search) targets.
pub const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.4, 1.0, 3.0, 10.0,
];

/// The database operations the service times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `GET /entities/{id}`.
    GetEntity,
    /// A search answered from the cache.
    SearchCached,
    /// A search run on the database (and stored).
    SearchUncached,
    /// `POST /resolve`.
    Resolve,
    /// The `SELECT 1` of `GET /health/database`.
    HealthCheck,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 5] = [
        Self::GetEntity,
        Self::SearchCached,
        Self::SearchUncached,
        Self::Resolve,
        Self::HealthCheck,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Self::GetEntity => "get_entity",
            Self::SearchCached => "search_cached",
            Self::SearchUncached => "search_uncached",
            Self::Resolve => "resolve",
            Self::HealthCheck => "health_check",
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It answered.
    Ok,
    /// It failed.
    Error,
    /// It ran out of time (client or server side).
    Timeout,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }
}

const SLOTS: u64 = 6;

#[derive(Debug, Clone)]
struct Slot {
    index: u64,
    latency_us: Histogram<u64>,
    errors: u64,
    timeouts: u64,
    events: u64,
}

impl Slot {
    fn new(index: u64) -> Self {
        Self {
            index,
            latency_us: histogram_us(),
            errors: 0,
            timeouts: 0,
            events: 0,
        }
    }
}

/// Figures of the last window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct WindowSummary {
    /// Operations (or events).
    pub count: u64,
    /// Of which failed.
    pub errors: u64,
    /// Of which ran out of time.
    pub timeouts: u64,
    /// Median, ms (0 without samples).
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// A sliding window of latencies and counts in six slots.
#[derive(Debug)]
pub struct Window {
    started: Instant,
    slot: Duration,
    slots: Mutex<Vec<Slot>>,
}

impl Window {
    /// A window of `length` (at least six milliseconds).
    pub fn new(length: Duration) -> Self {
        let slot = (length / SLOTS as u32).max(Duration::from_millis(1));
        Self {
            started: Instant::now(),
            slot,
            slots: Mutex::new(Vec::new()),
        }
    }

    fn index(&self) -> u64 {
        (self.started.elapsed().as_micros() / self.slot.as_micros().max(1)) as u64
    }

    fn with_current(&self, f: impl FnOnce(&mut Slot)) {
        let index = self.index();
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        slots.retain(|s| s.index + SLOTS > index);
        if slots.last().is_none_or(|s| s.index != index) {
            slots.push(Slot::new(index));
        }
        if let Some(s) = slots.last_mut() {
            f(s);
        }
    }

    /// Records one timed operation.
    pub fn record(&self, took: Duration, outcome: Outcome) {
        self.with_current(|s| {
            latency::record(&mut s.latency_us, took);
            match outcome {
                Outcome::Ok => {}
                Outcome::Error => s.errors += 1,
                Outcome::Timeout => s.timeouts += 1,
            }
        });
    }

    /// Counts events that have no latency (timeouts of an acquire, cache hits, ...).
    pub fn count(&self, n: u64) {
        self.with_current(|s| s.events += n);
    }

    /// The figures of the last window.
    pub fn summary(&self) -> WindowSummary {
        let index = self.index();
        let Ok(slots) = self.slots.lock() else {
            return WindowSummary::default();
        };
        let mut all = histogram_us();
        let mut out = WindowSummary::default();
        for s in slots.iter().filter(|s| s.index + SLOTS > index) {
            let _ = all.add(&s.latency_us);
            out.errors += s.errors;
            out.timeouts += s.timeouts;
            out.count += s.events;
        }
        out.count += all.len();
        let ms = |q| latency::quantile_ms(&all, q);
        (out.p50_ms, out.p95_ms, out.p99_ms) = (ms(0.5), ms(0.95), ms(0.99));
        out
    }
}

/// The service's histograms (all in seconds) and their help texts.
const HISTOGRAMS: &[(&str, &str)] = &[
    (
        "pgperf_http_request_duration_seconds",
        "Time to answer an HTTP request, by route and method.",
    ),
    (
        "pgperf_db_query_duration_seconds",
        "Time of a database operation, by operation.",
    ),
    (
        "pgperf_pool_acquire_duration_seconds",
        "Time to get a connection from the pool.",
    ),
];

/// The service's counters and their help texts.
const COUNTERS: &[(&str, &str)] = &[
    (
        "pgperf_http_requests_total",
        "HTTP requests answered, by route, method and status.",
    ),
    (
        "pgperf_db_queries_total",
        "Database operations, by operation and outcome (ok, error, timeout).",
    ),
    (
        "pgperf_search_cache_requests_total",
        "Searches through the cache, by result (hit, miss).",
    ),
    (
        "pgperf_pool_acquire_timeouts_total",
        "Pool acquires that timed out.",
    ),
    (
        "pgperf_pool_acquires_total",
        "Connections handed out by the pool.",
    ),
    (
        "pgperf_pool_connections_created_total",
        "Connections the pool opened.",
    ),
    (
        "pgperf_database_deadlocks_total",
        "Deadlocks detected in the database (pg_stat_database).",
    ),
    (
        "pgperf_database_transactions_total",
        "Transactions in the database, by result (commit, rollback; pg_stat_database).",
    ),
];

/// The service's gauges and their help texts.
const GAUGES: &[(&str, &str)] = &[
    (
        "pgperf_pool_connections",
        "Pool connections open now, by state (active, idle).",
    ),
    ("pgperf_pool_max_connections", "The pool's maximum size."),
    (
        "pgperf_pool_pending_acquirers",
        "Requests waiting for a pool connection now.",
    ),
    (
        "pgperf_database_up",
        "1 when the monitor's last query answered in time, else 0.",
    ),
    (
        "pgperf_database_response_seconds",
        "Time of the monitor's last query.",
    ),
    (
        "pgperf_database_connections",
        "Connections to this database by state (pg_stat_activity).",
    ),
    (
        "pgperf_database_oldest_query_seconds",
        "Age of the oldest statement running now (pg_stat_activity).",
    ),
    (
        "pgperf_database_buffer_hit_ratio",
        "Shared buffer hits over block reads and hits (pg_stat_database).",
    ),
];

/// The service's measurements.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    queries: [Window; 5],
    /// HTTP responses (latency) and 5xx (errors) in the window.
    pub http: Window,
    /// Search cache hits in the window.
    pub cache_hits: Window,
    /// Search cache misses in the window.
    pub cache_misses: Window,
    /// Pool acquires that timed out in the window.
    pub acquire_timeouts: Window,
    /// The process's own CPU, memory, file descriptors and threads (`pgperf_process_*`), read
    /// at each scrape.
    process: metrics_process::Collector,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

static METADATA: Metadata<'static> = Metadata::new("pgperf::service", Level::INFO, None);

impl Telemetry {
    /// Drains the recorder's histogram samples into their buckets: without it they pile up
    /// between scrapes (and forever when nothing scrapes).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Fresh figures over windows of `window`.
    pub fn new(window: Duration) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let t = Self {
            recorder,
            handle,
            queries: std::array::from_fn(|_| Window::new(window)),
            http: Window::new(window),
            cache_hits: Window::new(window),
            cache_misses: Window::new(window),
            acquire_timeouts: Window::new(window),
            process: metrics_process::Collector::new("pgperf_"),
        };
        t.describe();
        metrics::with_local_recorder(&t.recorder, || t.process.describe());
        t
    }

    /// Gives every series its help text (and the histograms their unit) in the exposition.
    fn describe(&self) {
        for (name, help) in HISTOGRAMS {
            let unit = Some(metrics::Unit::Seconds);
            self.recorder
                .describe_histogram((*name).into(), unit, (*help).into());
        }
        for (name, help) in COUNTERS {
            self.recorder
                .describe_counter((*name).into(), None, (*help).into());
        }
        for (name, help) in GAUGES {
            self.recorder
                .describe_gauge((*name).into(), None, (*help).into());
        }
    }

    fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect();
        Key::from_parts(name, labels)
    }

    /// Observes a histogram sample in seconds.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, String)], secs: f64) {
        self.recorder
            .register_histogram(&Self::key(name, labels), &METADATA)
            .record(secs);
    }

    /// Adds to a counter.
    pub fn increment(&self, name: &'static str, labels: &[(&'static str, String)], n: u64) {
        self.recorder
            .register_counter(&Self::key(name, labels), &METADATA)
            .increment(n);
    }

    /// Sets a counter kept elsewhere (the pool's, the server's) to its current total.
    pub fn absolute(&self, name: &'static str, labels: &[(&'static str, String)], n: u64) {
        self.recorder
            .register_counter(&Self::key(name, labels), &METADATA)
            .absolute(n);
    }

    /// Sets a gauge.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, String)], v: f64) {
        self.recorder
            .register_gauge(&Self::key(name, labels), &METADATA)
            .set(v);
    }

    /// Records one database operation: Prometheus and the window.
    pub fn query(&self, op: Operation, took: Duration, outcome: Outcome) {
        let name = op.name().to_owned();
        self.observe(
            "pgperf_db_query_duration_seconds",
            &[("operation", name.clone())],
            took.as_secs_f64(),
        );
        self.increment(
            "pgperf_db_queries_total",
            &[("operation", name), ("outcome", outcome.name().to_owned())],
            1,
        );
        self.window(op).record(took, outcome);
    }

    /// The window of one operation.
    pub fn window(&self, op: Operation) -> &Window {
        let i = Operation::ALL
            .iter()
            .position(|o| *o == op)
            .expect("every operation is in ALL");
        &self.queries[i]
    }

    /// Every database operation of the window together (the health checks' query p95).
    pub fn all_queries(&self) -> WindowSummary {
        let mut merged = histogram_us();
        let mut out = WindowSummary::default();
        for w in &self.queries {
            let index = w.index();
            if let Ok(slots) = w.slots.lock() {
                for s in slots.iter().filter(|s| s.index + SLOTS > index) {
                    let _ = merged.add(&s.latency_us);
                    out.errors += s.errors;
                    out.timeouts += s.timeouts;
                }
            }
        }
        out.count = merged.len();
        let ms = |q| latency::quantile_ms(&merged, q);
        (out.p50_ms, out.p95_ms, out.p99_ms) = (ms(0.5), ms(0.95), ms(0.99));
        out
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        metrics::with_local_recorder(&self.recorder, || self.process.collect());
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_forgets_what_is_older_than_its_length() {
        let w = Window::new(Duration::from_millis(60));
        w.record(Duration::from_millis(5), Outcome::Ok);
        w.record(Duration::from_millis(7), Outcome::Error);
        w.count(3);
        let s = w.summary();
        assert_eq!((s.count, s.errors, s.timeouts), (5, 1, 0));
        assert!((s.p95_ms - 7.0).abs() < 0.1, "{s:?}");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(w.summary(), WindowSummary::default());
    }

    #[test]
    fn the_exposition_has_base_units_and_the_target_buckets() {
        let t = Telemetry::new(Duration::from_secs(60));
        t.query(
            Operation::SearchCached,
            Duration::from_millis(2),
            Outcome::Ok,
        );
        let text = t.render();
        for line in [
            "# TYPE pgperf_db_query_duration_seconds histogram",
            "pgperf_db_query_duration_seconds_bucket{operation=\"search_cached\",le=\"0.4\"} 1",
            "pgperf_db_query_duration_seconds_bucket{operation=\"search_cached\",le=\"1\"} 1",
            "pgperf_db_query_duration_seconds_bucket{operation=\"search_cached\",le=\"3\"} 1",
            "pgperf_db_query_duration_seconds_bucket{operation=\"search_cached\",le=\"0.001\"} 0",
            "pgperf_db_queries_total{operation=\"search_cached\",outcome=\"ok\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
