//! The HTTP API over real HTTP (reqwest) on 127.0.0.1, port chosen by the system, against a
//! test database: status codes, media types and exact JSON bodies.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use regex::Regex;
use serde_json::{Value, json};

use pgperf::db::{EntityKind, PoolSettings};
use pgperf::service::Config;

use crate::support::bounded::{eventually, within};
use crate::support::dedicated::Dedicated;
use crate::support::service::{Running, get, parts, serve};
use crate::support::{TestDb, entity};

/// The same with a bearer token.
async fn get_with_token(url: &str, token: &str) -> (u16, String, Value) {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    parts(response).await
}

#[tokio::test]
async fn liveness_answers_without_the_database() {
    let t = TestDb::new().await;
    let base = serve(t.db.clone()).await;
    t.db.close().await;

    let live = get(&format!("{base}/health/live")).await;
    let database = get(&format!("{base}/health/database")).await;

    assert_eq!(
        live,
        (
            200,
            "application/health+json".into(),
            json!({ "status": "pass" })
        )
    );
    assert_eq!(
        database,
        (
            503,
            "application/health+json".into(),
            json!({ "status": "fail", "reason": "the database is unavailable" })
        )
    );
}

#[tokio::test]
async fn the_database_check_passes_with_its_latency() {
    let t = TestDb::new().await;
    let base = serve(t.db.clone()).await;

    let (status, media, body) = get(&format!("{base}/health/database")).await;

    assert_eq!((status, media.as_str()), (200, "application/health+json"));
    assert_eq!(body["status"], "pass");
    let latency = body["latency_ms"].as_f64().expect("a latency in ms");
    assert!(latency > 0.0 && latency < 2_000.0, "{body}");
    // This request ran the check: it had no earlier one to share.
    let age = body["age_ms"].as_f64().expect("an age in ms");
    assert!((0.0..100.0).contains(&age), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
}

#[tokio::test]
async fn an_entity_is_read_and_bad_or_unknown_ids_are_problems() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let id = entity(&mut c, EntityKind::Organization, "Acme Corp").await;
    drop(c);
    let base = serve(t.db.clone()).await;

    let (status, media, body) = get(&format!("{base}/entities/{id}")).await;
    assert_eq!((status, media.as_str()), (200, "application/json"));
    assert_eq!(
        (&body["id"], &body["kind"], &body["name"]),
        (&json!(id), &json!("organization"), &json!("Acme Corp"))
    );

    let bad = get(&format!("{base}/entities/abc")).await;
    assert_eq!(
        bad,
        (
            400,
            "application/problem+json".into(),
            json!({
                "type": "https://pgperf.dev/problems/invalid-input",
                "title": "Invalid input",
                "status": 400,
                "detail": "invalid id: \"abc\" is not an entity id (an integer)",
                "invalid_params": [
                    { "name": "id", "reason": "\"abc\" is not an entity id (an integer)" }
                ]
            })
        )
    );

    let unknown = id + 1_000;
    let missing = get(&format!("{base}/entities/{unknown}")).await;
    assert_eq!(
        missing,
        (
            404,
            "application/problem+json".into(),
            json!({
                "type": "https://pgperf.dev/problems/not-found",
                "title": "Not found",
                "status": 404,
                "detail": format!("no entity has id {unknown}")
            })
        )
    );
}

#[tokio::test]
async fn search_goes_through_the_cache_and_says_so() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let acme = entity(&mut c, EntityKind::Organization, "Acme Corporation").await;
    entity(&mut c, EntityKind::Organization, "Initech").await;
    drop(c);
    let base = serve(t.db.clone()).await;
    let url = format!("{base}/search?q=ACME&limit=5");

    let first = reqwest::get(&url).await.unwrap();
    let first_cache = first.headers()["x-cache"].to_str().unwrap().to_owned();
    let first_body: Value = first.json().await.unwrap();
    let second = reqwest::get(&url).await.unwrap();
    let second_cache = second.headers()["x-cache"].to_str().unwrap().to_owned();
    let second_body: Value = second.json().await.unwrap();

    let expected = json!({
        "hits": [{ "id": acme, "kind": "organization", "name": "Acme Corporation",
                   "matched": "Acme Corporation", "score": 1.0 }],
        "next": null
    });
    assert_eq!((first_cache.as_str(), &first_body), ("miss", &expected));
    assert_eq!((second_cache.as_str(), &second_body), ("hit", &expected));
}

