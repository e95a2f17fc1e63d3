//! Parallel COPY ([`copy_records_parallel`]): one load of source records over several
//! connections at once, all or nothing.
//!
//! - **Dealing.** Rows are dealt to the streams in runs of [`RUN_ROWS`], round robin, so a
//!   stream's line maps back to the load's row number exactly (a refused row is named as in
//!   [`copy_records`](super::copy_records)), and memory stays at a few runs per stream.
//! - **Two-phase commit.** Each stream COPYs into `source_records` in a transaction of its own,
//!   then prepares it (`PREPARE TRANSACTION`). Only when every stream has prepared is the load
//!   committed. The first stream's transaction also inserts the load's row into
//!   `bulk_load_decisions`, so the load is decided when that one commits; the others commit
//!   after it. A failure in any stream before that point rolls every stream back: no row of the
//!   load is left.
//! - **Settling.** A load whose process died after preparing leaves prepared transactions,
//!   which hold locks. Every parallel load first settles those of earlier loads
//!   ([`settle_abandoned`]): a decided load is committed; an undecided one older than
//!   [`ABANDONED_AFTER`] is rolled back, its deciding stream first, so it can no longer be
//!   decided behind the settler's back.
//! - **The server** must allow prepared transactions: `max_prepared_transactions` of at least
//!   the number of streams (PostgreSQL's default is 0). Otherwise the load is refused before
//!   anything is sent.
//! - A key repeated within one load, in rows dealt to two streams, makes one stream wait for
//!   the other's open transaction; it gives up after [`KEY_WAIT`] and the load fails naming the
//!   row.

use std::borrow::Borrow;
use std::ops::DerefMut;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::try_join_all;
use sqlx::PgConnection;
use sqlx::postgres::{PgCopyIn, PgDatabaseError};
use tokio::sync::mpsc;

use super::{BULK_STATEMENT_TIMEOUT, copy_error, encode_copy_line};
use crate::DbError;
use crate::model::NewSourceRecord;
use crate::repo::records::INSERT_TARGET;
use const_format::concatcp;

/// Rows per run dealt to one stream.
pub const RUN_ROWS: u64 = 1_000;

/// The most streams one load may use.
pub const MAX_STREAMS: usize = 16;

/// How long a stream waits for another transaction's write of the same key before the load
/// fails.
pub const KEY_WAIT: Duration = Duration::from_secs(5);

/// An undecided load whose transactions were prepared this long ago is taken as abandoned.
/// A live load commits within milliseconds of preparing.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// Runs waiting in each stream's queue: the memory a load holds beyond the runs in flight.
const QUEUED_RUNS: usize = 2;

const GID_PREFIX: &str = "pgperf-copy-";

const COPY_STATEMENT: &str = concatcp!("COPY ", INSERT_TARGET, " FROM STDIN (FORMAT text)");

/// Loads `rows` (owned or borrowed) into `source_records` over the connections in `conns`,
/// one COPY stream each, all or nothing (see the module's documentation). Returns the row
/// count.
pub async fn copy_records_parallel<C, I>(conns: &mut [C], rows: I) -> Result<u64, DbError>
where
    C: DerefMut<Target = PgConnection>,
    I: IntoIterator,
    I::Item: Borrow<NewSourceRecord>,
{
    check_streams(conns).await?;
    settle_abandoned(&mut conns[0]).await?;
    let load = load_id();
    let mut prepared = 0;
    let result = async {
        for (i, c) in conns.iter_mut().enumerate() {
            begin_stream(c, &load, i).await?;
        }
        let n = copy_all(conns, rows).await?;
        for (i, c) in conns.iter_mut().enumerate() {
            prepare(c, &gid(&load, i)).await?;
            prepared += 1;
        }
        Ok(n)
    }
    .await;
    match result {
        Ok(n) => commit(&mut conns[0], &load, prepared).await.map(|()| n),
        Err(e) => {
            roll_back(conns, &load, prepared).await;
            Err(e)
        }
    }
}

