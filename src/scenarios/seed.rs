//! Seeding a database for the scenarios: entities with aliases (for lookups and trigram
//! search) and a few source records.

use crate::dataset;
use crate::db::{Db, DbError, normalize_name};

/// The dataset seed every scenario uses.
pub const SEED: u64 = 20_261_128;

/// Number of entities seeded: enough that a trigram search without its index is a visibly
/// slower sequential scan.
pub const ENTITIES: u64 = 20_000;

/// Seeds `ENTITIES` entities (ids 1..=ENTITIES) with aliases, in one statement per table.
pub async fn seed(db: &Db) -> Result<(), DbError> {
    let mut kinds = Vec::new();
    let mut names = Vec::new();
    let mut normalized = Vec::new();
    let mut attributes = Vec::new();
    let (mut alias_owner, mut alias_names, mut alias_normalized) =
        (Vec::new(), Vec::new(), Vec::new());
    for (i, (entity, aliases)) in dataset::entities(SEED, ENTITIES).enumerate() {
        kinds.push(entity.kind.as_str());
        normalized.push(normalize_name(&entity.name));
        names.push(entity.name);
        attributes.push(entity.attributes);
        for alias in aliases {
            alias_owner.push(i as i64 + 1);
            alias_normalized.push(normalize_name(&alias));
            alias_names.push(alias);
        }
    }
    let mut conn = db.acquire().await?;
    sqlx::query(
        "INSERT INTO entities (kind, name, normalized_name, attributes)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::jsonb[])",
    )
    .bind(&kinds)
    .bind(&names)
    .bind(&normalized)
    .bind(&attributes)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO entity_aliases (entity_id, alias, normalized_alias)
         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(&alias_owner)
    .bind(&alias_names)
    .bind(&alias_normalized)
    .execute(&mut *conn)
    .await?;
    // Measurements must not race background work: statistics are gathered here, once, and
    // autovacuum stays off for the measured tables (the database is thrown away afterwards).
    for sql in [
        "ALTER TABLE entities SET (autovacuum_enabled = false)",
        "ALTER TABLE entity_aliases SET (autovacuum_enabled = false)",
        "ALTER TABLE source_records SET (autovacuum_enabled = false)",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    sqlx::query("ANALYZE").execute(&mut *conn).await?;
    Ok(())
}
