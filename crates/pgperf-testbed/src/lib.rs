//! # pgperf-testbed
//!
//! What pgperf tests and measures against:
//!
//! - [`postgres`]: the PostgreSQL server, a container started with testcontainers (from the
//!   locally built `pgperf-local/postgres` image) or an external server given by URL; a
//!   migrated template per migration set, and per-test databases cloned from it, dropped
//!   again by their owner or by the next run's cleanup.
//! - [`dataset`]: deterministic generated entities and source records (1k / 100k / 1M), and
//!   labelled name pairs (generated, or FEBRL's data sets) for accuracy.
//!
//! - [`placement`]: the client and the server's container on different CPUs while cases are
//!   timed, so that every round trip crosses cores.
//! - [`settings`]: where the server comes from, read from the environment once.
//!
//! It depends on the data layer ([`pgperf_db`]) for migrations and types; the data layer
//! never depends on it.

#![warn(clippy::too_many_lines)]

pub mod dataset;
pub mod placement;
pub mod postgres;
pub mod settings;

pub use settings::Settings;

pub(crate) use pgperf_db as db;
