//! The baseline file's schema. Field order is alphabetical and maps are `BTreeMap`s, so the
//! serialized keys are sorted and a diff shows only what moved.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::perf::PerfError;
use crate::perf::calibrate::References;
use crate::perf::counters::Counters;
use crate::perf::stats::round_sig;

/// Version of the file format; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 2;

/// Written into every file so that a reviewer reads how the bounds work where they are.
pub const ABOUT: &str = "pgperf baseline. Per case, in microseconds: the latencies measured when \
it was recorded; references_us, three references measured with the case on the same machine (a \
SELECT 1 round trip, a fixed piece of server CPU, a fixed piece of client CPU); make_up_us, how the \
recorded p50 splits into round trips (counted round trips x the round-trip reference), server time \
(from pg_stat_statements) and the rest (client CPU); and counters, per operation and machine-independent \
(round trips, statements, rows, shared buffers, WAL bytes, temporary blocks). On another run each part \
of the make-up is scaled by how its reference moved, which gives the p50 this machine should show. \
A case fails when a counter exceeds recorded x bound.counter_ratio (plus a small slack), or when its \
p50 is more than bound.fail_ratio times that expectation AND more than bound.floor_us above it, \
confirmed by two re-measurements; p95_ceiling_us is an absolute limit. Accept an intended change \
with PGPERF_BASELINE=update and review the diff (see README, Baselines).";

/// A case's name: lowercase letters, digits, `.`, `_` and `-`, 1 to 80 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaseName(String);

impl CaseName {
    /// Checks a case name.
    pub fn new(name: impl Into<String>) -> Result<Self, PerfError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 80
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok {
            Ok(Self(name))
        } else {
            Err(PerfError::BadCaseName { name })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CaseName {
    type Error = PerfError;
    fn try_from(s: String) -> Result<Self, PerfError> {
        Self::new(s)
    }
}

impl From<CaseName> for String {
    fn from(c: CaseName) -> String {
        c.0
    }
}

impl fmt::Display for CaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What must match for figures to be comparable. No host names, no timestamps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// PostgreSQL major version of the server measured.
    pub postgres_major: u32,
    /// Cargo profile of the measuring binary (`debug` for `cargo test`, `release` for the CLI).
    pub profile: String,
    /// The server's durability settings (`fsync=off full_page_writes=off
    /// synchronous_commit=on`): a commit's time and its WAL bytes depend on them, so an
    /// external server (`PGPERF_DATABASE_URL`) configured otherwise than the test containers
    /// is not compared with their figures. Empty in files recorded before it was kept: not
    /// compared.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub durability: String,
}

impl Environment {
    /// The current binary's profile.
    pub fn current_profile() -> &'static str {
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    }
}

/// A case's bound: how far it may move before it warns or fails.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    /// Fail when a counter exceeds its recorded value times this (plus the counter's slack).
    pub counter_ratio: f64,
    /// Fail when the p50 is more than this factor above what the model expects (and `floor_us`).
    pub fail_ratio: f64,
    /// Absolute excess (µs, over the expectation) below which nothing fails, so a 20 µs
    /// operation cannot fail on a few µs of jitter.
    pub floor_us: f64,
    /// Absolute p95 limit in µs (k6-style threshold), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ceiling_us: Option<f64>,
    /// Warn when the p50 is more than this factor above the expectation.
    pub warn_ratio: f64,
}

impl Default for Bound {
    /// counters 1.25x, fail 1.6x, warn 1.3x, floor 25 µs; see the README for the reasoning.
    fn default() -> Self {
        Self {
            counter_ratio: 1.25,
            fail_ratio: 1.6,
            floor_us: 25.0,
            p95_ceiling_us: None,
            warn_ratio: 1.3,
        }
    }
}

/// Largest sane ratio in a bound: beyond it a bound guards nothing.
const MAX_RATIO: f64 = 100.0;