/// The `x-cache` and `x-cache-tier` headers of a search, and its body.
async fn search_of(url: &str) -> (String, String, Value) {
    let r = reqwest::get(url).await.unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
    };
    let (cache, tier) = (header("x-cache"), header("x-cache-tier"));
    (cache, tier, r.json().await.unwrap())
}

/// Pool acquisitions the service has made (its `/metrics`).
async fn acquisitions(s: &Running) -> f64 {
    let text = reqwest::get(s.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("pgperf_pool_acquire_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no acquisition count in:\n{text}"))
}

/// With the process tier, a repeated search is answered from memory without taking a pool
/// connection; a write shows once the generation has been polled again (within 4 polls).
#[tokio::test]
async fn the_process_tier_answers_without_the_pool_and_a_write_shows_within_its_bound() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let acme = entity(&mut c, EntityKind::Organization, "Acme Corporation").await;
    let refresh = Duration::from_millis(50);
    let config = Config {
        process_cache: Some(pgperf::service::ProcessCache {
            max_bytes: 1 << 20,
            refresh,
        }),
        ..Config::default()
    };
    let s = Running::start(t.db.clone(), config).await;
    let url = s.url("/search?q=ACME&limit=5");
    let found = json!({
        "hits": [{ "id": acme, "kind": "organization", "name": "Acme Corporation",
                   "matched": "Acme Corporation", "score": 1.0 }],
        "next": null
    });
    let body = eventually(Duration::from_secs(5), "a hit from memory", || async {
        let (cache, tier, body) = search_of(&url).await;
        if (cache.as_str(), tier.as_str()) == ("hit", "process") {
            Ok(body)
        } else {
            Err(format!("x-cache {cache:?}, x-cache-tier {tier:?}"))
        }
    })
    .await;
    assert_eq!(body, found);

    let before = acquisitions(&s).await;
    for _ in 0..5 {
        assert_eq!(
            search_of(&url).await,
            ("hit".into(), "process".into(), found.clone())
        );
    }
    assert_eq!(
        acquisitions(&s).await,
        before,
        "no pool connection for a hit from memory"
    );

    let current = pgperf::db::repo::entities::get(&mut c, acme).await.unwrap();
    let rename = pgperf::db::EntityChanges {
        name: Some("Zenith Gadgets".into()),
        attributes: None,
    };
    pgperf::db::repo::entities::update(&mut c, acme, current.version, &rename)
        .await
        .unwrap();
    let written = Instant::now();
    eventually(Duration::from_secs(5), "the rename to show", || async {
        let (cache, tier, body) = search_of(&url).await;
        if body["hits"] == json!([]) {
            Ok(())
        } else {
            Err(format!("x-cache {cache:?}, x-cache-tier {tier:?}: {body}"))
        }
    })
    .await;
    // The tier's bound (4 polls) plus the requests' own time.
    let bound = refresh * 4 + Duration::from_millis(500);
    assert!(
        written.elapsed() < bound,
        "shown after {:?}",
        written.elapsed()
    );
    // Polling goes on: the new page is served from memory in turn.
    tokio::time::sleep(refresh * 8).await;
    eventually(
        Duration::from_secs(5),
        "the new page from memory",
        || async {
            match search_of(&url).await {
                (cache, tier, body) if cache == "hit" && tier == "process" => {
                    assert_eq!(body["hits"], json!([]));
                    Ok(())
                }
                seen => Err(format!("{seen:?}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn bad_search_parameters_are_problems_naming_the_parameter() {
    let t = TestDb::new().await;
    let base = serve(t.db.clone()).await;

    for (query, field) in [
        ("", "q"),
        ("q=acme&limit=many", "limit"),
        ("q=acme&limit=0", "limit"),
        ("q=acme&kind=robot", "kind"),
        ("q=acme&cursor=zz", "cursor"),
    ] {
        let (status, media, body) = get(&format!("{base}/search?{query}")).await;
        assert_eq!(
            (status, media.as_str(), &body["invalid_params"][0]["name"]),
            (400, "application/problem+json", &json!(field)),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn names_resolve_in_a_batch_and_a_bad_body_is_a_problem() {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let acme = entity(&mut c, EntityKind::Organization, "Acme Widgets Ltd").await;
    drop(c);
    let base = serve(t.db.clone()).await;
    let client = reqwest::Client::new();
    let post = async |body: Value| {
        let r = client
            .post(format!("{base}/resolve"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, _, body) = parts(r).await;
        (status, body)
    };

    let (status, body) = post(json!({ "names": [
        { "name": "Acme Widget", "kind": "organization" },
        { "name": "Zzyzx Qwv", "kind": "organization" }
    ]}))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!([
            { "candidates": [{ "id": acme, "name": "Acme Widgets Ltd",
                               "matched": "Acme Widgets Ltd",
                               "similarity": 0.785714, "score": 0.911565 }],
              "decision": "match" },
            { "candidates": [], "decision": "new" }
        ])
    );

    let (status, body) = post(json!({ "names": [{ "name": "x" }] })).await;
    assert_eq!(
        (status, &body["invalid_params"][0]["name"]),
        (400, &json!("body")),
        "{body}"
    );
    let too_many: Vec<Value> = (0..1_001)
        .map(|i| json!({ "name": format!("n{i}"), "kind": "person" }))
        .collect();
    let (status, body) = post(json!({ "names": too_many })).await;
    assert_eq!(
        (status, &body["invalid_params"][0]["name"]),
        (400, &json!("names")),
        "{body}"
    );
}

#[tokio::test]
async fn the_metrics_endpoint_reports_the_pool_the_operations_the_cache_and_the_server() {
    let (_t, s) = with_traffic().await;

    let (status, media, body) = get(&s.url("/health/database/metrics")).await;

    assert_eq!(
        (status, media.as_str()),
        (200, "application/json"),
        "{body}"
    );
    let count = |op: &str| body["queries"][op]["count"].clone();
    assert_eq!(
        [
            count("search_uncached"),
            count("search_cached"),
            count("get_entity"),
            count("health_check"),
            count("resolve"),
        ],
        [json!(1), json!(1), json!(1), json!(1), json!(0)],
        "{body}"
    );
    assert_eq!(
        body["search_cache"],
        json!({ "entries": 1, "max_entries": 10_000, "hits": 1, "misses": 1, "hit_ratio": 0.5 })
    );
    let pool = &body["pool"];
    assert_eq!(
        (
            &pool["max"],
            &pool["active"],
            &pool["pending"],
            &pool["timeouts"],
            &pool["utilization"]
        ),
        (&json!(5), &json!(0), &json!(0), &json!(0), &json!(0.0)),
        "{pool}"
    );
    assert!(pool["acquired"].as_u64().unwrap() >= 4, "{pool}");
    assert!(pool["acquire_time_ms"]["p99"].as_f64().is_some(), "{pool}");
    let db = &body["database"];
    assert_eq!(
        (&db["status"], &db["deadlocks"]),
        (&json!("up"), &json!(0)),
        "{db}"
    );
    assert!(db["commits"].as_i64().unwrap() > 0, "{db}");
    assert!(db["connections"]["active"].as_i64().unwrap() >= 1, "{db}");
    let ratio = db["buffer_hit_ratio"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio <= 1.0, "{db}");
    let mut keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "database",
            "pool",
            "queries",
            "search_cache",
            "window_seconds"
        ]
    );
}

fn statuses(body: &Value) -> Vec<(String, String)> {
    body["checks"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, c)| (name.clone(), c[0]["status"].as_str().unwrap().to_owned()))
        .collect()
}

fn check_of<'a>(body: &'a Value, name: &str) -> &'a Value {
    &body["checks"][name][0]
}

#[tokio::test]
async fn the_detailed_check_warns_then_fails_as_the_pool_saturates() {
    let t = TestDb::new().await;
    let s = Running::start(t.db.clone(), Config::default()).await;
    let detailed = s.url("/health/database/detailed");

    let (status, media, body) = get(&detailed).await;
    assert_eq!((status, media.as_str()), (200, "application/health+json"));
    assert_eq!(body["status"], "pass", "{body}");
    let pass = |n: &str| (n.to_owned(), "pass".to_owned());
    assert_eq!(
        statuses(&body),
        [
            pass("database:connectivity"),
            pass("database:longRunningQueries"),
            pass("database:responseTime"),
            pass("http:errorRate"),
            pass("pool:acquireTimeouts"),
            pass("pool:pendingAcquirers"),
            pass("pool:utilization"),
            pass("queries:p95"),
            pass("search:cacheHitRatio"),
            pass("search:cachedP95"),
        ]
    );
    let u = check_of(&body, "pool:utilization");
    assert_eq!(
        (&u["observedValue"], &u["observedUnit"], &u["threshold"]),
        (
            &json!(0.0),
            &json!("ratio"),
            &json!({ "warn": 0.8, "fail": 1.0 })
        )
    );

    // 4 of 5 connections held: utilization 0.8, the warn threshold.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(t.db.acquire().await.unwrap());
    }
    let (status, _, body) = get(&detailed).await;
    let u = check_of(&body, "pool:utilization");
    assert_eq!(
        (status, &body["status"], &u["status"], &u["observedValue"]),
        (200, &json!("warn"), &json!("warn"), &json!(0.8)),
        "{body}"
    );

    // All 5 held, and a request waiting for one: fail, 503.
    held.push(t.db.acquire().await.unwrap());
    let waiting = tokio::spawn(get(s.url("/entities/1").leak()));
    one_waiting(&t.db).await;
    let (status, _, body) = get(&detailed).await;
    let u = check_of(&body, "pool:utilization");
    let p = check_of(&body, "pool:pendingAcquirers");
    assert_eq!(
        (status, &body["status"], &u["status"], &u["observedValue"]),
        (503, &json!("fail"), &json!("fail"), &json!(1.0)),
        "{body}"
    );
    assert_eq!(
        (&p["status"], &p["observedValue"]),
        (&json!("warn"), &json!(1)),
        "{body}"
    );

    drop(held);
    let (status, _, _) = within(Duration::from_secs(10), "the waiting request", waiting)
        .await
        .unwrap();
    assert_eq!(
        status, 404,
        "the waiting request got a connection and its answer"
    );
    let (status, _, body) = get(&detailed).await;
    assert_eq!((status, &body["status"]), (200, &json!("pass")), "{body}");
}

#[tokio::test]
async fn the_monitoring_endpoints_need_the_admin_token_when_one_is_set() {
    let t = TestDb::new().await;
    let token = "s3cret-admin-token-of-at-least-32-bytes";
    let config = Config {
        admin_token: Some(pgperf::service::AdminToken::new(token).unwrap()),
        ..Config::default()
    };
    let s = Running::start(t.db.clone(), config).await;

    for path in [
        "/health/database/metrics",
        "/health/database/detailed",
        "/metrics",
    ] {
        let bare = reqwest::get(s.url(path)).await.unwrap();
        let challenge = bare.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        let (status, media, body) = parts(bare).await;
        assert_eq!(
            (status, media.as_str(), challenge.as_str(), &body["title"]),
            (
                401,
                "application/problem+json",
                "Bearer realm=\"pgperf monitoring\"",
                &json!("Unauthorized")
            ),
            "{path}"
        );
        assert!(!body.to_string().contains(token), "{body}");
        let wrong = get_with_token(&s.url(path), "s3cret-admin-tokeN").await;
        assert_eq!(wrong.0, 401, "{path} with a wrong token");
        let right = get_with_token(&s.url(path), token).await;
        assert_eq!(right.0, 200, "{path} with the token: {}", right.2);
    }
    for path in ["/health/live", "/health/database", "/search?q=acme"] {
        assert_eq!(get(&s.url(path)).await.0, 200, "{path} needs no token");
    }
}

#[tokio::test]
async fn an_oversized_body_and_an_unknown_route_are_problems() {
    let t = TestDb::new().await;
    let config = Config {
        body_limit: 1024,
        ..Config::default()
    };
    let s = Running::start(t.db.clone(), config).await;
    let names: Vec<Value> = (0..100)
        .map(|i| json!({ "name": format!("name number {i}"), "kind": "person" }))
        .collect();
    let response = reqwest::Client::new()
        .post(s.url("/resolve"))
        .json(&json!({ "names": names }))
        .send()
        .await
        .unwrap();

    assert_eq!(
        parts(response).await,
        (
            413,
            "application/problem+json".into(),
            json!({
                "type": "https://pgperf.dev/problems/too-large",
                "title": "Request body too large",
                "status": 413,
                "detail": "the request body is over the limit of 1024 bytes",
                "invalid_params": [{ "name": "body", "reason": "over 1024 bytes" }]
            })
        )
    );
    assert_eq!(
        get(&s.url("/nowhere")).await,
        (
            404,
            "application/problem+json".into(),
            json!({
                "type": "https://pgperf.dev/problems/not-found",
                "title": "Not found",
                "status": 404,
                "detail": "no route for GET /nowhere"
            })
        )
    );
}

#[tokio::test]
async fn a_paused_database_never_holds_a_request_past_its_timeout() {
    let Some(d) = Dedicated::start().await else {
        return;
    };
    let db = d
        .pool(PoolSettings {
            max_connections: 4,
            // Longer than the request limit, so that the request limit is what answers.
            acquire_timeout: Duration::from_secs(5),
            ..PoolSettings::default()
        })
        .await;
    let config = Config {
        request_timeout: Duration::from_secs(3),
        ..Config::default()
    };
    let s = Running::start(db, config).await;
    assert_eq!(get(&s.url("/health/database")).await.0, 200);
    assert_eq!(get(&s.url("/health/database/detailed")).await.0, 200);
    let c = d.server.container().expect("a container");
    within(Duration::from_secs(30), "docker pause", c.pause())
        .await
        .unwrap();
    tokio::time::sleep(pgperf::service::STATS_MAX_AGE).await;

    let started = Instant::now();
    let health = get(&s.url("/health/database")).await;
    let health_took = started.elapsed();
    let started = Instant::now();
    let detailed = get(&s.url("/health/database/detailed")).await;
    let detailed_took = started.elapsed();
    let started = Instant::now();
    let search = get(&s.url("/search?q=acme")).await;
    let search_took = started.elapsed();
    within(Duration::from_secs(30), "docker unpause", c.unpause())
        .await
        .unwrap();

    assert_eq!(
        health,
        (
            503,
            "application/health+json".into(),
            json!({ "status": "fail", "reason": "no answer within 2000 ms" })
        )
    );
    assert_eq!(
        (
            detailed.0,
            &detailed.2["status"],
            &check_of(&detailed.2, "database:connectivity")["observedValue"]
        ),
        (503, &json!("fail"), &json!("down")),
        "{}",
        detailed.2
    );
    assert_eq!(
        (search.0, &search.2["detail"]),
        (
            503,
            &json!("the request took longer than its limit of 3000 ms")
        ),
        "{}",
        search.2
    );
    // Each answered at its own limit (2 s for the checks, 3 s for the request), with 1 s
    // for a loaded machine; a hang would take 35 s (the pool's query timeout) or forever.
    for (what, took, limit) in [
        ("/health/database", health_took, 2.0),
        ("/health/database/detailed", detailed_took, 2.0),
        ("/search", search_took, 3.0),
    ] {
        let s = took.as_secs_f64();
        assert!(
            s >= limit - 0.05 && s < limit + 1.0,
            "{what} answered after {s:.2} s"
        );
    }

    for path in ["/health/database", "/health/database/detailed"] {
        let what = format!("{path} to pass again");
        eventually(Duration::from_secs(30), &what, || async {
            let (status, _, body) = get(&s.url(path)).await;
            if status == 200 {
                Ok(())
            } else {
                Err(body.to_string())
            }
        })
        .await;
    }
    d.shutdown().await;
}

#[tokio::test]
async fn a_stop_lets_in_flight_requests_finish_then_closes_the_pool() {
    let t = TestDb::with_settings(PoolSettings {
        max_connections: 1,
        min_connections: 0,
        acquire_timeout: Duration::from_secs(20),
        ..PoolSettings::default()
    })
    .await;
    let mut s = Running::start(t.db.clone(), Config::default()).await;
    let held = t.db.acquire().await.unwrap();
    let in_flight = tokio::spawn(get(s.url("/entities/1").leak()));
    one_waiting(&t.db).await;

    s.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !s.task.is_finished(),
        "the server stopped with a request in flight"
    );
    drop(held);

    let (status, media, _) = within(Duration::from_secs(10), "the in-flight request", in_flight)
        .await
        .unwrap();
    assert_eq!((status, media.as_str()), (404, "application/problem+json"));
    within(Duration::from_secs(10), "the server to stop", &mut s.task)
        .await
        .unwrap()
        .unwrap();
    let after = t.db.acquire().await.map(drop);
    assert!(
        after.as_ref().is_err_and(|e| e.is_unavailable()),
        "the pool is closed after the stop: {after:?}"
    );
}

