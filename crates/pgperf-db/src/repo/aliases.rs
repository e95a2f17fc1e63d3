//! Entity aliases: alternative names, normalized like entity names.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::model::{Alias, check_text};
use crate::{DbError, normalize_name};

const COLUMNS: &str = "id, entity_id, alias, normalized_alias, created_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    entity_id: i64,
    alias: String,
    normalized_alias: String,
    created_at: DateTime<Utc>,
}

impl From<Row> for Alias {
    fn from(r: Row) -> Self {
        Alias {
            id: r.id,
            entity_id: r.entity_id,
            alias: r.alias,
            normalized_alias: r.normalized_alias,
            created_at: r.created_at,
        }
    }
}

/// Adds an alias to an entity. The same normalized alias twice on one entity is a
/// [`DbError::UniqueViolation`]; an unknown entity is [`DbError::InvalidInput`] on
/// `entity_aliases_entity_id_fkey`.
pub async fn add(conn: &mut PgConnection, entity_id: i64, alias: &str) -> Result<Alias, DbError> {
    check_text("alias", alias, 500)?;
    let normalized = normalize_name(alias);
    if normalized.is_empty() {
        return Err(DbError::invalid("alias", "must contain a letter or digit"));
    }
    let sql = const_format::concatcp!(
        "INSERT INTO entity_aliases (entity_id, alias, normalized_alias) VALUES ($1, $2, $3) RETURNING ",
        COLUMNS
    );
    let row: Row = sqlx::query_as(sql)
        .bind(entity_id)
        .bind(alias.trim())
        .bind(normalized)
        .fetch_one(conn)
        .await?;
    Ok(row.into())
}

/// The aliases of an entity, in id order.
pub async fn list_for(conn: &mut PgConnection, entity_id: i64) -> Result<Vec<Alias>, DbError> {
    let sql = const_format::concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM entity_aliases WHERE entity_id = $1 ORDER BY id"
    );
    let rows: Vec<Row> = sqlx::query_as(sql).bind(entity_id).fetch_all(conn).await?;
    Ok(rows.into_iter().map(Alias::from).collect())
}

/// Deletes an alias.
pub async fn delete(conn: &mut PgConnection, id: i64) -> Result<(), DbError> {
    super::delete_one(
        conn,
        "entity_aliases",
        "DELETE FROM entity_aliases WHERE id = $1",
        id,
    )
    .await
}
