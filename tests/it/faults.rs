//! Surviving a failing server, each fault on a container of the test's own: backends killed
//! by pg_terminate_backend, the container paused, restarted, killed (a crash), stopped at
//! pool start; and a role at its connection limit (SQLSTATE 53300) on the shared server.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use pgperf::dataset;
use pgperf::db::ingest::copy_records;
use pgperf::db::repo::entities;
use pgperf::db::{Db, DbError, EntityKind, NewEntity, PoolSettings};
use pgperf::postgres::ContainerOptions;

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

/// Settings for a pool that lives through a restart or a crash of its server.
fn surviving(max: u32, query_timeout: Duration) -> PoolSettings {
    PoolSettings {
        acquire_timeout: Duration::from_secs(2),
        query_timeout,
        ..settings(max)
    }
}

fn org(name: String) -> NewEntity {
    NewEntity {
        kind: EntityKind::Organization,
        name,
        attributes: json!({}),
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
    // Idle connections are handed out oldest first, so the first three queries meet the
    // three dead connections (each is then discarded) and the rest get new ones.
    assert_eq!(
        errors.len(),
        3,
        "one error per killed connection: {errors:?}"
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
    let db = server.pool(surviving(2, Duration::from_secs(5))).await;
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

/// `docker kill -s KILL`: the server dies mid-work with no shutdown (fsync and full-page
/// writes on, as in production), during a COPY and concurrent transactions.
#[tokio::test]
async fn a_crashed_server_keeps_every_acknowledged_commit_and_no_partial_copy() {
    let Some(server) = Dedicated::start_changed(|o| ContainerOptions { durable: true, ..o }).await
    else {
        return;
    };
    let db = server.pool(surviving(3, Duration::from_secs(10))).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn(commit_until_error(db.clone(), stop.clone()));
    let copier = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut conn = db.acquire().await?;
            copy_records(&mut conn, dataset::records(7, 2_000_000, 1_000)).await
        })
    };
    // Let both run, then kill the server without warning.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let id = server.server.container_id().unwrap().to_owned();
    let killed = tokio::task::spawn_blocking(move || {
        pgperf::postgres::owner::docker(&["kill", "-s", "KILL", &id])
    });
    within(Duration::from_secs(30), "docker kill", killed)
        .await
        .unwrap()
        .expect("docker kill -s KILL");
    let copied = within(Duration::from_secs(30), "the COPY to fail", copier)
        .await
        .unwrap();
    let (acknowledged, writer_error) =
        within(Duration::from_secs(30), "the writer to fail", writer)
            .await
            .unwrap();
    stop.store(true, Ordering::Relaxed);
    let container = server.server.container().unwrap();
    within(Duration::from_secs(60), "docker start", container.start())
        .await
        .unwrap();
    until_healthy(
        &db,
        Duration::from_secs(60),
        "the pool to reconnect after the crash",
    )
    .await;

    let copy_error = copied.expect_err("the 2M-row COPY cannot finish in 1.5 s");
    for (what, e) in [("COPY", &copy_error), ("transaction", &writer_error)] {
        assert!(e.is_unavailable(), "{what} got an untyped error: {e:?}");
    }
    assert!(
        acknowledged.len() >= 5,
        "too few commits before the kill: {}",
        acknowledged.len()
    );
    let names: Vec<String> = db
        .bounded(async {
            Ok(
                sqlx::query_scalar("SELECT name FROM entities WHERE name LIKE 'Crash %'")
                    .fetch_all(db.pool())
                    .await?,
            )
        })
        .await
        .unwrap();
    let lost: Vec<&String> = acknowledged.iter().filter(|n| !names.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged commits lost in the crash: {lost:?}"
    );
    let records: i64 = db
        .bounded(async {
            Ok(sqlx::query_scalar("SELECT count(*) FROM source_records")
                .fetch_one(db.pool())
                .await?)
        })
        .await
        .unwrap();
    assert_eq!(records, 0, "rows of the interrupted COPY are visible");
    server.shutdown().await;
}

/// Commits one entity per transaction until one fails; the names acknowledged, and the error.
async fn commit_until_error(
    db: Db,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<String>, DbError) {
    let mut acknowledged = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let name = format!("Crash {i}");
        let new = org(name.clone());
        let outcome = db
            .bounded(db.transaction(move |tx| {
                Box::pin(async move { entities::create(tx, &new).await.map(drop) })
            }))
            .await;
        match outcome {
            Ok(()) => acknowledged.push(name),
            Err(e) => return (acknowledged, e),
        }
    }
    (
        acknowledged,
        DbError::invalid("writer", "stopped before any error"),
    )
}

#[tokio::test]
async fn a_server_at_its_connection_limit_gives_a_typed_error_and_recovers() {
    let shared = crate::support::shared::shared();
    let _gate = gate::shared().await;
    let role = format!("pgperf_limited_{}", APP.fetch_add(1, Ordering::Relaxed));
    let admin = Db::connect(&shared.admin, settings(1)).await.unwrap();
    let ddl = format!("CREATE ROLE {role} LOGIN PASSWORD 'limited-secret' CONNECTION LIMIT 1");
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
        .execute(admin.pool())
        .await
    {
        crate::support::skip::skip(&format!("cannot create a role on this server ({e})"));
        return;
    }
    let mut url = url::Url::parse(shared.admin.expose()).unwrap();
    url.set_username(&role).unwrap();
    url.set_password(Some("limited-secret")).unwrap();
    let url = pgperf::db::DatabaseUrl::parse(url.as_str()).unwrap();

    let holder = Db::connect(&url, settings(1)).await.unwrap();
    let held = holder.acquire().await.unwrap();
    let refused = Db::connect(&url, settings(1)).await.map(drop);
    drop(held);
    holder.close().await;
    let second = Db::connect_lazy(&url, settings(1));
    until_healthy(
        &second,
        Duration::from_secs(10),
        "a connection once the limit clears",
    )
    .await;
    second.close().await;
    let drop_role = format!("DROP ROLE {role}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop_role))
        .execute(admin.pool())
        .await
        .unwrap();
    admin.close().await;

    let e = refused.expect_err("a second connection over the role's limit");
    assert!(
        e.is_unavailable(),
        "53300 is not typed as unavailable: {e:?}"
    );
    assert!(e.to_string().contains("too many connections"), "{e}");
}

#[tokio::test]
async fn a_server_down_at_pool_start_gives_a_typed_error_and_the_pool_works_once_it_is_up() {
    let Some(server) = Dedicated::start().await else {
        return;
    };
    let container = server.server.container().unwrap();
    within(Duration::from_secs(30), "docker stop", container.stop())
        .await
        .unwrap();
    let started = Instant::now();
    let down = Db::connect(&server.url, settings(2)).await.map(drop);
    let took = started.elapsed();
    let lazy = Db::connect_lazy(&server.url, settings(2));
    let lazy_down = select_1(&lazy).await;
    within(Duration::from_secs(60), "docker start", container.start())
        .await
        .unwrap();
    until_healthy(
        &lazy,
        Duration::from_secs(60),
        "the lazy pool once the server is up",
    )
    .await;
    let up = Db::connect(&server.url, settings(2)).await;
    server.shutdown().await;

    let e = down.expect_err("connecting to a stopped server");
    assert!(e.is_unavailable(), "untyped: {e:?}");
    assert!(
        took < Duration::from_secs(3),
        "refused connections took {took:?}"
    );
    assert!(lazy_down.unwrap_err().is_unavailable());
    up.expect("a new pool once the server is up");
}
