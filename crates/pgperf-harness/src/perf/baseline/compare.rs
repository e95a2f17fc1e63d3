//! The bound policy: a pure function from a baseline and an observation to a verdict.
//!
//! Two judgements, in this order:
//! 1. **Counters** (round trips, statements, rows, buffers, WAL, temporary blocks per
//!    operation) do not depend on the machine: each is held to its recorded value times
//!    `counter_ratio` plus a small slack. An N+1 query or a lost index fails here, everywhere.
//! 2. **Time**: the recorded p50 is split into round trips, server time and client time
//!    ([`MakeUp`]); each part is scaled by how its own reference moved on this run, which gives
//!    the p50 this machine should show. The case is judged by its p50 over that expectation.
//!    A case with several tasks waits for the others at its bottleneck: its chain of round
//!    trips (the make-up above), or the cores (the parallel reference). It is expected to
//!    take the slower of the two scalings, so neither kind of machine fails it.
//!    A case with one task cannot take less than its CPU time either (client CPU plus server
//!    time per operation, each scaled by its reference): on a machine where client and server
//!    share a core, work that overlapped on two cores (sqlx's ping of a returned connection,
//!    COPY's encoding beside the server's parsing) queues up, and this floor follows it.
//!    Nothing fails by less than one round trip at this run's price (or `floor_us`, if
//!    larger): whether a reply finds its thread awake or must wake it moves a one-trip case
//!    by that much, run to run. Extra round trips are the counters' business, and exact.
//!    When a reference moved further than [`MAX_STRETCH`] the model is extrapolating beyond
//!    what it was checked for: time is then not judged (counters still are), and the report
//!    says so and what to do.

use serde::Serialize;

use super::model::{CaseBaseline, MakeUp};
use crate::perf::calibrate::References;
use crate::perf::counters::{Counted, Counter, Counters};
use crate::perf::stats::Summary;

/// How far (either way) a reference may move from its recorded value before the timing model
/// is no longer trusted on this machine. Set-ups that move references up to ~5x (round trips
/// 150 µs dearer, a core shared by client and server) were checked to hold.
pub const MAX_STRETCH: f64 = 8.0;

/// How far (either way) the CPU references (client, server) may move before the timing model
/// is no longer trusted. The same machine, its host busy, once ran its CPU references 2.2-2.9x
/// slower than when the baselines were recorded and its round trip 1.7x: its unchanged cases
/// then read from x0.36 to x1.37 of the model's expectation (release) and up to x2.17 (debug,
/// `crud.get_many_50`), because contention slows some work more than the reference units. Past
/// this the report says "time not judged", and the paired guard judges time.
pub const MAX_CPU_STRETCH: f64 = 2.0;

/// Nothing fails by less than this share of the run's round trip (nor by less than the
/// bound's `floor_us`): a reply that finds the other side asleep pays a wake-up, a fraction of
/// a round trip. Half, not a whole one: with a whole round trip `lookup.select_1` (one round
/// trip) failed only at 2x.
pub const ROUND_TRIP_FLOOR: f64 = 0.5;

/// A case's p95 may be at most this many times its recorded p95 (scaled by how much slower
/// this machine should be, never below 1) plus [`P95_CEILING_SLACK_US`]: a tail that far out is
/// broken whatever the p50 says. A `p95_ceiling_us` in the bound can only lower it.
pub const P95_CEILING_FACTOR: f64 = 10.0;

/// Added to the derived p95 ceiling: a few scheduler time slices, so a microsecond case is
/// not failed by one descheduled burst on a loaded machine.
pub const P95_CEILING_SLACK_US: f64 = 10_000.0;

/// The p95 a case may not exceed on a machine where its p50 (or mean latency) is expected at
/// `expected_us`: see [`P95_CEILING_FACTOR`].
pub fn p95_ceiling_us(baseline: &CaseBaseline, expected_us: f64, recorded_us: f64) -> f64 {
    let scale = (expected_us / recorded_us).max(1.0);
    let derived = P95_CEILING_FACTOR * baseline.p95_us * scale + P95_CEILING_SLACK_US;
    baseline
        .bound
        .p95_ceiling_us
        .map_or(derived, |c| c.min(derived))
}

