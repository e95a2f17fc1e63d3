//! Repositories: one module per table, free functions over `&mut PgConnection` so that they
//! work alike on a pooled connection and inside a transaction (`&mut *tx`).

pub mod aliases;
pub mod entities;
pub mod records;

use sqlx::PgConnection;

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
