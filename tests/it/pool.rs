//! The connection pool under exhaustion, saturation and recovery, its idle and lifetime
//! management, and its metrics checked against what the server sees in pg_stat_activity.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pgperf::db::{Db, DbError, PoolSettings};

use crate::support::TestDb;
use crate::support::bounded::{eventually, within};

static APP: AtomicU32 = AtomicU32::new(0);

/// Settings with an application name of the test's own, so pg_stat_activity can tell its
/// connections apart.
fn settings(max: u32, min: u32) -> PoolSettings {
    PoolSettings {
        max_connections: max,
        min_connections: min,
        acquire_timeout: Duration::from_secs(1),
        application_name: format!(
            "pgperf-pool-{}-{}",
            std::process::id(),
            APP.fetch_add(1, Ordering::Relaxed)
        ),
        ..PoolSettings::default()
    }
}

/// Backends of this pool on the server: (all, active).
async fn backends(observer: &Db, app: &str) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity WHERE application_name = $1")
        .bind(app)
        .fetch_one(observer.pool())
        .await
        .unwrap()
}

async fn select_1(db: &Db) -> Result<(), DbError> {
    let mut c = db.acquire().await?;
    sqlx::query("SELECT 1").execute(&mut *c).await?;
    Ok(())
}

#[tokio::test]
async fn an_exhausted_pool_times_out_after_the_acquire_timeout_and_nothing_else_breaks() {
    let t = TestDb::new().await;
    let db = Db::connect(&t.url, settings(2, 0)).await.unwrap();
    let mut held = vec![db.acquire().await.unwrap(), db.acquire().await.unwrap()];

    let started = Instant::now();
    let third = within(
        Duration::from_secs(5),
        "the third acquire to fail",
        db.acquire(),
    )
    .await;
    let waited = started.elapsed();

    assert!(
        matches!(
            third,
            Err(DbError::Unavailable {
                source: sqlx::Error::PoolTimedOut
            })
        ),
        "{third:?}"
    );
    // Not before the timeout; after it, a busy core may add scheduling delay, never seconds.
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_millis(3_000),
        "failed after {waited:?}, timeout 1 s"
    );
    assert_eq!(db.snapshot().acquire_timeouts, 1);
    for c in &mut held {
        sqlx::query("SELECT 1")
            .execute(&mut **c)
            .await
            .expect("held connections still work");
    }
    held.pop();
    within(
        Duration::from_secs(2),
        "an acquire after a release",
        db.acquire(),
    )
    .await
    .expect("a released connection is reused");
}

