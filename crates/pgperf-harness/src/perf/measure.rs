//! The measurement runner: warm-up, then a number of iterations or a duration, spread over
//! N concurrent tasks. Each task records into its own histogram (no shared state on the hot
//! path: two `Instant::now()` calls, ~40 ns, next to a 40 µs round trip); the histograms are
//! merged at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::stats::{Summary, latency_histogram, record};

/// How long and how wide to measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeasureConfig {
    /// Operations run by each task before recording starts.
    pub warmup_iterations: u64,
    /// Total recorded operations across all tasks (the run stops at this or `max_duration`).
    pub iterations: u64,
    /// Upper bound on the recorded phase.
    pub max_duration: Duration,
    /// Concurrent tasks (each with its own state, e.g. its own connection).
    pub concurrency: usize,
    /// How long one operation may take before it counts as failed and its task stops: a
    /// server that silently stopped answering fails the measurement instead of hanging it.
    #[serde(default = "default_op_timeout")]
    pub op_timeout: Duration,
}

fn default_op_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for MeasureConfig {
    fn default() -> Self {
        Self {
            warmup_iterations: 100,
            iterations: 2_000,
            max_duration: Duration::from_secs(10),
            concurrency: 1,
            op_timeout: default_op_timeout(),
        }
    }
}

impl MeasureConfig {
    /// Same config with `iterations` recorded operations.
    pub fn iterations(self, iterations: u64) -> Self {
        Self { iterations, ..self }
    }
    /// Same config with `concurrency` tasks.
    pub fn concurrency(self, concurrency: usize) -> Self {
        Self {
            concurrency,
            ..self
        }
    }
    /// Same config with `warmup_iterations` per task.
    pub fn warmup(self, warmup_iterations: u64) -> Self {
        Self {
            warmup_iterations,
            ..self
        }
    }
}

/// A deliberate slowdown of measured operations, to prove the guard catches one
/// (`PGPERF_INJECT_SLOWDOWN=case=factor`). Never set it in real runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slowdown(pub f64);

/// A task's slowdown, held to its factor in wall time: the slowed p50 is `factor` x the
/// plain p50. Simpler ways missed on 2 cores:
/// - a wait of (factor - 1) x each operation let the server's core fall asleep, and the next
///   operation paid the wake-up (a nominal 3x made `SELECT 1` 5.5x slower);
/// - running the operation twice for 2x read x2.3 (`SELECT 1`): the median of a sum of two
///   skewed latencies is above twice their median;
/// - a pacer anchored on the warm-up's median read x1.6 once, the warm-up having run faster;
/// - a pacer that busy-waited read x1.78 in CI: its plain blocks ran on a core the spinning
///   kept hot, 5-10 % faster than a plain run.
///
/// So the pacer keeps measuring the plain operation: every [`RECORDED_BETWEEN`] recorded
/// operations it runs a block of [`PLAIN_BLOCK`] unrecorded ones, back to back as in a plain
/// run, and keeps the times of the block's last quarter. A recorded operation is padded to
/// `factor` x the median of the last [`PLAIN_SAMPLES`] kept, asleep for most of the pad.
struct Pacer {
    factor: f64,
    plain: std::collections::VecDeque<Duration>,
    since_block: usize,
    /// How late a nap wakes up, on average (a moving average).
    oversleep: Duration,
}

/// Sleeps the thread for `d` with a timer slack of 1 ns (the default 50 µs would add up to
/// that much to every nap), then puts the default back.
pub(crate) fn nap_precisely(d: Duration) {
    // SAFETY: PR_SET_TIMERSLACK only sets the calling thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
    std::thread::sleep(d);
    // SAFETY: as above; 0 restores the thread's default slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 0, 0, 0, 0) };
}

/// Operations in a plain block.
const PLAIN_BLOCK: usize = 64;

/// Recorded operations between two plain blocks.
const RECORDED_BETWEEN: usize = 16;

/// Plain samples the pacer's median is taken over.
const PLAIN_SAMPLES: usize = 48;

