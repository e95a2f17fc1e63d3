//! The data layer: pool construction from typed settings, migrations, and (in their own
//! modules) the repositories. It depends on nothing of the measuring harness, the test
//! servers or the service: those are `pgperf`'s, and depend on this crate.
//!
//! ```no_run
//! use pgperf_db::{DatabaseUrl, Db, EntityKind, NewEntity, PoolSettings, repo};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let url = DatabaseUrl::parse("postgres://app@db.internal:5432/platform")?;
//! let db = Db::connect(&url, PoolSettings::default()).await?;
//! pgperf_db::migrate(db.pool(), "platform").await?;
//! let mut conn = db.acquire().await?;
//! let acme = NewEntity {
//!     kind: EntityKind::Organization,
//!     name: "Acme Holdings Ltd".into(),
//!     attributes: serde_json::json!({ "country": "NZ" }),
//! };
//! let created = repo::entities::create(&mut conn, &acme).await?;
//! assert_eq!(repo::entities::get(&mut conn, created.id).await?.name, acme.name);
//! # Ok(())
//! # }
//! ```
#![warn(clippy::too_many_lines)]

mod error;
pub mod ingest;
pub mod latency;
mod migrate;
pub mod model;
pub mod name_score;
mod name_words;
mod normalize;
pub mod pool;
pub mod process_cache;
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