/// What one measurement of a case saw.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Observation {
    /// The case's statistics.
    pub summary: Summary,
    /// The references measured with it (median of bursts before and after).
    pub references: References,
    /// What its counting pass counted.
    pub counted: Counted,
    /// CPU time of the client process per operation, µs (every thread, user and system).
    pub client_cpu_us: f64,
    /// CPU time of the database's backends per operation, µs, where the server lets it be read.
    pub server_cpu_us: Option<f64>,
}

fn median_by<T>(items: &[T], f: impl Fn(&T) -> f64) -> f64 {
    let values: Vec<f64> = items.iter().map(f).collect();
    crate::perf::stats::median(&values).unwrap_or(f64::NAN)
}

impl Observation {
    /// The element-wise median of several observations of one case: what a recording keeps, so
    /// one disturbed moment (a slow phase of the host during one measurement) does not become
    /// the baseline.
    pub fn median_of(all: &[Observation]) -> Option<Observation> {
        let first = *all.first()?;
        let m = |f: fn(&Observation) -> f64| median_by(all, f);
        let summary = Summary {
            min_us: m(|o| o.summary.min_us),
            p50_us: m(|o| o.summary.p50_us),
            p95_us: m(|o| o.summary.p95_us),
            p99_us: m(|o| o.summary.p99_us),
            max_us: m(|o| o.summary.max_us),
            mean_us: m(|o| o.summary.mean_us),
            throughput_per_s: m(|o| o.summary.throughput_per_s),
            ..first.summary
        };
        let references =
            References::median_of(&all.iter().map(|o| o.references).collect::<Vec<_>>())?;
        let counters: Vec<_> = all.iter().filter_map(|o| o.counted.counters).collect();
        let counters = (counters.len() == all.len()).then(|| {
            let c = |f: fn(&crate::perf::counters::Counters) -> f64| median_by(&counters, f);
            crate::perf::counters::Counters {
                blocks: c(|x| x.blocks),
                round_trips: c(|x| x.round_trips),
                rows: c(|x| x.rows),
                statements: c(|x| x.statements),
                temp_blocks: c(|x| x.temp_blocks),
                wal_bytes: c(|x| x.wal_bytes),
                nested_statements: counters
                    .iter()
                    .map(|x| x.nested_statements)
                    .collect::<Option<Vec<f64>>>()
                    .and_then(|n| crate::perf::stats::median(&n)),
            }
        });
        let server: Vec<f64> = all.iter().filter_map(|o| o.counted.server_us).collect();
        let counted = Counted {
            counters,
            round_trips: m(|o| o.counted.round_trips),
            server_us: crate::perf::stats::median(&server),
        };
        let server_cpu: Vec<f64> = all.iter().filter_map(|o| o.server_cpu_us).collect();
        Some(Observation {
            summary,
            references,
            counted,
            client_cpu_us: m(|o| o.client_cpu_us),
            server_cpu_us: crate::perf::stats::median(&server_cpu),
        })
    }

    /// The make-up of this observation's p50.
    pub fn make_up(&self) -> MakeUp {
        MakeUp::split(
            self.summary.p50_us,
            &self.references,
            self.counted.round_trips,
            self.counted.server_us,
        )
    }
}

/// How a case compares with its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Within the bound.
    Unchanged,
    /// Slower than the warn ratio, not beyond the fail ratio (or within the floor).
    Warn,
    /// Faster than 1/fail_ratio: the baseline is stale and should be updated.
    Stale,
    /// The machine's references moved beyond [`MAX_STRETCH`] (or the CPU references beyond
    /// [`MAX_CPU_STRETCH`]): time not judged.
    OutOfModel,
    /// Slower than the fail ratio and the floor.
    Regressed,
    /// A counter is above its bound.
    CounterRegressed,
    /// The p95 is above the case's absolute ceiling.
    CeilingBreached,
}

