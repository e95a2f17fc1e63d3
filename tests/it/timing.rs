//! Timed cases held to the committed baseline (baselines/test-debug.json). Each test runs one
//! area alone (the timing gate keeps every other test out) on its own seeded database, and
//! fails naming every case that regressed, with its numbers and how to accept the change.

use std::path::PathBuf;

use pgperf::perf::baseline::Environment;
use pgperf::perf::{Guard, calibrate, report};
use pgperf::scenarios::{self, Area};

use crate::support::{TestDb, gate};

fn baseline_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("baselines")
        .join("test-debug.json")
}

fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("pgperf")
}

async fn hold_area_to_its_baseline(area: Area) {
    let _alone = gate::exclusive().await;
    let test_db = TestDb::for_timing(scenarios::pool_settings()).await;
    let db = &test_db.db;
    scenarios::seed(db)
        .await
        .expect("seeding the scenario data");
    let major = calibrate::postgres_major(&mut db.acquire().await.unwrap())
        .await
        .unwrap();
    let environment = Environment {
        postgres_major: major,
        profile: Environment::current_profile().to_owned(),
    };
    let guard = Guard::from_env(baseline_path(), environment).unwrap_or_else(|e| panic!("{e}"));
    guard
        .check_slowed_cases(&scenarios::case_names())
        .unwrap_or_else(|e| panic!("{e}"));

    let (mut reports, mut failures) = (Vec::new(), Vec::new());
    for case in scenarios::cases(area) {
        let slowdown = guard.slowdown_for(&case.name);
        let checked = guard
            .check(
                &case.name,
                case.bound,
                case.config.concurrency as u32,
                || scenarios::observe(db, &case, slowdown),
            )
            .await;
        reports.extend(checked.report);
        failures.extend(checked.failure.map(|e| format!("- {e}")));
    }

    eprintln!("{}", report::table(&reports));
    let title = format!("pgperf timed cases: {area:?}");
    let _ = std::fs::create_dir_all(results_dir());
    let _ = std::fs::write(
        results_dir().join(format!("test-{area:?}.md").to_lowercase()),
        report::markdown(&title, &reports),
    );
    assert!(
        failures.is_empty(),
        "{} timed case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_hold_their_baseline() {
    hold_area_to_its_baseline(Area::Lookups).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_holds_its_baseline() {
    hold_area_to_its_baseline(Area::Crud).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_hold_their_baseline() {
    hold_area_to_its_baseline(Area::Transactions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_holds_its_baseline() {
    hold_area_to_its_baseline(Area::Ingest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_acquisition_holds_its_baseline() {
    hold_area_to_its_baseline(Area::Pool).await;
}