#[tokio::test]
async fn no_answer_holds_the_password_or_the_address_of_the_database() {
    let t = TestDb::new().await;
    let parsed = url::Url::parse(t.url.expose()).unwrap();
    // A server with trust authentication has a URL without a password: nothing to leak then.
    let password = parsed.password().map(str::to_owned);
    let address = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    );
    let s = Running::start(t.db.clone(), Config::default()).await;
    let paths = [
        "/health/database",
        "/health/database/metrics",
        "/health/database/detailed",
        "/metrics",
        "/search?q=acme",
        "/search?q=acme&kind=robot",
        "/entities/abc",
        "/entities/1",
    ];
    let mut seen = String::new();
    for round in ["up", "closed"] {
        if round == "closed" {
            t.db.close().await;
            tokio::time::sleep(pgperf::service::STATS_MAX_AGE).await;
        }
        for path in paths {
            let r = reqwest::get(s.url(path)).await.unwrap();
            seen.push_str(&format!("{round} {path} {:?}\n", r.headers()));
            seen.push_str(&r.text().await.unwrap());
        }
    }

    assert!(seen.contains("the database is unavailable"), "{seen}");
    let secrets = [Some(address), Some(t.url.expose().to_owned()), password];
    for secret in secrets.iter().flatten() {
        assert!(
            !seen.contains(secret.as_str()),
            "an answer holds {secret:?}:\n{seen}"
        );
    }
}