impl Verdict {
    /// True for the verdicts that fail a test.
    pub fn fails(self) -> bool {
        matches!(
            self,
            Self::Regressed | Self::CounterRegressed | Self::CeilingBreached
        )
    }

    /// A short word for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unchanged => "ok",
            Self::Warn => "WARN slower",
            Self::Stale => "stale (faster)",
            Self::OutOfModel => "time not judged",
            Self::Regressed => "FAIL slower",
            Self::CounterRegressed => "FAIL counter",
            Self::CeilingBreached => "FAIL ceiling",
        }
    }
}

/// A counter above its bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CounterBreach {
    /// Which counter.
    #[serde(serialize_with = "counter_label")]
    pub counter: Counter,
    /// Its recorded value.
    pub recorded: f64,
    /// Its value now.
    pub measured: f64,
    /// The most it may be.
    pub limit: f64,
}

fn counter_label<S: serde::Serializer>(c: &Counter, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.label())
}

/// The numbers behind a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// The judged slowdown: p50 (for several tasks, mean latency) over the expectation.
    pub ratio: f64,
    /// p50 over the recorded p50, in plain microseconds (for the reader; not judged).
    pub raw_ratio: f64,
    /// What the model expects this machine to take (µs): a p50, or for several tasks their
    /// mean latency (tasks / throughput).
    pub expected_p50_us: f64,
    /// Observed p50 minus the expectation (µs).
    pub excess_us: f64,
    /// The excess below which nothing fails: `floor_us` or one round trip, the larger (µs).
    pub floor_us: f64,
    /// The largest factor (either way) by which a reference moved from its recorded value.
    pub stretch: f64,
    /// Whether counters were compared (both sides have them).
    pub counters_checked: bool,
    /// The first counter above its bound, if any.
    pub counter_breach: Option<CounterBreach>,
    /// The p95 this run may not exceed ([`p95_ceiling_us`]).
    pub ceiling_us: f64,
    /// The smallest slowdown of this run's p50 that would fail it (the ratio and the floor
    /// both crossed): the guard's sensitivity for this case on this machine.
    pub fails_at: f64,
    /// The outcome.
    pub verdict: Verdict,
}

/// How far a reference moved, either way (a factor of 1 or more).
fn moved(now: f64, then: f64) -> f64 {
    let r = now / then;
    if r >= 1.0 { r } else { 1.0 / r }
}

/// The largest factor by which any reference moved.
fn stretch(then: &References, now: &References) -> f64 {
    [
        moved(now.round_trip_us, then.round_trip_us),
        cpu_stretch(then, now),
        moved(now.parallel_us, then.parallel_us),
    ]
    .into_iter()
    .fold(1.0, f64::max)
}

/// The larger factor by which the CPU references (client, server) moved.
fn cpu_stretch(then: &References, now: &References) -> f64 {
    moved(now.server_us, then.server_us).max(moved(now.client_us, then.client_us))
}

/// Whether this machine is within what the timing model holds for.
fn in_model(then: &References, now: &References) -> bool {
    now.is_valid() && stretch(then, now) <= MAX_STRETCH && cpu_stretch(then, now) <= MAX_CPU_STRETCH
}

fn counter_breach(baseline: &CaseBaseline, observed: &Observation) -> Option<CounterBreach> {
    let (then, now) = (baseline.counters?, observed.counted.counters?);
    first_counter_breach(&then, &now, baseline.bound.counter_ratio)
}

/// The first counter of `now` above its limit from `then` ([`Counter::limit`]): the one rule
/// for counters, whether `then` is a recorded baseline or the base build of a paired run.
pub fn first_counter_breach(then: &Counters, now: &Counters, ratio: f64) -> Option<CounterBreach> {
    Counter::ALL.into_iter().find_map(|counter| {
        // A counter one side lacks (not tracked there, or recorded before it existed) is not
        // judged.
        let (recorded, measured) = counter.of(then).zip(counter.of(now))?;
        let limit = counter.limit(recorded, ratio);
        (measured > limit).then_some(CounterBreach {
            counter,
            recorded,
            measured,
            limit,
        })
    })
}

