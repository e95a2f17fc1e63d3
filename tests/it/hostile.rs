//! The API service against an unfriendly client, over real HTTP: inputs past their bounds,
//! floods past the in-flight limits, invented methods, malformed requests. Each rejection is
//! an exact problem+json, and the health endpoints keep answering.

use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use pgperf::db::{EntityKind, PoolSettings};
use pgperf::service::Config;

use crate::support::bounded::eventually;
use crate::support::service::{Running, get, parts};
use crate::support::{TestDb, entity};

async fn post_json(url: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn names(names: &[&str]) -> Value {
    json!({ "names": names.iter().map(|n| json!({"name": n, "kind": "organization"})).collect::<Vec<_>>() })
}

/// A connection holding an exclusive lock on `entities`: resolution's statements wait on it.
async fn lock_entities(db: &pgperf::db::Db) -> sqlx::PgConnection {
    let mut locker = db.connect_one().await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE entities IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    locker
}

async fn release(locker: &mut sqlx::PgConnection) {
    sqlx::raw_sql("COMMIT").execute(locker).await.unwrap();
}

/// The `pgperf_http_requests_total` series (names and labels, no values) of a scrape.
async fn http_series(client: &reqwest::Client, url: &str) -> std::collections::BTreeSet<String> {
    let text = client.get(url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("pgperf_http_requests_total{"))
        .map(|l| l[..=l.find('}').unwrap()].to_owned())
        .collect()
}

/// The fields a problem answer names.
fn fields(body: &Value) -> Vec<&str> {
    body["invalid_params"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_huge_name_is_refused_naming_its_position_before_any_connection_is_taken() {
    let t = TestDb::new().await;
    let s = Running::start(t.db.clone(), Config::default()).await;
    let huge = "x".repeat(100_000);
    let acquired_before = t.db.snapshot().acquired;

    let started = Instant::now();
    let response = post_json(&s.url("/resolve"), &names(&["acme", &huge])).await;
    let took = started.elapsed();
    let (status, media, body) = parts(response).await;

    assert_eq!(
        (status, media.as_str()),
        (400, "application/problem+json"),
        "{body}"
    );
    assert_eq!(fields(&body), vec!["names[1].name"], "{body}");
    assert_eq!(
        t.db.snapshot().acquired,
        acquired_before,
        "no pool connection taken"
    );
    assert!(took < Duration::from_secs(1), "answered in {took:?}");
}

#[tokio::test]
async fn a_search_over_the_name_limit_is_refused_naming_q() {
    let t = TestDb::new().await;
    let s = Running::start(t.db.clone(), Config::default()).await;
    let q = "y".repeat(501);

    let (status, _, body) = get(&s.url(&format!("/search?q={q}"))).await;

    assert_eq!((status, fields(&body)), (400, vec!["q"]), "{body}");
}

#[tokio::test]
async fn a_batch_past_the_resolution_limit_is_shed_at_once_with_retry_after() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    entity(&mut c, EntityKind::Organization, "Acme Widgets").await;
    drop(c);
    let config = Config {
        resolve_in_flight: 1,
        resolve_queue: 0,
        ..Config::default()
    };
    let s = Running::start(t.db.clone(), config).await;
    // Hold the one resolution slot: its statements wait for a lock on `entities`.
    let mut locker = lock_entities(&t.db).await;
    let (url, body) = (s.url("/resolve"), names(&["acme widgets"]));
    let held = tokio::spawn(async move { post_json(&url, &body).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let shed = post_json(&s.url("/resolve"), &names(&["acme"])).await;
    let took = started.elapsed();
    let retry_after = shed
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, media, body) = parts(shed).await;
    let (live, _, _) = get(&s.url("/health/live")).await;
    release(&mut locker).await;
    let (held_status, _, _) = parts(held.await.unwrap()).await;

    assert_eq!(
        (status, media.as_str()),
        (503, "application/problem+json"),
        "{body}"
    );
    assert_eq!(
        body["type"], "https://pgperf.dev/problems/overloaded",
        "{body}"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(took < Duration::from_millis(500), "shed in {took:?}");
    assert_eq!(
        (live, held_status),
        (200, 200),
        "the health and the held batch are answered"
    );
}

#[tokio::test]
async fn batches_past_the_slot_wait_in_the_queue_and_one_past_the_queue_is_shed() {
    let t = TestDb::new().await;
    let config = Config {
        resolve_in_flight: 1,
        resolve_queue: 1,
        ..Config::default()
    };
    let s = Running::start(t.db.clone(), config).await;
    // The slot's batch waits for a lock on `entities`; two more wait in the queue (its size,
    // plus the one its worker holds).
    let mut locker = lock_entities(&t.db).await;
    let mut waiting = Vec::new();
    for name in ["acme", "globex", "initech"] {
        let (url, body) = (s.url("/resolve"), names(&[name]));
        waiting.push(tokio::spawn(async move { post_json(&url, &body).await }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let started = Instant::now();
    let (shed, _, body) = parts(post_json(&s.url("/resolve"), &names(&["umbrella"])).await).await;
    let took = started.elapsed();
    release(&mut locker).await;
    let mut answered = Vec::new();
    for batch in waiting {
        answered.push(parts(batch.await.unwrap()).await.0);
    }

    assert_eq!(shed, 503, "{body}");
    assert!(took < Duration::from_millis(500), "shed in {took:?}");
    assert_eq!(
        answered,
        [200, 200, 200],
        "the running and the queued batches"
    );
}

#[tokio::test]
async fn the_database_check_answers_while_every_pool_connection_is_taken() {
    let t = TestDb::with_settings(PoolSettings {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(3),
        ..crate::support::database::test_settings()
    })
    .await;
    let s = Running::start(t.db.clone(), Config::default()).await;
    let held = [t.db.acquire().await.unwrap(), t.db.acquire().await.unwrap()];

    let started = Instant::now();
    let (status, _, body) = get(&s.url("/health/database")).await;

    assert_eq!((status, &body["status"]), (200, &json!("pass")), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(held);
}

/// How many database checks the service has run, from its own `/metrics`.
async fn checks_run(client: &reqwest::Client, url: &str) -> u64 {
    let text = client.get(url).send().await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("pgperf_db_query_duration_seconds_count{")
                && l.contains("operation=\"health_check\"")
        })
        .unwrap_or_else(|| panic!("no health_check count in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().expect(line)
}

#[tokio::test]
async fn a_flood_of_database_checks_shares_one_query_and_an_old_one_is_run_again() {
    use pgperf::service::{CHECK_MAX_AGE, CHECK_REFRESH_AFTER};
    let t = TestDb::new().await;
    let s = Running::start(t.db.clone(), Config::default()).await;
    let client = reqwest::Client::new();
    assert_eq!(get(&s.url("/health/database")).await.0, 200);
    let before = checks_run(&client, &s.url("/metrics")).await;

    let started = Instant::now();
    let url = s.url("/health/database");
    let answers = futures::future::join_all((0..200).map(|_| get(&url))).await;
    let took = started.elapsed();

    let passed = answers
        .iter()
        .filter(|(status, _, body)| *status == 200 && body["status"] == "pass");
    assert_eq!(
        passed.count(),
        200,
        "{:?}",
        answers.iter().find(|a| a.0 != 200)
    );
    let ran = checks_run(&client, &s.url("/metrics")).await - before;
    // One check per refresh interval at most (and one more begun as the flood ended).
    let allowed = 2 + (took.as_secs_f64() / CHECK_REFRESH_AFTER.as_secs_f64()) as u64;
    assert!(ran <= allowed, "{ran} checks for 200 probes in {took:?}");

    tokio::time::sleep(CHECK_MAX_AGE + Duration::from_millis(300)).await;
    let (status, _, body) = get(&s.url("/health/database")).await;
    assert_eq!(status, 200, "{body}");
    let age = body["age_ms"].as_f64().expect("an age");
    assert!(
        age < 100.0,
        "a check older than {CHECK_MAX_AGE:?} was shared: {body}"
    );
}

#[tokio::test]
async fn a_resolution_past_its_time_is_a_503_and_leaves_no_statement_running() {
    let t = TestDb::new().await;
    let config = Config {
        request_timeout: Duration::from_millis(1_500),
        ..Config::default()
    };
    let s = Running::start(t.db.clone(), config).await;
    let mut locker = lock_entities(&t.db).await;

    let response = post_json(&s.url("/resolve"), &names(&["acme widgets"])).await;
    let retry_after = response.headers().contains_key("retry-after");
    let (status, media, body) = parts(response).await;
    // The lock is still held: a statement still running would still be waiting on it.
    let waiting = eventually(
        Duration::from_secs(1),
        "no statement of ours left",
        || async {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND state = 'active'
                AND query NOT ILIKE '%pg_stat_activity%' AND pid <> pg_backend_pid()",
            )
            .fetch_one(t.db.pool())
            .await
            .unwrap();
            if n == 0 {
                Ok(n)
            } else {
                Err(format!("{n} active"))
            }
        },
    )
    .await;
    release(&mut locker).await;

    assert_eq!(
        (status, media.as_str(), retry_after),
        (503, "application/problem+json", true),
        "{body}"
    );
    assert_eq!(waiting, 0);
}

#[tokio::test]
async fn invented_methods_make_no_new_metric_series() {
    let t = TestDb::new().await;
    let s = Running::start(t.db.clone(), Config::default()).await;
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(b"BREW").unwrap();
    client
        .request(method, s.url("/search"))
        .send()
        .await
        .unwrap();
    client.get(s.url("/metrics")).send().await.unwrap();
    let before = http_series(&client, &s.url("/metrics")).await;

    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("X{i}Y").as_bytes()).unwrap();
        client
            .request(method, s.url("/search"))
            .send()
            .await
            .unwrap();
    }
    let after = http_series(&client, &s.url("/metrics")).await;

    let new: Vec<_> = after.difference(&before).collect();
    assert!(new.is_empty(), "new series: {new:?}");
    assert!(
        after.iter().any(|l| l.contains("method=\"other\"")),
        "{after:?}"
    );
}

#[tokio::test]
async fn every_rejection_is_a_problem_with_nosniff() {
    let t = TestDb::new().await;
    let s = Running::start(t.db.clone(), Config::default()).await;
    let client = reqwest::Client::new();

    let wrong_method = client.delete(s.url("/search")).send().await.unwrap();
    let nosniff = wrong_method
        .headers()
        .get("x-content-type-options")
        .cloned();
    let (status_405, media_405, _) = parts(wrong_method).await;
    let (status_dup, media_dup, body_dup) = get(&s.url("/search?q=a&q=b")).await;
    let (status_404, media_404, _) = get(&s.url("/nowhere")).await;

    assert_eq!(
        (status_405, media_405.as_str()),
        (405, "application/problem+json")
    );
    assert_eq!(nosniff.unwrap(), "nosniff");
    assert_eq!(
        (status_dup, media_dup.as_str()),
        (400, "application/problem+json"),
        "{body_dup}"
    );
    assert_eq!(fields(&body_dup), vec!["query"]);
    assert_eq!(
        (status_404, media_404.as_str()),
        (404, "application/problem+json")
    );
}