/// promtool, from scripts/monitoring-tools (or PGPERF_PROMTOOL).
pub fn monitoring_tool(name: &str) -> std::path::PathBuf {
    let var = format!("PGPERF_{}", name.to_uppercase());
    if let Ok(p) = std::env::var(&var) {
        return p.into();
    }
    let local = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/tools/bin")
        .join(name);
    if local.exists() {
        return local;
    }
    panic!(
        "{name} not found at {} and {var} is not set: run scripts/monitoring-tools (scripts/test does)",
        local.display()
    );
}

#[tokio::test]
async fn the_live_exposition_passes_promtool_and_has_every_metric_and_label_value_monitoring_uses()
{
    let (t, s) = with_traffic().await;
    reqwest::Client::new()
        .post(s.url("/resolve"))
        .json(&json!({ "names": [{ "name": "Acme", "kind": "organization" }] }))
        .send()
        .await
        .unwrap();
    // A 5xx, which the error-rate alerts select (`status=~"5.."`): the database gone.
    t.db.close().await;
    assert_eq!(get(&s.url("/search?q=other")).await.0, 503);
    let response = reqwest::get(s.url("/metrics")).await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let exposition = response.text().await.unwrap();
    promtool_checks(&exposition);

    let used = monitoring_text();
    let series = exposed_series(&exposition);
    let names: BTreeSet<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    let used_names = metric_names(&used);
    assert!(used_names.len() >= 15, "{used_names:?}");
    let missing: Vec<String> = used_names
        .into_iter()
        .filter(|name| !names.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "used but not exposed: {missing:?}\n{exposition}"
    );
    let selectors = label_selectors(&used);
    assert!(selectors.len() >= 6, "{selectors:?}");
    let unmatched: Vec<&Selector> = selectors
        .iter()
        .filter(|m| !m.matches_some(&series))
        .collect();
    assert!(
        unmatched.is_empty(),
        "label values used in monitoring/ but in no live series: {unmatched:?}\n{exposition}"
    );
    let label_names: BTreeSet<&str> = series
        .iter()
        .flat_map(|(_, l)| l.keys())
        .map(String::as_str)
        .collect();
    let ungrouped: Vec<String> = grouping_labels(&used)
        .into_iter()
        .filter(|l| !label_names.contains(l.as_str()))
        .collect();
    assert!(
        ungrouped.is_empty(),
        "grouped or shown by labels no series has: {ungrouped:?}"
    );
}

