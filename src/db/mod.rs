//! The data layer: pool construction from typed settings, migrations, and (in their own
//! modules) the repositories. It never depends on the measuring harness in `crate::perf`.

mod error;
pub mod ingest;
mod migrate;
pub mod model;
pub mod name_score;
mod normalize;
pub mod pool;
pub mod repo;
pub mod resolve;
pub mod search;
pub mod search_cache;
pub mod unit_of_work;
mod url;

pub use error::DbError;
pub use migrate::{MIGRATOR, fingerprint as migrations_fingerprint, migrate, migrate_with};
pub use model::{
    Alias, Entity, EntityChanges, EntityKind, NewEntity, NewSourceRecord, Page, SourceRecord,
};
pub use normalize::normalize_name;
pub use pool::{Db, MeteredConnection, PoolSettings, PoolSnapshot};
pub use url::{DatabaseUrl, UrlError, mask_known_secrets, redact_text, remember_secret};
