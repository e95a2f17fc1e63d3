//! Surviving a failing server, each fault on a container of the test's own: backends killed
//! by pg_terminate_backend, the container paused, the container restarted.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use pgperf::db::repo::entities;
use pgperf::db::{Db, DbError, EntityKind, NewEntity, PoolSettings};

use crate::support::bounded::{eventually, within};
use crate::support::dedicated::Dedicated;
use crate::support::gate;

static APP: AtomicU32 = AtomicU32::new(0);

fn settings(max: u32) -> PoolSettings {
    PoolSettings {
        max_connections: max,
        min_connections: 0,
        acquire_timeout: Duration::from_secs(1),
        query_timeout: Duration::from_secs(1),
        application_name: format!(
            "pgperf-fault-{}-{}",
            std::process::id(),
            APP.fetch_add(1, Ordering::Relaxed)
        ),
        ..PoolSettings::default()
    }
}

async fn select_1(db: &Db) -> Result<(), DbError> {
    db.bounded(async {
        let mut c = db.acquire().await?;
        sqlx::query("SELECT 1").execute(&mut *c).await?;
        Ok(())
    })
    .await
}

async fn until_healthy(db: &Db, limit: Duration, what: &str) {
    eventually(limit, what, || async {
        select_1(db).await.map_err(|e| e.to_string())
    })
    .await;
}

#[tokio::test]
async fn a_container_of_a_tests_own_keeps_timed_measurements_out() {
    let Some(server) = Dedicated::start().await else {
        return;
    };
    let timed = gate::try_exclusive();
    server.shutdown().await;
    assert!(
        timed.is_none(),
        "a timed area could take the gate while a test's own container was running"
    );
}

#[tokio::test]
async fn terminated_backends_are_replaced_and_callers_see_at_most_unavailable() {
    let Some(server) = Dedicated::start().await else {
        return;
    };
    let s = settings(3);
    let app = s.application_name.clone();
    let db = server.pool(s).await;
    let warm: Vec<_> = futures::future::try_join_all((0..3).map(|_| db.acquire()))
        .await
        .unwrap();
    drop(warm);
    assert!(db.settle(Duration::from_secs(5)).await);
    let admin = Db::connect(server.server.admin_url(), settings(1))
        .await
        .unwrap();

    let killed: i64 = sqlx::query_scalar("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1")
        .bind(&app)
        .fetch_one(admin.pool())
        .await
        .unwrap();
    let mut errors = Vec::new();
    for _ in 0..10 {
        if let Err(e) = select_1(&db).await {
            errors.push(e);
        }
    }

    assert_eq!(killed, 3);
    assert!(
        errors.len() <= 3,
        "more errors than killed connections: {errors:?}"
    );
    assert!(
        errors.iter().all(DbError::is_unavailable),
        "an error other than Unavailable: {errors:?}"
    );
    until_healthy(
        &db,
        Duration::from_secs(5),
        "queries to succeed after the backends were killed",
    )
    .await;
    admin.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_paused_server_fails_acquires_and_queries_within_their_timeouts_then_work_resumes() {
    let Some(server) = Dedicated::start().await else {
        return;
    };
    let db = server.pool(settings(2)).await;
    select_1(&db).await.unwrap();
    let container = server.server.container().unwrap();

    container.pause().await.unwrap();
    let started = Instant::now();
    let query = within(
        Duration::from_secs(5),
        "a query on the paused server to time out",
        select_1(&db),
    )
    .await;
    let query_took = started.elapsed();
    let fresh = Db::connect_lazy(&server.url, settings(1));
    let started = Instant::now();
    let acquire = within(
        Duration::from_secs(5),
        "an acquire on the paused server to time out",
        fresh.acquire(),
    )
    .await;
    let acquire_took = started.elapsed();
    container.unpause().await.unwrap();

    assert!(matches!(query, Err(DbError::Timeout { .. })), "{query:?}");
    assert!(
        matches!(acquire, Err(DbError::Unavailable { .. })),
        "{acquire:?}"
    );
    assert!(
        query_took < Duration::from_millis(1_500) && acquire_took < Duration::from_millis(1_500),
        "query {query_took:?}, acquire {acquire_took:?}"
    );
    until_healthy(
        &db,
        Duration::from_secs(15),
        "queries to succeed after unpause",
    )
    .await;
    until_healthy(
        &fresh,
        Duration::from_secs(15),
        "a new pool to connect after unpause",
    )
    .await;
    assert!(
        db.settle(Duration::from_secs(10)).await,
        "a connection leaked across the pause: {:?}",
        db.snapshot()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_restarted_server_keeps_every_commit_and_no_half_transaction_and_the_pool_reconnects() {
    let Some(server) = Dedicated::start().await else {
        return;
    };
    let db = server
        .pool(PoolSettings {
            acquire_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(5),
            ..settings(2)
        })
        .await;
    let org = |name: String| NewEntity {
        kind: EntityKind::Organization,
        name,
        attributes: json!({}),
    };
    for i in 0..20 {
        db.transaction(move |tx| {
            Box::pin(async move {
                entities::create(tx, &org(format!("Committed {i}")))
                    .await
                    .map(drop)
            })
        })
        .await
        .unwrap();
    }
    let mut open = db.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *open).await.unwrap();
    entities::create(&mut open, &org("Never committed".into()))
        .await
        .unwrap();
    let container = server.server.container().unwrap();

    within(Duration::from_secs(30), "docker stop", container.stop())
        .await
        .unwrap();
    within(Duration::from_secs(30), "docker start", container.start())
        .await
        .unwrap();
    drop(open);
    until_healthy(
        &db,
        Duration::from_secs(30),
        "the pool to reconnect after the restart",
    )
    .await;

    let (committed, uncommitted): (i64, i64) = db
        .bounded(async {
            Ok(sqlx::query_as("SELECT count(*) FILTER (WHERE name LIKE 'Committed %'), count(*) FILTER (WHERE name = 'Never committed') FROM entities")
                .fetch_one(db.pool())
                .await?)
        })
        .await
        .unwrap();
    assert_eq!((committed, uncommitted), (20, 0));
    server.shutdown().await;
}
