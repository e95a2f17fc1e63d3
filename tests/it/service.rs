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
