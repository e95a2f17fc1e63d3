//! The HTTP API over real HTTP (reqwest) on 127.0.0.1, port chosen by the system, against a
//! test database: status codes, media types and exact JSON bodies.

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use pgperf::db::{Db, EntityKind};
use pgperf::service::router;

use crate::support::{TestDb, entity};

/// Serves `db` on a free local port; returns the base URL. The server lives as long as the
/// test's runtime.
async fn serve(db: Db) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(db)).await });
    format!("http://{addr}")
}

/// Status, content type and JSON body of a GET.
async fn get(url: &str) -> (u16, String, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, media, response.json().await.unwrap())
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
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
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
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap())
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
