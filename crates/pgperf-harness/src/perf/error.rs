//! Errors of the measuring harness. Each names the case or file and says what to do.

use std::path::PathBuf;

use crate::db::DbError;

/// What can go wrong measuring, comparing or recording.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PerfError {
    /// A case name with characters outside `[a-z0-9._-]` or longer than 80.
    #[error("invalid case name {name:?}: use 1-80 of lowercase letters, digits, '.', '_' and '-'")]
    BadCaseName {
        /// The name given.
        name: String,
    },

    /// A bound or recorded figure that cannot work (fail ratio under 1, a negative p50...).
    #[error("case {case}: {field} {reason}")]
    BadBound {
        /// The case.
        case: crate::perf::baseline::CaseName,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },

    /// The baseline file is not valid JSON of the expected shape.
    #[error(
        "baseline file {} is malformed at line {line}, column {column}: {reason}; fix it by hand, \
         or delete the broken case (or the file) and record it again with PGPERF_BASELINE=new scripts/test",
        path.display()
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when the problem is not at one place).
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser or validator said.
        reason: String,
    },

    /// The file was written by another version of the format.
    #[error(
        "baseline file {} has schema_version {}, this pgperf reads {expected}; re-record it with \
         PGPERF_BASELINE=force scripts/test and review the diff",
        path.display(), found.as_deref().unwrap_or("(missing)")
    )]
    SchemaVersion {
        /// The file.
        path: PathBuf,
        /// The version found, if any.
        found: Option<String>,
        /// The version this build reads.
        expected: u32,
    },

    /// The baseline was measured in an environment whose figures do not compare with this run's.
    #[error(
        "baseline file {} was recorded with {field} = {recorded}, this run has {current}; its \
         figures do not compare. Record a baseline for this environment with PGPERF_BASELINE=force",
        path.display()
    )]
    Incomparable {
        /// The file.
        path: PathBuf,
        /// The environment field that differs.
        field: String,
        /// Its recorded value.
        recorded: String,
        /// This run's value.
        current: String,
    },

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Another process held the baseline file's lock for too long.
    #[error(
        "waited {after:?} for the lock {}: another pgperf process is writing this baseline, \
         or one is stuck holding it (it is released when that process ends)",
        path.display()
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        after: std::time::Duration,
    },

    /// The mode variable holds an unknown value.
    #[error(
        "{var}={value:?} is not a mode; use one of: check, new, update, force (or leave it unset)"
    )]
    BadMode {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },

    /// A writing mode was asked for in CI.
    #[error(
        "{var} asks to write baselines, but CI is set: CI never writes baselines; record them locally and commit the file"
    )]
    WriteInCi {
        /// The variable.
        var: &'static str,
    },

    /// The slowdown-injection variable is malformed.
    #[error(
        "{var}={value:?} is invalid: expected CASE=FACTOR[,CASE=FACTOR...] with factors of 1 or more, \
         e.g. crud.update_entity=3"
    )]
    BadSlowdown {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },

    /// The round-trip delay variable is malformed.
    #[error("{var}={value:?} is invalid: expected whole microseconds, 0 to 100000")]
    BadWireDelay {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },

    /// The slowdown-injection variable names a case that does not exist.
    #[error("{var}: no case is named \"{case}\"; the cases are: {known}")]
    UnknownSlowdownCase {
        /// The variable.
        var: &'static str,
        /// The name given.
        case: crate::perf::baseline::CaseName,
        /// Every case, comma-separated.
        known: String,
    },

    /// A slowdown was asked for a case with several tasks: its busy-wait would hold a runtime
    /// thread that the other tasks need, and the slowdown would feed on itself.
    #[error(
        "{var} names {case}, which runs {tasks} tasks: only cases with one task can be slowed down"
    )]
    SlowdownNeedsOneTask {
        /// The variable.
        var: &'static str,
        /// The case.
        case: crate::perf::baseline::CaseName,
        /// Its task count.
        tasks: usize,
    },

    /// A case has no baseline and this run may not record one.
    #[error(
        "case {case} has no baseline in {}; record it locally with `PGPERF_BASELINE=new scripts/test` \
         (the default outside CI), review the diff and commit the file",
        path.display()
    )]
    MissingCase {
        /// The case.
        case: crate::perf::baseline::CaseName,
        /// The baseline file.
        path: PathBuf,
    },

    /// The measured operation itself failed.
    #[error("case {case}: {errors} of the measured operations failed; first error: {first_error}")]
    Operation {
        /// The case.
        case: crate::perf::baseline::CaseName,
        /// How many failed.
        errors: u64,
        /// The first error's message.
        first_error: String,
    },

    /// A step around the measurement (calibration, a counter snapshot, connecting) got no
    /// answer in time.
    #[error(
        "case {case}: {step} got no answer within {after:?}; is the server paused, overloaded \
         or gone?"
    )]
    Stalled {
        /// The case.
        case: crate::perf::baseline::CaseName,
        /// What was waited for.
        step: &'static str,
        /// How long.
        after: std::time::Duration,
    },

    /// The counting relay could not start.
    #[error("the round-trip counting relay in front of {target} could not start: {source}")]
    Relay {
        /// The server it relays to.
        target: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The API service of an HTTP case could not start.
    #[error("the API service for an HTTP case could not start on 127.0.0.1: {source}")]
    Service {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A URL could not be aimed at the relay.
    #[error(transparent)]
    Url(#[from] crate::db::UrlError),

    /// A database call of the harness (calibration, setup) failed.
    #[error(transparent)]
    Db(#[from] DbError),
}
