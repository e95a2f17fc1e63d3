//! What the two sides of `pgperf ab` say to each other: one JSON object a line, requests on
//! the worker's standard input, replies on its standard output. The base build speaks it too,
//! so it changes only with [`PROTOCOL`] raised, and the driver refuses a worker of another.

use serde::{Deserialize, Serialize};

use pgperf::perf::Summary;
use pgperf::perf::counters::Counted;

/// The protocol's version; a base that predates `pgperf ab` answers none.
pub const PROTOCOL: u32 = 1;

/// The environment variable that hands the server's admin URL to a worker (never argv,
/// which `/proc/PID/cmdline` shows to everyone).
pub const SERVER_URL_VAR: &str = "PGPERF_AB_SERVER_URL";

/// A request from the driver.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Clone a database from this build's migrated template and seed it.
    Prepare,
    /// Measure one batch of a case.
    Measure {
        /// The case.
        case: String,
        /// Recorded operations.
        iterations: u64,
        /// Warm-up operations per task.
        warmup: u64,
    },
    /// Count a case's per-operation costs (round trips, statements, buffers).
    Count {
        /// The case.
        case: String,
    },
    /// Drop the database and exit.
    Quit,
}

/// A worker's reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Sent first, unasked.
    Hello {
        /// The worker's [`PROTOCOL`].
        protocol: u32,
        /// Every case this build knows.
        cases: Vec<String>,
    },
    /// The database is seeded.
    Ready {
        /// How long preparing took.
        seconds: f64,
    },
    /// A batch's statistics.
    Measured(Summary),
    /// A counting pass's figures.
    Counted(Counted),
    /// The request failed.
    Failed {
        /// Why.
        message: String,
    },
}
