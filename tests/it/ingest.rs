//! Bulk ingestion: COPY of each dataset size with counts and checksums, all-or-nothing on a
//! bad row (named by line and field), upserting re-ingestion, and the UNNEST path.

use pretty_assertions::assert_eq;
use rstest::rstest;
use serde_json::json;

use pgperf::dataset::{self, Size};
use pgperf::db::ingest::parallel::{RUN_ROWS, copy_records_parallel, settle_abandoned};
use pgperf::db::ingest::{
    UpsertCounts, copy_entities, copy_records, insert_records_unnest, upsert_records,
};
use std::time::{Duration, Instant};

use pgperf::db::{DbError, NewSourceRecord, PoolSettings};

use crate::support::TestDb;
use crate::support::database::test_settings;

async fn checksum(db: &TestDb) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), coalesce(sum((payload->>'n')::bigint), 0)::bigint FROM source_records",
    )
    .fetch_one(db.db.pool())
    .await
    .unwrap()
}

#[rstest]
#[case::small(Size::Small)]
#[case::medium(Size::Medium)]
#[case::large(Size::Large)]
#[tokio::test]
async fn copy_loads_every_row_of_each_size(#[case] size: Size) {
    let db = TestDb::new().await;
    let mut c = db.db.acquire().await.unwrap();

    let loaded = copy_records(&mut c, dataset::records(1, size.records(), 1_000))
        .await
        .unwrap();

    assert_eq!(loaded, size.records());
    assert_eq!(
        checksum(&db).await,
        dataset::records_checksum(size.records())
    );
}

fn with_bad_row_at(line: u64, bad: NewSourceRecord) -> impl Iterator<Item = NewSourceRecord> {
    dataset::records(2, 2_000, 100)
        .enumerate()
        .map(move |(i, r)| if i as u64 + 1 == line { bad.clone() } else { r })
}

#[tokio::test]
async fn a_bad_row_in_the_middle_rolls_back_the_whole_batch_naming_line_and_field() {
    let db = TestDb::new().await;
    let mut c = db.db.acquire().await.unwrap();
    let bad = NewSourceRecord {
        source: "Not A Source".into(),
        external_id: "x".into(),
        payload: json!({}),
        entity_id: None,
        match_score: None,
    };

    let err = copy_records(&mut c, with_bad_row_at(1_000, bad))
        .await
        .unwrap_err();

    match &err {
        DbError::BadRow {
            line: 1_000, field, ..
        } => assert_eq!(field, "source"),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("nothing from this batch was written"),
        "{err}"
    );
    assert_eq!(checksum(&db).await, (0, 0));
}