/// How far a one-task case's CPU floor is scaled down so that, at its recording's own
/// references, it does not exceed the mean the recording took (1 / throughput): where client
/// and server overlapped when it was recorded (an in-process HTTP server and its client on
/// two cores: `http.search_cached` 184 µs p50 against a floor of 222 µs), the floor over-counts
/// that case by as much on any machine, and an unchanged run read x0.79-0.87. 1 where the
/// floor was below the recording.
fn floor_fit(baseline: &CaseBaseline, trips: f64) -> f64 {
    let then = &baseline.references_us;
    let floor_then = baseline.cpu_us.floor_us(trips, then, then);
    let mean_then = 1e6 / baseline.throughput_per_s;
    if floor_then > 0.0 && mean_then.is_finite() {
        (mean_then / floor_then).min(1.0)
    } else {
        1.0
    }
}

/// Compares an observation with a case's baseline.
pub fn compare(baseline: &CaseBaseline, observed: &Observation) -> Comparison {
    let bound = &baseline.bound;
    let (then, now) = (&baseline.references_us, &observed.references);
    let by_make_up = baseline.make_up_us.expected_us(then, now);
    let tasks = f64::from(baseline.concurrency.max(1));
    let (p50, expected_p50_us, recorded_us) = if tasks > 1.0 {
        // Several tasks: judge the mean latency, tasks / throughput (Little's law), which does
        // not flip between modes as a p50 can when the tasks fall into step or out of it.
        let mean = |throughput: f64| tasks * 1e6 / throughput;
        let recorded = mean(baseline.throughput_per_s);
        let by_chain = recorded * by_make_up / baseline.p50_us;
        let by_cores = recorded * now.parallel_us / then.parallel_us;
        (
            mean(observed.summary.throughput_per_s),
            by_chain.max(by_cores),
            recorded,
        )
    } else {
        let trips = baseline.make_up_us.round_trips_us / then.round_trip_us;
        // The CPU per operation is a mean; the time judged is a p50. Taken at the p50 (the
        // mean scaled by this run's p50 over its mean), a case with a slow tail (resolution:
        // mean far above median) no longer gets a floor above its own median.
        let at_p50 = (observed.summary.p50_us / observed.summary.mean_us).clamp(0.0, 1.0);
        let floor =
            baseline.cpu_us.floor_us(trips, then, now) * at_p50 * floor_fit(baseline, trips);
        (
            observed.summary.p50_us,
            by_make_up.max(floor),
            baseline.p50_us,
        )
    };
    let ceiling_us = p95_ceiling_us(baseline, expected_p50_us, recorded_us);
    let ratio = p50 / expected_p50_us;
    let excess_us = p50 - expected_p50_us;
    let floor_us = bound.floor_us.max(ROUND_TRIP_FLOOR * now.round_trip_us);
    let stretch = stretch(&baseline.references_us, &observed.references);
    let counter_breach = counter_breach(baseline, observed);
    // A counter first: it names the cause (an extra query, a lost index) on any machine, where
    // a tail over its ceiling is only the symptom, and one that a loaded machine can also show.
    let verdict = if counter_breach.is_some() {
        Verdict::CounterRegressed
    } else if observed.summary.p95_us > ceiling_us {
        Verdict::CeilingBreached
    } else if !in_model(then, now) {
        Verdict::OutOfModel
    } else if ratio > bound.fail_ratio && excess_us > floor_us {
        Verdict::Regressed
    } else if ratio > bound.warn_ratio {
        Verdict::Warn
    } else if ratio < 1.0 / bound.fail_ratio {
        Verdict::Stale
    } else {
        Verdict::Unchanged
    };
    Comparison {
        ratio,
        raw_ratio: observed.summary.p50_us / baseline.p50_us,
        expected_p50_us,
        excess_us,
        floor_us,
        stretch,
        counters_checked: baseline.counters.is_some() && observed.counted.counters.is_some(),
        counter_breach,
        ceiling_us,
        fails_at: (bound.fail_ratio * expected_p50_us).max(expected_p50_us + floor_us) / p50,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::baseline::model::{Bound, CpuPerOp};
    use crate::perf::counters::Counters;

    /// Recorded with round trips of 50 µs, a server unit of 800 µs and a client unit of 100 µs.
    const THEN: References = References {
        client_us: 100.0,
        parallel_us: 20.0,
        round_trip_cpu_us: 50.0,
        round_trip_us: 50.0,
        server_us: 800.0,
    };

    fn counters(statements: f64, blocks: f64) -> Counters {
        Counters {
            blocks,
            round_trips: statements,
            rows: 1.0,
            statements,
            temp_blocks: 0.0,
            wal_bytes: 0.0,
            nested_statements: None,
        }
    }

    fn counted(round_trips: f64, server_us: f64, c: Counters) -> Counted {
        Counted {
            counters: Some(c),
            round_trips,
            server_us: Some(server_us),
        }
    }

    /// A case of 200 µs: 2 round trips (100 µs), 60 µs on the server, 40 µs of client time.
    fn baseline() -> CaseBaseline {
        CaseBaseline {
            bound: Bound::default(),
            concurrency: 1,
            counters: Some(counters(2.0, 8.0)),
            cpu_us: CpuPerOp {
                client_us: 50.0,
                server_us: 60.0,
            },
            make_up_us: MakeUp::split(200.0, &THEN, 2.0, Some(60.0)),
            p50_us: 200.0,
            p95_us: 300.0,
            p99_us: 400.0,
            references_us: THEN,
            throughput_per_s: 5_000.0,
        }
    }

    fn seen(p50_us: f64, now: References, c: Counters) -> Observation {
        let summary = Summary {
            count: 1000,
            errors: 0,
            min_us: p50_us * 0.8,
            p50_us,
            p95_us: p50_us * 1.5,
            p99_us: p50_us * 2.0,
            max_us: p50_us * 3.0,
            mean_us: p50_us,
            throughput_per_s: 1e6 / p50_us,
        };
        Observation {
            summary,
            references: now,
            counted: counted(c.round_trips, 60.0, c),
            client_cpu_us: 50.0,
            server_cpu_us: Some(60.0),
        }
    }

    fn refs(rt: f64, server: f64, client: f64) -> References {
        References {
            client_us: THEN.client_us * client,
            parallel_us: THEN.parallel_us,
            round_trip_cpu_us: THEN.round_trip_cpu_us,
            round_trip_us: THEN.round_trip_us * rt,
            server_us: THEN.server_us * server,
        }
    }

    #[test]
    fn the_make_up_splits_the_p50_by_counted_round_trips_and_server_time() {
        let m = baseline().make_up_us;
        assert_eq!(
            (m.round_trips_us, m.server_us, m.client_us),
            (100.0, 60.0, 40.0)
        );
    }

    #[test]
    fn noise_within_the_band_passes() {
        for factor in [0.8, 0.9, 1.0, 1.1, 1.25] {
            let c = compare(&baseline(), &seen(200.0 * factor, THEN, counters(2.0, 8.0)));
            assert_eq!(c.verdict, Verdict::Unchanged, "factor {factor}: {c:?}");
        }
    }

    #[test]
    fn each_part_follows_its_own_reference() {
        // Round trips 4x dearer, server CPU twice as fast: 400 + 30 + 40.
        let c = compare(
            &baseline(),
            &seen(470.0, refs(4.0, 0.5, 1.0), counters(2.0, 8.0)),
        );
        assert!((c.expected_p50_us - 470.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c.verdict, Verdict::Unchanged);
    }

    #[test]
    fn a_threefold_slowdown_fails_on_any_machine_the_model_covers() {
        for now in [THEN, refs(4.0, 0.5, 1.0), refs(0.5, 2.0, 2.0)] {
            let expected = baseline().make_up_us.expected_us(&THEN, &now);
            let c = compare(&baseline(), &seen(3.0 * expected, now, counters(2.0, 8.0)));
            assert_eq!(c.verdict, Verdict::Regressed, "{now:?}: {c:?}");
            assert!((c.ratio - 3.0).abs() < 1e-9);
        }
    }

    #[test]
    fn a_slowdown_between_warn_and_fail_warns() {
        let c = compare(&baseline(), &seen(290.0, THEN, counters(2.0, 8.0)));
        assert_eq!(c.verdict, Verdict::Warn);
    }

    #[test]
    fn nothing_fails_by_less_than_half_a_round_trip() {
        // A 20 µs case (a reply that found its thread awake) measured at 44 µs (it had to wake
        // it): 2.2x, but only 24 µs more, under half this run's 50 µs round trip.
        let mut b = baseline();
        b.p50_us = 20.0;
        b.make_up_us = MakeUp::split(20.0, &THEN, 1.0, None);
        b.cpu_us = CpuPerOp {
            client_us: 10.0,
            server_us: 2.0,
        };
        let c = compare(&b, &seen(44.0, THEN, counters(2.0, 8.0)));
        assert_eq!(c.verdict, Verdict::Warn, "{c:?}");
        assert_eq!(c.floor_us, 25.0);
        let c = compare(&b, &seen(50.0, THEN, counters(2.0, 8.0)));
        assert_eq!(c.verdict, Verdict::Regressed, "{c:?}");
    }

    #[test]
    fn on_one_core_a_case_takes_at_least_its_cpu_time_less_its_round_trips() {
        // Recorded: 210 µs of CPU per operation, 100 of them the CPU of its 2 round trips
        // (50 each on two cores). On one core round trips cost 12.5 µs: the make-up gives
        // 25 + 60 + 40 = 125 µs, the floor 110 + 25 = 135 µs, the larger is expected.
        let mut b = baseline();
        b.cpu_us.client_us = 150.0;
        b.throughput_per_s = 1e6 / 210.0;
        let c = compare(&b, &seen(140.0, refs(0.25, 1.0, 1.0), counters(2.0, 8.0)));
        assert!((c.expected_p50_us - 135.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c.verdict, Verdict::Unchanged);
        let c = compare(&b, &seen(405.0, refs(0.25, 1.0, 1.0), counters(2.0, 8.0)));
        assert_eq!(c.verdict, Verdict::Regressed, "{c:?}");
    }

    #[test]
    fn the_floor_never_exceeds_what_its_recording_took() {
        // 240 µs of CPU per operation, 100 of them its 2 round trips: a floor of 240 µs where
        // the recording took 200 µs on average (client and server overlapped). On its own
        // references the case is expected at its recorded p50, and it is judged from there.
        let mut b = baseline();
        b.cpu_us.client_us = 180.0;
        let c = compare(&b, &seen(200.0, THEN, counters(2.0, 8.0)));
        assert!((c.expected_p50_us - 200.0).abs() < 1e-9, "{c:?}");
        assert!((c.fails_at - 1.6).abs() < 1e-9, "{c:?}");
        let c = compare(&b, &seen(330.0, THEN, counters(2.0, 8.0)));
        assert_eq!(c.verdict, Verdict::Regressed, "{c:?}");
    }

    #[test]
    fn a_recording_keeps_the_median_of_its_observations() {
        let mut slow = seen(300.0, refs(1.5, 1.0, 1.0), counters(2.0, 8.0));
        slow.client_cpu_us = 90.0;
        let all = [
            seen(200.0, THEN, counters(2.0, 8.0)),
            slow,
            seen(210.0, THEN, counters(2.0, 9.0)),
        ];
        let m = Observation::median_of(&all).unwrap();
        assert_eq!(m.summary.p50_us, 210.0);
        assert_eq!(m.references.round_trip_us, THEN.round_trip_us);
        assert_eq!(m.counted.counters.unwrap().blocks, 8.0);
        assert_eq!(m.client_cpu_us, 50.0);
    }

    #[test]
    fn a_case_with_several_tasks_is_judged_by_its_mean_latency_at_its_bottleneck() {
        // 4 tasks at 5 000 operations/s: a mean latency of 800 µs (Little's law).
        let mut b = baseline();
        b.concurrency = 4;
        let with_throughput = |per_s: f64, now: References| {
            let mut o = seen(999.0, now, counters(2.0, 8.0));
            o.summary.throughput_per_s = per_s;
            o
        };
        // The cores give half as much (one taken), round trips unchanged: 1 600 µs.
        let mut now = THEN;
        now.parallel_us *= 2.0;
        let c = compare(&b, &with_throughput(2_500.0, now));
        assert!((c.expected_p50_us - 1_600.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c.verdict, Verdict::Unchanged);
        // Round trips 4x dearer, cores unchanged: the chain of round trips sets the pace.
        let c = compare(&b, &with_throughput(2_000.0, refs(4.0, 1.0, 1.0)));
        assert!((c.expected_p50_us - 2_000.0).abs() < 1e-9, "{c:?}");
        // A third of the throughput on an unchanged machine: 3x.
        let c = compare(&b, &with_throughput(5_000.0 / 3.0, THEN));
        assert_eq!(c.verdict, Verdict::Regressed, "{c:?}");
    }

    #[test]
    fn a_statement_added_in_a_trigger_fails_and_an_untracked_side_is_not_judged() {
        let with = |nested| Counters {
            nested_statements: nested,
            ..counters(2.0, 8.0)
        };
        let breach = first_counter_breach(&with(Some(1.0)), &with(Some(2.0)), 1.25).unwrap();
        assert_eq!(breach.counter, Counter::NestedStatements);
        assert_eq!((breach.recorded, breach.measured), (1.0, 2.0));
        assert_eq!(
            first_counter_breach(&with(None), &with(Some(9.0)), 1.25),
            None
        );
        assert_eq!(
            first_counter_breach(&with(Some(1.0)), &with(None), 1.25),
            None
        );
    }

    #[test]
    fn one_more_round_trip_per_operation_fails_whatever_the_count() {
        // The `rt` trial: resolve.batch_10 went from 2.2 to 3.2 round trips (and statements).
        let then = Counters {
            round_trips: 2.2,
            ..counters(2.2, 8.0)
        };
        let now = Counters {
            round_trips: 3.2,
            ..counters(3.2, 8.0)
        };
        let breach = first_counter_breach(&then, &now, 1.25).unwrap();
        assert_eq!(breach.counter, Counter::RoundTrips);
        assert!((breach.limit - 2.7).abs() < 1e-9, "{breach:?}");
        let jitter = Counters {
            round_trips: 2.6,
            ..counters(2.6, 8.0)
        };
        assert_eq!(first_counter_breach(&then, &jitter, 1.25), None);
    }

    #[test]
    fn a_much_faster_case_says_the_baseline_is_stale() {
        let c = compare(&baseline(), &seen(90.0, THEN, counters(2.0, 8.0)));
        assert_eq!(c.verdict, Verdict::Stale);
    }

    #[test]
    fn an_absolute_ceiling_fails_even_when_the_ratio_is_fine() {
        let mut b = baseline();
        b.bound.p95_ceiling_us = Some(250.0);
        let c = compare(&b, &seen(200.0, THEN, counters(2.0, 8.0)));
        assert_eq!(c.verdict, Verdict::CeilingBreached);
    }

    #[test]
    fn a_p95_ten_times_the_recorded_one_fails_without_an_absolute_ceiling() {
        let b = baseline();
        let limit = P95_CEILING_FACTOR * b.p95_us + P95_CEILING_SLACK_US;
        let mut o = seen(200.0, THEN, counters(2.0, 8.0));
        o.summary.p95_us = limit * 1.01;
        let c = compare(&b, &o);
        assert_eq!(c.verdict, Verdict::CeilingBreached, "{c:?}");
        o.summary.p95_us = limit * 0.99;
        assert_eq!(compare(&b, &o).verdict, Verdict::Unchanged);
    }

    #[test]
    fn the_cpu_floor_is_taken_at_the_p50_not_the_mean() {
        let mut b = baseline();
        // CPU per operation (a mean) above the recorded p50: a slow tail.
        b.cpu_us = CpuPerOp {
            client_us: 250.0,
            server_us: 50.0,
        };
        let mut o = seen(200.0, THEN, counters(2.0, 8.0));
        o.summary.mean_us = 400.0;
        let c = compare(&b, &o);
        assert!(c.expected_p50_us <= 200.0 + 1e-9, "{c:?}");
        // Twice as slow, tail included: judged against the p50's 200 µs, not the mean's 300.
        o.summary.p50_us = 400.0;
        o.summary.mean_us = 800.0;
        let c = compare(&b, &o);
        assert_eq!(c.verdict, Verdict::Regressed, "{c:?}");
    }

    #[test]
    fn an_extra_query_per_row_fails_on_its_counter_whatever_the_time() {
        let c = compare(&baseline(), &seen(200.0, THEN, counters(51.0, 8.0)));
        assert_eq!(c.verdict, Verdict::CounterRegressed);
        let breach = c.counter_breach.unwrap();
        assert_eq!(breach.counter, Counter::RoundTrips);
        assert_eq!((breach.recorded, breach.measured), (2.0, 51.0));
    }

    #[test]
    fn a_counter_breach_is_named_before_the_tail_it_causes() {
        // Fifty queries where there was one: the p95 passes its ceiling too, and the
        // failure names the counter, which says why.
        let b = baseline();
        let mut o = seen(200.0, THEN, counters(51.0, 8.0));
        o.summary.p95_us = 2.0 * (P95_CEILING_FACTOR * b.p95_us + P95_CEILING_SLACK_US);
        let c = compare(&b, &o);
        assert_eq!(c.verdict, Verdict::CounterRegressed, "{c:?}");
        assert!(o.summary.p95_us > c.ceiling_us, "{c:?}");
    }

    #[test]
    fn a_lost_index_fails_on_buffers() {
        let c = compare(&baseline(), &seen(200.0, THEN, counters(2.0, 300.0)));
        assert_eq!(c.counter_breach.unwrap().counter, Counter::Blocks);
    }

    #[test]
    fn counters_move_within_their_slack_without_failing() {
        let c = compare(&baseline(), &seen(200.0, THEN, counters(2.0, 14.0)));
        assert_eq!(c.verdict, Verdict::Unchanged, "{c:?}");
    }

    #[test]
    fn a_machine_beyond_the_model_is_not_judged_on_time_but_still_on_counters() {
        let far = refs(20.0, 1.0, 1.0);
        let c = compare(&baseline(), &seen(5_000.0, far, counters(2.0, 8.0)));
        assert_eq!(c.verdict, Verdict::OutOfModel);
        assert!(c.stretch >= 20.0 - 1e-9);
        let c = compare(&baseline(), &seen(5_000.0, far, counters(50.0, 8.0)));
        assert_eq!(c.verdict, Verdict::CounterRegressed);
    }

    #[test]
    fn cpu_references_past_twice_their_recorded_value_leave_time_unjudged() {
        // The busy-host state: CPU references 2.5x slower, round trips 1.7x.
        let busy = refs(1.7, 2.5, 2.5);
        let c = compare(&baseline(), &seen(900.0, busy, counters(2.0, 8.0)));
        assert_eq!(c.verdict, Verdict::OutOfModel, "{c:?}");
        // Within twice, a threefold slowdown still fails.
        let near = refs(1.7, 1.9, 1.9);
        let expected = baseline().make_up_us.expected_us(&THEN, &near);
        let c = compare(&baseline(), &seen(3.0 * expected, near, counters(2.0, 8.0)));
        assert_eq!(c.verdict, Verdict::Regressed, "{c:?}");
    }

    #[test]
    fn without_counters_on_either_side_only_time_is_judged() {
        let mut o = seen(200.0, THEN, counters(2.0, 8.0));
        o.counted.counters = None;
        let c = compare(&baseline(), &o);
        assert!(!c.counters_checked);
        assert_eq!(c.verdict, Verdict::Unchanged);
    }
}