#[tokio::test]
async fn a_saturated_pool_serves_every_task_and_never_exceeds_its_maximum() {
    let t = TestDb::new().await;
    let s = settings(3, 0);
    let app = s.application_name.clone();
    let db = Db::connect(&t.url, s).await.unwrap();
    db.metrics().reset_peak_waiting();

    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut c = db.acquire().await?;
                sqlx::query("SELECT pg_sleep(0.02)")
                    .execute(&mut *c)
                    .await?;
                Ok::<_, DbError>(())
            })
        })
        .collect();
    let mut most_seen = 0;
    while !tasks.iter().all(|t| t.is_finished()) {
        most_seen = most_seen.max(backends(&t.db, &app).await.0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in tasks {
        within(Duration::from_secs(10), "a saturating task", task)
            .await
            .unwrap()
            .expect("every task completes");
    }

    let s = db.snapshot();
    assert!(
        most_seen <= 3,
        "the server saw {most_seen} connections of a pool of 3"
    );
    assert!(
        s.peak_waiting >= 10,
        "peak waiters {} with 30 tasks on 3 connections",
        s.peak_waiting
    );
    assert_eq!((s.acquired, s.acquire_timeouts), (30, 0));
    assert!(
        s.acquire_time.p99_us >= 20_000,
        "the last tasks must have waited: {:?}",
        s.acquire_time
    );
    eprintln!(
        "saturation: peak waiters {}, acquire wait {:?}",
        s.peak_waiting, s.acquire_time
    );
}

#[tokio::test]
async fn after_load_every_connection_returns_even_from_cancelled_acquires() {
    let t = TestDb::new().await;
    let db = Db::connect(&t.url, settings(2, 0)).await.unwrap();
    let held = vec![db.acquire().await.unwrap(), db.acquire().await.unwrap()];
    // Ten acquires that give up (their futures dropped) while the pool is exhausted.
    for _ in 0..10 {
        let _ = tokio::time::timeout(Duration::from_millis(20), db.acquire()).await;
    }
    assert_eq!(
        db.snapshot().waiting,
        0,
        "dropped acquires still counted as waiting"
    );
    drop(held);

    let settled = db.settle(Duration::from_secs(5)).await;
    let s = db.snapshot();
    assert!(settled, "connections did not come back: {s:?}");
    assert_eq!((s.in_use, s.waiting), (0, 0));
    // A permit lost by a cancelled acquire would make this wait for the acquire timeout (1 s)
    // and fail; half of it leaves room for a busy core and a new connection.
    let started = Instant::now();
    select_1(&db).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the next acquire took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn in_use_as_the_pool_reports_it_equals_the_active_backends() {
    let t = TestDb::new().await;
    let s = settings(4, 0);
    let app = s.application_name.clone();
    let db = Db::connect(&t.url, s).await.unwrap();
    let sleepers: Vec<_> = (0..3)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut c = db.acquire().await.unwrap();
                sqlx::query("SELECT pg_sleep(0.6)")
                    .execute(&mut *c)
                    .await
                    .unwrap();
            })
        })
        .collect();

    let (in_use, active) = eventually(Duration::from_secs(3), "three sleeping queries", || async {
        let (in_use, (_, active)) = (db.snapshot().in_use, backends(&t.db, &app).await);
        if in_use == 3 && active == 3 {
            Ok((in_use, active))
        } else {
            Err(format!("in use {in_use}, active {active}"))
        }
    })
    .await;
    assert_eq!(i64::from(in_use), active);
    for s in sleepers {
        within(Duration::from_secs(5), "the sleeping queries", s)
            .await
            .unwrap();
    }
    assert!(db.settle(Duration::from_secs(5)).await);
    let (total, active) = backends(&t.db, &app).await;
    assert_eq!(
        (db.snapshot().in_use, active, total),
        (0, 0, i64::from(db.snapshot().total))
    );
}

#[tokio::test]
async fn idle_connections_beyond_the_minimum_are_closed_and_the_minimum_is_kept() {
    let t = TestDb::new().await;
    let s = PoolSettings {
        idle_timeout: Some(Duration::from_secs(1)),
        ..settings(4, 1)
    };
    let app = s.application_name.clone();
    let db = Db::connect(&t.url, s).await.unwrap();
    let held: Vec<_> = futures::future::try_join_all((0..4).map(|_| db.acquire()))
        .await
        .unwrap();
    drop(held);
    assert!(db.settle(Duration::from_secs(5)).await);
    assert_eq!(db.snapshot().total, 4);

    eventually(
        Duration::from_secs(8),
        "idle connections to be reaped down to the minimum",
        || async {
            let (total, server) = (db.snapshot().total, backends(&t.db, &app).await.0);
            if total == 1 && server == 1 {
                Ok(())
            } else {
                Err(format!("pool {total}, server {server}"))
            }
        },
    )
    .await;
    assert!(db.snapshot().closed >= 3);
}

#[tokio::test]
async fn connections_are_recycled_after_their_max_lifetime() {
    let t = TestDb::new().await;
    let db = Db::connect(
        &t.url,
        PoolSettings {
            max_lifetime: Some(Duration::from_millis(500)),
            ..settings(1, 0)
        },
    )
    .await
    .unwrap();
    let pid = |db: Db| async move {
        let mut c = db.acquire().await.unwrap();
        sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(&mut *c)
            .await
            .unwrap()
    };

    let first = pid(db.clone()).await;
    let again = pid(db.clone()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = pid(db.clone()).await;

    assert_eq!(first, again, "a young connection was not reused");
    assert_ne!(
        first, after,
        "a connection older than max_lifetime was reused"
    );
    assert!(
        db.snapshot().closed_max_lifetime >= 1,
        "{:?}",
        db.snapshot()
    );
}

#[tokio::test]
async fn closing_a_pool_with_a_connection_still_out_returns_after_the_acquire_timeout() {
    let t = TestDb::new().await;
    let db = Db::connect(&t.url, settings(2, 0)).await.unwrap();
    let held = db.acquire().await.unwrap();
    let started = Instant::now();
    within(Duration::from_secs(10), "Db::close", db.close()).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "close returned after {took:?}, acquire timeout 1 s"
    );
    assert!(
        db.acquire().await.is_err(),
        "a closed pool handed out a connection"
    );
    drop(held);
}
