//! Repositories: one module per table, free functions over `&mut PgConnection` so that they
//! work alike on a pooled connection and inside a transaction (`&mut *tx`).

pub mod aliases;
pub mod entities;
pub mod records;

use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use crate::DbError;

/// Runs `sql` (a `DELETE ... WHERE id = $1`) for `id`; [`DbError::NotFound`] when no row went.
pub(crate) async fn delete_one(
    conn: &mut PgConnection,
    table: &'static str,
    sql: &'static str,
    id: i64,
) -> Result<(), DbError> {
    let done = sqlx::query(sql).bind(id).execute(conn).await?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound { table, id });
    }
    Ok(())
}

/// The most rows a listing page returns.
pub const MAX_PAGE: u32 = 1_000;

/// The rows of one keyset page (`id > after` in id order, at most `limit`, clamped to
/// 1..=[`MAX_PAGE`]) and the clamped limit: through `of_one` when `filter` is given (`$1`
/// the filter, `$2` after, `$3` the limit), else through `all` (`$1` after, `$2` the limit).
pub(crate) async fn keyset_rows<R>(
    conn: &mut PgConnection,
    (all, of_one): (&'static str, &'static str),
    filter: Option<&str>,
    after: Option<i64>,
    limit: u32,
) -> Result<(Vec<R>, i64), DbError>
where
    R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    let limit = i64::from(limit.clamp(1, MAX_PAGE));
    let query = match filter {
        Some(filter) => sqlx::query_as(of_one).bind(filter),
        None => sqlx::query_as(all),
    };
    let rows = query
        .bind(after.unwrap_or(0))
        .bind(limit)
        .fetch_all(conn)
        .await?;
    Ok((rows, limit))
}
