//! Bulk ingestion of source records, and of entities with their aliases ([`copy_entities`]).
//!
//! - [`copy_records`]: streams rows through `COPY ... FROM STDIN` (text format) in 256 KiB
//!   chunks, so memory stays bounded whatever the size. All or nothing: the batch runs in a
//!   transaction, and the first bad row (checked here, or rejected by the server) aborts it
//!   with [`DbError::BadRow`] naming the line (1-based row number in the batch), the field
//!   and the reason; the table is left exactly as it was.
//! - [`parallel::copy_records_parallel`]: the same COPY over several connections at once,
//!   committed together with two-phase commit, so still all or nothing.
//! - [`upsert_records`]: re-ingests a source: COPY into a temporary staging table, then
//!   `INSERT ... ON CONFLICT (source, external_id) DO UPDATE`; duplicates within the batch
//!   keep their last row.
//! - [`insert_records_unnest`]: multi-row `INSERT ... SELECT FROM UNNEST(...)` in chunks, the
//!   comparison point for COPY.
//! - [`insert_records_one_by_one`]: one INSERT per row, the slow baseline.
//!
//! The bulk paths run under [`BULK_STATEMENT_TIMEOUT`] rather than the pool's
//! `statement_timeout`, which is sized for interactive queries.

use std::borrow::Borrow;
use std::io::Write as _;

use serde::Serialize;
use sqlx::postgres::PgDatabaseError;
use sqlx::{Connection, PgConnection};

use super::DbError;
use super::model::NewSourceRecord;
use super::repo::records::{INSERT_COLUMNS, INSERT_TARGET};
use const_format::concatcp;

mod entities;
pub mod parallel;

pub use entities::{
    EntityLoad, analyze_entities, copy_entities, merge_pending_entries, refresh_frequent_words,
};

const CHUNK_BYTES: usize = 256 * 1024;

/// The `statement_timeout` a bulk load runs under (set for its transaction only): 10 minutes.
/// The pool's own timeout (30 s by default) is meant for interactive queries and would cancel
/// a large COPY (1M records take ~30 s on a small machine); a bulk load still must not run
/// forever.
pub const BULK_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Starts a bulk load's transaction, under [`BULK_STATEMENT_TIMEOUT`].
async fn begin_bulk(
    conn: &mut PgConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, DbError> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT set_config('statement_timeout', $1, true)")
        .bind(format!("{}ms", BULK_STATEMENT_TIMEOUT.as_millis()))
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
const UNNEST_ROWS: usize = 5_000;

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UpsertCounts {
    /// Rows that were new.
    pub inserted: u64,
    /// Rows that replaced an existing (source, external_id).
    pub updated: u64,
}

/// Appends a value in COPY text format: backslash, tab, newline and carriage return escaped.
/// The runs between them are copied whole.
fn push_text(buf: &mut Vec<u8>, value: impl AsRef<[u8]>) {
    let mut rest = value.as_ref();
    while let Some(at) = rest
        .iter()
        .position(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        buf.extend_from_slice(&rest[..at]);
        buf.extend_from_slice(match rest[at] {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            _ => b"\\r",
        });
        rest = &rest[at + 1..];
    }
    buf.extend_from_slice(rest);
}

/// Writes into a COPY text buffer, escaping as [`push_text`].
struct CopyText<'a>(&'a mut Vec<u8>);