impl Bound {
    /// Checks the bound is meaningful; the message names the case and field.
    pub fn validate(&self, case: &CaseName) -> Result<(), PerfError> {
        let bad = |field: &str, reason: &str| PerfError::BadBound {
            case: case.clone(),
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        if !(self.fail_ratio > 1.0 && self.fail_ratio <= MAX_RATIO) {
            return Err(bad(
                "fail_ratio",
                "must be a number above 1 and at most 100",
            ));
        }
        if !(self.warn_ratio > 1.0 && self.warn_ratio <= self.fail_ratio) {
            return Err(bad("warn_ratio", "must be above 1 and at most fail_ratio"));
        }
        if !(self.counter_ratio >= 1.0 && self.counter_ratio <= MAX_RATIO) {
            return Err(bad("counter_ratio", "must be a number from 1 to 100"));
        }
        if !(self.floor_us >= 0.0 && self.floor_us.is_finite()) {
            return Err(bad("floor_us", "must be zero or more"));
        }
        if self
            .p95_ceiling_us
            .is_some_and(|c| !(c.is_finite() && c > 0.0))
        {
            return Err(bad("p95_ceiling_us", "must be above zero"));
        }
        Ok(())
    }
}

/// How a case's recorded p50 splits by what it is made of (µs; the parts sum to the p50).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MakeUp {
    /// The rest: client CPU (encoding, decoding, the runtime), scaled by the client reference.
    pub client_us: f64,
    /// Counted round trips times the round-trip reference.
    pub round_trips_us: f64,
    /// Server execution and planning time (pg_stat_statements), scaled by the server reference.
    pub server_us: f64,
}

impl MakeUp {
    /// Splits `p50_us` given the references measured with it, the counted round trips per
    /// operation and the server time per operation (when known).
    pub fn split(p50_us: f64, refs: &References, round_trips: f64, server_us: Option<f64>) -> Self {
        let round_trips_us = (round_trips * refs.round_trip_us).clamp(0.0, p50_us);
        let server_us = server_us.unwrap_or(0.0).clamp(0.0, p50_us - round_trips_us);
        Self {
            client_us: p50_us - round_trips_us - server_us,
            round_trips_us,
            server_us,
        }
    }

    /// The p50 these parts make on a machine whose references are `now`, when they were
    /// `then` at recording: each part scaled by how its own reference moved.
    pub fn expected_us(&self, then: &References, now: &References) -> f64 {
        self.round_trips_us * now.round_trip_us / then.round_trip_us
            + self.server_us * now.server_us / then.server_us
            + self.client_us * now.client_us / then.client_us
    }
}

/// CPU time per operation: the least a case takes where client and server share one core.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuPerOp {
    /// The client process's CPU time (every thread), scaled by the client reference.
    pub client_us: f64,
    /// The database backends' CPU time (`/proc/PID/schedstat` read through `pg_read_file`),
    /// or where that is not allowed their execution and planning time (pg_stat_statements);
    /// scaled by the server reference.
    pub server_us: f64,
}

impl CpuPerOp {
    /// The least the operation can take on a machine whose references are `now`, when its
    /// client and server work queue on one core: its CPU time without what its `round_trips`
    /// cost in CPU when it was recorded (waking the other side, on two cores), each side scaled
    /// by its reference, plus the round trips at this run's price.
    pub fn floor_us(&self, round_trips: f64, then: &References, now: &References) -> f64 {
        let total = self.client_us + self.server_us;
        if total <= 0.0 {
            return 0.0;
        }
        let trips_cpu = (round_trips * then.round_trip_cpu_us).min(total);
        let keep = (total - trips_cpu) / total;
        keep * (self.client_us * now.client_us / then.client_us
            + self.server_us * now.server_us / then.server_us)
            + round_trips * now.round_trip_us
    }
}

/// The recorded figures of one case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseBaseline {
    /// The bound the case is held to.
    pub bound: Bound,
    /// Tasks that ran the case concurrently.
    pub concurrency: u32,
    /// Per-operation counters, when the server had pg_stat_statements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<Counters>,
    /// CPU time per operation, client and server.
    pub cpu_us: CpuPerOp,
    /// How the p50 splits into round trips, server and client time.
    pub make_up_us: MakeUp,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 95th percentile, µs.
    pub p95_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// The references measured with the case.
    pub references_us: References,
    /// Operations per second.
    pub throughput_per_s: f64,
}

/// Rounds to 3 significant digits (2 decimals for counts under 10, so 1.0 stays 1.0).
fn r3(x: f64) -> f64 {
    round_sig(x, 3)
}

impl CaseBaseline {
    /// The same figures rounded to 3 significant digits, as they are written.
    pub fn rounded(self) -> Self {
        let refs = self.references_us;
        let m = self.make_up_us;
        Self {
            bound: Bound {
                p95_ceiling_us: self.bound.p95_ceiling_us.map(r3),
                ..self.bound
            },
            concurrency: self.concurrency,
            counters: self.counters.map(|c| Counters {
                blocks: r3(c.blocks),
                round_trips: r3(c.round_trips),
                rows: r3(c.rows),
                statements: r3(c.statements),
                temp_blocks: r3(c.temp_blocks),
                wal_bytes: r3(c.wal_bytes),
                nested_statements: c.nested_statements.map(r3),
            }),
            cpu_us: CpuPerOp {
                client_us: r3(self.cpu_us.client_us),
                server_us: r3(self.cpu_us.server_us),
            },
            make_up_us: MakeUp {
                client_us: r3(m.client_us),
                round_trips_us: r3(m.round_trips_us),
                server_us: r3(m.server_us),
            },
            p50_us: r3(self.p50_us),
            p95_us: r3(self.p95_us),
            p99_us: r3(self.p99_us),
            references_us: References {
                client_us: r3(refs.client_us),
                parallel_us: r3(refs.parallel_us),
                round_trip_cpu_us: r3(refs.round_trip_cpu_us),
                round_trip_us: r3(refs.round_trip_us),
                server_us: r3(refs.server_us),
            },
            throughput_per_s: r3(self.throughput_per_s),
        }
    }

