//! # pgperf
//!
//! The PostgreSQL foundation of the platform and the guard that keeps it fast and correct. This
//! crate is the command line (`pgperf`) and the integration suite; it re-exports the workspace's
//! crates under short names:
//!
//! - [`db`] ([`pgperf_db`]): the data layer (pool, migrations, repositories, bulk ingestion,
//!   search, resolution). It never depends on the measuring harness.
//! - [`service`] ([`pgperf_service`]): the HTTP API (axum) over the data layer.
//! - [`postgres`] and [`dataset`] ([`pgperf_testbed`]): the PostgreSQL server to run against
//!   (a container or an external server; per-test databases cloned from a migrated template),
//!   and deterministic generated and labelled data.
//! - [`perf`] and [`scenarios`] ([`pgperf_harness`]): the measuring harness (runner,
//!   statistics, calibration, counters, baselines, the guard, reports) and the timed
//!   operations shared by the test suite and the CLI benchmark.

#![warn(clippy::too_many_lines)]

pub use pgperf_db as db;
pub use pgperf_harness::{perf, scenarios};
pub use pgperf_service as service;
pub use pgperf_testbed::{dataset, postgres};
