//! Units of work: all or nothing, including when the caller's future is dropped midway.

use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::json;

use pgperf::db::repo::{aliases, entities};
use pgperf::db::unit_of_work::{create_entity_with_aliases, ingest_resolved};
use pgperf::db::{DbError, EntityKind, NewEntity, NewSourceRecord};

use crate::support::{TestDb, test_db};

fn org(name: &str) -> NewEntity {
    NewEntity {
        kind: EntityKind::Organization,
        name: name.into(),
        attributes: json!({}),
    }
}

async fn count(test_db: &TestDb, table: &str) -> i64 {
    let sql = match table {
        "entities" => "SELECT count(*) FROM entities",
        "entity_aliases" => "SELECT count(*) FROM entity_aliases",
        _ => "SELECT count(*) FROM source_records",
    };
    sqlx::query_scalar(sql)
        .fetch_one(test_db.db.pool())
        .await
        .unwrap()
}

#[rstest::rstest]
#[tokio::test]
async fn an_entity_and_its_aliases_commit_together(#[future(awt)] test_db: TestDb) {
    let names = vec!["Vandelay".to_owned(), "Vandelay Imports".to_owned()];

    let (entity, added) =
        create_entity_with_aliases(&test_db.db, &org("Vandelay Industries"), &names)
            .await
            .unwrap();

    let mut c = test_db.db.acquire().await.unwrap();
    assert_eq!(aliases::list_for(&mut c, entity.id).await.unwrap(), added);
    assert_eq!(
        added
            .iter()
            .map(|a| a.normalized_alias.as_str())
            .collect::<Vec<_>>(),
        ["vandelay", "vandelay imports"]
    );
}

#[rstest::rstest]
#[tokio::test]
async fn a_failure_in_the_middle_leaves_nothing(#[future(awt)] test_db: TestDb) {
    // The third alias normalizes like the first: the unique key fails after two inserts.
    let names = vec![
        "Kramerica".to_owned(),
        "Kramerica Labs".to_owned(),
        "KRAMERICA!".to_owned(),
    ];

    let err = create_entity_with_aliases(&test_db.db, &org("Kramerica Industries"), &names)
        .await
        .unwrap_err();

    assert!(matches!(err, DbError::UniqueViolation { .. }), "{err:?}");
    assert_eq!(
        (
            count(&test_db, "entities").await,
            count(&test_db, "entity_aliases").await
        ),
        (0, 0)
    );
}

#[rstest::rstest]
#[tokio::test]
async fn a_dropped_unit_of_work_rolls_back_and_its_connection_comes_back(
    #[future(awt)] test_db: TestDb,
) {
    let work = test_db.db.transaction(|tx| {
        Box::pin(async move {
            entities::create(tx, &org("Half Done")).await?;
            std::future::pending::<()>().await;
            Ok(())
        })
    });

    let timed_out = tokio::time::timeout(Duration::from_millis(300), work)
        .await
        .is_err();

    assert!(timed_out);
    assert!(
        test_db.db.settle(Duration::from_secs(5)).await,
        "connection not returned: {:?}",
        test_db.db.snapshot()
    );
    assert_eq!(count(&test_db, "entities").await, 0);
    let in_tx: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'")
        .fetch_one(test_db.db.pool())
        .await
        .unwrap();
    assert_eq!(in_tx, 0, "a connection was left inside a transaction");
}

#[rstest::rstest]
#[tokio::test]
async fn a_record_is_ingested_and_linked_atomically(#[future(awt)] test_db: TestDb) {
    let record = NewSourceRecord {
        source: "crm".into(),
        external_id: "r1".into(),
        payload: json!({"name": "Pendant"}),
        entity_id: None,
        match_score: None,
    };

    let (entity, linked) = ingest_resolved(&test_db.db, &record, &org("Pendant Publishing"), 0.87)
        .await
        .unwrap();
    let dup = ingest_resolved(&test_db.db, &record, &org("Another"), 0.5)
        .await
        .unwrap_err();

    assert_eq!(
        (linked.entity_id, linked.match_score),
        (Some(entity.id), Some(0.87))
    );
    assert!(matches!(dup, DbError::UniqueViolation { .. }), "{dup:?}");
    assert_eq!(
        count(&test_db, "entities").await,
        1,
        "the failed unit left its entity behind"
    );
}