    /// Checks that every figure is one the comparison can use (finite, positive where it
    /// divides, counters not negative). The message names the field.
    pub fn validate(&self, case: &CaseName) -> Result<(), PerfError> {
        self.bound.validate(case)?;
        let bad = |field: &str, reason: &str| PerfError::BadBound {
            case: case.clone(),
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let not_negative = |x: f64| x.is_finite() && x >= 0.0;
        for (field, x) in [
            ("p50_us", self.p50_us),
            ("p95_us", self.p95_us),
            ("p99_us", self.p99_us),
            ("throughput_per_s", self.throughput_per_s),
            ("references_us.client_us", self.references_us.client_us),
            ("references_us.parallel_us", self.references_us.parallel_us),
            (
                "references_us.round_trip_cpu_us",
                self.references_us.round_trip_cpu_us,
            ),
            (
                "references_us.round_trip_us",
                self.references_us.round_trip_us,
            ),
            ("references_us.server_us", self.references_us.server_us),
        ] {
            if !positive(x) {
                return Err(bad(field, "must be a finite number above zero"));
            }
        }
        let m = self.make_up_us;
        for (field, x) in [
            ("cpu_us.client_us", self.cpu_us.client_us),
            ("cpu_us.server_us", self.cpu_us.server_us),
            ("make_up_us.client_us", m.client_us),
            ("make_up_us.round_trips_us", m.round_trips_us),
            ("make_up_us.server_us", m.server_us),
        ] {
            if !not_negative(x) {
                return Err(bad(field, "must be a finite number, zero or more"));
            }
        }
        let sum = m.client_us + m.round_trips_us + m.server_us;
        if (sum - self.p50_us).abs() > 0.05 * self.p50_us {
            return Err(bad("make_up_us", "its parts must add up to p50_us"));
        }
        if let Some(c) = &self.counters {
            for counter in crate::perf::counters::Counter::ALL {
                if !counter.of(c).is_none_or(not_negative) {
                    return Err(bad(
                        counter.label(),
                        "must be a finite number, zero or more",
                    ));
                }
            }
        }
        if self.concurrency == 0 {
            return Err(bad("concurrency", "must be 1 or more"));
        }
        Ok(())
    }
}

/// A whole baseline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineFile {
    /// How to read the file (constant text).
    #[serde(default)]
    pub about: String,
    /// The cases, by name (a name twice is refused).
    #[serde(deserialize_with = "unique_cases")]
    pub cases: BTreeMap<CaseName, CaseBaseline>,
    /// What the figures were measured on.
    pub environment: Environment,
    /// [`SCHEMA_VERSION`] when written.
    pub schema_version: u32,
    /// How long each set-up step (seeding, ...) took when recorded, in milliseconds: a step
    /// far slower than this is named in the report (never failed: the cases are judged).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub setup_ms: BTreeMap<String, f64>,
}

impl BaselineFile {
    /// An empty file for an environment.
    pub fn new(environment: Environment) -> Self {
        Self {
            about: ABOUT.to_owned(),
            cases: BTreeMap::new(),
            environment,
            schema_version: SCHEMA_VERSION,
            setup_ms: BTreeMap::new(),
        }
    }
}

/// Reads the `cases` map, refusing a case that appears twice (serde would keep the last one
/// silently, and a merge conflict resolved by hand can leave exactly that).
fn unique_cases<'de, D>(d: D) -> Result<BTreeMap<CaseName, CaseBaseline>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Cases;
    impl<'de> serde::de::Visitor<'de> for Cases {
        type Value = BTreeMap<CaseName, CaseBaseline>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of case names to their figures")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut cases = BTreeMap::new();
            while let Some((name, figures)) = map.next_entry::<CaseName, CaseBaseline>()? {
                if cases.contains_key(&name) {
                    return Err(serde::de::Error::custom(format!("duplicate case {name}")));
                }
                cases.insert(name, figures);
            }
            Ok(cases)
        }
    }
    d.deserialize_map(Cases)
}
