//! What a load run records: every response by kind and by second (latency histograms, counts,
//! errors), and a sample of the service's pool and process each second.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::profile::Kind;
use pgperf::db::latency::{self, histogram_us};

/// One second of responses. (Its histogram is small: a 30-minute soak keeps 1,800 of them.)
#[derive(Debug, Clone)]
pub struct Second {
    /// Latency of every response finished in this second, µs (1 µs .. 2 min).
    pub all: Histogram<u32>,
    /// Responses by kind.
    pub count: BTreeMap<Kind, u64>,
    /// Failed responses (transport error or 5xx).
    pub errors: u64,
}

impl Default for Second {
    fn default() -> Self {
        Self {
            all: Histogram::new_with_bounds(1, 120_000_000, 2).expect("valid histogram bounds"),
            count: BTreeMap::new(),
            errors: 0,
        }
    }
}

/// Per-kind latencies (µs) and errors.
pub type KindHistograms = BTreeMap<Kind, (Histogram<u64>, u64)>;

fn kind_histograms() -> KindHistograms {
    Kind::ALL
        .iter()
        .map(|k| (*k, (histogram_us(), 0)))
        .collect()
}

impl Second {
    /// Responses in this second.
    pub fn total(&self) -> u64 {
        self.count.values().sum()
    }

    /// Searches served from the cache in this second.
    pub fn hits(&self) -> u64 {
        self.count.get(&Kind::CachedSearch).copied().unwrap_or(0)
    }

    /// Searches in this second.
    pub fn searches_done(&self) -> u64 {
        self.count
            .iter()
            .filter(|(k, _)| k.is_search())
            .map(|(_, n)| n)
            .sum()
    }
}

/// Why a request failed. Bounded: a few causes times the status codes a server may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ErrorCause {
    /// 503 with `Retry-After`: the service's admission limit turned the request away.
    Shed,
    /// Any other failing status (5xx, or a 4xx other than an entity's 404).
    Status(u16),
    /// No answer, or a body cut short.
    NoAnswer,
    /// A write through the data layer failed.
    Write,
}

impl std::fmt::Display for ErrorCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shed => f.write_str("shed (503 with Retry-After)"),
            Self::Status(code) => write!(f, "status {code}"),
            Self::NoAnswer => f.write_str("no answer"),
            Self::Write => f.write_str("write failed"),
        }
    }
}

/// How many requests of a kind failed for one cause.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ErrorCount {
    /// The request kind.
    pub kind: Kind,
    /// Why they failed.
    pub cause: ErrorCause,
    /// How many.
    pub count: u64,
}

/// Every response of a run.
#[derive(Debug)]
pub struct Recorder {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    by_kind: KindHistograms,
    segments: Vec<KindHistograms>,
    seconds: Vec<Second>,
    late_starts: u64,
    errors: BTreeMap<(Kind, ErrorCause), u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                by_kind: kind_histograms(),
                segments: Vec::new(),
                seconds: Vec::new(),
                late_starts: 0,
                errors: BTreeMap::new(),
            }),
        }
    }
}

/// The figures of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KindSummary {
    /// Responses that succeeded.
    pub ok: u64,
    /// Responses that failed.
    pub errors: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// The figures of each kind in `h`.
pub fn summarize(h: &KindHistograms) -> BTreeMap<Kind, KindSummary> {
    h.iter()
        .map(|(k, (h, errors))| {
            (
                *k,
                KindSummary {
                    ok: h.len(),
                    errors: *errors,
                    p50_ms: latency::quantile_ms(h, 0.5),
                    p95_ms: latency::quantile_ms(h, 0.95),
                    p99_ms: latency::quantile_ms(h, 0.99),
                    max_ms: latency::quantile_ms(h, 1.0),
                },
            )
        })
        .collect()
}

