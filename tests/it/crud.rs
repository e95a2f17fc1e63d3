//! CRUD through the repositories: exact round trips, optimistic locking, keyset pagination,
//! cascades, and constraint violations mapped to typed errors.

use pretty_assertions::assert_eq;
use serde_json::json;

use pgperf::db::repo::{aliases, entities, records};
use pgperf::db::{DbError, EntityChanges, EntityKind, NewEntity, NewSourceRecord};

use crate::support::{TestDb, test_db};

fn org(name: &str) -> NewEntity {
    NewEntity {
        kind: EntityKind::Organization,
        name: name.into(),
        attributes: json!({"country": "DE"}),
    }
}

fn record(source: &str, id: &str) -> NewSourceRecord {
    NewSourceRecord {
        source: source.into(),
        external_id: id.into(),
        payload: json!({"name": id}),
        entity_id: None,
        match_score: None,
    }
}

#[rstest::rstest]
#[tokio::test]
async fn an_entity_round_trips_with_exact_values(#[future(awt)] test_db: TestDb) {
    let mut c = test_db.db.acquire().await.unwrap();

    let created = entities::create(&mut c, &org("  Acme Widgets, Inc. "))
        .await
        .unwrap();
    let read = entities::get(&mut c, created.id).await.unwrap();

    assert_eq!(read, created);
    assert_eq!(
        (
            read.kind,
            read.name.as_str(),
            read.normalized_name.as_str(),
            read.version,
            &read.attributes
        ),
        (
            EntityKind::Organization,
            "Acme Widgets, Inc.",
            "acme widgets",
            1,
            &json!({"country": "DE"})
        )
    );
    assert_eq!(read.created_at, read.updated_at);
}