impl Pacer {
    fn new(slowdown: Slowdown) -> Self {
        Self {
            factor: slowdown.0.clamp(1.0, 100.0),
            plain: std::collections::VecDeque::with_capacity(PLAIN_SAMPLES),
            since_block: RECORDED_BETWEEN,
            oversleep: Duration::from_micros(20),
        }
    }

    /// Waits until the operation that started at `started` has taken `factor` x the plain
    /// median: asleep for most of it (a busy-wait kept the core hot, and the plain blocks of a
    /// slowed run read faster than a plain run), then a short spin for the last stretch.
    fn pad(&mut self, started: Instant) {
        let mut plain: Vec<Duration> = self.plain.iter().copied().collect();
        plain.sort_unstable();
        let Some(median) = plain.get(plain.len() / 2) else {
            return;
        };
        let until = started + median.mul_f64(self.factor);
        let nap = until
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.oversleep * 2);
        if !nap.is_zero() {
            let before = Instant::now();
            nap_precisely(nap);
            let over = before.elapsed().saturating_sub(nap);
            self.oversleep = (self.oversleep * 7 + over) / 8;
        }
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }

    /// After every [`RECORDED_BETWEEN`] recorded operations (and before the first), runs a block
    /// of plain ones and keeps the last quarter's times.
    async fn sample<S, E: std::fmt::Display>(
        &mut self,
        state: &mut S,
        op: &Operation<S, E>,
        watchdog: &mut Watchdog,
    ) {
        if self.since_block < RECORDED_BETWEEN {
            self.since_block += 1;
            return;
        }
        self.since_block = 1;
        for i in 0..PLAIN_BLOCK {
            let started = Instant::now();
            if watchdog.run(state, op).await.is_err() {
                if watchdog.fired {
                    return;
                }
                continue;
            }
            if i >= PLAIN_BLOCK * 3 / 4 {
                if self.plain.len() == PLAIN_SAMPLES {
                    self.plain.pop_front();
                }
                self.plain.push_back(started.elapsed());
            }
        }
    }
}

/// One measured operation on a task's state; returns an error to count it as failed.
pub type Operation<S, E> =
    Arc<dyn for<'a> Fn(&'a mut S) -> BoxFuture<'a, Result<(), E>> + Send + Sync>;

struct TaskResult {
    histogram: hdrhistogram::Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// Result of a measurement: the summary and the first error seen, if any.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The statistics.
    pub summary: Summary,
    /// The first operation error, for the report.
    pub first_error: Option<String>,
    /// Every recorded latency, in nanoseconds (to merge measurements made side by side).
    pub histogram: hdrhistogram::Histogram<u64>,
    /// How long the recorded phase took.
    pub wall: Duration,
}

impl Measurement {
    /// Measurements that ran at the same time (on several threads) as one: latencies merged,
    /// errors added, the longest wall time.
    pub fn merge(parts: Vec<Measurement>) -> Option<Measurement> {
        let mut parts = parts.into_iter();
        let mut all = parts.next()?;
        for m in parts {
            all.histogram
                .add(&m.histogram)
                .expect("histograms share bounds");
            all.summary.errors += m.summary.errors;
            all.wall = all.wall.max(m.wall);
            all.first_error = all.first_error.or(m.first_error);
        }
        all.summary = Summary::of(&all.histogram, all.summary.errors, all.wall);
        Some(all)
    }
}

/// Runs `op` on `config.concurrency` tasks, each with a state made by `states` (one per task),
/// and summarizes the latencies.
pub async fn measure<S, E>(
    config: MeasureConfig,
    states: Vec<S>,
    op: Operation<S, E>,
    slowdown: Option<Slowdown>,
) -> Measurement
where
    S: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    measure_from(config, states, op, slowdown, async {}).await.0
}

