//! The measuring harness: measurement ([`measure`]), statistics ([`stats`]), the in-run
//! references ([`calibrate`]), per-operation counters ([`counters`], with round trips counted
//! by the relay in [`wire`]), baselines and the bound policy ([`baseline`]), the guard that
//! ties them together ([`guard`]), the paired comparison of two builds ([`paired`]), and
//! reports ([`report`]); a case's failure ([`verdict`]) is a breach of its bound, or an
//! error that kept it from being judged. It uses the data layer; the data
//! layer never uses it.

pub mod accuracy;
pub mod baseline;
pub mod calibrate;
pub mod counters;
pub mod error;
pub mod guard;
pub mod measure;
pub mod paired;
pub mod plan;
pub mod plot;
pub mod report;
pub mod stats;
pub mod verdict;
pub mod wire;

pub use error::PerfError;
pub use guard::{Checked, Guard, SetupStep};
pub use measure::{MeasureConfig, Measurement, Operation, Slowdown, measure, measure_from};
pub use stats::Summary;
pub use verdict::{Breach, CaseFailure};
