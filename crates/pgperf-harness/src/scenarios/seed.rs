//! Seeding a database for the scenarios: entities with aliases (for lookups and trigram
//! search) and a few source records.

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::AssertSqlSafe;

use crate::dataset;
use crate::db::{Db, DbError, normalize_name};
use crate::perf::SetupStep;

/// The dataset seed every scenario uses.
pub const SEED: u64 = 20_261_128;

/// Number of entities seeded: enough that a trigram search without its index is a visibly
/// slower sequential scan.
pub const ENTITIES: u64 = 20_000;

/// How long seeding may take in all, server side (`statement_timeout` of its transaction)
/// and client side: 20 000 rows take under a second; ten minutes leaves room for entity
/// writes that became much slower, so the cases still get measured and name the slowdown.
pub const SEED_LIMIT: Duration = Duration::from_secs(600);

/// The generated rows, column by column, as the bulk inserts bind them.
#[derive(Default)]
struct Columns {
    kinds: Vec<&'static str>,
    names: Vec<String>,
    normalized: Vec<String>,
    attributes: Vec<serde_json::Value>,
    alias_owner: Vec<i64>,
    alias_names: Vec<String>,
    alias_normalized: Vec<String>,
}

fn generate() -> Columns {
    let mut c = Columns::default();
    for (i, (entity, aliases)) in dataset::entities(SEED, ENTITIES).enumerate() {
        c.kinds.push(entity.kind.as_str());
        c.normalized.push(normalize_name(&entity.name));
        c.names.push(entity.name);
        c.attributes.push(entity.attributes);
        for alias in aliases {
            c.alias_owner.push(i as i64 + 1);
            c.alias_normalized.push(normalize_name(&alias));
            c.alias_names.push(alias);
        }
    }
    c
}

/// Times one step, bounded by what is left of [`SEED_LIMIT`].
async fn timed<T>(
    steps: &mut Vec<SetupStep>,
    name: &'static str,
    deadline: Instant,
    work: impl Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    let started = Instant::now();
    let left = deadline.saturating_duration_since(started);
    let out = tokio::time::timeout(left, work)
        .await
        .map_err(|_| DbError::Timeout { after: SEED_LIMIT })??;
    steps.push(SetupStep {
        name,
        took: started.elapsed(),
    });
    Ok(out)
}

/// Seeds `ENTITIES` entities (ids 1..=ENTITIES) with aliases, one bulk statement per table in
/// one transaction with its own `statement_timeout` ([`SEED_LIMIT`]), then turns autovacuum
/// off on the measured tables and gathers statistics. Returns how long each step took.
pub async fn seed(db: &Db) -> Result<Vec<SetupStep>, DbError> {
    let deadline = Instant::now() + SEED_LIMIT;
    let mut steps = Vec::new();
    let started = Instant::now();
    let c = generate();
    steps.push(SetupStep {
        name: "seed.generate",
        took: started.elapsed(),
    });
    let mut conn = timed(&mut steps, "seed.connect", deadline, db.acquire()).await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let limit = format!("SET LOCAL statement_timeout = '{}s'", SEED_LIMIT.as_secs());
    sqlx::query(AssertSqlSafe(limit)).execute(&mut *tx).await?;
    let entities = sqlx::query(
        "INSERT INTO entities (kind, name, normalized_name, attributes)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::jsonb[])",
    )
    .bind(&c.kinds)
    .bind(&c.names)
    .bind(&c.normalized)
    .bind(&c.attributes)
    .execute(&mut *tx);
    timed(&mut steps, "seed.entities", deadline, async {
        Ok(entities.await?)
    })
    .await?;
    let aliases = sqlx::query(
        "INSERT INTO entity_aliases (entity_id, alias, normalized_alias)
         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(&c.alias_owner)
    .bind(&c.alias_names)
    .bind(&c.alias_normalized)
    .execute(&mut *tx);
    timed(&mut steps, "seed.aliases", deadline, async {
        Ok(aliases.await?)
    })
    .await?;
    timed(&mut steps, "seed.commit", deadline, async {
        Ok(tx.commit().await?)
    })
    .await?;
    timed(&mut steps, "seed.analyze", deadline, settle(&mut conn)).await?;
    // The GIN indexes hold the seed in their pending lists until merged: searches would read
    // them in full (see `merge_pending_entries`), which is not the steady state to measure.
    timed(
        &mut steps,
        "seed.merge_gin",
        deadline,
        crate::db::ingest::merge_pending_entries(&mut conn),
    )
    .await?;
    Ok(steps)
}

/// Measurements must not race background work: statistics are gathered here, once, and
/// autovacuum stays off for the measured tables (the database is thrown away afterwards).
async fn settle(conn: &mut sqlx::PgConnection) -> Result<(), DbError> {
    for sql in [
        "ALTER TABLE entities SET (autovacuum_enabled = false)",
        "ALTER TABLE entity_aliases SET (autovacuum_enabled = false)",
        "ALTER TABLE source_records SET (autovacuum_enabled = false)",
        "ANALYZE",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    crate::db::ingest::refresh_frequent_words(conn).await?;
    Ok(())
}
