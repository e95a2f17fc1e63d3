//! Plan guards: every hot query uses its indexes on realistically sized data (20 000 entities
//! with aliases, 50 200 source records), touches a bounded number of buffers, and keeps the
//! plan shape committed in baselines/plans.json. A dropped index fails by name, whatever the
//! timings say.

use rstest::rstest;
use std::collections::BTreeMap;
use std::path::PathBuf;

use pgperf::db::Db;
use pgperf::db::ingest::copy_records;
use pgperf::perf::baseline::Mode;
use pgperf::perf::plan::{self, ShapeFile};
use pgperf::scenarios::plans::{plan_cases, plan_records};

use crate::support::TestDb;

fn shapes_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("baselines")
        .join("plans.json")
}

/// Seeds the scenario entities and the source records the plans need.
async fn seeded() -> TestDb {
    let t = TestDb::new().await;
    pgperf::scenarios::seed(&t.db).await.expect("seeding");
    let mut c = t.db.acquire().await.unwrap();
    copy_records(&mut c, plan_records()).await.unwrap();
    sqlx::query("ANALYZE source_records")
        .execute(&mut *c)
        .await
        .unwrap();
    t
}

/// Every case's facts and broken rules.
async fn guard(db: &Db) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut c = db.acquire().await.unwrap();
    // Each plan runs in milliseconds; one that lost its index may run for minutes.
    sqlx::query("SET statement_timeout = '10s'")
        .execute(&mut *c)
        .await
        .unwrap();
    let (mut shapes, mut broken) = (BTreeMap::new(), Vec::new());
    for case in plan_cases() {
        let facts = match plan::explain(&mut c, &case).await {
            Ok(facts) => facts,
            Err(e) => {
                broken.push(format!(
                    "plan guard {}: EXPLAIN ANALYZE did not finish ({e}); was an index it needs dropped?",
                    case.name
                ));
                continue;
            }
        };
        let rows = plan::table_rows(&mut c, &facts.seq_scans).await.unwrap();
        eprintln!(
            "plan {}: {} buffers, {} rows removed\n    {}",
            case.name,
            facts.buffers,
            facts.rows_removed,
            facts.shape.join("\n    ")
        );
        broken.extend(case.check(&facts, &rows));
        shapes.insert(case.name.to_owned(), facts.shape);
    }
    (shapes, broken)
}

#[tokio::test]
async fn every_hot_query_uses_its_indexes_and_keeps_its_committed_shape() {
    let t = seeded().await;

    let (shapes, mut broken) = guard(&t.db).await;
    let mode = Mode::from_env().unwrap_or_else(|e| panic!("{e}"));
    broken.extend(ShapeFile::hold(&shapes_path(), &shapes, mode).unwrap_or_else(|e| panic!("{e}")));

    assert!(broken.is_empty(), "{}", broken.join("\n\n"));
}

#[rstest]
#[tokio::test]
async fn a_dropped_index_fails_the_guards_that_need_it_by_name(
    #[values(
        ("entities_normalized_name_trgm_idx", &["search", "search_by_trigrams", "resolve_by_trigrams"][..]),
        ("entities_normalized_name_words_idx", &["search", "search_by_trigrams", "resolve_every_word", "resolve_one", "resolve_batch_100"][..]),
        ("entities_normalized_name_variants_idx", &["search", "search_by_trigrams", "resolve_by_two_variants"][..])
    )]
    dropped: (&str, &[&str]),
) {
    let (index, expected) = dropped;
    let t = seeded().await;
    // The index name comes from the case table above, never from input.
    let drop = format!("DROP INDEX {index}");
    sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(t.db.pool())
        .await
        .unwrap();

    let (_, broken) = guard(&t.db).await;

    // Without its index a query either shows another plan (the message names the index) or
    // runs past the guard's statement timeout.
    let message = format!("index {index} is not used");
    let named: Vec<&String> = broken
        .iter()
        .filter(|b| b.contains(&message) || b.contains("EXPLAIN ANALYZE did not finish"))
        .collect();
    let cases: Vec<&str> = named
        .iter()
        .filter_map(|b| b.strip_prefix("plan guard ")?.split(':').next())
        .collect();
    assert_eq!(cases, expected, "{broken:#?}");
    eprintln!("{}", named[0]);
}