/// Like [`measure`], and runs `at_start` after every task has warmed up and before any
/// records: what it returns (a counter snapshot, say) covers exactly the recorded phase.
pub async fn measure_from<S, E, T>(
    config: MeasureConfig,
    states: Vec<S>,
    op: Operation<S, E>,
    slowdown: Option<Slowdown>,
    at_start: impl std::future::Future<Output = T>,
) -> (Measurement, T)
where
    S: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    assert_eq!(
        states.len(),
        config.concurrency.max(1),
        "one state per task"
    );
    let remaining = Arc::new(AtomicU64::new(config.iterations));
    // Two lines: every task warmed up; then `at_start` ran and recording may begin.
    let warmed = Arc::new(tokio::sync::Barrier::new(states.len() + 1));
    let go = Arc::new(tokio::sync::Barrier::new(states.len() + 1));
    let mut tasks = Vec::with_capacity(states.len());
    for mut state in states {
        let (op, remaining, warmed, go) = (
            Arc::clone(&op),
            Arc::clone(&remaining),
            Arc::clone(&warmed),
            Arc::clone(&go),
        );
        tasks.push(tokio::spawn(async move {
            let warm = warm_up(&mut state, &op, &config).await;
            warmed.wait().await;
            go.wait().await;
            match warm {
                Err(first_error) => TaskResult::failed(first_error),
                Ok(()) => {
                    let deadline = Instant::now() + config.max_duration;
                    let pacer = slowdown.map(Pacer::new);
                    run_task(&mut state, &op, &remaining, deadline, &config, pacer).await
                }
            }
        }));
    }
    warmed.wait().await;
    let started_with = at_start.await;
    go.wait().await;
    let started = Instant::now();
    let mut merged = latency_histogram();
    let (mut errors, mut first_error) = (0, None);
    for task in tasks {
        let r = task.await.expect("measurement task panicked");
        merged.add(&r.histogram).expect("histograms share bounds");
        errors += r.errors;
        first_error = first_error.or(r.first_error);
    }
    let wall = started.elapsed();
    let m = Measurement {
        summary: Summary::of(&merged, errors, wall),
        first_error,
        histogram: merged,
        wall,
    };
    (m, started_with)
}

impl TaskResult {
    fn failed(first_error: String) -> Self {
        Self {
            histogram: latency_histogram(),
            errors: 1,
            first_error: Some(first_error),
        }
    }
}

/// A task's watchdog on its operations. One timer per task, moved forward only when less than
/// half of `op_timeout` is left: re-arming a timer for every operation would cost each one a
/// trip through the runtime's timer wheel (a lock shared by the tasks). So an operation that
/// never answers is cut off after between half and all of `op_timeout`.
struct Watchdog {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    /// Whether an operation was cut off (its state, a connection mid-query, is unusable).
    fired: bool,
}

impl Watchdog {
    fn new(limit: Duration) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(limit)),
            limit,
            fired: false,
        }
    }

    /// Runs one operation; a timeout is an error that says so.
    async fn run<S, E: std::fmt::Display>(
        &mut self,
        state: &mut S,
        op: &Operation<S, E>,
    ) -> Result<(), String> {
        let now = tokio::time::Instant::now();
        if self.sleep.deadline().saturating_duration_since(now) < self.limit / 2 {
            self.sleep.as_mut().reset(now + self.limit);
        }
        tokio::select! {
            biased;
            outcome = op(state) => outcome.map_err(|e| e.to_string()),
            () = self.sleep.as_mut() => {
                self.fired = true;
                Err(format!(
                    "an operation got no answer within {:?} (is the server paused or overloaded?)",
                    self.limit
                ))
            }
        }
    }
}

/// The warm-up: at most `warmup_iterations` operations, stopping at the first failure (which
/// it returns): measuring an operation that fails would only repeat the failure.
async fn warm_up<S, E: std::fmt::Display>(
    state: &mut S,
    op: &Operation<S, E>,
    config: &MeasureConfig,
) -> Result<(), String> {
    let mut watchdog = Watchdog::new(config.op_timeout);
    for _ in 0..config.warmup_iterations {
        if let Err(e) = watchdog.run(state, op).await {
            return Err(format!("during warm-up: {e}"));
        }
    }
    Ok(())
}

