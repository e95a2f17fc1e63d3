//! Bulk loading of entities with their aliases through COPY (seeding a large database, the
//! scaling benchmark, a first import).
//!
//! One COPY streams every row into a temporary staging table (an entity line, then its alias
//! lines, all carrying the entity's position in the input), so memory stays bounded whatever
//! the size. The entities then get ids from the `entities` identity sequence, in input
//! order, and both tables are filled with `INSERT ... SELECT` from the staging table. All or
//! nothing: the first bad entity or alias aborts the load with [`DbError::BadRow`] naming
//! the entity's position (1-based), the field and the reason.

use serde::Serialize;
use sqlx::PgConnection;

use super::{begin_bulk, push_json, push_text, stream_copy};
use crate::model::{NewEntity, check_text};
use crate::{DbError, normalize_name};

/// What a load did. Ids are consecutive when nothing else takes ids meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EntityLoad {
    /// Entities inserted.
    pub entities: u64,
    /// Aliases inserted (the same normalized alias twice on one entity counts once).
    pub aliases: u64,
    /// The first entity's id (`None` for an empty load); the rest follow in input order.
    pub first_id: Option<i64>,
}

const STAGE: &str = "CREATE TEMP TABLE pgperf_staged_entities (
    seq bigint NOT NULL, kind text, name text NOT NULL, normalized text NOT NULL,
    attributes jsonb) ON COMMIT DROP";
const COPY_STAGE: &str = "COPY pgperf_staged_entities FROM STDIN (FORMAT text)";
// The ids are drawn in input order (the subquery sorts before nextval runs).
const NUMBER: &str = "CREATE TEMP TABLE pgperf_staged_ids ON COMMIT DROP AS
    SELECT seq, nextval('entities_id_seq') AS id
      FROM (SELECT seq FROM pgperf_staged_entities WHERE kind IS NOT NULL ORDER BY seq OFFSET 0) s";
const INSERT_ENTITIES: &str = "INSERT INTO entities (id, kind, name, normalized_name, attributes)
    OVERRIDING SYSTEM VALUE
    SELECT i.id, s.kind, s.name, s.normalized, s.attributes
      FROM pgperf_staged_entities s JOIN pgperf_staged_ids i USING (seq)
     WHERE s.kind IS NOT NULL ORDER BY i.id";
const INSERT_ALIASES: &str = "INSERT INTO entity_aliases (entity_id, alias, normalized_alias)
    SELECT i.id, s.name, s.normalized
      FROM pgperf_staged_entities s JOIN pgperf_staged_ids i USING (seq)
     WHERE s.kind IS NULL ORDER BY i.id
    ON CONFLICT (entity_id, normalized_alias) DO NOTHING";

/// Appends a staging line: an entity (`kind` and `attributes` set) or an alias (both `\N`).
fn encode(buf: &mut Vec<u8>, seq: u64, entity: Option<&NewEntity>, name: &str, normalized: &str) {
    buf.extend_from_slice(seq.to_string().as_bytes());
    buf.push(b'\t');
    match entity {
        Some(e) => push_text(buf, e.kind.as_str()),
        None => buf.extend_from_slice(b"\\N"),
    }
    buf.push(b'\t');
    push_text(buf, name.trim());
    buf.push(b'\t');
    push_text(buf, normalized);
    buf.push(b'\t');
    match entity {
        Some(e) => push_json(buf, &e.attributes),
        None => buf.extend_from_slice(b"\\N"),
    }
    buf.push(b'\n');
}

fn checked_alias(alias: &str) -> Result<String, DbError> {
    check_text("alias", alias, 500)?;
    let normalized = normalize_name(alias);
    if normalized.is_empty() {
        return Err(DbError::invalid("alias", "must contain a letter or digit"));
    }
    Ok(normalized)
}

/// Streams the rows into the staging table; returns how many entities it read.
async fn stage<I>(conn: &mut PgConnection, rows: I) -> Result<u64, DbError>
where
    I: IntoIterator<Item = (NewEntity, Vec<String>)>,
{
    stream_copy(conn, COPY_STAGE, rows, |buf, seq, (entity, aliases)| {
        entity.validate()?;
        let aliases = aliases
            .iter()
            .map(|a| Ok((a.as_str(), checked_alias(a)?)))
            .collect::<Result<Vec<_>, DbError>>()?;
        let normalized = normalize_name(&entity.name);
        encode(buf, seq, Some(&entity), &entity.name, &normalized);
        for (alias, normalized) in aliases {
            encode(buf, seq, None, alias, &normalized);
        }
        Ok(())
    })
    .await
}

/// The GIN indexes of `entities` and `entity_aliases` (trigram, words, full text).
const MERGE_PENDING: &str = "SELECT coalesce(sum(gin_clean_pending_list(i.indexrelid)), 0)::int8
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_am am ON am.oid = c.relam
     WHERE i.indrelid IN ('entities'::regclass, 'entity_aliases'::regclass)
       AND am.amname = 'gin'";

/// Merges the pending entries of the entity and alias GIN indexes into the indexes proper;
/// returns how many pages of pending entries it merged.
///
/// GIN indexes take new rows into an unsorted pending list (`fastupdate`) that every search
/// reads in full until VACUUM merges it. After a bulk load that list holds the whole load:
/// measured on 20 000 loaded entities, resolution took 4.5 ms per name until the merge and
/// 0.1 ms after it.
pub async fn merge_pending_entries(conn: &mut PgConnection) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(MERGE_PENDING).fetch_one(conn).await?)
}

/// Re-reads the words in more than 0.2 % of the names (or of the aliases) and in at least 10
/// of them, from ANALYZE's statistics of the word indexes, into the table `frequent_words`, which resolution leaves out of a
/// name's words (see the migration `frequent_words`); returns how many there are. Run it
/// after ANALYZE: [`analyze_entities`] does both.
pub async fn refresh_frequent_words(conn: &mut PgConnection) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar("SELECT refresh_frequent_words()")
        .fetch_one(conn)
        .await?)
}

/// Gathers the statistics of the entity and alias tables (ANALYZE), then
/// [`refresh_frequent_words`]; returns the frequent words' count. Run it after a load or any
/// large change of names.
pub async fn analyze_entities(conn: &mut PgConnection) -> Result<i64, DbError> {
    sqlx::query("ANALYZE entities, entity_aliases")
        .execute(&mut *conn)
        .await?;
    refresh_frequent_words(conn).await
}

/// Loads entities and their aliases with COPY, all or nothing (see the module documentation),
/// then merges the GIN indexes' pending entries ([`merge_pending_entries`]).
pub async fn copy_entities<I>(conn: &mut PgConnection, rows: I) -> Result<EntityLoad, DbError>
where
    I: IntoIterator<Item = (NewEntity, Vec<String>)>,
{
    let mut tx = begin_bulk(conn).await?;
    sqlx::query(STAGE).execute(&mut *tx).await?;
    let read = stage(&mut tx, rows).await?;
    sqlx::query(NUMBER).execute(&mut *tx).await?;
    let first_id: Option<i64> = sqlx::query_scalar("SELECT min(id) FROM pgperf_staged_ids")
        .fetch_one(&mut *tx)
        .await?;
    let entities = sqlx::query(INSERT_ENTITIES)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let aliases = sqlx::query(INSERT_ALIASES)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    merge_pending_entries(conn).await?;
    debug_assert_eq!(read, entities);
    Ok(EntityLoad {
        entities,
        aliases,
        first_id,
    })
}