#[rstest::rstest]
#[tokio::test]
async fn an_update_bumps_the_version_and_a_stale_writer_gets_a_conflict(
    #[future(awt)] test_db: TestDb,
) {
    let mut c = test_db.db.acquire().await.unwrap();
    let e = entities::create(&mut c, &org("Globex")).await.unwrap();
    let rename = EntityChanges {
        name: Some("Globex Corporation".into()),
        attributes: None,
    };

    let updated = entities::update(&mut c, e.id, 1, &rename).await.unwrap();
    let stale = entities::update(
        &mut c,
        e.id,
        1,
        &EntityChanges {
            attributes: Some(json!({})),
            ..Default::default()
        },
    )
    .await;

    assert_eq!(
        (updated.version, updated.normalized_name.as_str()),
        (2, "globex")
    );
    assert_eq!(
        updated.attributes,
        json!({"country": "DE"}),
        "attributes kept when not changed"
    );
    match stale {
        Err(DbError::VersionConflict {
            table: "entities",
            id,
            expected: 1,
        }) => assert_eq!(id, e.id),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    assert_eq!(
        entities::get(&mut c, e.id).await.unwrap().version,
        2,
        "the losing write changed nothing"
    );
}

#[rstest::rstest]
#[tokio::test]
async fn missing_rows_are_not_found_for_every_operation(#[future(awt)] test_db: TestDb) {
    let mut c = test_db.db.acquire().await.unwrap();
    let nf = |r: Result<(), DbError>| matches!(r, Err(DbError::NotFound { id: 999, .. }));

    assert!(nf(entities::get(&mut c, 999).await.map(drop)));
    assert!(nf(entities::update(
        &mut c,
        999,
        1,
        &EntityChanges::default()
    )
    .await
    .map(drop)));
    assert!(nf(entities::delete(&mut c, 999).await));
    assert!(nf(records::get(&mut c, 999).await.map(drop)));
    assert!(nf(aliases::delete(&mut c, 999).await));
}

#[rstest::rstest]
#[tokio::test]
async fn a_batch_read_returns_the_existing_rows_in_id_order(#[future(awt)] test_db: TestDb) {
    let mut c = test_db.db.acquire().await.unwrap();
    let a = entities::create(&mut c, &org("Alpha")).await.unwrap();
    let b = entities::create(&mut c, &org("Beta")).await.unwrap();

    let got = entities::get_many(&mut c, &[b.id, 12345, a.id])
        .await
        .unwrap();

    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
}

#[rstest::rstest]
#[tokio::test]
async fn pagination_neither_skips_nor_repeats_under_concurrent_inserts(
    #[future(awt)] test_db: TestDb,
) {
    let mut c = test_db.db.acquire().await.unwrap();
    let mut before = Vec::new();
    for i in 0..60 {
        before.push(
            entities::create(&mut c, &org(&format!("Before {i}")))
                .await
                .unwrap()
                .id,
        );
    }
    let writer_db = test_db.db.clone();
    let writer = tokio::spawn(async move {
        let mut w = writer_db.acquire().await.unwrap();
        for i in 0..60 {
            entities::create(&mut w, &org(&format!("During {i}")))
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
    });

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = entities::list(&mut c, Some(EntityKind::Organization), after, 7)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|e| e.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    writer.await.unwrap();

    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "ids repeat or go backwards: {seen:?}"
    );
    assert!(
        before.iter().all(|id| seen.contains(id)),
        "a row that existed before listing was skipped"
    );
}

#[rstest::rstest]
#[tokio::test]
async fn listing_filters_by_kind_and_source(#[future(awt)] test_db: TestDb) {
    let mut c = test_db.db.acquire().await.unwrap();
    entities::create(&mut c, &org("Org One")).await.unwrap();
    let place = NewEntity {
        kind: EntityKind::Place,
        name: "Berlin".into(),
        attributes: json!({}),
    };
    let berlin = entities::create(&mut c, &place).await.unwrap();
    records::create(&mut c, &record("crm", "c-1"))
        .await
        .unwrap();
    let erp = records::create(&mut c, &record("erp", "e-1"))
        .await
        .unwrap();

    let places = entities::list(&mut c, Some(EntityKind::Place), None, 10)
        .await
        .unwrap();
    let from_erp = records::list(&mut c, Some("erp"), None, 10).await.unwrap();

    assert_eq!(places.items, vec![berlin]);
    assert_eq!(places.next, None);
    assert_eq!(from_erp.items, vec![erp]);
}

#[rstest::rstest]
#[tokio::test]
async fn deleting_an_entity_deletes_its_aliases_and_unlinks_its_records(
    #[future(awt)] test_db: TestDb,
) {
    let mut c = test_db.db.acquire().await.unwrap();
    let e = entities::create(&mut c, &org("Initech")).await.unwrap();
    aliases::add(&mut c, e.id, "Initech Systems").await.unwrap();
    let r = records::create(&mut c, &record("crm", "42")).await.unwrap();
    records::link(&mut c, r.id, e.id, 0.93).await.unwrap();

    entities::delete(&mut c, e.id).await.unwrap();

    assert_eq!(aliases::list_for(&mut c, e.id).await.unwrap(), vec![]);
    let unlinked = records::get(&mut c, r.id).await.unwrap();
    assert_eq!(
        (unlinked.entity_id, unlinked.match_score),
        (None, Some(0.93))
    );
}

#[rstest::rstest]
#[tokio::test]
async fn unique_violations_name_the_key(#[future(awt)] test_db: TestDb) {
    let mut c = test_db.db.acquire().await.unwrap();
    let e = entities::create(&mut c, &org("Umbrella")).await.unwrap();
    aliases::add(&mut c, e.id, "Umbrella Corp").await.unwrap();
    records::create(&mut c, &record("crm", "dup"))
        .await
        .unwrap();

    let alias_again = aliases::add(&mut c, e.id, "UMBRELLA corp.")
        .await
        .unwrap_err();
    let record_again = records::create(&mut c, &record("crm", "dup"))
        .await
        .unwrap_err();

    match alias_again {
        DbError::UniqueViolation { constraint, .. } => {
            assert_eq!(constraint, "entity_aliases_entity_id_normalized_alias_key")
        }
        other => panic!("{other:?}"),
    }
    match record_again {
        DbError::UniqueViolation { constraint, detail } => {
            assert_eq!(constraint, "source_records_source_external_id_key");
            assert!(detail.contains("(crm, dup)"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[rstest::rstest]
#[tokio::test]
async fn check_and_foreign_key_violations_are_invalid_input_naming_the_constraint(
    #[future(awt)] test_db: TestDb,
) {
    let mut c = test_db.db.acquire().await.unwrap();
    let e = entities::create(&mut c, &org("Hooli")).await.unwrap();

    let punctuation_only = entities::update(
        &mut c,
        e.id,
        1,
        &EntityChanges {
            name: Some("!!!".into()),
            attributes: None,
        },
    )
    .await;
    let no_such_entity = aliases::add(&mut c, 424_242, "Ghost").await;
    let not_an_object = entities::create(
        &mut c,
        &NewEntity {
            attributes: json!([1]),
            ..org("X")
        },
    )
    .await;

    let field = |r: Result<_, DbError>| match r {
        Err(DbError::InvalidInput { field, .. }) => field,
        other => panic!("expected invalid input, got {other:?}"),
    };
    assert_eq!(
        field(punctuation_only.map(drop)),
        "entities_normalized_name_check"
    );
    assert_eq!(
        field(no_such_entity.map(drop)),
        "entity_aliases_entity_id_fkey"
    );
    assert_eq!(field(not_an_object.map(drop)), "attributes");
}