/// `promtool check metrics` finds nothing to say about an exposition.
fn promtool_checks(exposition: &str) {
    let mut promtool = std::process::Command::new(monitoring_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running promtool");
    use std::io::Write as _;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The alert rules and the dashboard, their JSON escapes undone.
fn monitoring_text() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring");
    ["prometheus/alerts.yml", "grafana/pgperf-dashboard.json"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(root.join(f))
                .unwrap()
                .replace("\\\"", "\"")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A series of an exposition: its name and labels.
type Series = (String, BTreeMap<String, String>);

fn exposed_series(exposition: &str) -> Vec<Series> {
    let line = Regex::new(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ").unwrap();
    let pair = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
    exposition
        .lines()
        .filter_map(|l| line.captures(l))
        .map(|c| {
            let labels = c.get(2).map_or("", |m| m.as_str());
            let labels = pair
                .captures_iter(labels)
                .map(|p| (p[1].to_owned(), p[2].to_owned()))
                .collect();
            (c[1].to_owned(), labels)
        })
        .collect()
}

/// A label matcher of a `pgperf_` selector in monitoring/ (`instance` and dashboard
/// variables left out: Prometheus and Grafana supply those).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Selector {
    metric: String,
    label: String,
    op: String,
    value: String,
}

impl Selector {
    /// A series of the metric has the label with a value that `=` or `=~` selects; for a
    /// negative matcher, the label at all.
    fn matches_some(&self, series: &[Series]) -> bool {
        let full = Regex::new(&format!("^(?:{})$", self.value)).unwrap();
        series
            .iter()
            .filter(|(name, _)| *name == self.metric)
            .filter_map(|(_, labels)| labels.get(&self.label))
            .any(|v| match self.op.as_str() {
                "=" => *v == self.value,
                "=~" => full.is_match(v),
                _ => true,
            })
    }
}

fn label_selectors(text: &str) -> BTreeSet<Selector> {
    let selector = Regex::new(r"(pgperf_[a-z0-9_]+)\{([^}]*)\}").unwrap();
    let matcher = Regex::new(r#"([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)""#).unwrap();
    let mut out = BTreeSet::new();
    for s in selector.captures_iter(text) {
        for m in matcher.captures_iter(&s[2]) {
            if &m[1] == "instance" || m[3].contains('$') {
                continue;
            }
            out.insert(Selector {
                metric: s[1].to_owned(),
                label: m[1].to_owned(),
                op: m[2].to_owned(),
                value: m[3].to_owned(),
            });
        }
    }
    out
}

/// Labels that queries group by (`by (...)`) or legends show (`{{label}}`), but those that
/// Prometheus adds (`instance`), histograms have (`le`) or alerts carry (`alertname`).
fn grouping_labels(text: &str) -> BTreeSet<String> {
    let by = Regex::new(r"\bby \(([^)]*)\)").unwrap();
    let legend = Regex::new(r"\{\{([a-z_]+)\}\}").unwrap();
    let grouped = by.captures_iter(text).flat_map(|c| {
        c[1].split(',')
            .map(|l| l.trim().to_owned())
            .collect::<Vec<_>>()
    });
    let shown = legend.captures_iter(text).map(|c| c[1].to_owned());
    grouped
        .chain(shown)
        .filter(|l| !["instance", "le", "alertname", ""].contains(&l.as_str()))
        .collect()
}

/// Every `pgperf_...` metric name in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let name = Regex::new(r"pgperf_[a-z0-9_]+").unwrap();
    name.find_iter(text)
        .map(|m| m.as_str().to_owned())
        .collect()
}

/// Waits (10 s at most) until exactly one request waits for a pool connection.
async fn one_waiting(db: &pgperf::db::Db) {
    eventually(
        Duration::from_secs(10),
        "a request waiting for a connection",
        || async {
            match db.snapshot().waiting {
                1 => Ok(()),
                w => Err(format!("{w} waiting")),
            }
        },
    )
    .await;
}

/// A service over a database with one entity ("Acme Corporation"), after a search missed then
/// hit the cache, the entity was read and the database check passed.
async fn with_traffic() -> (TestDb, Running) {
    let t = TestDb::new().await;
    let mut c = t.db.acquire().await.unwrap();
    let id = entity(&mut c, EntityKind::Organization, "Acme Corporation").await;
    drop(c);
    let s = Running::start(t.db.clone(), Config::default()).await;
    for path in [
        "/search?q=ACME".to_owned(),
        "/search?q=ACME".to_owned(),
        format!("/entities/{id}"),
        "/health/database".to_owned(),
    ] {
        assert_eq!(get(&s.url(&path)).await.0, 200, "{path}");
    }
    (t, s)
}
