//! # pgperf-harness
//!
//! pgperf's measuring harness, kept apart from what it measures:
//!
//! - [`perf`]: measurement, statistics, the in-run references, per-operation counters,
//!   baselines and the bound policy, the guard, query plans, the paired comparison of two
//!   builds, and reports;
//! - [`scenarios`]: the timed operations, in areas, shared by the test suite and the CLI
//!   benchmark, with their seed data;
//! - [`settings`]: the baseline mode, injected slowdowns and round-trip delay, read from the
//!   environment once.
//!
//! It uses the data layer ([`pgperf_db`]), the test bed ([`pgperf_testbed`]) and the service
//! ([`pgperf_service`], for the HTTP cases); none of them uses it.

#![warn(clippy::too_many_lines)]

pub mod perf;
pub mod scenarios;
pub mod settings;

pub use settings::Settings;

pub(crate) use pgperf_db as db;
pub(crate) use pgperf_service as service;
pub(crate) use pgperf_testbed::dataset;