/// Refuses a load with no stream, too many, or more than the server can prepare.
async fn check_streams<C: DerefMut<Target = PgConnection>>(conns: &mut [C]) -> Result<(), DbError> {
    let streams = conns.len();
    if !(1..=MAX_STREAMS).contains(&streams) {
        return Err(DbError::InvalidInput {
            field: "streams".into(),
            reason: format!("{streams} streams; a parallel load uses 1 to {MAX_STREAMS}"),
        });
    }
    let allowed: i32 =
        sqlx::query_scalar("SELECT current_setting('max_prepared_transactions')::int")
            .fetch_one(&mut *conns[0])
            .await?;
    if (allowed as usize) < streams {
        return Err(DbError::InvalidInput {
            field: "streams".into(),
            reason: format!(
                "{streams} streams need prepared transactions, and the server allows {allowed} \
                 (max_prepared_transactions; set it to at least {streams} and restart the \
                 server, or load with one stream)"
            ),
        });
    }
    Ok(())
}

/// A name for this load, unique enough among loads in flight on one server.
fn load_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{:x}-{:x}", nanos, std::process::id())
}

fn gid(load: &str, stream: usize) -> String {
    format!("{GID_PREFIX}{load}-{stream}")
}

/// Opens stream `i`'s transaction; the first stream's also records the load's decision row,
/// which becomes visible only when that transaction commits.
async fn begin_stream(conn: &mut PgConnection, load: &str, i: usize) -> Result<(), DbError> {
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
    sqlx::query(
        "SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true)",
    )
    .bind(format!("{}ms", BULK_STATEMENT_TIMEOUT.as_millis()))
    .bind(format!("{}ms", KEY_WAIT.as_millis()))
    .execute(&mut *conn)
    .await?;
    if i == 0 {
        sqlx::query("INSERT INTO bulk_load_decisions (load_id) VALUES ($1)")
            .bind(load)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Streams every row: one producer encodes runs and deals them out, one COPY per connection
/// sends them. Returns the row count.
async fn copy_all<C, I>(conns: &mut [C], rows: I) -> Result<u64, DbError>
where
    C: DerefMut<Target = PgConnection>,
    I: IntoIterator,
    I::Item: Borrow<NewSourceRecord>,
{
    let streams = conns.len();
    let mut copies = Vec::with_capacity(streams);
    for c in conns.iter_mut() {
        copies.push(c.copy_in_raw(COPY_STATEMENT).await?);
    }
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..streams).map(|_| mpsc::channel(QUEUED_RUNS)).unzip();
    let sending = copies
        .into_iter()
        .zip(receivers)
        .enumerate()
        .map(|(i, (copy, rx))| send_stream(copy, rx, i, streams));
    let (dealt, sent) = futures::join!(deal(rows, senders), try_join_all(sending));
    sent?;
    dealt
}

/// Validates and encodes the rows in runs of [`RUN_ROWS`], dealing run k to stream
/// k mod streams. Stops at the first invalid row, naming it, or when a stream has failed
/// (whose own error is the load's).
async fn deal<I>(rows: I, senders: Vec<mpsc::Sender<Vec<u8>>>) -> Result<u64, DbError>
where
    I: IntoIterator,
    I::Item: Borrow<NewSourceRecord>,
{
    let mut n = 0u64;
    let mut run = Vec::new();
    let mut runs = 0usize;
    for row in rows {
        n += 1;
        let row = row.borrow();
        row.validate().map_err(|e| super::bad_row(n, e))?;
        encode_copy_line(&mut run, row);
        if n.is_multiple_of(RUN_ROWS) {
            let to = &senders[runs % senders.len()];
            if to.send(std::mem::take(&mut run)).await.is_err() {
                return Err(DbError::InvalidInput {
                    field: "streams".into(),
                    reason: "a stream failed".into(),
                });
            }
            runs += 1;
        }
    }
    if !run.is_empty() {
        let _ = senders[runs % senders.len()].send(run).await;
    }
    Ok(n)
}

/// Sends stream `i`'s runs as they come, then ends its COPY. A server error names the load's
/// row.
async fn send_stream(
    mut copy: PgCopyIn<&mut PgConnection>,
    mut runs: mpsc::Receiver<Vec<u8>>,
    i: usize,
    streams: usize,
) -> Result<u64, DbError> {
    while let Some(run) = runs.recv().await {
        if let Err(e) = copy.send(run).await {
            return Err(stream_error(e, i, streams));
        }
    }
    copy.finish().await.map_err(|e| stream_error(e, i, streams))
}

/// A stream's error, with a refused line numbered as the load's row, and a wait for a key
/// that another transaction writes explained.
fn stream_error(e: sqlx::Error, i: usize, streams: usize) -> DbError {
    let waited_at = e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<PgDatabaseError>())
        .filter(|pg| pg.code() == "55P03")
        .and_then(super::copy_line);
    if let Some(line) = waited_at {
        return DbError::BadRow {
            line: load_row(line, i, streams),
            field: "source_records_source_external_id_key".into(),
            reason: format!(
                "its (source, external_id) is being written by another transaction, and it \
                 waited {} s: the key is repeated within this load, or another writer holds it",
                KEY_WAIT.as_secs()
            ),
        };
    }
    match copy_error(e) {
        DbError::BadRow {
            line,
            field,
            reason,
        } => DbError::BadRow {
            line: load_row(line, i, streams),
            field,
            reason,
        },
        other => other,
    }
}

