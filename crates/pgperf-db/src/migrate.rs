//! The M01 schema's migrations, embedded in the binary at compile time.

use sqlx::{PgPool, migrate::Migrator};

use crate::DbError;

/// The migrations under `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Applies every pending migration; applying again is a no-op.
pub async fn migrate(pool: &PgPool, database: &str) -> Result<(), DbError> {
    migrate_with(&MIGRATOR, pool, database).await
}

/// Applies `migrator`'s pending migrations (tests use it with a deliberately broken set).
pub async fn migrate_with(
    migrator: &Migrator,
    pool: &PgPool,
    database: &str,
) -> Result<(), DbError> {
    migrator
        .run(pool)
        .await
        .map_err(|source| DbError::Migration {
            database: database.to_owned(),
            source,
        })
}

/// A short fingerprint of the embedded migrations (versions and checksums), so a template
/// database built from them can be reused exactly while they are unchanged.
pub fn fingerprint() -> String {
    // FNV-1a: stable across toolchains, unlike std's DefaultHasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for m in MIGRATOR.iter() {
        for b in m.version.to_le_bytes().iter().chain(m.checksum.iter()) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}
