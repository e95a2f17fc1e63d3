//! Baselines: the figures a case is held to, kept in a reviewed JSON file under `baselines/`.
//!
//! - [`model`]: the file's schema (versioned; keys sorted; numbers rounded to 3 figures).
//! - [`storage`]: loading with errors that name the place, atomic and concurrent-safe saving.
//! - [`compare`]: the bound policy, a pure function from figures to a [`Verdict`].
//! - [`mode`]: the review workflow (check, record new cases, update, force).

pub mod compare;
pub mod mode;
pub mod model;
pub mod storage;

pub use compare::{Comparison, CounterBreach, Observation, Verdict, compare, first_counter_breach};
pub use mode::Mode;
pub use model::{
    BaselineFile, Bound, CaseBaseline, CaseName, CpuPerOp, Environment, MakeUp, SCHEMA_VERSION,
};
