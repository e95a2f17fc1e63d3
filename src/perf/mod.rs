//! The measuring harness: measurement ([`measure`]), statistics ([`stats`]), calibration,
//! baselines and the bound policy ([`baseline`]), the guard that ties them together
//! ([`guard`]), and reports ([`report`]). It uses the data layer; the data layer never uses it.

pub mod baseline;
pub mod calibrate;
mod error;
pub mod guard;
pub mod measure;
pub mod report;
pub mod stats;

pub use error::PerfError;
pub use guard::Guard;
pub use measure::{MeasureConfig, Measurement, Operation, Slowdown, measure};
pub use stats::Summary;
