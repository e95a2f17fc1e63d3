//! Units of work: several repository calls that commit together or not at all.
//!
//! [`Db::transaction`] runs a closure inside a transaction on a metered connection: `Ok`
//! commits, `Err` rolls back, and a dropped future (a cancelled request) rolls back too
//! (sqlx queues the ROLLBACK and flushes it before the connection is reused).

use futures::future::BoxFuture;
use sqlx::{Connection, PgConnection};

use super::model::{Alias, Entity, NewEntity, NewSourceRecord, SourceRecord};
use super::repo::{aliases, entities, records};
use super::{Db, DbError};

impl Db {
    /// Runs `work` in a transaction: commits on `Ok`, rolls back on `Err` or when dropped.
    pub async fn transaction<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, DbError>> + Send,
    {
        let mut conn = self.acquire().await?;
        let mut tx = conn.begin().await?;
        match work(&mut tx).await {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(e) => {
                // A failed rollback means the connection is gone; the server rolls back then.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}

/// Creates an entity with its aliases, atomically.
pub async fn create_entity_with_aliases(
    db: &Db,
    new: &NewEntity,
    alias_names: &[String],
) -> Result<(Entity, Vec<Alias>), DbError> {
    let (new, alias_names) = (new.clone(), alias_names.to_vec());
    db.transaction(move |tx| {
        Box::pin(async move {
            let entity = entities::create(tx, &new).await?;
            let mut added = Vec::with_capacity(alias_names.len());
            for name in &alias_names {
                added.push(aliases::add(tx, entity.id, name).await?);
            }
            Ok((entity, added))
        })
    })
    .await
}

/// Ingests one record and links it to a new entity, atomically.
pub async fn ingest_resolved(
    db: &Db,
    record: &NewSourceRecord,
    entity: &NewEntity,
    score: f32,
) -> Result<(Entity, SourceRecord), DbError> {
    let (record, entity) = (record.clone(), entity.clone());
    db.transaction(move |tx| {
        Box::pin(async move {
            let e = entities::create(tx, &entity).await?;
            let r = records::create(tx, &record).await?;
            let r = records::link(tx, r.id, e.id, score).await?;
            Ok((e, r))
        })
    })
    .await
}
