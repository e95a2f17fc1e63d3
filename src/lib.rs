//! # pgperf
//!
//! The PostgreSQL foundation of the platform and the guard that keeps it fast and correct.
//!
//! - [`db`]: the data layer (pool, migrations, repositories, bulk ingestion). It never
//!   depends on the measuring harness.
//! - [`dataset`]: deterministic generated entities and source records (1k / 100k / 1M).
//! - [`perf`]: the measuring harness (runner, statistics, calibration, baselines, reports).
//! - [`scenarios`]: the timed operations, shared by the test suite and the CLI benchmark.
//! - [`postgres`]: the PostgreSQL server to run against: a container started with
//!   testcontainers, or an external server given by URL; per-test databases cloned from a
//!   migrated template.
//! - [`service`]: the HTTP API (axum) over the data layer: health endpoints, entities,
//!   search and resolution so far.

pub mod dataset;
pub use pgperf_db as db;
pub mod perf;
pub mod postgres;
pub mod scenarios;
pub mod service;