/// The load's row number (from 1) of line `line` (from 1) of stream `i` of `streams`.
fn load_row(line: u64, i: usize, streams: usize) -> u64 {
    let (run, offset) = ((line - 1) / RUN_ROWS, (line - 1) % RUN_ROWS);
    (run * streams as u64 + i as u64) * RUN_ROWS + offset + 1
}

/// `{statement} '{gid}'`, for a transaction name made of lowercase hex digits and dashes only
/// (ours; another name found among the server's prepared transactions is refused).
fn with_gid(statement: &str, gid: &str) -> Result<sqlx::AssertSqlSafe<String>, DbError> {
    let ours = gid.starts_with(GID_PREFIX)
        && gid
            .bytes()
            .all(|b: u8| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-');
    if !ours {
        return Err(DbError::InvalidInput {
            field: "gid".into(),
            reason: format!("{gid:?} is not a parallel load's transaction name"),
        });
    }
    Ok(sqlx::AssertSqlSafe(format!("{statement} '{gid}'")))
}

async fn prepare(conn: &mut PgConnection, gid: &str) -> Result<(), DbError> {
    sqlx::raw_sql(with_gid("PREPARE TRANSACTION", gid)?)
        .execute(conn)
        .await?;
    Ok(())
}

/// Commits the deciding stream, then the others, then forgets the decision. A stream that is
/// no longer prepared after the decision was committed by a settler. If the deciding stream
/// is gone without its decision (a settler took the load as dead and rolled it back), the
/// others are rolled back too.
async fn commit(conn: &mut PgConnection, load: &str, streams: usize) -> Result<(), DbError> {
    finish_prepared(conn, "COMMIT", &gid(load, 0)).await?;
    let verb = if decided(conn, load).await? {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    for i in 1..streams {
        finish_prepared(conn, verb, &gid(load, i)).await?;
    }
    if verb == "ROLLBACK" {
        return Err(DbError::LoadAbandoned {
            waited: ABANDONED_AFTER,
        });
    }
    forget(conn, load).await
}

/// Rolls back every stream: the prepared ones (the first `prepared`) by name, the rest in
/// their sessions. Errors are ignored: a stream whose session is gone was rolled back by the
/// server.
async fn roll_back<C: DerefMut<Target = PgConnection>>(
    conns: &mut [C],
    load: &str,
    prepared: usize,
) {
    for (i, c) in conns.iter_mut().enumerate() {
        if i >= prepared {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut **c).await;
        }
    }
    for i in 0..prepared {
        let _ = finish_prepared(&mut conns[0], "ROLLBACK", &gid(load, i)).await;
    }
}

/// `COMMIT PREPARED` or `ROLLBACK PREPARED` of `gid`; a transaction no longer prepared is
/// taken as already finished.
async fn finish_prepared(conn: &mut PgConnection, verb: &str, gid: &str) -> Result<(), DbError> {
    let statement = with_gid(&format!("{verb} PREPARED"), gid)?;
    match sqlx::raw_sql(statement).execute(conn).await {
        Ok(_) => Ok(()),
        Err(e) if is_undefined_object(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn is_undefined_object(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "42704")
}

async fn forget(conn: &mut PgConnection, load: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM bulk_load_decisions WHERE load_id = $1")
        .bind(load)
        .execute(conn)
        .await?;
    Ok(())
}

/// Settles the prepared transactions of parallel loads whose process is gone (see the
/// module's documentation). Returns how many loads were committed and rolled back.
pub async fn settle_abandoned(conn: &mut PgConnection) -> Result<(u64, u64), DbError> {
    let loads: Vec<(String, bool)> = sqlx::query_as(
        "SELECT substring(gid FROM $1), bool_or(prepared < now() - $2::interval)
         FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE $3
         GROUP BY 1",
    )
    .bind(concatcp!("^", GID_PREFIX, "(.*)-[0-9]+$"))
    .bind(format!("{} seconds", ABANDONED_AFTER.as_secs()))
    .bind(concatcp!(GID_PREFIX, "%"))
    .fetch_all(&mut *conn)
    .await?;
    let (mut committed, mut rolled_back) = (0, 0);
    for (load, old) in loads {
        match settle_load(conn, &load, old).await? {
            Some(true) => committed += 1,
            Some(false) => rolled_back += 1,
            None => {}
        }
    }
    Ok((committed, rolled_back))
}

/// Settles one load: `Some(true)` if it was decided (committed), `Some(false)` if rolled back,
/// `None` if it may still be live.
async fn settle_load(
    conn: &mut PgConnection,
    load: &str,
    old: bool,
) -> Result<Option<bool>, DbError> {
    if !decided(conn, load).await? {
        if !old {
            return Ok(None);
        }
        // The deciding stream first: once it is rolled back the load can never be decided.
        finish_prepared(conn, "ROLLBACK", &gid(load, 0)).await?;
    }
    let commit = decided(conn, load).await?;
    let verb = if commit { "COMMIT" } else { "ROLLBACK" };
    let gids: Vec<String> =
        sqlx::query_scalar("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE $1")
            .bind(format!("{GID_PREFIX}{load}-%"))
            .fetch_all(&mut *conn)
            .await?;
    for g in gids {
        finish_prepared(conn, verb, &g).await?;
    }
    forget(conn, load).await?;
    Ok(Some(commit))
}

async fn decided(conn: &mut PgConnection, load: &str) -> Result<bool, DbError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM bulk_load_decisions WHERE load_id = $1)")
            .bind(load)
            .fetch_one(conn)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streams_line_maps_back_to_the_loads_row() {
        // Two streams: runs 0, 2, 4 ... go to stream 0, runs 1, 3 ... to stream 1.
        assert_eq!(load_row(1, 0, 2), 1);
        assert_eq!(load_row(1_000, 0, 2), 1_000);
        assert_eq!(load_row(1_001, 0, 2), 2_001);
        assert_eq!(load_row(1, 1, 2), 1_001);
        assert_eq!(load_row(1_500, 1, 2), 3_500);
        assert_eq!(load_row(7, 2, 3), 2_007);
    }
}
