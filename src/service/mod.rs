//! The HTTP API (axum) over the data layer. This first part serves the liveness probe, the
//! basic database health check and entity reads; search, resolution, the metrics and detailed
//! health endpoints follow (see the README's service section).
//!
//! - `GET /health/live`: the process answers; no database involved, so a liveness probe never
//!   restarts the service because its database is down.
//! - `GET /health/database`: `SELECT 1` within [`DATABASE_CHECK_TIMEOUT`]: 200 with the
//!   latency, or 503 with the reason (never a URL, host or password).
//! - `GET /entities/{id}`: one entity as JSON; a malformed id is 400 and an unknown one 404,
//!   both `application/problem+json` (RFC 9457) naming what is wrong.

mod problem;

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::db::repo::entities;
use crate::db::{Db, DbError};

pub use problem::Problem;

/// How long `GET /health/database` waits for `SELECT 1`, acquiring a connection included.
pub const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The media type of health responses (IETF health check draft).
const HEALTH_JSON: &str = "application/health+json";

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    db: Db,
}

/// The service's routes over `db`.
pub fn router(db: Db) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/database", get(database))
        .route("/entities/{id}", get(entity))
        .with_state(AppState { db })
}

fn health(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HEALTH_JSON)],
        body.to_string(),
    )
        .into_response()
}

async fn live() -> Response {
    health(StatusCode::OK, json!({ "status": "pass" }))
}

/// Why the database check failed, in words that hold no address or secret.
fn reason(e: &DbError) -> &'static str {
    if e.is_unavailable() {
        "the database is unavailable"
    } else {
        "the check query failed"
    }
}

async fn database(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let check = async {
        let mut c = state.db.acquire().await?;
        sqlx::query("SELECT 1").execute(&mut *c).await?;
        Ok::<_, DbError>(())
    };
    match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => health(
            StatusCode::OK,
            json!({
                "status": "pass",
                "latency_ms": (started.elapsed().as_secs_f64() * 1e3 * 1e3).round() / 1e3,
            }),
        ),
        Ok(Err(e)) => {
            tracing::warn!("health check of the database failed: {e}");
            health(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "fail", "reason": reason(&e) }),
            )
        }
        Err(_) => health(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "status": "fail",
                "reason": format!(
                    "no answer within {} ms",
                    DATABASE_CHECK_TIMEOUT.as_millis()
                ),
            }),
        ),
    }
}

async fn entity(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return Problem::bad_input("id", format!("{id:?} is not an entity id (an integer)"))
            .into_response();
    };
    let found = async {
        let mut c = state.db.acquire().await?;
        entities::get(&mut c, id).await
    }
    .await;
    match found {
        Ok(e) => Json(e).into_response(),
        Err(DbError::NotFound { .. }) => {
            Problem::not_found(format!("no entity has id {id}")).into_response()
        }
        Err(e) => Problem::from_db(&e).into_response(),
    }
}
