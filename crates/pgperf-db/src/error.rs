//! The data layer's one error type. Callers match on what happened (not found, a conflict,
//! bad input, the database being unavailable) instead of decoding SQLSTATE codes.

use sqlx::error::DatabaseError;

/// What went wrong in a data-layer call. Every variant says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The row asked for does not exist (or was deleted meanwhile).
    #[error("{table} row {id} not found")]
    NotFound {
        /// Table that was read.
        table: &'static str,
        /// Primary key that was asked for.
        id: i64,
    },

    /// An optimistic-lock update lost: another writer changed the row after it was read.
    #[error(
        "{table} row {id} was changed by a concurrent writer (expected version {expected}); \
         read it again and retry the update"
    )]
    VersionConflict {
        /// Table that was updated.
        table: &'static str,
        /// Primary key of the row.
        id: i64,
        /// The version the caller had read.
        expected: i32,
    },

    /// A unique key already holds the value (SQLSTATE 23505).
    #[error("duplicate key: {constraint} already holds {detail}")]
    UniqueViolation {
        /// Name of the unique constraint, e.g. `source_records_source_external_id_key`.
        constraint: String,
        /// The server's detail, naming the key and value.
        detail: String,
    },

    /// The input was rejected, before or by the database (check, not-null, foreign key).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field (or the constraint guarding it) that was rejected.
        field: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A bulk load refused a row; nothing of the batch was written.
    #[error(
        "bulk load rejected row {line} ({field}): {reason}; nothing from this batch was written"
    )]
    BadRow {
        /// 1-based row number within the batch.
        line: u64,
        /// The field (column or constraint) at fault.
        field: String,
        /// Why it was refused.
        reason: String,
    },

    /// The database cannot be reached or did not answer in time (pool timeout, closed pool,
    /// I/O error, server shutting down). Retrying later may succeed.
    #[error(
        "database unavailable: {source}; check that the server runs and the pool is not exhausted"
    )]
    Unavailable {
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// The first connection to the server failed: wrong host or port, refused, bad
    /// credentials, or a database that does not exist.
    #[error(
        "cannot connect to {target}: {source}; check the URL, that the server runs, and the user's password"
    )]
    Connect {
        /// The URL with its password redacted.
        target: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// The first connection did not complete within the acquire timeout (a silent host, a
    /// paused server, a firewall dropping packets).
    #[error(
        "connecting to {target} did not complete within {after:?}; check that the host answers on that port"
    )]
    ConnectTimeout {
        /// The URL with its password redacted.
        target: String,
        /// How long we waited.
        after: std::time::Duration,
    },

    /// Applying the migrations failed. Applied migrations must never be edited: add a new one.
    #[error(
        "migration failed on {database}: {source}; fix the migration under migrations/ (an applied one must not change: add a new one)"
    )]
    Migration {
        /// Database the migrations ran on.
        database: String,
        /// sqlx's migration error, naming the migration.
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// A [`crate::Db::bounded`] call did not finish within `query_timeout`: the server
    /// is slow to answer or silently gone. The connection is discarded.
    #[error(
        "no answer from the database within {after:?}; check that the server is up and not overloaded"
    )]
    Timeout {
        /// The limit that passed.
        after: std::time::Duration,
    },

    /// The server cancelled the statement (SQLSTATE 57014): it ran past `statement_timeout`,
    /// or an administrator cancelled it. Nothing it did was kept.
    #[error(
        "the server cancelled the statement: {reason}; if it legitimately runs longer, raise \
         PoolSettings::statement_timeout (bulk loads run under ingest::BULK_STATEMENT_TIMEOUT)"
    )]
    Cancelled {
        /// The server's message, e.g. "canceling statement due to statement timeout".
        reason: String,
    },

    /// A parallel load was rolled back by a settler, which took it as abandoned: it waited
    /// longer than `waited` between preparing its streams and committing them. Nothing of the
    /// load was kept; loading it again is safe.
    #[error(
        "the load was rolled back as abandoned: it waited more than {waited:?} between preparing \
         and committing; nothing of it was kept, and loading it again is safe"
    )]
    LoadAbandoned {
        /// How long a load may wait before a settler takes it as abandoned.
        waited: std::time::Duration,
    },

    /// Any other database error. Its message carries the server's.
    #[error("database error: {source}")]
    Database {
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

impl DbError {
    /// Builds an [`DbError::InvalidInput`] for a field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// True when retrying later may succeed (the database was unavailable): the server went
    /// away, did not answer in time, refused the connection, or is at its connection limit
    /// (53300). A wrong password or a missing database is not: retrying will not help.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::Timeout { .. } | Self::ConnectTimeout { .. } => true,
            Self::Connect { source, .. } => is_transient(source),
            _ => false,
        }
    }
}

/// Whether a driver error means "not now" rather than "never".
fn is_transient(source: &sqlx::Error) -> bool {
    match source {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| is_unavailable_code(&c)),
        _ => false,
    }
}

/// SQLSTATE classes that mean the server went away or refuses work for now.
fn is_unavailable_code(code: &str) -> bool {
    // 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now, 53300 too many
    // connections, 08xxx connection exceptions.
    matches!(code, "57P01" | "57P02" | "57P03" | "53300") || code.starts_with("08")
}

fn from_database_error(db: &dyn DatabaseError) -> Option<DbError> {
    let code = db.code()?;
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
    let constraint = db.constraint().unwrap_or("unknown constraint").to_owned();
    let detail = pg.and_then(|p| p.detail()).unwrap_or_default().to_owned();
    match code.as_ref() {
        "23505" => Some(DbError::UniqueViolation { constraint, detail }),
        "23514" | "23503" => Some(DbError::InvalidInput {
            field: constraint,
            reason: if detail.is_empty() {
                db.message().to_owned()
            } else {
                detail
            },
        }),
        "23502" => Some(DbError::InvalidInput {
            field: pg.and_then(|p| p.column()).unwrap_or("column").to_owned(),
            reason: db.message().to_owned(),
        }),
        "57014" => Some(DbError::Cancelled {
            reason: db.message().to_owned(),
        }),
        "22P02" | "22001" | "22003" | "22007" | "22008" | "22023" => {
            Some(DbError::invalid("value", db.message()))
        }
        _ => None,
    }
}

impl From<sqlx::Error> for DbError {
    fn from(source: sqlx::Error) -> Self {
        match &source {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable { source },
            sqlx::Error::Database(db) => {
                if db.code().is_some_and(|c| is_unavailable_code(&c)) {
                    return Self::Unavailable { source };
                }
                from_database_error(db.as_ref()).unwrap_or(Self::Database { source })
            }
            _ => Self::Database { source },
        }
    }
}