#[tokio::test]
async fn a_row_the_server_rejects_rolls_back_the_batch_naming_its_line() {
    let db = TestDb::new().await;
    let mut c = db.db.acquire().await.unwrap();
    // Row 1500 repeats row 10's key: only the server's unique index can tell.
    let duplicate = dataset::records(2, 10, 100).last().unwrap();

    let err = copy_records(&mut c, with_bad_row_at(1_500, duplicate))
        .await
        .unwrap_err();

    match &err {
        DbError::BadRow {
            line: 1_500,
            field,
            reason,
        } => {
            assert!(
                field.contains("source_records_source_external_id_key")
                    || reason.contains("duplicate key"),
                "{err}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(checksum(&db).await, (0, 0));
}

#[tokio::test]
async fn re_ingesting_a_source_upserts_without_duplicates() {
    let db = TestDb::new().await;
    let mut c = db.db.acquire().await.unwrap();
    copy_records(&mut c, dataset::records(3, 1_000, 50))
        .await
        .unwrap();
    // The same 1 000 keys with new payloads, 100 new keys, and one key twice (last wins).
    let again = dataset::records(3, 1_100, 50).map(|mut r| {
        r.payload["revision"] = json!(2);
        r
    });
    let mut twice = dataset::records(3, 1, 50).next().unwrap();
    twice.payload["revision"] = json!(3);

    let counts = upsert_records(&mut c, again.chain(std::iter::once(twice)))
        .await
        .unwrap();

    assert_eq!(
        counts,
        UpsertCounts {
            inserted: 100,
            updated: 1_000
        }
    );
    let (rows, keys, revised): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT (source, external_id)), count(*) FILTER (WHERE payload->>'revision' = '2') FROM source_records",
    )
    .fetch_one(db.db.pool())
    .await
    .unwrap();
    assert_eq!((rows, keys, revised), (1_100, 1_100, 1_099));
}

#[tokio::test]
async fn the_unnest_path_loads_the_same_rows_as_copy() {
    let db = TestDb::new().await;
    let mut c = db.db.acquire().await.unwrap();

    let loaded = insert_records_unnest(&mut c, dataset::records(4, 12_345, 100))
        .await
        .unwrap();

    assert_eq!(loaded, 12_345);
    assert_eq!(checksum(&db).await, dataset::records_checksum(12_345));
}

/// A bulk load runs under its own statement timeout, not the pool's interactive one, which
/// still cancels an ordinary statement afterwards, with an error that says so.
#[tokio::test]
async fn a_bulk_load_outlasts_the_interactive_statement_timeout() {
    // 50 000 rows take about 0.5 s here: twenty times the interactive timeout, so the load
    // outlasts it clearly on a machine several times faster too.
    let interactive = Duration::from_millis(25);
    let db = TestDb::with_settings(PoolSettings {
        statement_timeout: Some(interactive),
        ..test_settings()
    })
    .await;
    let mut c = db.db.acquire().await.unwrap();

    let started = Instant::now();
    let loaded = copy_records(&mut c, dataset::records(1, 50_000, 1_000))
        .await
        .unwrap();
    let took = started.elapsed();

    assert_eq!(loaded, 50_000);
    assert!(
        took > interactive * 2,
        "the load took {took:?}: too quick to show anything, load more rows"
    );
    let err = sqlx::query("SELECT pg_sleep(1)")
        .execute(&mut *c)
        .await
        .map_err(DbError::from)
        .unwrap_err();
    assert!(matches!(err, DbError::Cancelled { .. }), "{err}");
    assert!(err.to_string().contains("statement timeout"), "{err}");
}

#[tokio::test]
async fn entities_and_their_aliases_load_through_copy_in_input_order() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let rows: Vec<_> = dataset::entities(5, 2_000).collect();
    let aliases: usize = rows.iter().map(|(_, a)| a.len()).sum();

    let load = copy_entities(&mut c, rows.clone()).await.unwrap();

    assert_eq!((load.entities, load.aliases), (2_000, aliases as u64));
    let first = load.first_id.unwrap();
    // Entity i has id first + i, and its aliases hang on it.
    for i in [0usize, 1, 999, 1_999] {
        let (entity, its_aliases) = &rows[i];
        let id = first + i as i64;
        let (name, kind): (String, String) =
            sqlx::query_as("SELECT name, kind FROM entities WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *c)
                .await
                .unwrap();
        assert_eq!(
            (name.as_str(), kind.as_str()),
            (entity.name.as_str(), entity.kind.as_str())
        );
        let stored: Vec<String> = sqlx::query_scalar(
            "SELECT alias FROM entity_aliases WHERE entity_id = $1 ORDER BY alias",
        )
        .bind(id)
        .fetch_all(&mut *c)
        .await
        .unwrap();
        let mut expected = its_aliases.clone();
        expected.sort();
        assert_eq!(stored, expected, "aliases of entity {i}");
    }
    // The identity sequence moved past the loaded ids: a later insert does not collide.
    let next: i64 = sqlx::query_scalar(
        "INSERT INTO entities (kind, name, normalized_name) VALUES ('place', 'Next', 'next') RETURNING id",
    )
    .fetch_one(&mut *c)
    .await
    .unwrap();
    assert_eq!(next, first + 2_000);
}

#[tokio::test]
async fn a_bad_alias_rolls_back_every_entity_naming_its_position() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let mut rows: Vec<_> = dataset::entities(5, 300).collect();
    rows[199].1 = vec!["Fine".to_owned(), "  ".to_owned()];

    let err = copy_entities(&mut c, rows).await.unwrap_err();

    match &err {
        DbError::BadRow { line, field, .. } => assert_eq!((*line, field.as_str()), (200, "alias")),
        other => panic!("expected BadRow, got {other:?}"),
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM entities")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing of the batch may stay: {err}");
}