async fn run_task<S, E: std::fmt::Display>(
    state: &mut S,
    op: &Operation<S, E>,
    remaining: &AtomicU64,
    deadline: Instant,
    config: &MeasureConfig,
    mut pacer: Option<Pacer>,
) -> TaskResult {
    let mut result = TaskResult {
        histogram: latency_histogram(),
        errors: 0,
        first_error: None,
    };
    let mut watchdog = Watchdog::new(config.op_timeout);
    if let Some(p) = pacer.as_mut() {
        p.sample(state, op, &mut watchdog).await;
    }
    while remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        let started = Instant::now();
        let outcome = watchdog.run(state, op).await;
        if let Some(p) = pacer.as_mut() {
            p.pad(started);
        }
        let took = started.elapsed();
        match outcome {
            Ok(()) => record(&mut result.histogram, took),
            Err(e) => {
                result.errors += 1;
                result.first_error.get_or_insert(e);
            }
        }
        // After a timeout the state (a connection mid-query) is unusable: stop this task.
        if took.is_zero() || watchdog.fired || Instant::now() >= deadline {
            break;
        }
        if let Some(p) = pacer.as_mut() {
            p.sample(state, op, &mut watchdog).await;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper() -> Operation<u32, String> {
        Arc::new(|n: &mut u32| {
            Box::pin(async move {
                *n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
                if n.is_multiple_of(10) {
                    Err(format!("failure {n}"))
                } else {
                    Ok(())
                }
            })
        })
    }

    #[tokio::test]
    async fn counts_successes_and_errors_over_all_tasks() {
        let config = MeasureConfig {
            warmup_iterations: 0,
            iterations: 40,
            max_duration: Duration::from_secs(5),
            concurrency: 2,
            ..MeasureConfig::default()
        };
        let m = measure(config, vec![0, 0], sleeper(), None).await;
        assert_eq!(m.summary.count + m.summary.errors, 40);
        assert_eq!(m.summary.errors, 4);
        assert!(m.first_error.unwrap().starts_with("failure"));
        assert!(m.summary.p50_us >= 2_000.0, "{:?}", m.summary);
    }

    #[tokio::test]
    async fn a_slowdown_multiplies_the_measured_latency() {
        let config = MeasureConfig {
            warmup_iterations: 0,
            iterations: 9,
            max_duration: Duration::from_secs(5),
            concurrency: 1,
            ..MeasureConfig::default()
        };
        let plain = measure(config, vec![0], sleeper(), None)
            .await
            .summary
            .p50_us;
        let slowed = measure(config.warmup(3), vec![0], sleeper(), Some(Slowdown(3.0)))
            .await
            .summary
            .p50_us;
        let ratio = slowed / plain;
        assert!(
            (2.5..3.5).contains(&ratio),
            "plain {plain} µs, slowed {slowed} µs"
        );
    }

    fn hanger() -> Operation<u32, String> {
        Arc::new(|n: &mut u32| {
            Box::pin(async move {
                *n += 1;
                if *n >= 3 {
                    std::future::pending::<()>().await;
                }
                Ok(())
            })
        })
    }

    #[tokio::test]
    async fn an_operation_that_never_answers_fails_the_task_within_its_timeout() {
        let config = MeasureConfig {
            warmup_iterations: 1,
            iterations: 100,
            op_timeout: Duration::from_millis(100),
            ..MeasureConfig::default()
        };
        let started = Instant::now();
        let m = measure(config, vec![0], hanger(), None).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!((m.summary.count, m.summary.errors), (1, 1));
        assert!(m.first_error.unwrap().contains("no answer within 100ms"));
    }

    #[tokio::test]
    async fn a_warm_up_that_fails_stops_and_nothing_is_measured() {
        let config = MeasureConfig {
            warmup_iterations: 50,
            iterations: 100,
            op_timeout: Duration::from_millis(100),
            concurrency: 2,
            ..MeasureConfig::default()
        };
        let started = Instant::now();
        let m = measure(config, vec![0, 0], hanger(), None).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!((m.summary.count, m.summary.errors), (0, 2));
        assert!(
            m.first_error
                .unwrap()
                .starts_with("during warm-up: an operation got no answer")
        );
    }

    #[tokio::test]
    async fn stops_at_the_time_limit() {
        let config = MeasureConfig {
            warmup_iterations: 0,
            iterations: 1_000_000,
            max_duration: Duration::from_millis(50),
            concurrency: 1,
            ..MeasureConfig::default()
        };
        let started = Instant::now();
        let m = measure(config, vec![0], sleeper(), None).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(m.summary.count > 0);
    }
}
