//! Fixtures shared by the integration tests: the run's server, per-test databases, and the
//! timing gate. Nothing here asserts; tests do.

pub mod attempts;
pub mod bounded;
pub mod database;
pub mod dedicated;
pub mod entities;
pub mod gate;
pub mod service;
pub mod shared;
pub mod skip;

pub use database::{TestDb, test_db};
pub use entities::entity;