/// Two connections of `db`'s pool for a parallel load, or `None` (the test skips, visibly)
/// where the server does not allow two prepared transactions (an external server).
async fn two_streams(db: &TestDb) -> Option<Vec<pgperf::db::MeteredConnection>> {
    let allowed: i32 =
        sqlx::query_scalar("SELECT current_setting('max_prepared_transactions')::int")
            .fetch_one(db.db.pool())
            .await
            .unwrap();
    if allowed < 2 {
        crate::support::skip::skip(&format!(
            "the server allows {allowed} prepared transactions; a parallel load needs 2"
        ));
        return None;
    }
    Some(vec![
        db.db.acquire().await.unwrap(),
        db.db.acquire().await.unwrap(),
    ])
}

/// What a parallel load leaves behind besides rows: prepared transactions and decision rows.
async fn leftovers(db: &TestDb) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()),
                (SELECT count(*) FROM bulk_load_decisions)",
    )
    .fetch_one(db.db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_parallel_copy_loads_every_row_over_two_streams_and_leaves_nothing_prepared() {
    let db = TestDb::new().await;
    let Some(mut conns) = two_streams(&db).await else {
        return;
    };

    let loaded = copy_records_parallel(&mut conns, dataset::records(1, 12_345, 1_000))
        .await
        .unwrap();

    assert_eq!(loaded, 12_345);
    assert_eq!(checksum(&db).await, dataset::records_checksum(12_345));
    assert_eq!(leftovers(&db).await, (0, 0));
}

/// Each session takes ids in blocks (migration 20261204000001), so the streams of a parallel
/// load write disjoint id ranges, not the same right edge of the id-ordered indexes.
#[tokio::test]
async fn each_stream_of_a_parallel_load_writes_an_id_range_of_its_own() {
    let db = TestDb::new().await;
    let Some(mut conns) = two_streams(&db).await else {
        return;
    };
    copy_records_parallel(&mut conns, dataset::records(1, 12_345, 1_000))
        .await
        .unwrap();

    // Row i (from 0) has external_id "<source>-<i>" and went to stream (i / RUN_ROWS) % 2.
    let ranges: Vec<(i32, i64, i64)> = sqlx::query_as(
        "SELECT (substring(external_id FROM '[0-9]+$')::int / $1) % 2 AS stream,
                min(id), max(id)
           FROM source_records GROUP BY 1 ORDER BY 1",
    )
    .bind(RUN_ROWS as i32)
    .fetch_all(db.db.pool())
    .await
    .unwrap();
    let [(0, min0, max0), (1, min1, max1)] = ranges[..] else {
        panic!("{ranges:?}");
    };
    assert!(max0 < min1 || max1 < min0, "{ranges:?}");
}

/// Rows 1-1000 go to the first stream, 1001-2000 to the second, and so on.
#[rstest]
#[case::refused_by_the_client_in_the_second_stream(1_500, Bad::Source)]
#[case::refused_by_the_server_in_the_second_stream(3_500, Bad::ExistingKey)]
#[case::refused_by_the_server_in_the_first_stream(2_500, Bad::ExistingKey)]
#[case::a_key_repeated_across_the_two_streams(1_500, Bad::RepeatedKey)]
#[tokio::test]
async fn a_bad_row_in_any_stream_leaves_no_row_of_a_parallel_load(
    #[case] line: u64,
    #[case] bad: Bad,
) {
    let db = TestDb::new().await;
    let Some(mut conns) = two_streams(&db).await else {
        return;
    };
    let existing = NewSourceRecord {
        external_id: "already-there".into(),
        ..dataset::records(9, 1, 100).next().unwrap()
    };
    pgperf::db::repo::records::create(&mut conns[0], &existing)
        .await
        .unwrap();
    let before = checksum(&db).await;

    let rows = dataset::records(2, 4_000, 100).enumerate().map(|(i, r)| {
        if i as u64 + 1 == line {
            bad.row(&existing)
        } else {
            r
        }
    });
    let err = copy_records_parallel(&mut conns, rows).await.unwrap_err();

    let DbError::BadRow { line: named, .. } = &err else {
        panic!("{err:?}");
    };
    // A repeated key is named where it waited: at its second use, or (if the second stream
    // wrote it first) at its first, row 10.
    let expected = if bad == Bad::RepeatedKey {
        vec![line, 10]
    } else {
        vec![line]
    };
    assert!(expected.contains(named), "{err}");
    assert_eq!(checksum(&db).await, before, "{err}");
    assert_eq!(leftovers(&db).await, (0, 0));
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bad {
    /// A source the client refuses.
    Source,
    /// A key already in the table: only the server's unique index can tell.
    ExistingKey,
    /// Row 10's key again.
    RepeatedKey,
}

impl Bad {
    fn row(self, existing: &NewSourceRecord) -> NewSourceRecord {
        match self {
            Bad::Source => NewSourceRecord {
                source: "Not A Source".into(),
                ..existing.clone()
            },
            Bad::ExistingKey => existing.clone(),
            Bad::RepeatedKey => dataset::records(2, 10, 100).last().unwrap(),
        }
    }
}

/// A load whose process died after its deciding stream committed is finished by the next
/// one: the other stream's prepared rows are committed, and the decision forgotten. A load
/// still young and undecided is left alone.
#[tokio::test]
async fn a_parallel_load_settles_a_dead_loads_prepared_streams() {
    let db = TestDb::new().await;
    let Some(mut conns) = two_streams(&db).await else {
        return;
    };
    // The dead load "d1-1": stream 0 (with the decision) committed, stream 1 still prepared.
    prepare_stream(
        &mut conns[0],
        "pgperf-copy-d1-1-0",
        Some("d1-1"),
        dataset::records(5, 10, 100),
    )
    .await;
    sqlx::raw_sql("COMMIT PREPARED 'pgperf-copy-d1-1-0'")
        .execute(&mut *conns[0])
        .await
        .unwrap();
    let later = dataset::records(5, 30, 100).skip(10);
    prepare_stream(&mut conns[1], "pgperf-copy-d1-1-1", None, later).await;
    // A live, undecided load "d2-2" of its own.
    let other = dataset::records(6, 5, 100).map(|r| NewSourceRecord {
        external_id: format!("d2-2-{}", r.external_id),
        ..r
    });
    prepare_stream(&mut conns[1], "pgperf-copy-d2-2-1", None, other).await;

    let settled = settle_abandoned(&mut conns[0]).await;
    let (rows, left) = (checksum(&db).await, leftovers(&db).await);
    // Before asserting: a prepared transaction outlives a failed test and holds its locks.
    sqlx::raw_sql("ROLLBACK PREPARED 'pgperf-copy-d2-2-1'")
        .execute(&mut *conns[0])
        .await
        .unwrap();

    assert_eq!(settled.unwrap(), (1, 0));
    assert_eq!(rows, dataset::records_checksum(30));
    assert_eq!(left, (1, 0), "only d2-2 is still prepared");
}

/// Prepares a transaction named `gid` that inserts `rows` and, for a deciding stream, the
/// load's decision.
async fn prepare_stream(
    conn: &mut sqlx::PgConnection,
    gid: &'static str,
    decides: Option<&str>,
    rows: impl Iterator<Item = NewSourceRecord>,
) {
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
    for r in rows {
        pgperf::db::repo::records::create(&mut *conn, &r)
            .await
            .unwrap();
    }
    if let Some(load) = decides {
        sqlx::query("INSERT INTO bulk_load_decisions (load_id) VALUES ($1)")
            .bind(load)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE TRANSACTION '{gid}'")))
        .execute(&mut *conn)
        .await
        .unwrap();
}
