//! The data layer: pool construction from typed settings, migrations, and (in their own
//! modules) the repositories. It never depends on the measuring harness in `crate::perf`.

mod error;
mod migrate;
pub mod pool;
mod url;

pub use error::DbError;
pub use migrate::{MIGRATOR, fingerprint as migrations_fingerprint, migrate, migrate_with};
pub use pool::{Db, MeteredConnection, PoolSettings, PoolSnapshot};
pub use url::{DatabaseUrl, UrlError, redact_text};