impl Recorder {
    /// Records one response finished `at` seconds into the run, in `segment` (the step or
    /// stage it was scheduled in).
    pub fn record(
        &self,
        kind: Kind,
        segment: usize,
        at: f64,
        latency: Duration,
        outcome: Result<(), ErrorCause>,
    ) {
        let us = latency::micros(latency);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let ok = outcome.is_ok();
        if let Err(cause) = outcome {
            *inner.errors.entry((kind, cause)).or_default() += 1;
        }
        let second = at.max(0.0) as usize;
        if inner.seconds.len() <= second {
            inner.seconds.resize_with(second + 1, Second::default);
        }
        let s = &mut inner.seconds[second];
        *s.count.entry(kind).or_default() += 1;
        if ok {
            s.all.saturating_record(us);
        } else {
            s.errors += 1;
        }
        if inner.segments.len() <= segment {
            inner.segments.resize_with(segment + 1, kind_histograms);
        }
        let Inner {
            by_kind, segments, ..
        } = &mut *inner;
        for h in [by_kind, &mut segments[segment]] {
            let (h, errors) = h.entry(kind).or_insert_with(|| (histogram_us(), 0));
            if ok {
                h.saturating_record(us);
            } else {
                *errors += 1;
            }
        }
    }

    /// The figures of each kind in one segment (step or stage).
    pub fn segment(&self, i: usize) -> BTreeMap<Kind, KindSummary> {
        self.inner
            .lock()
            .ok()
            .and_then(|inner| inner.segments.get(i).map(summarize))
            .unwrap_or_else(|| summarize(&kind_histograms()))
    }

    /// Counts a request that started well after it was due (every virtual user was busy:
    /// the schedule is not being kept).
    pub fn late(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.late_starts += 1;
        }
    }

    /// The seconds so far.
    pub fn seconds(&self) -> Vec<Second> {
        self.inner
            .lock()
            .map(|i| i.seconds.clone())
            .unwrap_or_default()
    }

    /// Responses and failures in the last `window` whole seconds before the current one
    /// (read in place: the watcher asks every second, and a soak keeps 1,800 seconds).
    pub fn recent(&self, window: usize) -> (u64, u64) {
        let Ok(inner) = self.inner.lock() else {
            return (0, 0);
        };
        let end = inner.seconds.len().saturating_sub(1);
        inner.seconds[end.saturating_sub(window)..end]
            .iter()
            .fold((0, 0), |(n, e), s| (n + s.total(), e + s.errors))
    }

    /// Requests that started late.
    pub fn late_starts(&self) -> u64 {
        self.inner.lock().map(|i| i.late_starts).unwrap_or(0)
    }

    /// The errors by kind and cause, most first.
    pub fn errors_by_cause(&self) -> Vec<ErrorCount> {
        let mut all: Vec<ErrorCount> = self
            .inner
            .lock()
            .map(|i| {
                (i.errors.iter())
                    .map(|(&(kind, cause), &count)| ErrorCount { kind, cause, count })
                    .collect()
            })
            .unwrap_or_default();
        all.sort_by_key(|e| std::cmp::Reverse(e.count));
        all
    }

    /// The figures of each kind over the whole run.
    pub fn by_kind(&self) -> BTreeMap<Kind, KindSummary> {
        self.inner
            .lock()
            .map(|inner| summarize(&inner.by_kind))
            .unwrap_or_default()
    }
}

/// One sample of the service, from `/health/database/metrics` and /proc.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds into the run.
    pub t: f64,
    /// Pool connections in use.
    pub in_use: f64,
    /// The pool's maximum.
    pub max: f64,
    /// Requests waiting for a connection.
    pub waiting: f64,
    /// Acquire time p99, ms (since the service started).
    pub acquire_p99_ms: f64,
    /// Connections to the database (pg_stat_activity, every state).
    pub db_connections: f64,
    /// Connections the pool has opened since it started.
    pub pool_created: f64,
    /// Search cache hit ratio (since the service started).
    pub cache_hit_ratio: f64,
    /// The worst p95 of any database operation in the service's window, ms; none when the
    /// sample could not read it (see `gap`).
    pub query_p95_ms: Option<f64>,
    /// Why the metrics endpoint gave no figures, when it did not.
    pub gap: Option<MetricsGap>,
    /// The service process's CPU, percent of one core over the last second (when known).
    pub cpu_percent: Option<f64>,
    /// The service process's resident memory, MiB (when known).
    pub rss_mib: Option<f64>,
}

/// Why a sample of `/health/database/metrics` has no figures: a threshold that needs them
/// fails, naming this, rather than pass on zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MetricsGap {
    /// The endpoint answered with this status.
    Status(u16),
    /// No answer (refused, timed out).
    NoAnswer,
    /// The answer was not JSON.
    NotJson,
    /// The answer had no `queries` object (a renamed key).
    NoQueries,
}

