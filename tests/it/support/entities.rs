//! Building test data.

use pgperf::db::repo::entities;
use pgperf::db::{EntityKind, MeteredConnection, NewEntity};
use serde_json::json;

/// Creates an entity named `name` with empty attributes; its id.
pub async fn entity(c: &mut MeteredConnection, kind: EntityKind, name: &str) -> i64 {
    let new = NewEntity {
        kind,
        name: name.to_owned(),
        attributes: json!({}),
    };
    entities::create(c, &new).await.unwrap().id
}