impl std::io::Write for CopyText<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        push_text(self.0, bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends a JSON value in COPY text format, serialized straight into the line.
fn push_json(buf: &mut Vec<u8>, value: &serde_json::Value) {
    // Serializing a JSON value into a Vec cannot fail.
    let _ = serde_json::to_writer(CopyText(buf), value);
}

/// Appends one record as a COPY text line.
pub fn encode_copy_line(buf: &mut Vec<u8>, r: &NewSourceRecord) {
    push_text(buf, &r.source);
    buf.push(b'\t');
    push_text(buf, &r.external_id);
    buf.push(b'\t');
    push_json(buf, &r.payload);
    buf.push(b'\t');
    match r.entity_id {
        Some(id) => {
            let _ = write!(buf, "{id}");
        }
        None => buf.extend_from_slice(b"\\N"),
    }
    buf.push(b'\t');
    match r.match_score {
        Some(s) => {
            let _ = write!(buf, "{s}");
        }
        None => buf.extend_from_slice(b"\\N"),
    }
    buf.push(b'\n');
}

pub(crate) fn bad_row(line: u64, e: DbError) -> DbError {
    match e {
        DbError::InvalidInput { field, reason } => DbError::BadRow {
            line,
            field,
            reason,
        },
        other => DbError::BadRow {
            line,
            field: "row".into(),
            reason: other.to_string(),
        },
    }
}

/// The line of its COPY input a server error names ("COPY t, line 3, ...").
pub(crate) fn copy_line(pg: &PgDatabaseError) -> Option<u64> {
    pg.r#where()?
        .split("line ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Maps a server error during COPY to the row it names ("COPY t, line 3, column payload: ...").
pub(crate) fn copy_error(e: sqlx::Error) -> DbError {
    let located = e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<PgDatabaseError>())
        // Only data and integrity errors are the row's fault; a cancel or a lost connection
        // during COPY keeps its own error.
        .filter(|pg| pg.code().starts_with("22") || pg.code().starts_with("23"))
        .and_then(|pg| {
            let place = pg.r#where()?;
            let line = copy_line(pg)?;
            let field = place
                .split("column ")
                .nth(1)
                .and_then(|c| c.split(':').next())
                .map(str::to_owned)
                .or_else(|| pg.constraint().map(str::to_owned))
                .unwrap_or_else(|| "row".into());
            let reason = match pg.detail() {
                Some(d) => format!("{} ({d})", pg.message()),
                None => pg.message().to_owned(),
            };
            Some(DbError::BadRow {
                line,
                field,
                reason,
            })
        });
    located.unwrap_or_else(|| DbError::from(e))
}

/// Streams `rows` into `table`'s record columns with COPY on `conn` (inside the caller's
/// transaction). Returns the row count.
async fn copy_into<I>(
    conn: &mut PgConnection,
    statement: &'static str,
    rows: I,
) -> Result<u64, DbError>
where
    I: IntoIterator,
    I::Item: Borrow<NewSourceRecord>,
{
    stream_copy(conn, statement, rows, |buf, _, row| {
        let row = row.borrow();
        row.validate()?;
        encode_copy_line(buf, row);
        Ok(())
    })
    .await
}

/// Runs the COPY `statement` on `conn`, sending the text `encode` appends for each row in
/// chunks of [`CHUNK_BYTES`]. `encode` gets the row's number (from 1) and may refuse the row:
/// the COPY is then aborted, and the error names the row. Returns how many rows were read.
pub(crate) async fn stream_copy<T>(
    conn: &mut PgConnection,
    statement: &'static str,
    rows: impl IntoIterator<Item = T>,
    mut encode: impl FnMut(&mut Vec<u8>, u64, T) -> Result<(), DbError>,
) -> Result<u64, DbError> {
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
    let mut n = 0u64;
    for row in rows {
        n += 1;
        if let Err(e) = encode(&mut buf, n, row) {
            let err = bad_row(n, e);
            let _ = copy.abort(err.to_string()).await;
            return Err(err);
        }
        if buf.len() >= CHUNK_BYTES {
            copy.send(buf.as_slice()).await.map_err(copy_error)?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        copy.send(buf.as_slice()).await.map_err(copy_error)?;
    }
    copy.finish().await.map_err(copy_error)?;
    Ok(n)
}

/// Loads `rows` (owned or borrowed) into `source_records` with COPY, all or nothing. Returns
/// the row count.
pub async fn copy_records<I>(conn: &mut PgConnection, rows: I) -> Result<u64, DbError>
where
    I: IntoIterator,
    I::Item: Borrow<NewSourceRecord>,
{
    let mut tx = begin_bulk(conn).await?;
    let n = copy_into(
        &mut tx,
        concatcp!("COPY ", INSERT_TARGET, " FROM STDIN (FORMAT text)"),
        rows,
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// Re-ingests `rows`: new (source, external_id) pairs are inserted, existing ones get the new
/// payload (and link, when the row has one). All or nothing.
pub async fn upsert_records<I>(conn: &mut PgConnection, rows: I) -> Result<UpsertCounts, DbError>
where
    I: IntoIterator<Item = NewSourceRecord>,
{
    let mut tx = begin_bulk(conn).await?;
    sqlx::query(
        "CREATE TEMPORARY TABLE pgperf_staging (line bigint GENERATED ALWAYS AS IDENTITY, source text, \
         external_id text, payload jsonb, entity_id bigint, match_score real) ON COMMIT DROP",
    )
    .execute(&mut *tx)
    .await?;
    copy_into(
        &mut tx,
        concatcp!(
            "COPY pgperf_staging (",
            INSERT_COLUMNS,
            ") FROM STDIN (FORMAT text)"
        ),
        rows,
    )
    .await?;
    let inserted: Vec<bool> = sqlx::query_scalar(concatcp!(
        "INSERT INTO ",
        INSERT_TARGET,
        " SELECT DISTINCT ON (source, external_id) ",
        INSERT_COLUMNS,
        " FROM pgperf_staging ORDER BY source, external_id, line DESC
             ON CONFLICT (source, external_id) DO UPDATE SET
                 payload = EXCLUDED.payload,
                 entity_id = COALESCE(EXCLUDED.entity_id, source_records.entity_id),
                 match_score = COALESCE(EXCLUDED.match_score, source_records.match_score),
                 ingested_at = now()
             RETURNING (xmax = 0)"
    ))
    .fetch_all(&mut *tx)
    .await
    .map_err(copy_error)?;
    tx.commit().await?;
    let new = inserted.iter().filter(|i| **i).count() as u64;
    Ok(UpsertCounts {
        inserted: new,
        updated: inserted.len() as u64 - new,
    })
}

/// Inserts `rows` with multi-row `INSERT ... SELECT FROM UNNEST(...)`, 5 000 rows a
/// statement, in one transaction. Invalid rows are refused before anything is sent.
pub async fn insert_records_unnest<I>(conn: &mut PgConnection, rows: I) -> Result<u64, DbError>
where
    I: IntoIterator,
    I::Item: Borrow<NewSourceRecord>,
{
    let mut tx = begin_bulk(conn).await?;
    let mut total = 0u64;
    let mut chunk: Vec<I::Item> = Vec::with_capacity(UNNEST_ROWS);
    let mut line = 0u64;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        chunk.clear();
        for row in rows.by_ref().take(UNNEST_ROWS) {
            line += 1;
            row.borrow().validate().map_err(|e| bad_row(line, e))?;
            chunk.push(row);
        }
        total += sqlx::query(concatcp!(
            "INSERT INTO ",
            INSERT_TARGET,
            " SELECT * FROM UNNEST($1::text[], $2::text[], $3::jsonb[], $4::int8[], $5::real[])"
        ))
        .bind(
            chunk
                .iter()
                .map(|r| r.borrow().source.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|r| r.borrow().external_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|r| &r.borrow().payload)
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|r| r.borrow().entity_id)
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|r| r.borrow().match_score)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(total)
}

/// Inserts `rows` one INSERT at a time in one transaction (the slow baseline).
pub async fn insert_records_one_by_one<I>(conn: &mut PgConnection, rows: I) -> Result<u64, DbError>
where
    I: IntoIterator<Item = NewSourceRecord>,
{
    let mut tx = conn.begin().await?;
    let mut n = 0u64;
    for row in rows {
        n += 1;
        row.validate().map_err(|e| bad_row(n, e))?;
        sqlx::query(concatcp!(
            "INSERT INTO ",
            INSERT_TARGET,
            " VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(&row.source)
        .bind(&row.external_id)
        .bind(&row.payload)
        .bind(row.entity_id)
        .bind(row.match_score)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_lines_escape_special_characters_and_nulls() {
        let r = NewSourceRecord {
            source: "crm".into(),
            external_id: "a\tb".into(),
            payload: serde_json::json!({"note": "line1\nline2 \\ end"}),
            entity_id: None,
            match_score: Some(0.5),
        };
        let mut buf = Vec::new();
        encode_copy_line(&mut buf, &r);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "crm\ta\\tb\t{\"note\":\"line1\\\\nline2 \\\\\\\\ end\"}\t\\N\t0.5\n"
        );
        let r = NewSourceRecord {
            external_id: "\\x\r\n\\".into(),
            entity_id: Some(42),
            match_score: None,
            ..r
        };
        let mut buf = Vec::new();
        encode_copy_line(&mut buf, &r);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "crm\t\\\\x\\r\\n\\\\\t{\"note\":\"line1\\\\nline2 \\\\\\\\ end\"}\t42\t\\N\n"
        );
    }
}