impl std::fmt::Display for MetricsGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const AT: &str = "/health/database/metrics";
        match self {
            Self::Status(401) => write!(f, "401 from {AT}; set PGPERF_ADMIN_TOKEN"),
            Self::Status(code) => write!(f, "{code} from {AT}"),
            Self::NoAnswer => write!(f, "no answer from {AT}"),
            Self::NotJson => write!(f, "{AT} did not answer JSON"),
            Self::NoQueries => write!(f, "{AT} has no `queries` object"),
        }
    }
}

impl Sample {
    /// A sample at `t` without the service's figures, and why.
    pub fn without_metrics(t: f64, gap: MetricsGap) -> Self {
        Self {
            t,
            gap: Some(gap),
            ..Self::default()
        }
    }

    /// In use over max.
    pub fn utilization(&self) -> f64 {
        if self.max > 0.0 {
            self.in_use / self.max
        } else {
            0.0
        }
    }

    /// Reads the figures from the metrics endpoint's JSON.
    pub fn from_metrics(t: f64, body: &serde_json::Value) -> Self {
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
        let pool = &body["pool"];
        let db = &body["database"];
        let connections = db["connections"]
            .as_object()
            .map(|m| m.values().map(f).sum())
            .unwrap_or(0.0);
        let query_p95_ms = body["queries"]
            .as_object()
            .map(|m| m.values().map(|q| f(&q["p95_ms"])).fold(0.0, f64::max));
        Self {
            t,
            in_use: f(&pool["active"]),
            max: f(&pool["max"]),
            waiting: f(&pool["pending"]),
            acquire_p99_ms: f(&pool["acquire_time_ms"]["p99"]),
            db_connections: connections,
            pool_created: f(&pool["created"]),
            cache_hit_ratio: f(&body["search_cache"]["hit_ratio"]),
            query_p95_ms,
            gap: query_p95_ms.is_none().then_some(MetricsGap::NoQueries),
            cpu_percent: None,
            rss_mib: None,
        }
    }
}

/// CPU time (user + system, clock ticks) and RSS (pages) of a process, from /proc.
pub fn proc_stat(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces: fields count from after the closing parenthesis.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let rss: u64 = f.get(21)?.parse().ok()?;
    Some((utime + stime, rss))
}

/// Pearson's correlation of two equally long series; `None` when either is flat.
pub fn correlation(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 3 {
        return None;
    }
    let mean = |v: &[f64]| v[..n].iter().sum::<f64>() / n as f64;
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= f64::EPSILON || syy <= f64::EPSILON {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_of_known_series() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(correlation(&x, &[2.0, 4.0, 6.0, 8.0]), Some(1.0));
        assert_eq!(correlation(&x, &[8.0, 6.0, 4.0, 2.0]), Some(-1.0));
        assert_eq!(correlation(&x, &[1.0, 1.0, 1.0, 1.0]), None);
    }

    #[test]
    fn responses_land_in_their_second_and_kind() {
        let r = Recorder::default();
        r.record(Kind::CachedSearch, 0, 0.5, Duration::from_millis(2), Ok(()));
        r.record(Kind::Entity, 0, 1.2, Duration::from_millis(4), Ok(()));
        r.record(
            Kind::Entity,
            1,
            1.7,
            Duration::from_millis(9),
            Err(ErrorCause::Shed),
        );
        let s = r.seconds();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (
                s[0].total(),
                s[0].searches_done(),
                s[1].total(),
                s[1].errors
            ),
            (1, 1, 2, 1)
        );
        assert_eq!(
            (
                r.segment(0)[&Kind::Entity].ok,
                r.segment(1)[&Kind::Entity].errors
            ),
            (1, 1)
        );
        let k = r.by_kind();
        assert_eq!((k[&Kind::Entity].ok, k[&Kind::Entity].errors), (1, 1));
        assert!((k[&Kind::CachedSearch].p50_ms - 2.0).abs() < 0.05);
        assert_eq!(
            r.errors_by_cause(),
            [ErrorCount {
                kind: Kind::Entity,
                cause: ErrorCause::Shed,
                count: 1
            }]
        );
    }

    #[test]
    fn proc_stat_reads_this_process() {
        let (cpu, rss) = proc_stat(std::process::id()).expect("/proc of this process");
        assert!(rss > 0, "{cpu} {rss}");
    }
}
