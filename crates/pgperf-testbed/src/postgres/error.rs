//! Errors of bringing up a server to test against. Each says how to fix it.

use crate::db::{DbError, UrlError};

/// Why no PostgreSQL server could be provided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No Docker engine answered.
    #[error(
        "no Docker engine answers ({reason}); run scripts/ensure-docker.sh (scripts/test does it \
         for you), or set PGPERF_DATABASE_URL to test against an existing PostgreSQL server"
    )]
    EngineUnreachable {
        /// What the Docker client said.
        reason: String,
    },

    /// The image is not present and could not be pulled (no registry answers).
    #[error(
        "PostgreSQL image {image} is not available locally and could not be pulled ({reason}); \
         run scripts/ensure-pg-image.sh, which builds pgperf-local/postgres:15-debian from Debian \
         packages, and set PGPERF_PG_IMAGE to the name it prints (scripts/test does both)"
    )]
    ImageMissing {
        /// The image asked for.
        image: String,
        /// What the engine said.
        reason: String,
    },

    /// `docker update` of the container failed (a set-up that reproduces another machine).
    #[error(
        "docker update {args} of container {id} failed: {reason}; check the arguments (for example --cpus 1 or --cpuset-cpus 0)"
    )]
    ContainerUpdate {
        /// The container.
        id: String,
        /// The arguments given.
        args: String,
        /// What docker said.
        reason: String,
    },
    /// The client process's CPU list could not be read or set.
    #[error(
        "placing the client on CPU 0 failed: {0}; set PGPERF_PLACEMENT=as-is to time without placing"
    )]
    Placement(String),

    /// The container was created but did not become ready, or another engine error.
    #[error(
        "PostgreSQL container from {image} failed to start: {reason}; see `docker logs` of the container, or run with TESTCONTAINERS_COMMAND=keep to keep it"
    )]
    ContainerStart {
        /// The image used.
        image: String,
        /// What testcontainers said.
        reason: String,
    },

    /// An environment variable holds a value we cannot use.
    #[error("environment variable {var} is invalid: {reason}")]
    BadVariable {
        /// The variable's name.
        var: &'static str,
        /// What is wrong with its value (passwords redacted).
        reason: String,
    },

    /// The URL in an environment variable is malformed.
    #[error("environment variable {var}: {source}")]
    BadUrl {
        /// The variable's name.
        var: &'static str,
        /// The URL's problem.
        #[source]
        source: UrlError,
    },

    /// A step of preparing databases got no answer in time: the server is paused, overloaded
    /// or unreachable (or, for the template lock, another process holds it).
    #[error(
        "{step} on {target} got no answer within {after:?}; check that the server is up and \
         not overloaded{hint}"
    )]
    Stalled {
        /// What was waited for ("connecting", "CREATE DATABASE ...", "the template lock").
        step: String,
        /// The server, password redacted.
        target: String,
        /// How long we waited.
        after: std::time::Duration,
        /// More on what to do (may be empty).
        hint: String,
    },

    /// The server is up but preparing a database on it failed.
    #[error(transparent)]
    Database(#[from] DbError),
}

impl ServerError {
    /// Classifies a testcontainers error by what the user has to do about it.
    pub(crate) fn from_start(
        image: &str,
        err: testcontainers_modules::testcontainers::TestcontainersError,
    ) -> Self {
        use testcontainers_modules::testcontainers::{
            TestcontainersError as E, core::error::ClientError as C,
        };
        let reason = err.to_string();
        let engine_down = |r: &str| {
            [
                "error trying to connect",
                "Connection refused",
                "No such file or directory",
                "socket",
            ]
            .iter()
            .any(|needle| r.contains(needle))
        };
        match &err {
            E::Client(C::Init(_) | C::InvalidDockerHost(_) | C::Configuration(_)) => {
                Self::EngineUnreachable { reason }
            }
            E::Client(C::PullImage { .. }) => Self::ImageMissing {
                image: image.to_owned(),
                reason,
            },
            _ if engine_down(&reason) => Self::EngineUnreachable { reason },
            _ => Self::ContainerStart {
                image: image.to_owned(),
                reason,
            },
        }
    }
}
