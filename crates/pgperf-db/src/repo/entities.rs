//! Entities: create, read, batch read, optimistic-lock update, delete, keyset listing.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use crate::model::{Entity, EntityChanges, EntityKind, NewEntity, Page, check_object, check_text};
use crate::{DbError, normalize_name};

const COLUMNS: &str =
    "id, kind, name, normalized_name, attributes, version, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    kind: String,
    name: String,
    normalized_name: String,
    attributes: Value,
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Entity {
    type Error = DbError;
    fn try_from(r: Row) -> Result<Self, DbError> {
        Ok(Entity {
            id: r.id,
            kind: EntityKind::parse(&r.kind)?,
            name: r.name,
            normalized_name: r.normalized_name,
            attributes: r.attributes,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

fn rows(rows: Vec<Row>) -> Result<Vec<Entity>, DbError> {
    rows.into_iter().map(Entity::try_from).collect()
}

/// Creates an entity; its name is normalized here.
pub async fn create(conn: &mut PgConnection, new: &NewEntity) -> Result<Entity, DbError> {
    new.validate()?;
    let sql = const_format::concatcp!(
        "INSERT INTO entities (kind, name, normalized_name, attributes) VALUES ($1, $2, $3, $4) RETURNING ",
        COLUMNS
    );
    let row: Row = sqlx::query_as(sql)
        .bind(new.kind.as_str())
        .bind(new.name.trim())
        .bind(normalize_name(&new.name))
        .bind(&new.attributes)
        .fetch_one(conn)
        .await?;
    row.try_into()
}

/// The statement of [`get`] (`$1`: id), for plan guards.
pub const GET: &str = const_format::concatcp!("SELECT ", COLUMNS, " FROM entities WHERE id = $1");

/// The statement of [`list`] with a kind (`$1` kind, `$2` after id, `$3` limit).
pub const LIST_OF_KIND: &str = const_format::concatcp!(
    "SELECT ",
    COLUMNS,
    " FROM entities WHERE kind = $1 AND id > $2 ORDER BY id LIMIT $3"
);

/// A page of all entities (`$1` after, `$2` limit).
const LIST_ALL: &str = const_format::concatcp!(
    "SELECT ",
    COLUMNS,
    " FROM entities WHERE id > $1 ORDER BY id LIMIT $2"
);

/// Reads one entity.
pub async fn get(conn: &mut PgConnection, id: i64) -> Result<Entity, DbError> {
    let row: Option<Row> = sqlx::query_as(GET).bind(id).fetch_optional(conn).await?;
    row.ok_or(DbError::NotFound {
        table: "entities",
        id,
    })?
    .try_into()
}

/// Reads the entities with these ids (missing ids are skipped), in id order.
pub async fn get_many(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<Entity>, DbError> {
    let sql = const_format::concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM entities WHERE id = ANY($1) ORDER BY id"
    );
    rows(sqlx::query_as(sql).bind(ids).fetch_all(conn).await?)
}

/// Updates an entity if it is still at `expected_version`; bumps the version. Fails with
/// [`DbError::VersionConflict`] when another writer got there first.
pub async fn update(
    conn: &mut PgConnection,
    id: i64,
    expected_version: i32,
    changes: &EntityChanges,
) -> Result<Entity, DbError> {
    if let Some(name) = &changes.name {
        check_text("name", name, 500)?;
    }
    if let Some(attributes) = &changes.attributes {
        check_object("attributes", attributes)?;
    }
    let sql = const_format::concatcp!(
        "UPDATE entities SET name = COALESCE($3, name), normalized_name = COALESCE($4, normalized_name), ",
        "attributes = COALESCE($5, attributes), version = version + 1, updated_at = greatest(now(), created_at) ",
        "WHERE id = $1 AND version = $2 RETURNING ",
        COLUMNS
    );
    let row: Option<Row> = sqlx::query_as(sql)
        .bind(id)
        .bind(expected_version)
        .bind(changes.name.as_deref().map(str::trim))
        .bind(changes.name.as_deref().map(normalize_name))
        .bind(&changes.attributes)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => row.try_into(),
        None => {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM entities WHERE id = $1)")
                    .bind(id)
                    .fetch_one(conn)
                    .await?;
            Err(if exists {
                DbError::VersionConflict {
                    table: "entities",
                    id,
                    expected: expected_version,
                }
            } else {
                DbError::NotFound {
                    table: "entities",
                    id,
                }
            })
        }
    }
}

/// Deletes an entity; its aliases go with it and its source records are unlinked.
pub async fn delete(conn: &mut PgConnection, id: i64) -> Result<(), DbError> {
    super::delete_one(conn, "entities", "DELETE FROM entities WHERE id = $1", id).await
}

/// Lists entities in id order after `after`, optionally of one kind. Keyset pagination:
/// rows inserted meanwhile never shift a page, so nothing is skipped or repeated.
pub async fn list(
    conn: &mut PgConnection,
    kind: Option<EntityKind>,
    after: Option<i64>,
    limit: u32,
) -> Result<Page<Entity>, DbError> {
    let sql = (LIST_ALL, LIST_OF_KIND);
    let kind = kind.map(EntityKind::as_str);
    let (found, limit) = super::keyset_rows(conn, sql, kind, after, limit).await?;
    Ok(Page::from_rows(rows(found)?, limit, |e| e.id))
}

/// Entities whose normalized name is similar to `query` (pg_trgm `%`, threshold 0.3), best
/// first. The query is normalized like stored names. Served by the trigram GIN index.
pub async fn search_similar(
    conn: &mut PgConnection,
    query: &str,
    limit: u32,
) -> Result<Vec<(i64, f32)>, DbError> {
    let normalized = normalize_name(query);
    if normalized.is_empty() {
        return Ok(Vec::new());
    }
    let found = sqlx::query_as(
        "SELECT id, similarity(normalized_name, $1) AS score FROM entities
         WHERE normalized_name % $1 ORDER BY score DESC, id LIMIT $2",
    )
    .bind(normalized)
    .bind(i64::from(limit.clamp(1, 100)))
    .fetch_all(conn)
    .await?;
    Ok(found)
}
