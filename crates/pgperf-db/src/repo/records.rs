//! Source records one at a time: create, read, link to an entity, delete, keyset listing.
//! Bulk loads go through [`crate::ingest`].

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use crate::DbError;
use crate::model::{NewSourceRecord, Page, SourceRecord};

/// The columns a new record sets, in the order every insert, COPY and encoded line uses
/// (also [`crate::ingest::encode_copy_line`]).
pub const INSERT_COLUMNS: &str = "source, external_id, payload, entity_id, match_score";

/// `source_records` with the columns a new record sets: `INSERT INTO` / `COPY` targets.
pub const INSERT_TARGET: &str = const_format::concatcp!("source_records (", INSERT_COLUMNS, ")");

pub(crate) const COLUMNS: &str = const_format::concatcp!("id, ", INSERT_COLUMNS, ", ingested_at");

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    id: i64,
    source: String,
    external_id: String,
    payload: Value,
    entity_id: Option<i64>,
    match_score: Option<f32>,
    ingested_at: DateTime<Utc>,
}

impl From<Row> for SourceRecord {
    fn from(r: Row) -> Self {
        SourceRecord {
            id: r.id,
            source: r.source,
            external_id: r.external_id,
            payload: r.payload,
            entity_id: r.entity_id,
            match_score: r.match_score,
            ingested_at: r.ingested_at,
        }
    }
}

/// The statement of [`list`] with a source (`$1` source, `$2` after id, `$3` limit), for
/// plan guards.
pub const LIST_OF_SOURCE: &str = const_format::concatcp!(
    "SELECT ",
    COLUMNS,
    " FROM source_records WHERE source = $1 AND id > $2 ORDER BY id LIMIT $3"
);

/// A page of all records (`$1` after, `$2` limit).
const LIST_ALL: &str = const_format::concatcp!(
    "SELECT ",
    COLUMNS,
    " FROM source_records WHERE id > $1 ORDER BY id LIMIT $2"
);

/// Inserts one record. A second record with the same (source, external_id) is a
/// [`DbError::UniqueViolation`] on `source_records_source_external_id_key`.
pub async fn create(
    conn: &mut PgConnection,
    new: &NewSourceRecord,
) -> Result<SourceRecord, DbError> {
    new.validate()?;
    let sql = const_format::concatcp!(
        "INSERT INTO ",
        INSERT_TARGET,
        " VALUES ($1, $2, $3, $4, $5) RETURNING ",
        COLUMNS
    );
    let row: Row = sqlx::query_as(sql)
        .bind(&new.source)
        .bind(&new.external_id)
        .bind(&new.payload)
        .bind(new.entity_id)
        .bind(new.match_score)
        .fetch_one(conn)
        .await?;
    Ok(row.into())
}

/// Reads one record.
pub async fn get(conn: &mut PgConnection, id: i64) -> Result<SourceRecord, DbError> {
    let sql = const_format::concatcp!("SELECT ", COLUMNS, " FROM source_records WHERE id = $1");
    let row: Option<Row> = sqlx::query_as(sql).bind(id).fetch_optional(conn).await?;
    found(row, id)
}

/// Reads the records with these ids (missing ids are skipped), in id order.
pub async fn get_many(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<SourceRecord>, DbError> {
    let sql = const_format::concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM source_records WHERE id = ANY($1) ORDER BY id"
    );
    let rows: Vec<Row> = sqlx::query_as(sql).bind(ids).fetch_all(conn).await?;
    Ok(rows.into_iter().map(SourceRecord::from).collect())
}

/// Links a record to the entity it was resolved to, with the match score.
pub async fn link(
    conn: &mut PgConnection,
    id: i64,
    entity_id: i64,
    score: f32,
) -> Result<SourceRecord, DbError> {
    if !(0.0..=1.0).contains(&score) {
        return Err(DbError::invalid(
            "match_score",
            format!("{score} is not between 0 and 1"),
        ));
    }
    let sql = const_format::concatcp!(
        "UPDATE source_records SET entity_id = $2, match_score = $3 WHERE id = $1 RETURNING ",
        COLUMNS
    );
    let row: Option<Row> = sqlx::query_as(sql)
        .bind(id)
        .bind(entity_id)
        .bind(score)
        .fetch_optional(conn)
        .await?;
    found(row, id)
}

/// The record of `row`, or "not found" naming `id`.
fn found(row: Option<Row>, id: i64) -> Result<SourceRecord, DbError> {
    let row = row.ok_or(DbError::NotFound {
        table: "source_records",
        id,
    })?;
    Ok(row.into())
}

/// Deletes a record.
pub async fn delete(conn: &mut PgConnection, id: i64) -> Result<(), DbError> {
    super::delete_one(
        conn,
        "source_records",
        "DELETE FROM source_records WHERE id = $1",
        id,
    )
    .await
}

/// Lists records in id order after `after`, optionally of one source (keyset pagination).
pub async fn list(
    conn: &mut PgConnection,
    source: Option<&str>,
    after: Option<i64>,
    limit: u32,
) -> Result<Page<SourceRecord>, DbError> {
    let sql = (LIST_ALL, LIST_OF_SOURCE);
    let (rows, limit): (Vec<Row>, _) = super::keyset_rows(conn, sql, source, after, limit).await?;
    Ok(Page::from_rows(
        rows.into_iter().map(SourceRecord::from).collect(),
        limit,
        |r| r.id,
    ))
}
